"""The bytes the embedder holds for its work in flight, against its budget (pure,
thread-safe).

What counts, and from when to when:

* a **record**, from the moment it is taken from the source until its output is
  acknowledged (or its partition is revoked): its key, value and headers, and its value
  once more (:func:`weight`), for the event parsed from it, whose inline images are a copy
  of the value's text;
* a **decoded image** (the model's input pixels), from its decoding until the model has
  returned the batch it was in.

Decoded images are made after their record was let in, so records may use the budget
less a reserve that covers every decoded image that can exist at once (the batcher's
queue, one per prepare thread, one batch in the model): records and images together
then never exceed the budget. A record that does not fit is not let in (the service
gives it back to the source and pauses) unless nothing else is held: an event larger
than the whole budget is embedded alone, never refused and never a deadlock.

Not counted (README, "Memory", bounds them apart): what the Kafka client has fetched
and not yet handed over, the image being read or decoded by each prepare thread, a dead
letter's encoded copy of its event until the broker acknowledges it, the model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from catalens.kafka.records import Partition, Record


def weight(record: Record) -> int:
    """The bytes ``record`` is counted for: its own, and its value again for the event
    parsed from it (counted from the start, so that parsing never takes a record past
    the budget it was let in under)."""
    return record.nbytes + len(record.value or b"")


class Holdings:
    def __init__(self, budget: int, pixel_reserve: int) -> None:
        self.budget = budget
        # What records may hold: the budget less the reserve for decoded images (none,
        # when the reserve is the whole budget: then each record is embedded alone).
        self.record_share = max(0, budget - pixel_reserve)
        self._lock = threading.Lock()
        self._records: dict[Partition, dict[int, int]] = {}
        self._record_bytes = 0
        self._pixel_bytes = 0
        self._peak = 0

    # -- records (the main loop) ------------------------------------------------------------

    def fits(self, nbytes: int) -> bool:
        """Whether a record of ``nbytes`` may be let in now: it fits in the records'
        share, or nothing else is held."""
        with self._lock:
            return self._record_bytes == 0 or self._record_bytes + nbytes <= self.record_share

    def room(self) -> int:
        """Bytes the records' share has left (at most 0 when full)."""
        with self._lock:
            return self.record_share - self._record_bytes

    def take(self, tp: Partition, offset: int, nbytes: int) -> None:
        with self._lock:
            self._records.setdefault(tp, {})[offset] = nbytes
            self._record_bytes += nbytes
            self._observe()

    def release(self, tp: Partition, offset: int) -> None:
        """The record is done (unknown ones, of partitions revoked meanwhile, are ignored)."""
        with self._lock:
            nbytes = self._records.get(tp, {}).pop(offset, 0)
            self._record_bytes -= nbytes

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Revoked partitions: their records are their next owner's now."""
        with self._lock:
            for tp in partitions:
                self._record_bytes -= sum(self._records.pop(tp, {}).values())

    # -- decoded images (the prepare and inference threads) ---------------------------------

    def take_pixels(self, nbytes: int) -> None:
        with self._lock:
            self._pixel_bytes += nbytes
            self._observe()

    def release_pixels(self, nbytes: int) -> None:
        with self._lock:
            self._pixel_bytes -= nbytes

    # -- reading ----------------------------------------------------------------------------

    @property
    def records(self) -> int:
        with self._lock:
            return self._record_bytes

    @property
    def held(self) -> int:
        """Records and decoded images together: what the budget bounds."""
        with self._lock:
            return self._record_bytes + self._pixel_bytes

    @property
    def peak(self) -> int:
        """The most :attr:`held` has been, at any change, since the start."""
        with self._lock:
            return self._peak

    def _observe(self) -> None:
        self._peak = max(self._peak, self._record_bytes + self._pixel_bytes)
