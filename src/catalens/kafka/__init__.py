"""The broker seam: what the roles consume from and produce to.

Delivery is at-least-once: consumers never auto-store offsets; a role marks a record done
only after its effect is durable downstream, and only marked offsets are committed
(periodically, and on close). Roles are typed against :class:`RecordSource` and
:class:`RecordPublisher`; ``catalens.kafka.client`` implements them over confluent-kafka
and ``catalens.kafka.memory`` in memory, and one contract test suite runs against both.
This module imports no client library, so a role's pure steps can import it freely.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from catalens.errors import CatalensError
from catalens.kafka.records import Headers, Partition, Record

__all__ = [
    "DeliveryError",
    "Headers",
    "Partition",
    "Record",
    "RecordPublisher",
    "RecordSource",
    "SourceFactory",
]


class DeliveryError(CatalensError):
    """A produced record was not acknowledged. ``fatal`` means the producer is unusable;
    ``too_large`` that the record is larger than the producer or the topic takes
    (``message.max.bytes``, ``max.message.bytes``): producing it again will not help,
    producing a smaller one may."""

    def __init__(self, message: str, *, fatal: bool, too_large: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.too_large = too_large


class RecordSource(Protocol):
    """What a role consumes from: :class:`Source`, or an in-memory stand-in."""

    @property
    def paused(self) -> bool: ...

    def poll(
        self,
        max_records: int,
        timeout_s: float,
        *,
        fill_s: float = 0.0,
        max_bytes: int | None = None,
    ) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout_s`` for the first and
        then up to ``fill_s`` more for the rest of a full batch. With ``max_bytes``, no
        record is taken once those taken hold that many bytes (:attr:`Record.nbytes`):
        the one that reaches it is the last, so a poll holds less than ``max_bytes`` plus
        one record, and always at least one record when one is there."""
        ...

    def give_back(self, record: Record) -> bool:
        """Hand ``record`` back, unprocessed, with every record taken after it from its
        partition: the partition's next record is ``record`` again, and the ones after it
        follow, so the caller must process none of them (and give back the first, not a
        later one). True when it will come again, or when the partition is no longer this
        member's (its next owner reads it); False when it could not be given back and
        the caller must process it and those after it."""
        ...

    def mark_done(self, offsets: Mapping[Partition, int]) -> None: ...

    def commit_now(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...


# How a service gets its source: it passes its revocation handler (called from inside a
# poll with the partitions the group takes away) and receives the source that calls it.
SourceFactory = Callable[[Callable[[list[Partition]], None]], RecordSource]


class RecordPublisher(Protocol):
    """What a role produces to: :class:`Publisher`, or an in-memory stand-in."""

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Headers | None = None,
        on_delivery: Callable[[DeliveryError | None], None] | None = None,
    ) -> None:
        """Queue one record. ``on_delivery`` runs exactly once, from :meth:`poll` or
        :meth:`flush`, never from ``produce``: with None once the broker acknowledged the
        record, or with the :class:`DeliveryError` that kept it from being written (a
        record too large for the producer included)."""
        ...

    def poll(self, timeout_s: float = 0) -> int: ...

    def flush(self, timeout_s: float) -> int: ...

    def pending(self) -> int: ...
