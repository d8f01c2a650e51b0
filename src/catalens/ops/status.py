"""``catalens status``: one look at a running deployment.

It shows the consumer groups of the deployment and how far behind each is, per partition;
the dead letters of the recent past by reason; every index generation with its row count;
and the freshness (event time to Milvus write) the sinks report on their ``/metrics``.

Read-only: it commits no offset (the dead-letter tail is read outside any group) and
writes nothing. A part that cannot be read (Kafka, Milvus or a worker away, a worker
without metrics) is reported as such beside the parts that could, never by crashing.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from catalens.errors import OperatorError, TransientError
from catalens.index import commands
from catalens.kafka.client import partition_lag, read_tail
from catalens.ops.table import render_table
from catalens.schemas import DeadLetter
from catalens.settings import StatusSettings
from catalens.store.admin import Generation

FRESHNESS = "catalens_freshness_seconds"
# (upper bound, cumulative count) of one histogram, +Inf included: Prometheus' buckets.
Buckets = list[tuple[float, float]]


# -- pure parts --------------------------------------------------------------------------


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of a histogram, as Prometheus' ``histogram_quantile`` computes it:
    linear interpolation inside the bucket that holds the rank, the lowest bucket starting
    at 0, and the highest finite bound when the rank falls into the +Inf bucket. None when
    the histogram holds no observation (Prometheus: NaN)."""
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile lies in [0, 1], not {q}")
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]) or ordered[-1][1] == 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for index, (bound, count) in enumerate(ordered):
        if count >= rank:
            if math.isinf(bound):
                return ordered[index - 1][0] if index > 0 else None
            if index == 0 and bound <= 0:
                return bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return None  # unreachable: the +Inf bucket holds every observation


def merge_buckets(histograms: Iterable[Buckets]) -> Buckets:
    """Several workers' histograms as one (``sum by (le)``); they share their bounds."""
    total: dict[float, float] = {}
    for buckets in histograms:
        for bound, count in buckets:
            total[bound] = total.get(bound, 0.0) + count
    return sorted(total.items())


def histogram_buckets(metrics_text: str, name: str) -> Buckets | None:
    """The buckets of histogram ``name`` in Prometheus text, summed over its label sets;
    None when the text has no such histogram."""
    for family in text_string_to_metric_families(metrics_text):
        if family.name == name and family.type == "histogram":
            # Every label set's buckets in one list: merging sums them by bound.
            samples = [s for s in family.samples if s.name == f"{name}_bucket"]
            return merge_buckets([[(float(s.labels["le"]), s.value) for s in samples]])
    return None


def gauge_values(metrics_text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of gauge ``name`` in Prometheus text."""
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(metrics_text)
        if family.name == name
        for sample in family.samples
    ]


@dataclass(frozen=True)
class DeadLetterCounts:
    """Dead letters that failed since ``since``, by reason code. ``unreadable``: records on
    the dead-letter topic that are not dead letters (nothing Catalens wrote)."""

    since: datetime
    by_reason: dict[str, int]
    unreadable: int

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "total": sum(self.by_reason.values()),
            "by_reason": self.by_reason,
            "unreadable": self.unreadable,
        }


def count_dead_letters(values: Iterable[bytes | None], since: datetime) -> DeadLetterCounts:
    """Count the dead letters among ``values`` (raw record values) that failed at or
    after ``since``, by reason, most frequent first."""
    reasons: Counter[str] = Counter()
    unreadable = 0
    for value in values:
        try:
            letter = DeadLetter.model_validate_json(value or b"")
        except ValidationError:
            unreadable += 1
            continue
        failed_at = letter.failed_at
        if failed_at.tzinfo is None:  # written without a zone: Catalens writes UTC
            failed_at = failed_at.replace(tzinfo=UTC)
        if failed_at >= since:
            reasons[letter.reason.value] += 1
    return DeadLetterCounts(since, dict(reasons.most_common()), unreadable)


@dataclass(frozen=True)
class GroupLag:
    """How far consumer group ``group`` is behind on ``topic``: partition → records not
    yet committed; None when the group has committed nothing (or does not exist)."""

    group: str
    topic: str
    partitions: dict[int, int] | None

    @property
    def total(self) -> int | None:
        return None if self.partitions is None else sum(self.partitions.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "topic": self.topic,
            "lag": self.total,
            "partitions": None
            if self.partitions is None
            else {str(p): n for p, n in sorted(self.partitions.items())},
        }


@dataclass(frozen=True)
class WorkerScrape:
    """What one worker's ``/metrics`` said; ``error`` says why it could not be read."""

    url: str
    error: str | None = None
    roles: tuple[str, ...] = ()
    ready: bool | None = None
    freshness: Buckets | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reachable": self.error is None,
            "error": self.error,
            "roles": list(self.roles),
            "ready": self.ready,
            "freshness_samples": int(self.freshness[-1][1]) if self.freshness else None,
        }


