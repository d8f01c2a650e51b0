"""A consumed record, detached from the client library: what the broker seam hands out."""

from __future__ import annotations

from dataclasses import dataclass

Partition = tuple[str, int]
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, detached from the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int

    @property
    def tp(self) -> Partition:
        return (self.topic, self.partition)

    @property
    def nbytes(self) -> int:
        """The bytes of its key, value and headers: what holding it costs, give or take
        Python's few dozen bytes per object."""
        return (
            len(self.key or b"")
            + len(self.value or b"")
            + sum(len(name) + len(value) for name, value in self.headers)
        )
