"""How a command waits for Kafka or Milvus: a while, not forever.

A service waits for its dependencies as long as it takes (``catalens.retry``); a command
that an operator or a script runs once (publish, dlq, index, status, up's sample) retries
with the same backoff for ``CATALENS_CONNECT_TIMEOUT_S`` and then fails with the last
:class:`~catalens.errors.TransientError`: exit status 1, one line saying what was away.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from catalens.retry import Backoff, retry_transient
from catalens.settings import CatalensSettings

T = TypeVar("T")

# One try's own wait for an answer: long enough for a slow broker or Milvus, short enough
# that a command retries a few times within the default CATALENS_CONNECT_TIMEOUT_S.
TRY_TIMEOUT_S = 10.0


def try_timeout(settings: CatalensSettings) -> float:
    """How long one try may wait for Kafka or Milvus to answer."""
    return min(TRY_TIMEOUT_S, settings.connect_timeout_s)


def bounded(
    settings: CatalensSettings,
    action: Callable[[], T],
    *,
    what: str,
    stop: threading.Event | None = None,
) -> T:
    """``action``, tried again with backoff after each ``TransientError`` for at most
    ``settings.connect_timeout_s``; then that error propagates. A command that turned
    Ctrl-C into ``stop`` (``up``) gets :class:`~catalens.errors.Stopped` when it is set;
    elsewhere Ctrl-C interrupts the wait (KeyboardInterrupt: exit status 130)."""
    return retry_transient(
        action,
        what=what,
        backoff=Backoff(settings.retry_initial_s, settings.retry_max_s),
        stop=stop if stop is not None else threading.Event(),
        timeout_s=settings.connect_timeout_s,
        log_level=logging.INFO,
    )
