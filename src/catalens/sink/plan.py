"""Collapse a batch per product and decide its writes against the stored state (pure).

The rule, per product: the highest version wins, and a delete at version v removes every
version ≤ v and leaves v as the product's delete floor. A tombstone (no version) removes
what the index holds at that point of the stream — rows made from an earlier event —
and leaves their version as the floor. A product is its whole image set: the upsert that
wins writes a row for each of its images and removes the product's rows of images it no
longer lists, and a delete removes every row.

"Earlier" is decided by the *input position*: the offset, in the input topic, of the
event a record was made from (all events of a product share one input partition). It is
the same however often the embedder re-emits an event after a restart and however often
a sink re-reads the embedding topic, so:

* a record whose input position is not past the last one folded for its product is a
  re-emission of something already folded, and changes nothing;
* a tombstone removes only a stored row made from an event before it, and leaves its
  position behind, so that an upsert from before it stays out however late it arrives
  (an image that failed to load at first and loads on a re-emission, say).

A write cut short after some of a product's rows (a crash, a lost answer) leaves rows of
two events, or fewer rows than the product has images: the stored state is not
:attr:`~catalens.store.values.Stored.complete`. Its newest version is then written again
by the record that made it, which the redelivery (or the retry) brings back: the one case
where an upsert of the stored version is not stale.

Hence applying a plan is idempotent, and re-applying any suffix of the embedding topic,
from any consumer group, leaves the index as it was (``tests/contract/test_store.py``
proves it against the in-memory store and against Milvus).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

from catalens.schemas import EmbeddingRecord, Op
from catalens.store.values import UNKNOWN_OFFSET, Floor, Plan, Row, Stored

# product id, record (None: a tombstone), input position (≥ 0; the sink skips records
# that carry none)
Item = tuple[str, EmbeddingRecord | None, int]

__all__ = ["Change", "Item", "Plan", "attempted", "collapse", "plan_writes", "to_rows"]


@dataclass(slots=True)
class Change:
    """The net effect of one product's records in a batch, in stream order."""

    product_id: str
    upsert: EmbeddingRecord | None = None
    upsert_offset: int = UNKNOWN_OFFSET
    floor: int | None = None  # highest delete version seen (or implied by a tombstone)
    wipe_offset: int | None = None  # last tombstone: removes stored rows made before it
    last_offset: int = UNKNOWN_OFFSET  # the furthest input position folded so far

    def apply(self, record: EmbeddingRecord | None, offset: int) -> None:
        if offset <= self.last_offset:
            return  # a re-emission of an event already folded
        self.last_offset = offset
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
    """Fold ``(product_id, record-or-tombstone, input position)`` in stream order."""
    changes: dict[str, Change] = {}
    for product_id, record, offset in items:
        changes.setdefault(product_id, Change(product_id)).apply(record, offset)
    return changes


def plan_writes(changes: Mapping[str, Change], stored: Mapping[str, Stored]) -> Plan:
    """The writes that bring the index to the newest known state of each product."""
    plan = Plan()
    for product_id, change in changes.items():
        now = stored.get(product_id, Stored())
        wiped = (
            change.wipe_offset is not None
            and now.live is not None
            and now.input_offset < change.wipe_offset
        )
        candidates = [change.floor, now.deleted_upto, now.live if wiped else None]
        floor = max((v for v in candidates if v is not None), default=None)
        wiped_upto = max(
            now.wiped_upto, UNKNOWN_OFFSET if change.wipe_offset is None else change.wipe_offset
        )
        upsert = change.upsert
        newest = (
            upsert is not None
            and change.upsert_offset > now.wiped_upto  # not from before a tombstone applied
            and (floor is None or upsert.version > floor)
            and (
                now.live is None
                or wiped
                or upsert.version > now.live
                # a write of this version cut short: the redelivery completes it
                or (upsert.version == now.live and not now.complete)
            )
        )
        if upsert is not None and newest:
            rows = to_rows(upsert, change.upsert_offset)  # replace any stored row of theirs
            listed = {row.image_id for row in rows}
            plan.removals += [(product_id, i) for i in now.image_ids if i not in listed]
            plan.upserts += rows
        else:
            plan.stale += upsert is not None
            if now.live is not None and floor is not None and now.live <= floor:
                plan.removals += [(product_id, i) for i in now.image_ids]
        raised = floor is not None and (now.deleted_upto is None or floor > now.deleted_upto)
        if raised or wiped_upto > now.wiped_upto:
            plan.floors.append(Floor(product_id, floor, wiped_upto))
    return plan


def attempted(plans: Iterable[Plan], products: Container[str]) -> Plan:
    """The writes of ``products`` that any of ``plans`` (the attempts at one batch) may
    have made: an attempt whose answer was lost may have written, and the retry, planned
    against what it wrote, finds those records stale. Each row or removal once; ``stale``
    and floors are left out."""
    out = Plan()
    rows: set[tuple[str, str, int]] = set()
    removed: set[tuple[str, str]] = set()
    for plan in plans:
        for row in plan.upserts:
            if row.product_id in products and (*row.key, row.input_offset) not in rows:
                rows.add((*row.key, row.input_offset))
                out.upserts.append(row)
        for key in plan.removals:
            if key[0] in products and key not in removed:
                removed.add(key)
                out.removals.append(key)
    return out


def to_rows(record: EmbeddingRecord, offset: int) -> list[Row]:
    """The rows of an upsert: one per image, main image first, each saying how many the
    product has, so a set left incomplete is recognisable."""
    images = record.image_vectors()
    updated_at_ms = int(record.occurred_at.timestamp() * 1000)
    return [
        Row(
            product_id=record.product_id,
            image_id=image.id,
            version=record.version,
            vector=image.vector,
            image=image.image,
            position=image.position,
            images=len(images),
            attributes=dict(record.attributes),
            name=record.name or "",
            description=record.description or "",
            updated_at_ms=updated_at_ms,
            input_offset=offset,
        )
        for image in images
    ]
