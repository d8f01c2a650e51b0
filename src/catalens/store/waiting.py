"""How long one request waited on the store's server: the time at least one server call
was in flight, so that two calls running at once (a hybrid search's two sides) count once.

A request records with :func:`recording`; the store's client marks each call with
:func:`server_call`. A call made on another thread counts when that thread runs in the
request's context (``contextvars.copy_context().run``). Calls outside a recording cost a
context-variable lookup and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class Waited:
    """The calls of one recording, as (start, end) pairs of ``time.perf_counter()``."""

    calls: list[tuple[float, float]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """The length of the union of the calls' intervals."""
        total = 0.0
        reached = float("-inf")
        for start, end in sorted(self.calls):
            if end > reached:
                total += end - max(start, reached)
                reached = end
        return total


_RECORDING: ContextVar[Waited | None] = ContextVar("catalens_store_waited", default=None)


@contextmanager
def recording() -> Iterator[Waited]:
    """Record the server calls made in this context until the block ends."""
    waited = Waited()
    token = _RECORDING.set(waited)
    try:
        yield waited
    finally:
        _RECORDING.reset(token)


@contextmanager
def server_call() -> Iterator[None]:
    """One call to the server, counted in the recording of the context, if any."""
    waited = _RECORDING.get()
    started = time.perf_counter()
    try:
        yield
    finally:
        if waited is not None:
            waited.calls.append((started, time.perf_counter()))
