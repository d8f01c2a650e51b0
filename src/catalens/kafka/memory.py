"""In-memory stand-ins for :class:`catalens.kafka.client.Source` and ``Publisher``.

They let the service loops run without a broker — in benchmarks (to separate Kafka's
cost from the pipeline's) and in tests of the loops' own logic. Delivery is immediate
and always succeeds; offsets marked done are recorded.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from catalens.kafka import DeliveryError, Headers, Partition, Record


class MemorySource:
    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._queue: deque[Record] = deque(records)
        self._lock = threading.Lock()
        self.paused = False
        self.committed: dict[Partition, int] = {}

    def feed(self, records: Iterable[Record]) -> None:
        with self._lock:
            self._queue.extend(records)

    def poll(self, max_records: int, timeout_s: float, *, fill_s: float = 0.0) -> list[Record]:
        # Whatever is queued is already "fetched": there is nothing to wait for (fill_s).
        with self._lock:
            if self.paused or not self._queue:
                taken: list[Record] = []
            else:
                taken = [self._queue.popleft() for _ in range(min(max_records, len(self._queue)))]
        if not taken:
            threading.Event().wait(min(timeout_s, 0.005))
        return taken

    def mark_done(self, offsets: Mapping[Partition, int]) -> None:
        self.committed.update(offsets)

    def commit_now(self) -> None:
        pass

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def close(self) -> None:
        pass


class MemoryPublisher:
    def __init__(self, on_record: Callable[[str, bytes | None, bytes | None], None] | None = None):
        self._pending: deque[Callable[[DeliveryError | None], None]] = deque()
        self._lock = threading.Lock()
        self._on_record = on_record
        self.records: list[tuple[str, bytes | None, bytes | None]] = []
        # While True, the broker "does not answer": no delivery is acknowledged.
        self.hold = False

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Headers | None = None,
        on_delivery: Callable[[DeliveryError | None], None] | None = None,
    ) -> None:
        with self._lock:
            self.records.append((topic, key, value))
            if on_delivery is not None:
                self._pending.append(on_delivery)
        if self._on_record is not None:
            self._on_record(topic, key, value)

    def poll(self, timeout_s: float = 0) -> int:
        served = 0
        while not self.hold:
            with self._lock:
                if not self._pending:
                    return served
                callback = self._pending.popleft()
            callback(None)
            served += 1
        return served

    def flush(self, timeout_s: float) -> int:
        self.poll()
        return len(self._pending)

    def pending(self) -> int:
        return len(self._pending)
