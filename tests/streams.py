"""Embedding streams for the sink's plan: records, a one-record-at-a-time reference model
of the contract in DESIGN.md, and applying batches through any IndexWriter."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from hypothesis import strategies as st

from catalens.schemas import EmbeddingRecord, Op
from catalens.sink.plan import Item, collapse, plan_writes
from catalens.store import IndexWriter
from catalens.store.values import ModelIdentity, Plan

WHEN = datetime(2026, 11, 24, tzinfo=UTC)
DIM = 4
MODEL = ModelIdentity("m", DIM, "f00d")


def upsert(pid: str, version: int) -> EmbeddingRecord:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[version % DIM] = 1.0
    return EmbeddingRecord(
        op=Op.UPSERT,
        product_id=pid,
        version=version,
        event_id="e",
        occurred_at=WHEN,
        model=MODEL.name,
        model_fingerprint=MODEL.fingerprint,
        dim=DIM,
        vector=EmbeddingRecord.pack(vector),
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


def reference(stream: list[Item]) -> dict[str, int]:
    """The input stream applied one event at a time, straight from the contract."""
    live: dict[str, int] = {}
    floor: dict[str, int] = {}
    for pid, record, _offset in stream:
        if record is None:  # tombstone: remove what is there, remember its version
            if pid in live:
                floor[pid] = max(floor.get(pid, -1), live.pop(pid))
        elif record.op is Op.DELETE:
            floor[pid] = max(floor.get(pid, -1), record.version)
            if pid in live and live[pid] <= record.version:
                del live[pid]
        elif record.version > floor.get(pid, -1) and record.version > live.get(pid, -1):
            live[pid] = record.version
    return live


# Input events over three products; the offsets come from as_items.
events = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["upsert", "upsert", "delete", "tombstone"]),
        st.integers(min_value=0, max_value=6),
    ),
    max_size=40,
)


def as_items(raw: list[tuple[str, str, int]], prefix: str = "") -> list[Item]:
    """Events at consecutive offsets of one input partition; ids get ``prefix``."""
    out: list[Item] = []
    for offset, (pid, kind, version) in enumerate(raw):
        product = prefix + pid
        record = (
            None
            if kind == "tombstone"
            else (upsert(product, version) if kind == "upsert" else delete(product, version))
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


def apply_batch(store: IndexWriter, batch: list[Item], crash_after: str | None = None) -> Plan:
    """What the sink does with one batch; ``crash_after`` stops after the floors or the
    deletes, like a process killed between the store's ordered steps."""
    changes = collapse(batch)
    if store.open() is None and any(c.upsert is not None for c in changes.values()):
        store.create(MODEL)  # what the sink does for the first vectors
    plan = plan_writes(changes, store.stored(list(changes)))
    if crash_after == "floors":
        store.apply(Plan(floors=plan.floors))
    elif crash_after == "deletes":
        store.apply(Plan(floors=plan.floors, deletes=plan.deletes))
    else:
        store.apply(plan)
    return plan


def live(store: IndexWriter, product_ids: list[str]) -> dict[str, int]:
    """product id → live version, as the store holds them."""
    return {p: s.live for p, s in store.stored(product_ids).items() if s.live is not None}
