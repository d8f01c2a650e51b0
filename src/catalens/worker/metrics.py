"""Prometheus metrics of the workers (embedder and sink), served at ``GET /metrics``.

One metrics object per worker, of its role's class (:class:`EmbedderMetrics`,
:class:`SinkMetrics`: every attribute a role uses exists, and only its series are
exported), each with its own registry, so several workers in one process (tests,
``catalens up``) never share counters. It is wired in at the entry point and passed to the
service; a service built without one counts into one of its own that nobody reads. Names
and labels are a contract with the dashboards and alert rules (docs/metrics.md); change
them only by adding new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

EMBEDDER = "embedder"
SINK = "sink"

# From a record to its row: a few hundred milliseconds when idle, minutes behind a backlog.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
# One image fetched or decoded; one batch inferred, read or written.
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class WorkerMetrics:
    """What every worker reports; :class:`EmbedderMetrics` and :class:`SinkMetrics` add
    their role's own series. Methods are thread-safe (prometheus_client's are)."""

    role: ClassVar[str]
    # The outcomes the role reports (catalens_records_total{outcome}); each is shown from
    # the start, at 0, so that a rate over it exists before the first such record.
    outcomes: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        # Only the documented series: no `*_created` gauge beside every counter/histogram.
        disable_created_metrics()
        role = self.role
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "catalens_records_total", "records handled, by outcome", ["role", "outcome"], registry=r
        )
        for outcome in self.outcomes:
            self.records.labels(role, outcome)
        self.dead_letters = Counter(
            "catalens_dead_letters_total", "dead letters by reason", ["role", "reason"], registry=r
        )
        self.in_flight = Gauge(
            "catalens_in_flight_records",
            "records fetched but not yet ready to commit",
            ["role"],
            registry=r,
        ).labels(role)
        self.in_flight_bytes = Gauge(
            "catalens_in_flight_bytes",
            "bytes held for records in flight (embedder: records and decoded images, as "
            "counted against CATALENS_MAX_IN_FLIGHT_BYTES; sink: the batch in hand)",
            ["role"],
            registry=r,
        ).labels(role)
        self.paused = Gauge(
            "catalens_paused", "1 while the worker has paused its partitions", ["role"], registry=r
        ).labels(role)
        self.ready = Gauge(
            "catalens_ready", "1 while /readyz answers 200", ["role"], registry=r
        ).labels(role)
        self.lag = Gauge(
            "catalens_consumer_lag",
            "end offset minus committed offset of the worker's group "
            "(wrong on the Tansu development broker)",
            ["group", "topic", "partition"],
            registry=r,
        )

    def count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.records.labels(self.role, outcome).inc(n)

    def dead_lettered(self, reason: str) -> None:
        self.count("dead_lettered")
        self.dead_letters.labels(self.role, reason).inc()

    def follow(self, *, ready: Callable[[], bool], paused: Callable[[], bool]) -> None:
        """Read readiness and pausing at scrape time, so the gauges never disagree with
        /readyz or the consumer, whichever loop (serving, waiting, halted) is turning."""
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)
        self.paused.set_function(lambda: 1.0 if paused() else 0.0)

    def set_lag(self, group: str, topic: str, lags: Mapping[int, int]) -> None:
        for partition, behind in lags.items():  # a partition lost keeps its last value
            self.lag.labels(group, topic, str(partition)).set(behind)

    def render(self) -> bytes:
        """The Prometheus text exposition of this worker's metrics."""
        return generate_latest(self.registry)


class EmbedderMetrics(WorkerMetrics):
    """The embedder's metrics: the shared ones, the storm guard and its stage timings."""

    role = EMBEDDER
    outcomes = ("embedded", "reused", "deleted", "dead_lettered", "skipped")

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.storm = Gauge(
            "catalens_dead_letter_storm",
            "1 while the dead-letter storm guard holds the embedder stopped",
            ["role"],
            registry=r,
        ).labels(self.role)
        self.storm.set(0)
        self.fetch_seconds = _histogram(r, "catalens_embedder_fetch_seconds", "image fetch")
        self.decode_seconds = _histogram(
            r, "catalens_embedder_decode_seconds", "image decode and preprocess"
        )
        self.inference_seconds = _histogram(
            r, "catalens_embedder_inference_seconds", "inference of one batch"
        )
        self.batch_size = _histogram(
            r, "catalens_embedder_batch_size", "images per inference batch", BATCH_BUCKETS
        )


class SinkMetrics(WorkerMetrics):
    """The sink's metrics: the shared ones, freshness and latency, and its stage timings."""

    role = SINK
    outcomes = ("written", "deleted", "stale", "skipped", "dead_lettered")

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.freshness = _histogram(
            r,
            "catalens_freshness_seconds",
            "from the event's occurred_at to its Milvus write returning",
            LATENCY_BUCKETS,
        )
        self.pipeline_latency = _histogram(
            r,
            "catalens_pipeline_latency_seconds",
            "from the input record's Kafka timestamp to its Milvus write returning",
            LATENCY_BUCKETS,
        )
        self.read_seconds = _histogram(
            r, "catalens_sink_read_seconds", "Milvus read of stored versions, per batch"
        )
        self.write_seconds = _histogram(
            r, "catalens_sink_write_seconds", "Milvus write (upsert and delete), per batch"
        )
        self.batch_size = _histogram(
            r, "catalens_sink_batch_size", "records per sink batch", BATCH_BUCKETS
        )


def _histogram(
    registry: CollectorRegistry, name: str, what: str, buckets: Iterable[float] = STEP_BUCKETS
) -> Histogram:
    unit = "" if name.endswith("batch_size") else " (seconds)"
    return Histogram(name, what + unit, buckets=tuple(buckets), registry=registry)
