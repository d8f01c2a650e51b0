"""The store contract: one suite against the in-memory index and against real Milvus.

What the sink's plan promises (highest version wins, deletes and tombstones hold, replays
change nothing) is proven here through the store the plan runs against, so it holds for
the Milvus adapter and not only for the in-memory one. Milvus runs fewer examples.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalens.errors import OperatorError
from catalens.store import IndexReader, IndexWriter
from catalens.store.admin import MAX_IMAGE_LENGTH, IndexAdmin
from catalens.store.client import Milvus
from catalens.store.memory import MemoryIndex
from catalens.store.reader import MilvusReader
from catalens.store.values import Floor, ModelIdentity, Plan, Row, Stored
from catalens.store.writer import QUERY_CHUNK, MilvusWriter
from tests.streams import DIM, MODEL, apply_batch, as_items, events, live, re_emitted, reference


@dataclass
class Backend:
    writer: IndexWriter
    reader: IndexReader
    examples: int  # hypothesis examples per property
    _ids: Iterator[int]

    def write(self, plan: Plan) -> None:
        """Apply ``plan``, making the generation first, as the sink does."""
        if self.writer.open() is None:
            self.writer.create(MODEL)
        self.writer.apply(plan)

    def prefix(self) -> str:
        """A fresh id namespace: each example starts from an empty index."""
        return f"x{next(self._ids)}-"


@pytest.fixture(params=["memory", pytest.param("milvus", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        index = MemoryIndex()
        yield Backend(index, index, 300, itertools.count())
        return
    uri: str = request.getfixturevalue("milvus")
    alias = f"c{uuid.uuid4().hex[:10]}"
    milvus = Milvus(uri)
    writer = MilvusWriter(milvus, alias=alias, model="m", hnsw_m=8, ef_construction=32)
    try:
        yield Backend(writer, MilvusReader(milvus, alias), 12, itertools.count())
    finally:
        IndexAdmin(milvus, alias).drop_all()
        milvus.close()


def eventually(check: Callable[[], object], timeout_s: float = 15) -> None:
    """Reads through the reader are bounded-staleness (Milvus' Bounded consistency, for
    fast queries): a write shows within seconds, not at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def row(pid: str, version: int, offset: int = 0, **attributes: str | float) -> Row:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[version % DIM] = 1.0
    return Row(pid, version, vector, dict(attributes), f"/img/{version}.jpg", 1000, offset)


# -- the generation -------------------------------------------------------------------------


def test_a_generation_is_made_once_for_one_model_identity(backend: Backend) -> None:
    assert backend.writer.open() is None
    backend.writer.create(MODEL)
    backend.writer.create(MODEL)  # idempotent: replicas race here
    assert backend.writer.open() == MODEL
    for other in (
        ModelIdentity(MODEL.name, MODEL.dim + 1, MODEL.fingerprint),
        ModelIdentity(MODEL.name, MODEL.dim, "another-checkpoint"),
    ):
        with pytest.raises(OperatorError):
            backend.writer.create(other)
    assert backend.writer.open() == MODEL


def test_vectors_need_a_generation(backend: Backend) -> None:
    with pytest.raises(RuntimeError):
        backend.writer.apply(Plan(upserts=[row("p", 1)]))


# -- what one plan does ---------------------------------------------------------------------


def test_a_product_never_written_has_no_state(backend: Backend) -> None:
    assert backend.writer.stored(["nobody"]) == {"nobody": Stored()}
    assert backend.reader.get(["nobody"]) == []


def test_floors_hold_before_any_vector_was_written(backend: Backend) -> None:
    backend.writer.apply(Plan(floors=[Floor("p", 4)]))
    assert backend.writer.stored(["p"]) == {"p": Stored(deleted_upto=4)}


def test_upserts_are_stored_with_their_version_and_input_position(backend: Backend) -> None:
    backend.write(Plan(upserts=[row("p", 3, 17, category="Dress"), row("q", 1, 18)]))
    assert backend.writer.stored(["p", "q"]) == {
        "p": Stored(live=3, input_offset=17),
        "q": Stored(live=1, input_offset=18),
    }

    def read_back() -> None:
        (got,) = backend.reader.get(["p"], with_vector=True)
        assert (got.version, got.attributes, got.image, got.updated_at_ms) == (
            3,
            {"category": "Dress"},
            "/img/3.jpg",
            1000,
        )
        np.testing.assert_allclose(got.vector, row("p", 3).vector)

    eventually(read_back)