def read_worker(url: str, text: str) -> WorkerScrape:
    """Interpret a worker's ``/metrics`` text."""
    ready = gauge_values(text, "catalens_ready")
    return WorkerScrape(
        url,
        roles=tuple(sorted({labels["role"] for labels, _ in ready if "role" in labels})),
        ready=all(value == 1 for _, value in ready) if ready else None,
        freshness=histogram_buckets(text, FRESHNESS),
    )


@dataclass
class Status:
    """The whole report. ``errors``: part → why it could not be read."""

    groups: list[GroupLag] = field(default_factory=list)
    generations: list[commands.GenerationStatus] = field(default_factory=list)
    dead_letters: DeadLetterCounts | None = None
    workers: list[WorkerScrape] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def freshness(self) -> dict[str, Any]:
        """p50/p99 over every worker that reports the freshness histogram. The histograms
        count since each worker started, so these are quantiles over the workers' lives,
        not over the last minutes (Grafana's panel shows the recent ones)."""
        reporting = [w.freshness for w in self.workers if w.freshness is not None]
        merged = merge_buckets(reporting)
        return {
            "p50": histogram_quantile(0.5, merged),
            "p99": histogram_quantile(0.99, merged),
            "samples": int(merged[-1][1]) if merged else 0,
            "workers": len(reporting),
        }

    @property
    def complete(self) -> bool:
        return not self.unread()

    def unread(self) -> list[str]:
        """The parts that could not be read, the unreachable workers among them."""
        return [*self.errors, *(f"worker {w.url}" for w in self.workers if w.error is not None)]

    def to_json(self) -> dict[str, Any]:
        return {
            "groups": [g.to_json() for g in self.groups],
            "generations": [g.to_json() for g in self.generations],
            "dead_letters": self.dead_letters.to_json() if self.dead_letters else None,
            "workers": [w.to_json() for w in self.workers],
            "freshness_seconds": self.freshness(),
            "errors": self.errors,
        }


def render(status: Status) -> str:
    """The report for people: one short table per part."""
    parts = ["consumer groups (lag = records not yet committed)"]
    parts.append(
        render_table(
            ("group", "topic", "lag", "by partition"),
            [
                (
                    g.group,
                    g.topic,
                    "no commits" if g.total is None else str(g.total),
                    " ".join(f"{p}:{n}" for p, n in sorted((g.partitions or {}).items())),
                )
                for g in status.groups
            ],
            indent="  ",
        )
        if status.groups
        else "  (none)"
    )
    parts += ["", "index generations"]
    parts.append(
        "  unknown (see below)"
        if "generations" in status.errors
        else render_generations(status.generations, indent="  ")
    )
    parts += ["", "dead letters"]
    letters = status.dead_letters
    if letters is None:
        parts.append("  unknown (see below)")
    else:
        since = letters.since.strftime("%Y-%m-%d %H:%M:%S UTC")
        parts.append(f"  {sum(letters.by_reason.values())} since {since}")
        parts += [f"  {reason}: {n}" for reason, n in letters.by_reason.items()]
        if letters.unreadable:
            parts.append(f"  (and {letters.unreadable} records that are not dead letters)")
    parts += ["", "workers"]
    parts.append(
        render_table(
            ("url", "state", "roles", "freshness samples"),
            [
                (
                    w.url,
                    f"unreachable: {w.error}"
                    if w.error
                    else {True: "ready", False: "not ready", None: "up"}[w.ready],
                    ",".join(w.roles) or "?",
                    "-" if w.freshness is None else str(int(w.freshness[-1][1])),
                )
                for w in status.workers
            ],
            indent="  ",
        )
        if status.workers
        else "  (none given: --worker URL or CATALENS_STATUS_WORKERS)"
    )
    fresh = status.freshness()
    parts += ["", "freshness (event time to Milvus write, over the workers' lives)"]
    parts.append(
        f"  p50 {_seconds(fresh['p50'])}  p99 {_seconds(fresh['p99'])}"
        f"  ({fresh['samples']} writes, {fresh['workers']} workers reporting)"
        if fresh["samples"]
        else "  unknown: no worker reports catalens_freshness_seconds"
    )
    if status.errors:
        parts += ["", "could not read"]
        parts += [f"  {part}: {error}" for part, error in status.errors.items()]
    return "\n".join(parts)


