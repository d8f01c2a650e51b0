"""Which offsets may be committed when records finish out of order (pure, thread-safe).

A partition's committable offset is that of its oldest unfinished record (or one past the
newest finished record when none is unfinished): committing it can never skip work that
is still in flight, whatever order records finish in.
"""

from __future__ import annotations

import threading
from collections import deque

Partition = tuple[str, int]


class OffsetTracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Partition, deque[int]] = {}
        self._done: dict[Partition, set[int]] = {}
        self._next: dict[Partition, int] = {}
        self._in_flight = 0

    def start(self, tp: Partition, offset: int) -> None:
        """Register a record in the order it was consumed."""
        with self._lock:
            self._pending.setdefault(tp, deque()).append(offset)
            self._done.setdefault(tp, set())
            self._in_flight += 1

    def finish(self, tp: Partition, offset: int) -> None:
        """Mark a record's effect as durable. Unknown partitions (revoked) are ignored."""
        with self._lock:
            pending = self._pending.get(tp)
            if pending is None:
                return
            done = self._done[tp]
            if offset in done:
                return
            done.add(offset)
            self._in_flight -= 1
            while pending and pending[0] in done:
                finished = pending.popleft()
                done.discard(finished)
                self._next[tp] = pending[0] if pending else finished + 1

    def take_committable(self) -> dict[Partition, int]:
        """The offsets to commit now (everything before them is durable downstream),
        each returned once."""
        with self._lock:
            ready, self._next = self._next, {}
            return ready

    def in_flight(self, partitions: set[Partition] | None = None) -> int:
        with self._lock:
            if partitions is None:
                return self._in_flight
            return sum(len(self._pending.get(tp, ())) for tp in partitions)

    def forget(self, partitions: list[Partition]) -> None:
        """Drop revoked partitions: their unfinished records will be redelivered elsewhere."""
        with self._lock:
            for tp in partitions:
                pending = self._pending.pop(tp, deque())
                done = self._done.pop(tp, set())
                self._in_flight -= len(pending) - len(done)
                self._next.pop(tp, None)