def test_inline_thumbnails_up_to_the_fields_limit_are_stored_exactly(backend: Backend) -> None:
    """Rows whose image is a data URI, many to one write (Milvus takes them column by
    column): every product reads back its own image, the longest one the field holds
    included."""
    sizes = [0, 1, 4 * 1024, 16 * 1024, MAX_IMAGE_LENGTH]
    images = {
        f"t{i}": ("data:image/jpeg;base64," + f"{i:04d}/+" * MAX_IMAGE_LENGTH)[:size] or None
        for i, size in enumerate(sizes * 20)
    }
    rows = [
        Row(pid, 1, row(pid, 1).vector, {"i": i}, image, 1000, i)
        for i, (pid, image) in enumerate(images.items())
    ]
    backend.write(Plan(upserts=rows))

    def read_back() -> None:
        got = backend.reader.get(list(images))
        assert {r.product_id: r.image for r in got} == images

    eventually(read_back)


def test_an_upsert_replaces_the_row_and_a_delete_removes_it_keeping_the_floor(
    backend: Backend,
) -> None:
    backend.write(Plan(upserts=[row("p", 1, 1)]))
    backend.write(Plan(upserts=[row("p", 2, 5)]))
    assert backend.writer.stored(["p"]) == {"p": Stored(live=2, input_offset=5)}
    backend.writer.apply(Plan(deletes=["p"], floors=[Floor("p", 2)]))
    assert backend.writer.stored(["p"]) == {"p": Stored(deleted_upto=2)}
    eventually(lambda: _assert_equal(backend.reader.get(["p"]), []))
    backend.writer.apply(Plan(floors=[Floor("p", 6, 9)]))
    assert backend.writer.stored(["p"]) == {"p": Stored(deleted_upto=6, wiped_upto=9)}


def test_applying_the_same_plan_again_changes_nothing(backend: Backend) -> None:
    plan = Plan(
        upserts=[row("p", 2, 3)], deletes=["q"], floors=[Floor("q", 1), Floor("p", None, 2)]
    )
    backend.write(Plan(upserts=[row("q", 1, 0)]))
    backend.writer.apply(plan)
    once = backend.writer.stored(["p", "q"])
    backend.writer.apply(plan)
    assert backend.writer.stored(["p", "q"]) == once
    assert once == {"p": Stored(2, None, 3, 2), "q": Stored(deleted_upto=1)}


ODD_IDS = [
    "ABC/123",
    'say "hi"',
    "it's",
    "back\\slash",
    "a?b#c%d&e",
    "naïve-商品-😀",
    "x" * 256,
    "] or product_id != [",
]


def test_ids_of_any_characters_are_read_and_written_exactly(backend: Backend) -> None:
    backend.write(Plan(upserts=[row(p, 1, i) for i, p in enumerate(ODD_IDS)]))
    backend.writer.apply(Plan(floors=[Floor(ODD_IDS[0], 0)]))
    stored = backend.writer.stored(ODD_IDS)
    assert {p: s.live for p, s in stored.items()} == dict.fromkeys(ODD_IDS, 1)
    assert stored[ODD_IDS[0]].deleted_upto == 0
    eventually(
        lambda: _assert_equal(
            sorted(r.product_id for r in backend.reader.get(ODD_IDS)), sorted(ODD_IDS)
        )
    )


def test_more_products_than_one_query_holds_are_all_read(backend: Backend) -> None:
    ids = [f"p{i}" for i in range(QUERY_CHUNK + 37)]
    backend.write(Plan(upserts=[row(p, 1, i) for i, p in enumerate(ids)]))
    backend.writer.apply(Plan(deletes=ids[:3], floors=[Floor(p, 1) for p in ids[:3]]))
    stored = backend.writer.stored(ids)
    assert [p for p in ids if stored[p].live == 1] == ids[3:]
    assert [p for p in ids if stored[p].deleted_upto == 1] == ids[:3]


def test_search_ranks_by_inner_product(backend: Backend) -> None:
    backend.write(Plan(upserts=[row("p1", 1), row("p2", 2), row("p3", 3)]))
    query = np.array([0.0, 0.2, 0.9, 0.1], dtype=np.float32)

    def ranked() -> None:
        (hits,) = backend.reader.search([query], k=2)
        assert [(h.product_id, h.version) for h in hits] == [("p2", 2), ("p1", 1)]
        assert hits[0].score == pytest.approx(0.9, abs=1e-4)

    eventually(ranked)


