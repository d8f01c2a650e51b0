"""Collapse a batch per product and decide its writes against the stored versions (pure).

The rule, per product: the highest version wins, and a delete at version v removes every
version ≤ v. A tombstone (no version) removes whatever the index holds at that point in
the stream. Applying the plan is idempotent, so a redelivered batch changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from catalens.schemas import EmbeddingRecord, Op
from catalens.store import Row, Stored


@dataclass(slots=True)
class Change:
    """The net effect of one product's records in a batch, in stream order."""

    product_id: str
    upsert: EmbeddingRecord | None = None
    floor: int | None = None  # highest delete version seen
    wipe: bool = False  # a tombstone: also delete what is stored, whatever its version

    def apply(self, record: EmbeddingRecord | None) -> None:
        if record is None:  # tombstone
            seen = [
                v
                for v in (self.floor, self.upsert.version if self.upsert else None)
                if v is not None
            ]
            self.floor = max(seen) if seen else None
            self.upsert = None
            self.wipe = True
        elif record.op is Op.DELETE:
            self.floor = record.version if self.floor is None else max(self.floor, record.version)
            if self.upsert is not None and self.upsert.version <= record.version:
                self.upsert = None
        elif (self.floor is None or record.version > self.floor) and (
            self.upsert is None or record.version > self.upsert.version
        ):
            self.upsert = record


def collapse(records: Iterable[tuple[str, EmbeddingRecord | None]]) -> dict[str, Change]:
    """Fold ``(product_id, record-or-tombstone)`` pairs, in stream order, per product."""
    changes: dict[str, Change] = {}
    for product_id, record in records:
        changes.setdefault(product_id, Change(product_id)).apply(record)
    return changes


@dataclass
class Plan:
    upserts: list[Row] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    floors: list[tuple[str, int]] = field(default_factory=list)
    stale: int = 0

    @property
    def empty(self) -> bool:
        return not (self.upserts or self.deletes or self.floors)


def plan_writes(changes: Mapping[str, Change], stored: Mapping[str, Stored]) -> Plan:
    """The writes that bring the index to the newest known state of each product."""
    plan = Plan()
    for product_id, change in changes.items():
        now = stored.get(product_id, Stored())
        candidates = [change.floor, now.deleted_upto, now.live if change.wipe else None]
        floor = max((v for v in candidates if v is not None), default=None)
        upsert = change.upsert
        newest = (
            upsert is not None
            and (floor is None or upsert.version > floor)
            and (now.live is None or upsert.version > now.live)
        )
        if upsert is not None and newest:
            plan.upserts.append(to_row(upsert))  # replaces the stored row, if any
        else:
            plan.stale += upsert is not None
            if now.live is not None and floor is not None and now.live <= floor:
                plan.deletes.append(product_id)
        if floor is not None and (now.deleted_upto is None or floor > now.deleted_upto):
            plan.floors.append((product_id, floor))
    return plan


def to_row(record: EmbeddingRecord) -> Row:
    return Row(
        product_id=record.product_id,
        version=record.version,
        vector=record.unpack(),
        attributes=dict(record.attributes),
        image=record.image,
        updated_at_ms=int(record.occurred_at.timestamp() * 1000),
    )
