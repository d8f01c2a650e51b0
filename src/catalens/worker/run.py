"""The start-up every long-running worker (embedder, sink) shares, written once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from catalens.kafka.client import ensure_topics, partition_lag
from catalens.retry import Backoff, retry_transient
from catalens.settings import CatalensSettings
from catalens.worker.health import serve_worker
from catalens.worker.metrics import WorkerMetrics


class Worker(Protocol):
    """What :func:`run_worker` needs of a service."""

    # Set while the service's dependencies are usable (/readyz).
    ready: threading.Event

    # time.monotonic() of the service loop's last turn (/healthz).
    @property
    def healthy_at(self) -> float: ...

    def run(self) -> None:
        """Serve until the stop event is set."""


def run_worker(
    settings: CatalensSettings,
    build: Callable[[], AbstractContextManager[Worker]],
    *,
    metrics: WorkerMetrics,
    topics: Sequence[str],
    group: str,
    consumes: str,
    stop: threading.Event,
) -> None:
    """Run one worker until ``stop``: create ``topics`` (waiting for the broker as long as
    it takes, like every wait of a service), enter the service that ``build`` makes (it
    counts into ``metrics``; leaving the context closes what the service was given),
    serve ``/healthz``, ``/readyz`` and ``/metrics`` with the lag of ``group`` on
    ``consumes`` when ``settings.health_port`` is set, run the service, and shut the
    endpoint down however the run ends.

    Raises :class:`~catalens.errors.Stopped` when ``stop`` is set while the broker is
    still away; whatever the service or ``build`` raises propagates.
    """
    retry_transient(
        lambda: ensure_topics(settings, topics),
        what="create topics",
        backoff=Backoff(settings.retry_initial_s, settings.retry_max_s),
        stop=stop,
    )
    with build() as service:
        health = None
        if settings.health_port:
            health = serve_worker(
                settings.health_port,
                last_turn=lambda: service.healthy_at,
                ready=service.ready.is_set,
                metrics=metrics,
                lag=lambda: partition_lag(settings, group, consumes),
                group=group,
                topic=consumes,
                stop=stop,
            )
        try:
            service.run()
        finally:
            if health is not None:
                health.shutdown()