def render_generations(rows: Sequence[commands.GenerationStatus], *, indent: str = "") -> str:
    """Index generations for people, one line each: ``catalens index status`` and the
    generations part of ``catalens status``. ``memory`` estimates what the vectors' index
    takes in the query nodes' RAM; ``words``: whether the generation answers keyword and
    hybrid search."""
    return render_table(
        (
            "name",
            "model",
            "index",
            "dim",
            "rows",
            "memory",
            "words",
            "serving",
            "embedder behind",
            "sink behind",
        ),
        [
            (
                row.generation.name(row.alias),
                row.generation.model,
                row.generation.layout.index.type,
                "?" if row.generation.identity is None else str(row.generation.identity.dim),
                str(row.generation.rows),
                _size(row.generation.memory_bytes()),
                "yes" if row.generation.layout.text else "no",
                "yes" if row.generation.serving else "no",
                _count(row.embedder_behind),
                _count(row.sink_behind),
            )
            for row in rows
        ],
        indent=indent,
    )


def _size(value: int | None) -> str:
    if value is None:
        return "?"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g} s"


# -- reading the deployment ----------------------------------------------------------------


def collect(
    settings: StatusSettings,
    *,
    workers: Sequence[str] = (),
    dead_letters_per_partition: int = 1000,
    dead_letters_since: timedelta = timedelta(hours=1),
) -> Status:
    """Read every part of the status; a part that fails goes to ``Status.errors``."""
    status = Status()
    try:
        generations = commands.generations(settings)
    except (TransientError, OperatorError) as error:
        status.errors["generations"] = str(error)
        generations = []
    status.groups, lag_error = _group_lags(settings, _groups(settings, generations))
    if lag_error:
        status.errors["consumer groups"] = lag_error
    lags = {g.group: g.total for g in status.groups}
    for generation in generations:
        embedder, sink = commands.generation_groups(generation, settings.collection)
        status.generations.append(
            commands.GenerationStatus(
                generation, settings.collection, lags.get(embedder), lags.get(sink)
            )
        )
    since = datetime.now(UTC) - dead_letters_since
    try:
        tail = read_tail(settings, settings.dlq_topic, dead_letters_per_partition)
        status.dead_letters = count_dead_letters((record.value for record in tail), since)
    except TransientError as error:
        status.errors["dead letters"] = str(error)
    status.workers = [
        fetch_worker(url) for url in dict.fromkeys([*settings.status_workers, *workers])
    ]
    return status


def _groups(settings: StatusSettings, generations: Sequence[Generation]) -> list[tuple[str, str]]:
    """(group, topic) of every consumer group of the deployment: each generation's
    default embedder and sink groups, and the ones set explicitly."""
    pairs: list[tuple[str, str]] = []
    for generation in generations:
        embedder, sink = commands.generation_groups(generation, settings.collection)
        pairs += [(embedder, settings.input_topic), (sink, settings.embeddings_topic)]
    if settings.embedder_group:
        pairs.append((settings.embedder_group, settings.input_topic))
    if settings.sink_group:
        pairs.append((settings.sink_group, settings.embeddings_topic))
    return list(dict.fromkeys(pairs))


def _group_lags(
    settings: StatusSettings, pairs: Sequence[tuple[str, str]]
) -> tuple[list[GroupLag], str | None]:
    out = []
    for group, topic in pairs:
        try:
            out.append(GroupLag(group, topic, partition_lag(settings, group, topic)))
        except TransientError as error:
            # The broker is away: every other group would wait out the same timeout.
            return out, str(error)
    return out, None


def fetch_worker(url: str, timeout_s: float = 5.0) -> WorkerScrape:
    """Read one worker's ``/metrics`` (``url`` may be its base URL)."""
    target = url if urlsplit(url).path not in ("", "/") else url.rstrip("/") + "/metrics"
    try:
        response = httpx.get(target, timeout=timeout_s)
    except httpx.HTTPError as error:
        return WorkerScrape(url, error=f"{type(error).__name__}: {error}")
    if response.status_code != 200:
        return WorkerScrape(url, error=f"{target} answered {response.status_code}")
    try:
        return read_worker(url, response.text)
    except ValueError as error:  # not Prometheus text
        return WorkerScrape(url, error=f"{target} is not Prometheus text: {error}")


def as_json(status: Status) -> str:
    return json.dumps(status.to_json(), indent=2)
