"""Adaptive micro-batching between image preparation and inference (pure threading).

A batch is closed as soon as it is full, or when nothing more is ready and either no
more work is on its way or ``max_wait`` has passed since its first item. Under light
traffic a lone image is embedded at once (latency); under load the queue fills while
the model is busy, so batches come out full (throughput). The queue is bounded, so
memory is too.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Closed(Exception):
    pass


class Batcher(Generic[T]):
    def __init__(
        self, max_size: int, max_wait_s: float, capacity: int, more_coming: Callable[[], bool]
    ) -> None:
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[T | None] = queue.Queue(maxsize=capacity)
        self._more_coming = more_coming

    def put(self, item: T) -> None:
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(None)

    def next_batch(self) -> list[T]:
        """Block for the next batch; raises :class:`Closed` after :meth:`close`."""
        first = self._queue.get()
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
                self._queue.put(None)  # let the next call see the close
                break
            batch.append(item)
        return batch
