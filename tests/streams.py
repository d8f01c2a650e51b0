"""Embedding streams for the sink's plan: records of products with several images, a
one-record-at-a-time reference model of the contract in DESIGN.md, and applying batches
through any IndexWriter (crashes included)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from hypothesis import strategies as st

from catalens.schemas import EmbeddingRecord, Op
from catalens.schemas.embedding import EmbeddedImage, pack
from catalens.sink.plan import Item, collapse, plan_writes
from catalens.store import IndexWriter
from catalens.store.values import ModelIdentity, Plan

WHEN = datetime(2026, 11, 24, tzinfo=UTC)
DIM = 4
MODEL = ModelIdentity("m", DIM, "f00d")
# The images an upsert lists are drawn from these: sets that grow and shrink.
IMAGE_IDS = ("0", "back", "detail", "flat")


def vector(version: int, image: str = "0") -> np.ndarray:
    """A unit vector that says which version and image it was made for."""
    out = np.zeros(DIM, dtype=np.float32)
    out[(version + IMAGE_IDS.index(image) if image in IMAGE_IDS else version) % DIM] = 1.0
    return out


def upsert(pid: str, version: int, images: Sequence[str] = ("0",)) -> EmbeddingRecord:
    """An upsert of ``pid`` at ``version`` with the images ``images`` (main first): a
    schema version 1 record for the one image "0", version 2 otherwise."""
    common = {
        "op": Op.UPSERT,
        "product_id": pid,
        "version": version,
        "event_id": "e",
        "occurred_at": WHEN,
        "model": MODEL.name,
        "model_fingerprint": MODEL.fingerprint,
        "dim": DIM,
    }
    if tuple(images) == ("0",):
        return EmbeddingRecord(**common, vector=pack(vector(version)))  # type: ignore[arg-type]
    return EmbeddingRecord(
        **common,  # type: ignore[arg-type]
        schema_version=2,
        images=[
            EmbeddedImage(id=i, vector=pack(vector(version, i)), image=f"/img/{i}.jpg")
            for i in images
        ],
        name=f"product {pid}",
    )


def delete(pid: str, version: int) -> EmbeddingRecord:
    return EmbeddingRecord(
        op=Op.DELETE,
        product_id=pid,
        version=version,
        event_id="e",
        occurred_at=WHEN,
        model="m",
        dim=0,
    )


# What a product's live state is: its version and its image ids.
Live = tuple[int, tuple[str, ...]]


def images_of(record: EmbeddingRecord) -> tuple[str, ...]:
    return tuple(sorted(i.id for i in record.image_vectors()))


def reference(stream: list[Item]) -> dict[str, Live]:
    """The input stream applied one event at a time, straight from the contract."""
    live: dict[str, Live] = {}
    floor: dict[str, int] = {}
    for pid, record, _offset in stream:
        if record is None:  # tombstone: remove what is there, remember its version
            if pid in live:
                floor[pid] = max(floor.get(pid, -1), live.pop(pid)[0])
        elif record.op is Op.DELETE:
            floor[pid] = max(floor.get(pid, -1), record.version)
            if pid in live and live[pid][0] <= record.version:
                del live[pid]
        elif record.version > floor.get(pid, -1) and record.version > live.get(pid, (-1,))[0]:
            live[pid] = (record.version, images_of(record))
    return live


image_sets = st.sampled_from(
    [("0",), ("0",), ("0", "back"), ("back", "detail"), ("0", "back", "detail", "flat"), ("flat",)]
)
# Input events over three products; the offsets come from as_items. Upserts list image
# sets that grow and shrink from version to version.
events = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["upsert", "upsert", "delete", "tombstone"]),
        st.integers(min_value=0, max_value=6),
        image_sets,
    ),
    max_size=40,
)
RawEvent = tuple[str, str, int, tuple[str, ...]]


def as_items(raw: list[RawEvent], prefix: str = "") -> list[Item]:
    """Events at consecutive offsets of one input partition; ids get ``prefix``."""
    out: list[Item] = []
    for offset, (pid, kind, version, images) in enumerate(raw):
        product = prefix + pid
        record = (
            None
            if kind == "tombstone"
            else (
                upsert(product, version, images) if kind == "upsert" else delete(product, version)
            )
        )
        out.append((product, record, offset))
    return out


def re_emitted(stream: list[Item], restarts: list[tuple[int, int]]) -> list[Item]:
    """The embedding topic an embedder writes for ``stream`` when it crashes after
    emitting up to ``stop`` and restarts from its committed offset ``start`` ≤ ``stop``:
    each (stop, start) re-emits a stretch of records with their input positions."""
    out: list[Item] = []
    position = 0
    for stop, back in restarts:
        stop = max(position, min(stop, len(stream)))
        out += stream[position:stop]
        position = max(0, stop - back)
    out += stream[position:]
    return out


def apply_batch(store: IndexWriter, batch: list[Item], crash_after: int | None = None) -> Plan:
    """What the sink does with one batch. ``crash_after`` stops after that many of the
    store's writes, like a process killed there: the floors, then each removal, then each
    image row (so a crash can leave some of a product's images written, and not others)."""
    changes = collapse(batch)
    if store.open() is None and any(c.upsert is not None for c in changes.values()):
        store.create(MODEL)  # what the sink does for the first vectors
    plan = plan_writes(changes, store.stored(list(changes)))
    if crash_after is None:
        store.apply(plan)
        return plan
    steps: list[Plan] = [Plan(floors=plan.floors)]
    steps += [Plan(removals=[key]) for key in plan.removals]
    steps += [Plan(upserts=[row]) for row in plan.upserts]
    for step in steps[:crash_after]:
        store.apply(step)
    return plan


def live(store: IndexWriter, product_ids: list[str]) -> dict[str, Live]:
    """product id → (live version, image ids), as the store holds them; a product that a
    write left incomplete fails the check (no write in these tests is left so)."""
    out: dict[str, Live] = {}
    for p, stored in store.stored(product_ids).items():
        if stored.live is None:
            continue
        assert stored.complete, f"{p} is left half-written: {stored}"
        out[p] = (stored.live, stored.image_ids)
    return out
