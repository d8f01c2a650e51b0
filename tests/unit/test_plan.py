"""The sink's collapse + version guard, against a one-record-at-a-time reference model."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from catalens.records import Stored
from catalens.schemas import EmbeddingRecord, Op
from catalens.sink.plan import collapse, plan_writes

WHEN = datetime(2026, 11, 24, tzinfo=UTC)


def upsert(pid: str, version: int) -> EmbeddingRecord:
    vector = np.full(4, version, dtype=np.float32)
    return EmbeddingRecord(
        op=Op.UPSERT,
        product_id=pid,
        version=version,
        event_id="e",
        occurred_at=WHEN,
        model="m",
        dim=4,
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


class Index:
    """Applies plans like Milvus would: live rows and delete floors."""

    def __init__(self) -> None:
        self.live: dict[str, int] = {}
        self.offsets: dict[str, int] = {}
        self.floors: dict[str, int] = {}

    def stored(self, ids: list[str]) -> dict[str, Stored]:
        return {
            p: Stored(self.live[p], self.floors.get(p), self.offsets[p])
            if p in self.live
            else Stored(None, self.floors.get(p))
            for p in ids
        }

    def apply_batch(
        self, batch: list[tuple[str, EmbeddingRecord | None, int]], crash_after: str | None = None
    ) -> None:
        """Write like VectorStore.write: floors, then deletes, then upserts."""
        changes = collapse(batch)
        plan = plan_writes(changes, self.stored(list(changes)))
        for pid, floor in plan.floors:
            self.floors[pid] = floor
        if crash_after == "floors":
            return
        for pid in plan.deletes:
            self.live.pop(pid, None)
        if crash_after == "deletes":
            return
        for row in plan.upserts:
            self.live[row.product_id] = row.version
            self.offsets[row.product_id] = row.source_offset


def reference(stream: list[tuple[str, EmbeddingRecord | None, int]]) -> dict[str, int]:
    """One record at a time, straight from the contract in DESIGN.md."""
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


events = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["upsert", "upsert", "delete", "tombstone"]),
        st.integers(min_value=0, max_value=6),
    ),
    max_size=40,
)


def as_records(raw: list[tuple[str, str, int]]) -> list[tuple[str, EmbeddingRecord | None, int]]:
    """Records at consecutive offsets of one partition."""
    out: list[tuple[str, EmbeddingRecord | None, int]] = []
    for offset, (pid, kind, version) in enumerate(raw):
        record = (
            None
            if kind == "tombstone"
            else (upsert(pid, version) if kind == "upsert" else delete(pid, version))
        )
        out.append((pid, record, offset))
    return out


def at(
    *records: tuple[str, EmbeddingRecord | None],
) -> list[tuple[str, EmbeddingRecord | None, int]]:
    global _OFFSET
    out = []
    for pid, record in records:
        _OFFSET += 1
        out.append((pid, record, _OFFSET))
    return out


_OFFSET = 0


@settings(max_examples=400, deadline=None)
@given(events, st.lists(st.integers(min_value=1, max_value=8), max_size=10))
def test_batched_application_equals_one_by_one_for_any_batching(
    raw: list[tuple[str, str, int]], cuts: list[int]
) -> None:
    stream = as_records(raw)
    index = Index()
    position = 0
    for size in [*cuts, len(stream)]:
        index.apply_batch(stream[position : position + size])
        position += size
    assert index.live == reference(stream)


@settings(max_examples=200, deadline=None)
@given(events)
def test_replaying_any_suffix_of_the_stream_changes_nothing(
    raw: list[tuple[str, str, int]],
) -> None:
    stream = as_records(raw)
    index = Index()
    index.apply_batch(stream)
    expected = dict(index.live)
    for start in range(len(stream)):  # redelivery after a crash, from any offset
        index.apply_batch(stream[start:])
        assert index.live == expected


@settings(max_examples=200, deadline=None)
@given(events, st.integers(min_value=0, max_value=40), st.sampled_from(["floors", "deletes"]))
def test_a_crash_half_way_through_a_write_is_repaired_by_the_redelivery(
    raw: list[tuple[str, str, int]], cut: int, crash_after: str
) -> None:
    stream = as_records(raw)
    index = Index()
    index.apply_batch(stream[:cut])
    index.apply_batch(stream[cut:], crash_after=crash_after)
    index.apply_batch(stream[cut:])  # offsets were not committed: the batch comes again
    assert index.live == reference(stream)


def test_highest_version_wins_whatever_the_arrival_order() -> None:
    index = Index()
    index.apply_batch(at(("p", upsert("p", 3)), ("p", upsert("p", 1)), ("p", upsert("p", 2))))
    assert index.live == {"p": 3}
    index.apply_batch(at(("p", upsert("p", 2))))
    assert index.live == {"p": 3}


def test_a_delete_removes_older_versions_and_blocks_their_late_arrival() -> None:
    index = Index()
    index.apply_batch(at(("p", upsert("p", 3))))
    index.apply_batch(at(("p", delete("p", 4))))
    index.apply_batch(at(("p", upsert("p", 4)), ("p", upsert("p", 2))))
    assert index.live == {}
    index.apply_batch(at(("p", upsert("p", 5))))
    assert index.live == {"p": 5}


def test_a_stale_delete_leaves_a_newer_version_in_place() -> None:
    index = Index()
    index.apply_batch(at(("p", upsert("p", 7))))
    index.apply_batch(at(("p", delete("p", 6))))
    assert index.live == {"p": 7}


def test_a_tombstone_deletes_and_keeps_older_upserts_out() -> None:
    index = Index()
    index.apply_batch(at(("p", upsert("p", 7))))
    index.apply_batch(at(("p", None), ("p", upsert("p", 6))))
    assert index.live == {}
    assert index.floors == {"p": 7}


def test_duplicates_within_a_batch_collapse_to_one_write() -> None:
    changes = collapse(at(("p", upsert("p", 1)), ("p", upsert("p", 2)), ("p", upsert("p", 2))))
    plan = plan_writes(changes, {})
    assert [(r.product_id, r.version) for r in plan.upserts] == [("p", 2)]
    assert plan.deletes == [] and plan.floors == []
