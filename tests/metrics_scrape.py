"""Reading a running service's Prometheus metrics, as Prometheus would: over HTTP, parsed
by prometheus_client's own parser.

``exported_names(url)`` is the set of names a dashboard or an alert rule can use: family
names and sample names both (a counter family ``catalens_records`` is queried as
``catalens_records_total``, a histogram also as ``..._bucket``, ``..._sum``, ``..._count``).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> dict[str, Metric]:
    """The metric families at ``url`` (a ``/metrics`` address), by family name."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def exported_names(url: str) -> set[str]:
    """Every name a query can use against what ``url`` exports."""
    names: set[str] = set()
    for family in scrape(url).values():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def value(
    families: Mapping[str, Metric], sample: str, labels: Mapping[str, str] | None = None
) -> float:
    """The value of the one sample named ``sample`` whose labels include ``labels``
    (0 when there is none, as Prometheus treats a series not yet created)."""
    wanted = dict(labels or {})
    found = [
        s.value
        for family in families.values()
        for s in family.samples
        if s.name == sample and wanted.items() <= s.labels.items()
    ]
    assert len(found) <= 1, f"{sample}{wanted} matches {len(found)} samples"
    return found[0] if found else 0.0
