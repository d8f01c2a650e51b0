"""The watcher of a worker's consumer lag: ``catalens_consumer_lag`` refreshed from the
broker in a thread of its own, so a scrape never waits on the broker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from catalens.errors import TransientError
from catalens.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

# Lag is read from the broker this often: a fresh consumer connection per look is cheap
# at this rate, and a scrape never waits on the broker.
LAG_EVERY_S = 15.0


def watch_lag(
    metrics: WorkerMetrics,
    read: Callable[[], Mapping[int, int]],
    *,
    group: str,
    topic: str,
    stop: threading.Event,
    every_s: float = LAG_EVERY_S,
) -> threading.Thread:
    """Refresh ``catalens_consumer_lag`` from ``read`` (partition → records behind) every
    ``every_s`` until ``stop``. A failed look keeps the last values: lag is advisory, and a
    broker that cannot be reached shows in the worker's own retries and readiness."""

    def loop() -> None:
        while not stop.is_set():
            try:
                metrics.set_lag(group, topic, read())
            except TransientError as exc:  # advisory only: the next look tries again
                log.debug("cannot read the lag of %s on %s: %s", group, topic, exc)
            except Exception:  # a bug here must not freeze the gauge for the process's life
                log.exception("reading the lag of %s on %s failed", group, topic)
            stop.wait(every_s)

    thread = threading.Thread(target=loop, name="lag", daemon=True)
    thread.start()
    return thread
