"""The sink's collapse and version guard on examples; the properties (any batching, any
replay, any crash, any re-emission) run through the store contract in
tests/contract/test_store.py, against the in-memory index and against Milvus."""

from __future__ import annotations

import itertools

from catalens.schemas import EmbeddingRecord
from catalens.sink.plan import Item, collapse, plan_writes
from catalens.store.memory import MemoryIndex
from tests.streams import apply_batch, delete, upsert

_offsets = itertools.count()


def at(*records: tuple[str, EmbeddingRecord | None]) -> list[Item]:
    """Records at the next input positions."""
    return [(pid, record, next(_offsets)) for pid, record in records]


def live(index: MemoryIndex) -> dict[str, int]:
    return {p: row.version for p, row in index.rows.items()}


def test_highest_version_wins_whatever_the_arrival_order() -> None:
    index = MemoryIndex()
    apply_batch(index, at(("p", upsert("p", 3)), ("p", upsert("p", 1)), ("p", upsert("p", 2))))
    assert live(index) == {"p": 3}
    apply_batch(index, at(("p", upsert("p", 2))))
    assert live(index) == {"p": 3}


def test_a_delete_removes_older_versions_and_blocks_their_late_arrival() -> None:
    index = MemoryIndex()
    apply_batch(index, at(("p", upsert("p", 3))))
    apply_batch(index, at(("p", delete("p", 4))))
    apply_batch(index, at(("p", upsert("p", 4)), ("p", upsert("p", 2))))
    assert live(index) == {}
    apply_batch(index, at(("p", upsert("p", 5))))
    assert live(index) == {"p": 5}


def test_a_stale_delete_leaves_a_newer_version_in_place() -> None:
    index = MemoryIndex()
    apply_batch(index, at(("p", upsert("p", 7))))
    apply_batch(index, at(("p", delete("p", 6))))
    assert live(index) == {"p": 7}


def test_a_tombstone_deletes_and_keeps_older_upserts_out() -> None:
    index = MemoryIndex()
    apply_batch(index, at(("p", upsert("p", 7))))
    apply_batch(index, at(("p", None), ("p", upsert("p", 6))))
    assert live(index) == {}
    assert {p: f.deleted_upto for p, f in index.floors.items()} == {"p": 7}


def test_a_tombstone_removes_only_rows_made_from_events_before_it() -> None:
    stream = at(("p", upsert("p", 1)), ("p", None), ("p", upsert("p", 2)))
    index = MemoryIndex()
    apply_batch(index, stream)
    apply_batch(index, stream[1:2])  # the tombstone again, read by a new group
    assert live(index) == {"p": 2}


def test_a_record_re_emitted_within_a_batch_is_folded_once() -> None:
    stream = at(("p", upsert("p", 1)), ("p", None), ("p", upsert("p", 2)))
    changes = collapse(stream + stream)  # an embedder restarted before committing
    assert changes["p"].upsert is not None and changes["p"].upsert.version == 2
    assert changes["p"].floor == 1


def test_duplicates_within_a_batch_collapse_to_one_write() -> None:
    changes = collapse(at(("p", upsert("p", 1)), ("p", upsert("p", 2)), ("p", upsert("p", 2))))
    plan = plan_writes(changes, {})
    assert [(r.product_id, r.version) for r in plan.upserts] == [("p", 2)]
    assert plan.deletes == [] and plan.floors == []


def test_an_upsert_from_before_an_applied_tombstone_stays_out_however_late_it_arrives() -> None:
    """Its image failed to load at first (dead-lettered) and loaded when the embedder
    emitted it again, after the tombstone had been applied to nothing."""
    index = MemoryIndex()
    apply_batch(index, [("p", None, 6)])
    assert live(index) == {} and index.floors["p"].wiped_upto == 6
    apply_batch(index, [("p", upsert("p", 1), 5)])
    assert live(index) == {}
    apply_batch(index, [("p", upsert("p", 2), 7)])  # after the tombstone: a re-add
    assert live(index) == {"p": 2}
