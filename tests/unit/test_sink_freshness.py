"""How old applied changes were: only products written or deleted count, each once."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from catalens.kafka.records import Record
from catalens.schemas import EmbeddingRecord, Op
from catalens.schemas.embedding import INPUT_TIMESTAMP_HEADER, EmbeddedImage
from catalens.sink.freshness import applied_ages, input_timestamp_ms
from catalens.sink.plan import Item, collapse, plan_writes, to_rows
from catalens.store.values import Plan, Row, Stored, StoredImage

NOW = 1_796_000_100.0  # seconds since the epoch


def item(
    pid: str, version: int, position: int, *, occurred_s: float, input_ms: int | None
) -> tuple[Record, Item]:
    embedding = EmbeddingRecord(
        op=Op.UPSERT,
        product_id=pid,
        version=version,
        event_id="e",
        occurred_at=datetime.fromtimestamp(occurred_s, UTC),
        model="m",
        model_fingerprint="f",
        dim=2,
        vector=EmbeddingRecord.pack(np.ones(2, dtype=np.float32)),
        input_offset=position,
    )
    headers = [] if input_ms is None else [(INPUT_TIMESTAMP_HEADER, str(input_ms).encode())]
    return Record("emb", 0, position, pid.encode(), embedding.to_json(), headers, 0), (
        pid,
        embedding,
        position,
    )


def rows_of(written: tuple[Record, Item]) -> list[Row]:
    _record, (_pid, embedding, position) = written
    assert embedding is not None
    return to_rows(embedding, position)


def tombstone(pid: str, position: int, input_ms: int) -> tuple[Record, Item]:
    headers = [(INPUT_TIMESTAMP_HEADER, str(input_ms).encode())]
    return Record("emb", 0, position, pid.encode(), None, headers, 0), (pid, None, position)


def test_written_rows_count_from_their_own_record_and_stale_ones_not_at_all() -> None:
    old_a = item("a", 1, 10, occurred_s=NOW - 50, input_ms=int((NOW - 40) * 1000))
    new_a = item("a", 2, 11, occurred_s=NOW - 5, input_ms=int((NOW - 4) * 1000))
    stale_b = item("b", 1, 12, occurred_s=NOW - 500, input_ms=int((NOW - 400) * 1000))
    items = [old_a, new_a, stale_b]
    plan = Plan(upserts=rows_of(new_a), stale=1)
    ages = applied_ages(items, plan, NOW)
    assert ages.freshness == [5.0]
    assert ages.pipeline == [4.0]


def test_a_delete_counts_from_the_record_that_decided_it_a_tombstone_for_latency_only() -> None:
    upsert = item("a", 1, 10, occurred_s=NOW - 9, input_ms=int((NOW - 8) * 1000))
    gone = tombstone("a", 11, int((NOW - 2) * 1000))
    ages = applied_ages([upsert, gone], Plan(removals=[("a", "0")]), NOW)
    assert ages.freshness == []
    assert ages.pipeline == [2.0]


def test_records_of_older_embedders_without_a_timestamp_count_for_freshness_only() -> None:
    written = item("a", 1, 3, occurred_s=NOW - 1, input_ms=None)
    ages = applied_ages([written], Plan(upserts=rows_of(written)), NOW)
    assert (ages.freshness, ages.pipeline) == ([1.0], [])


def test_a_garbled_or_missing_timestamp_header_reads_as_none() -> None:
    for raw in (b"soon", b"-5", "١٢".encode()):
        record = Record("emb", 0, 0, b"a", None, [(INPUT_TIMESTAMP_HEADER, raw)], 0)
        assert input_timestamp_ms(record) is None
    assert input_timestamp_ms(Record("emb", 0, 0, b"a", None, [], 0)) is None


def test_a_delete_counts_from_the_delete_not_a_later_stale_upsert() -> None:
    """Stored a@v1; the batch deletes a@v2 (5 s old) and then carries a late, stale
    upsert of a@v1 (1000 s old): the delete's age is 5 s."""
    delete = EmbeddingRecord(
        op=Op.DELETE,
        product_id="a",
        version=2,
        event_id="d",
        occurred_at=datetime.fromtimestamp(NOW - 5, UTC),
        model="m",
        dim=2,
        input_offset=10,
    )
    gone = (Record("emb", 0, 10, b"a", delete.to_json(), [], 0), ("a", delete, 10))
    late = item("a", 1, 11, occurred_s=NOW - 1000, input_ms=None)
    stored = {"a": Stored.of([StoredImage("0", 1, 3, 1)])}
    plan = plan_writes(collapse([gone[1], late[1]]), stored)
    assert plan.deleted() == ["a"] and not plan.upserts
    assert applied_ages([gone, late], plan, NOW).freshness == [5.0]


def test_a_product_of_several_images_counts_once() -> None:
    """Its rows are one change: one freshness and one latency figure, not one per image."""
    embedding = EmbeddingRecord(
        schema_version=2,
        op=Op.UPSERT,
        product_id="a",
        version=1,
        event_id="e",
        occurred_at=datetime.fromtimestamp(NOW - 3, UTC),
        model="m",
        model_fingerprint="f",
        dim=2,
        images=[
            EmbeddedImage(id=i, vector=EmbeddingRecord.pack(np.ones(2, dtype=np.float32)))
            for i in ("front", "back", "detail")
        ],
        input_offset=4,
    )
    headers = [(INPUT_TIMESTAMP_HEADER, str(int((NOW - 2) * 1000)).encode())]
    written = (Record("emb", 0, 4, b"a", embedding.to_json(), headers, 0), ("a", embedding, 4))
    plan = Plan(upserts=rows_of(written))
    assert len(plan.upserts) == 3 and plan.written() == ["a"]
    ages = applied_ages([written], plan, NOW)
    assert (ages.freshness, ages.pipeline) == ([3.0], [2.0])