def _assert_equal(got: object, expected: object) -> None:
    assert got == expected


# -- the plan's promises, through the store -------------------------------------------------

Check = Callable[..., None]


def run_property(backend: Backend, strategy: st.SearchStrategy[object], check: Check) -> None:
    @settings(max_examples=backend.examples, deadline=None, database=None)
    @given(strategy)
    def run(drawn: tuple[object, ...]) -> None:
        check(*drawn)

    run()


cuts = st.lists(st.integers(min_value=1, max_value=8), max_size=10)


def test_batched_application_equals_one_by_one_for_any_batching(backend: Backend) -> None:
    def check(raw: list[tuple[str, str, int]], sizes: list[int]) -> None:
        stream = as_items(raw, backend.prefix())
        position = 0
        for size in [*sizes, len(stream)]:
            apply_batch(backend.writer, stream[position : position + size])
            position += size
        ids = sorted({pid for pid, _, _ in stream})
        assert live(backend.writer, ids) == reference(stream)

    run_property(backend, st.tuples(events, cuts), check)


def test_replaying_any_suffix_from_a_new_group_changes_nothing(backend: Backend) -> None:
    def check(raw: list[tuple[str, str, int]], start: int, size: int) -> None:
        stream = as_items(raw, backend.prefix())
        apply_batch(backend.writer, stream)
        ids = sorted({pid for pid, _, _ in stream})
        expected = live(backend.writer, ids)
        assert expected == reference(stream)
        suffix = stream[min(start, len(stream)) :]
        for at in range(0, len(suffix), size):  # another group's batches: any size
            apply_batch(backend.writer, suffix[at : at + size])
        assert live(backend.writer, ids) == expected

    strategy = st.tuples(events, st.integers(0, 40), st.integers(1, 8))
    run_property(backend, strategy, check)


def test_a_crash_half_way_through_a_write_is_repaired_by_the_redelivery(
    backend: Backend,
) -> None:
    def check(raw: list[tuple[str, str, int]], cut: int, crash_after: str) -> None:
        stream = as_items(raw, backend.prefix())
        apply_batch(backend.writer, stream[:cut])
        apply_batch(backend.writer, stream[cut:], crash_after=crash_after)
        apply_batch(backend.writer, stream[cut:])  # offsets were not committed: again
        ids = sorted({pid for pid, _, _ in stream})
        assert live(backend.writer, ids) == reference(stream)

    strategy = st.tuples(events, st.integers(0, 40), st.sampled_from(["floors", "deletes"]))
    run_property(backend, strategy, check)


restarts = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=4)


def test_records_re_emitted_by_a_restarted_embedder_change_nothing(backend: Backend) -> None:
    """An embedder that crashed before committing emits a stretch of its input again:
    upserts, deletes and tombstones a second time, with their original input positions."""

    def check(raw: list[tuple[str, str, int]], crashes: list[tuple[int, int]], size: int) -> None:
        stream = as_items(raw, backend.prefix())
        topic = re_emitted(stream, crashes)
        for at in range(0, len(topic), size):
            apply_batch(backend.writer, topic[at : at + size])
        ids = sorted({pid for pid, _, _ in stream})
        assert live(backend.writer, ids) == reference(stream)
        apply_batch(backend.writer, topic)  # and a replay of the whole topic
        assert live(backend.writer, ids) == reference(stream)

    run_property(backend, st.tuples(events, restarts, st.integers(1, 8)), check)


def test_the_operators_replay_case_keeps_the_re_added_product(backend: Backend) -> None:
    """upsert v1, tombstone, upsert v2; then a new group replays the topic from the start
    in every batching: v2 stays (this once wiped every such product)."""
    prefix = backend.prefix()
    stream = as_items([("p", "upsert", 1), ("p", "tombstone", 0), ("p", "upsert", 2)], prefix)
    apply_batch(backend.writer, stream)
    for size in (1, 2, 3):
        for at in range(0, 3, size):
            apply_batch(backend.writer, stream[at : at + size])
        assert live(backend.writer, [prefix + "p"]) == {prefix + "p": 2}
