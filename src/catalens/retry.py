"""Capped exponential backoff for transient faults: wait and try again, never skip."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from catalens.errors import Stopped, TransientError

__all__ = ["Backoff", "Stopped", "TransientError", "retry_transient"]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.2
    max_s: float = 10.0

    def delays(self) -> Callable[[int], float]:
        def delay(attempt: int) -> float:
            base: float = min(self.max_s, self.initial_s * 2 ** min(attempt, 30))
            # Full jitter keeps a fleet of replicas from retrying in lockstep.
            return base / 2 + random.uniform(0, base / 2)

        return delay


def retry_transient(
    action: Callable[[], T],
    *,
    what: str,
    backoff: Backoff,
    stop: threading.Event,
    on_wait: Callable[[bool], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    attempts: int | None = None,
    timeout_s: float | None = None,
    log_level: int = logging.WARNING,
) -> T:
    """Run ``action`` until it succeeds, sleeping with backoff after each ``TransientError``.

    Any other exception propagates: a bug must crash loudly, not spin. ``on_wait(True)``
    is called when waiting starts and ``on_wait(False)`` when the dependency is back, so
    readiness can reflect it. ``sleep(seconds)`` replaces the plain wait (a consumer uses
    it to keep polling, so the group does not evict it). Raises :class:`Stopped` if
    ``stop`` is set while waiting.

    Unbounded by default, as a service waits for its broker and database. With
    ``attempts`` (tries in all) or ``timeout_s`` (from the first try; the last try is
    made at the deadline) it gives up by re-raising the last ``TransientError``.
    ``log_level`` is for each retry (per-message work logs them at DEBUG); the recovery
    is logged at INFO, or at ``log_level`` where that is lower.
    """
    delay = backoff.delays()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    attempt = 0
    while True:
        try:
            result = action()
        except TransientError as exc:
            if attempt == 0 and on_wait is not None:
                on_wait(True)
            attempt += 1
            pause = delay(attempt - 1)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                pause = min(pause, left)
            if attempts is not None and attempt >= attempts:
                raise
            log.log(log_level, "%s failed (%s); retrying in %.1fs", what, exc, pause)
            if sleep is None:
                stop.wait(pause)
            else:
                sleep(pause)
            if stop.is_set():
                raise Stopped(what) from exc
            continue
        if attempt and on_wait is not None:
            on_wait(False)
        if attempt:
            log.log(min(log_level, logging.INFO), "%s succeeded after %d retries", what, attempt)
        return result
