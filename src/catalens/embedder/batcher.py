"""Adaptive micro-batching between image preparation and inference (pure threading).

A batch is closed as soon as it is full, or when nothing more is ready and either no
more work is on its way or ``max_wait`` has passed since its first item. Under light
traffic a lone image is embedded at once (latency); under load the queue fills while
the model is busy, so batches come out full (throughput). The queue is bounded, so
memory is too: its items hold decoded pixels, the largest thing a record in flight holds.

Closing never blocks, even on a full queue whose consumer is gone: a producer waiting
for room then gets :class:`Closed`, and so does the consumer once the queue is empty.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from catalens.errors import Stopped

T = TypeVar("T")
_CHECK_S = 0.1  # how often a waiting put or get looks whether the batcher was closed


class Closed(Stopped):
    """The batcher was closed: the service is stopping."""

    def __init__(self) -> None:
        super().__init__("the batcher is closed")


class Batcher(Generic[T]):
    def __init__(
        self, max_size: int, max_wait_s: float, capacity: int, more_coming: Callable[[], bool]
    ) -> None:
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[T | None] = queue.Queue(maxsize=capacity)
        self._more_coming = more_coming
        self._closed = threading.Event()

    def put(self, item: T) -> None:
        """Queue ``item``, waiting for room; raises :class:`Closed` once closed."""
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=_CHECK_S)
                return
            except queue.Full:
                continue
        raise Closed

    def close(self) -> None:
        self._closed.set()
        # Wakes a waiting consumer at once; on a full queue the consumer sees the flag
        # once it has emptied it.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def next_batch(self) -> list[T]:
        """Block for the next batch; raises :class:`Closed` after :meth:`close`, once
        what was queued before has come out."""
        while True:
            try:
                first = self._queue.get(timeout=_CHECK_S)
                break
            except queue.Empty:
                if self._closed.is_set():
                    raise Closed from None
        if first is None:
            raise Closed
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._more_coming():
                    break
                try:
                    item = self._queue.get(timeout=min(remaining, 0.005))
                except queue.Empty:
                    continue
            if item is None:
                # Let the next call see the close; without blocking, as close() does (the
                # closed flag tells it where the queue has no room for the marker).
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(None)
                break
            batch.append(item)
        return batch
