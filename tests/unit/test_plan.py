"""The sink's collapse and version guard on examples; the properties (any batching, any
replay, any crash, any re-emission) run through the store contract in
tests/contract/test_store.py, against the in-memory index and against Milvus."""

from __future__ import annotations

import itertools

from catalens.schemas import EmbeddingRecord
from catalens.sink.plan import Item, collapse, plan_writes
from catalens.store.memory import MemoryIndex
from catalens.store.values import Stored, StoredImage
from tests.streams import apply_batch, delete, upsert

_offsets = itertools.count()


def at(*records: tuple[str, EmbeddingRecord | None]) -> list[Item]:
    """Records at the next input positions."""
    return [(pid, record, next(_offsets)) for pid, record in records]


def live(index: MemoryIndex) -> dict[str, int]:
    return {p: row.version for (p, _image), row in index.rows.items()}


def images(index: MemoryIndex, product_id: str) -> list[str]:
    return sorted(image for p, image in index.rows if p == product_id)


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
    assert plan.removals == [] and plan.floors == []


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


def test_an_upsert_replaces_the_whole_image_set_and_dropped_images_leave() -> None:
    index = MemoryIndex()
    apply_batch(index, at(("p", upsert("p", 1, ("0", "back", "detail")))))
    assert images(index, "p") == ["0", "back", "detail"]
    apply_batch(index, at(("p", upsert("p", 2, ("0", "flat")))))
    assert images(index, "p") == ["0", "flat"]
    assert {index.rows[("p", i)].version for i in ("0", "flat")} == {2}
    apply_batch(index, at(("p", upsert("p", 1, ("0", "back")))))  # late and stale
    assert images(index, "p") == ["0", "flat"]


def test_a_delete_and_a_tombstone_remove_every_image() -> None:
    index = MemoryIndex()
    apply_batch(
        index,
        at(("p", upsert("p", 1, ("0", "back", "detail"))), ("q", upsert("q", 1, ("a", "b")))),
    )
    apply_batch(index, at(("p", delete("p", 1)), ("q", None)))
    assert index.rows == {}
    assert {p: f.deleted_upto for p, f in index.floors.items()} == {"p": 1, "q": 1}


def test_a_half_written_product_is_written_whole_by_its_own_record_and_nothing_else() -> None:
    """Stored: two of the three images of v2 (the crash came before the third). The same
    record completes it; a stale record does not touch it; once whole, the record is
    stale."""
    half = Stored.of([StoredImage("0", 2, 7, 3), StoredImage("back", 2, 7, 3)])
    assert (half.live, half.complete) == (2, False)
    record = upsert("p", 2, ("0", "back", "detail"))
    plan = plan_writes(collapse([("p", record, 7)]), {"p": half})
    assert sorted(r.image_id for r in plan.upserts) == ["0", "back", "detail"]
    assert plan_writes(collapse([("p", upsert("p", 1), 5)]), {"p": half}).upserts == []
    whole = Stored.of([StoredImage(i, 2, 7, 3) for i in ("0", "back", "detail")])
    again = plan_writes(collapse([("p", record, 7)]), {"p": whole})
    assert (again.upserts, again.removals, again.stale) == ([], [], 1)


def test_rows_left_over_from_an_older_version_by_a_crash_are_removed_by_the_repair() -> None:
    """v1 had images 0 and back; v2 lists 0 and flat. A crash after v2's row 0: stored
    are 0@v2 and back@v1. The redelivered v2 writes 0 and flat and removes back."""
    torn = Stored.of([StoredImage("0", 2, 9, 2), StoredImage("back", 1, 4, 2)])
    assert not torn.complete
    plan = plan_writes(collapse([("p", upsert("p", 2, ("0", "flat")), 9)]), {"p": torn})
    assert sorted(r.image_id for r in plan.upserts) == ["0", "flat"]
    assert plan.removals == [("p", "back")]
