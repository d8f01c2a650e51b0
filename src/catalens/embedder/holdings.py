"""The bytes the embedder holds for its work in flight, against its budget (pure,
thread-safe).

What counts, and from when to when:

* a **record**, from the moment it is taken from the source until its output is
  acknowledged, or until its partition is revoked while it still waits for an earlier
  record of its product (a record already started stays in memory, and counted, until it
  ends): its key, value and headers, and its value once more (:func:`weight`), for the
  event parsed from it, whose inline images are a copy of the value's text;
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
        # Bytes per offset, a list: a revoked partition assigned back may bring a copy of a
        # record whose first copy has not ended yet.
        self._records: dict[Partition, dict[int, list[int]]] = {}
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
            self._records.setdefault(tp, {}).setdefault(offset, []).append(nbytes)
            self._record_bytes += nbytes
            self._observe()

    def release(self, tp: Partition, offset: int) -> None:
        """The record has ended, or left before it started (unknown ones are ignored)."""
        with self._lock:
            offsets = self._records.get(tp, {})
            copies = offsets.get(offset)
            if not copies:
                return
            self._record_bytes -= copies.pop()
            if not copies:
                del offsets[offset]
            if not offsets:
                self._records.pop(tp, None)

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
