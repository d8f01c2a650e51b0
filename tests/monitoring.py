"""The metric names the dashboard and the alert rules may use, and a minimal reading of
PromQL that finds which ones they do use.

Shared by the unit tests (every name referenced is an agreed one) and by integration tests
that check the running services export them: :func:`metric_name` maps an exported sample
name (``catalens_freshness_seconds_bucket``) to the same form as a referenced one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "catalens.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# name → type, as the services export them: counters with their _total, histograms by family.
WORKER_METRICS = {
    "catalens_records_total": "counter",
    "catalens_dead_letters_total": "counter",
    "catalens_freshness_seconds": "histogram",
    "catalens_pipeline_latency_seconds": "histogram",
    "catalens_consumer_lag": "gauge",
    "catalens_embedder_fetch_seconds": "histogram",
    "catalens_embedder_decode_seconds": "histogram",
    "catalens_embedder_inference_seconds": "histogram",
    "catalens_embedder_batch_size": "histogram",
    "catalens_sink_read_seconds": "histogram",
    "catalens_sink_write_seconds": "histogram",
    "catalens_sink_batch_size": "histogram",
    "catalens_in_flight_records": "gauge",
    "catalens_in_flight_bytes": "gauge",
    "catalens_paused": "gauge",
    "catalens_ready": "gauge",
    "catalens_dead_letter_storm": "gauge",
}
API_METRICS = {
    "catalens_request_seconds": "histogram",
    "catalens_encode_seconds": "histogram",
    "catalens_search_seconds": "histogram",
    "catalens_text_cache_total": "counter",
}
AGREED = WORKER_METRICS | API_METRICS

_NAME = re.compile(r"\bcatalens_[a-z_]+")
# String literals of PromQL (label values, regexes): names inside them are not metrics.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_HISTOGRAM_SERIES = re.compile(r"_(bucket|count|sum)$")


def metric_name(series: str) -> str:
    """The agreed form of a series name: a histogram's ``_bucket``, ``_count`` and
    ``_sum`` series name its family; a counter keeps its ``_total``."""
    return _HISTOGRAM_SERIES.sub("", series)


def promql_metrics(expr: str) -> set[str]:
    """The ``catalens_*`` metrics an expression reads. Not a PromQL parser: it relies on
    metric names being the only ``catalens_`` words outside string literals."""
    return {metric_name(name) for name in _NAME.findall(_STRING.sub('""', expr))}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_expressions(node: Any) -> Iterator[str]:
    """Every ``expr`` anywhere in a dashboard (panels, rows' panels, templating)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from dashboard_expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_expressions(item)


def referenced_metrics() -> set[str]:
    """Every ``catalens_*`` metric the dashboard and the alert rules read."""
    expressions = [*dashboard_expressions(dashboard()), *(r["expr"] for r in rules())]
    return set().union(*(promql_metrics(e) for e in expressions))
