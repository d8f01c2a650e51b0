"""Collapse a batch per product and decide its writes against the stored versions (pure).

The rule, per product: the highest version wins, and a delete at version v removes every
version ≤ v and leaves v as the product's delete floor. A tombstone (no version) removes
what the index holds at that point of the stream — a row written by an earlier record —
and leaves that row's version as the floor. Applying a plan is idempotent, and applying
any suffix of the stream again (redelivery after a crash) changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from catalens.records import Row, Stored
from catalens.schemas import EmbeddingRecord, Op

Item = tuple[str, EmbeddingRecord | None, int]  # product id, record or tombstone, offset


@dataclass(slots=True)
class Change:
    """The net effect of one product's records in a batch, in stream order."""

    product_id: str
    upsert: EmbeddingRecord | None = None
    upsert_offset: int = -1
    floor: int | None = None  # highest delete version seen (or implied by a tombstone)
    wipe_offset: int | None = None  # last tombstone: removes stored rows written before it

    def apply(self, record: EmbeddingRecord | None, offset: int) -> None:
        if record is None:
            if self.upsert is not None:
                self._raise_floor(self.upsert.version)
            self.upsert = None
            self.wipe_offset = offset
        elif record.op is Op.DELETE:
            self._raise_floor(record.version)
            if self.upsert is not None and self.upsert.version <= record.version:
                self.upsert = None
        elif (self.floor is None or record.version > self.floor) and (
            self.upsert is None or record.version > self.upsert.version
        ):
            self.upsert, self.upsert_offset = record, offset

    def _raise_floor(self, version: int) -> None:
        self.floor = version if self.floor is None else max(self.floor, version)


def collapse(items: Iterable[Item]) -> dict[str, Change]:
    """Fold ``(product_id, record-or-tombstone, offset)`` in stream order, per product."""
    changes: dict[str, Change] = {}
    for product_id, record, offset in items:
        changes.setdefault(product_id, Change(product_id)).apply(record, offset)
    return changes


@dataclass
class Plan:
    upserts: list[Row] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    floors: list[tuple[str, int]] = field(default_factory=list)
    stale: int = 0


def plan_writes(changes: Mapping[str, Change], stored: Mapping[str, Stored]) -> Plan:
    """The writes that bring the index to the newest known state of each product."""
    plan = Plan()
    for product_id, change in changes.items():
        now = stored.get(product_id, Stored())
        wiped = (
            change.wipe_offset is not None
            and now.live is not None
            and now.live_offset < change.wipe_offset
        )
        candidates = [change.floor, now.deleted_upto, now.live if wiped else None]
        floor = max((v for v in candidates if v is not None), default=None)
        upsert = change.upsert
        newest = (
            upsert is not None
            and (floor is None or upsert.version > floor)
            and (now.live is None or wiped or upsert.version > now.live)
        )
        if upsert is not None and newest:
            plan.upserts.append(to_row(upsert, change.upsert_offset))  # replaces any stored row
        else:
            plan.stale += upsert is not None
            if now.live is not None and floor is not None and now.live <= floor:
                plan.deletes.append(product_id)
        if floor is not None and (now.deleted_upto is None or floor > now.deleted_upto):
            plan.floors.append((product_id, floor))
    return plan


def to_row(record: EmbeddingRecord, offset: int) -> Row:
    return Row(
        product_id=record.product_id,
        version=record.version,
        vector=record.unpack(),
        attributes=dict(record.attributes),
        image=record.image,
        updated_at_ms=int(record.occurred_at.timestamp() * 1000),
        source_offset=offset,
    )
