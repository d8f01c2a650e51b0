"""The sink loop with an in-memory broker and an in-memory store that can fail
(Milvus is outside the thing under test; the real one is in tests/integration)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
from catalens.kafka.records import Partition, Record
from catalens.retry import Backoff, TransientError
from catalens.schemas import DeadLetter, EmbeddingRecord, Op
from catalens.schemas.embedding import INPUT_OFFSET_HEADER, INPUT_TIMESTAMP_HEADER, MODEL_HEADER
from catalens.sink.service import SinkConfig, SinkService
from catalens.store.memory import MemoryIndex
from catalens.store.values import ModelIdentity, Plan
from tests.waits import wait_for

TOPIC = "catalens.product-embeddings"
GROUP = "catalens-sink"


class FlakyStore(MemoryIndex):
    """The in-memory index whose first ``failures`` writes fail as if Milvus were away."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def apply(self, plan: Plan) -> None:
        if self.failures:
            self.failures -= 1
            raise TransientError("Milvus is away")
        super().apply(plan)


_positions = itertools.count()


def products(store: MemoryIndex) -> dict[str, int]:
    """product id → version, as the index holds them (one row per image)."""
    return {product_id: row.version for (product_id, _image), row in store.rows.items()}


def embedding(
    pid: str, version: int, *, model: str = "m", fingerprint: str = "f", dim: int = 4
) -> tuple[bytes, bytes]:
    """The key and value of an embedding record at the next input position."""
    value = EmbeddingRecord(
        op=Op.UPSERT,
        product_id=pid,
        version=version,
        event_id="e",
        occurred_at=datetime.now(UTC),
        model=model,
        model_fingerprint=fingerprint,
        dim=dim,
        vector=EmbeddingRecord.pack(np.ones(dim, dtype=np.float32)),
        input_offset=next(_positions),
    )
    return pid.encode(), value.to_json()


def test_offsets_are_committed_only_after_the_write_and_a_failing_write_is_retried() -> None:
    broker = MemoryBroker(partitions=1)
    for key, value in [embedding("a", 1), embedding("b", 1), embedding("a", 2)]:
        broker.append(TOPIC, key, value)
    store = FlakyStore(failures=3)
    service, stop, source = serve(broker, store)
    try:
        deadline = time.monotonic() + 10
        while store.failures and time.monotonic() < deadline:
            assert broker.committed(GROUP) == {}  # nothing is committed while the write fails
            assert source.paused or store.failures == 3
            time.sleep(0.01)
        wait_for(lambda: bool(broker.committed(GROUP)))
        assert broker.committed(GROUP) == {(TOPIC, 0): 3}
        assert products(store) == {"a": 2, "b": 1}
        assert not source.paused and service.ready.is_set()
    finally:
        stop.set()


def serve(
    broker: MemoryBroker, store: MemoryIndex, max_record_bytes: int | None = None
) -> tuple[SinkService, threading.Event, MemorySource]:
    """A sink over ``broker`` and ``store``, running; its source tells it of revocations,
    as the sink's wiring does."""
    stop = threading.Event()
    sources: list[MemorySource] = []

    def make_source(on_revoke: Callable[[list[Partition]], None]) -> MemorySource:
        sources.append(MemorySource(broker, group_id=GROUP, topics=[TOPIC], on_revoke=on_revoke))
        return sources[0]

    service = SinkService(
        SinkConfig(model="m", dlq_topic="dlq", batch_wait_s=0.05, backoff=Backoff(0.05, 0.1)),
        make_source=make_source,
        publisher=MemoryPublisher(broker, max_record_bytes=max_record_bytes),
        store=store,
        stop=stop,
    )
    threading.Thread(target=service.run, daemon=True).start()
    return service, stop, sources[0]


def test_other_models_records_are_skipped_not_dead_lettered() -> None:
    broker = MemoryBroker(partitions=1)
    model_headers = [(MODEL_HEADER, b"other")]
    broker.append(TOPIC, *embedding("a", 1, model="other", dim=8), model_headers)
    broker.append(TOPIC, b"b", None, [*model_headers, (INPUT_OFFSET_HEADER, b"0")])
    broker.append(TOPIC, *embedding("c", 1, model="other", dim=8))  # no header: read, skipped
    broker.append(TOPIC, *embedding("d", 1))
    store = MemoryIndex()
    service, stop, _source = serve(broker, store)
    try:
        wait_for(lambda: broker.committed(GROUP) == {(TOPIC, 0): 4})
        assert set(products(store)) == {"d"} and service.other_model == 3
        assert broker.records("dlq") == []
    finally:
        stop.set()


def test_vectors_of_another_checkpoint_under_the_same_name_halt_the_sink() -> None:
    broker = MemoryBroker(partitions=1)
    broker.append(TOPIC, *embedding("a", 1))
    broker.append(TOPIC, *embedding("b", 1, fingerprint="retrained"))
    store = MemoryIndex()
    store.create(ModelIdentity("m", 4, "f"))
    service, stop, _source = serve(broker, store)
    try:
        wait_for(lambda: service.halted is not None)
        assert "weights fingerprint 'retrained'" in (service.halted or "")
        assert not service.ready.is_set()
        time.sleep(0.2)
        assert products(store) == {} and broker.committed(GROUP) == {}  # nothing past the wall
        assert broker.records("dlq") == []
    finally:
        stop.set()


def test_a_tombstone_with_a_garbled_position_is_dead_lettered() -> None:
    broker = MemoryBroker(partitions=1)
    broker.append(TOPIC, b"a", None, [(INPUT_OFFSET_HEADER, b"minus one")])
    broker.append(TOPIC, *embedding("b", 1))
    store = MemoryIndex()
    _service, stop, _source = serve(broker, store)
    try:
        wait_for(lambda: broker.committed(GROUP) == {(TOPIC, 0): 2})
        (letter,) = broker.records("dlq")
        assert letter.key == b"a" and set(products(store)) == {"b"}
    finally:
        stop.set()


def test_a_dead_letter_refused_as_too_large_goes_without_the_record() -> None:
    """The dead-letter topic takes at most 2,000 bytes: the letter of a 3 KB record that
    is no embedding record is refused, sent again without the record (naming where it
    is), and the partition moves on instead of retrying it for ever."""
    broker = MemoryBroker(partitions=1)
    broker.append(TOPIC, b"a", b"{" + b"x" * 3000)
    broker.append(TOPIC, *embedding("b", 1))
    store = MemoryIndex()
    _service, stop, _source = serve(broker, store, max_record_bytes=2000)
    try:
        wait_for(lambda: broker.committed(GROUP) == {(TOPIC, 0): 2})
        (record,) = broker.records("dlq")
        letter = DeadLetter.model_validate_json(record.value or b"")
        assert letter.value is None and letter.value_omitted
        assert (letter.source_offset, letter.original_key()) == (0, b"a")
        assert set(products(store)) == {"b"}
    finally:
        stop.set()


def test_records_without_an_input_position_are_skipped_not_applied() -> None:
    """Older embedders' records: the upgraded embedder emits them again, positioned."""
    broker = MemoryBroker(partitions=1)
    key, value = embedding("old", 1)
    legacy = json.loads(value)
    del legacy["input_offset"]
    broker.append(TOPIC, key, json.dumps(legacy).encode())
    broker.append(TOPIC, b"gone", None, [(MODEL_HEADER, b"m")])  # a tombstone, unpositioned
    broker.append(TOPIC, *embedding("new", 1))
    store = MemoryIndex()
    service, stop, _source = serve(broker, store)
    try:
        wait_for(lambda: broker.committed(GROUP) == {(TOPIC, 0): 3})
        assert set(products(store)) == {"new"} and service.unpositioned == 2
    finally:
        stop.set()


def test_a_partition_lost_while_a_write_waits_for_milvus_is_left_to_its_new_owner() -> None:
    """The retry must not write the lost partition's products over what the new owner
    writes from the committed offset (there is no conditional write in Milvus)."""
    broker = MemoryBroker(partitions=2)
    broker.append(TOPIC, *embedding("p", 1), partition=0)
    broker.append(TOPIC, *embedding("q", 1), partition=1)
    second: list[MemorySource] = []

    class JoinWhileAway(FlakyStore):
        def apply(self, plan: Plan) -> None:
            if self.failures and not second:  # Milvus is away; another replica joins
                second.append(MemorySource(broker, group_id=GROUP, topics=[TOPIC]))
            super().apply(plan)

    store = JoinWhileAway(failures=1)
    service, stop, source = serve(broker, store)
    try:
        wait_for(lambda: bool(second) and store.failures == 0 and not source.paused)
        wait_for(lambda: len(products(store)) == 1)
        time.sleep(0.2)
        (written,) = products(store)  # only the product of the partition it kept
        (kept,) = source._owned
        assert {"p": (TOPIC, 0), "q": (TOPIC, 1)}[written] == kept
    finally:
        stop.set()
    # And the lost partition's record is its new owner's to count, not a stale one here.
    text = service.metrics.render().decode()
    assert 'catalens_records_total{outcome="written",role="sink"} 1.0' in text
    assert 'catalens_records_total{outcome="stale",role="sink"} 0.0' in text


class LatePause(MemorySource):
    """A source whose pause takes effect late, as librdkafka's does for a partition
    assigned while the member is paused: what it fetched before still comes out."""

    def pause(self) -> None:
        pass


def test_records_handed_over_while_waiting_for_milvus_are_kept_and_written_next() -> None:
    broker = MemoryBroker(partitions=1)
    broker.append(TOPIC, *embedding("a", 1))
    store = FlakyStore(failures=3)
    source = LatePause(broker, group_id=GROUP, topics=[TOPIC])
    stop = threading.Event()
    service = SinkService(
        SinkConfig(model="m", dlq_topic="dlq", backoff=Backoff(0.05, 0.1)),
        make_source=lambda _on_revoke: source,
        publisher=MemoryPublisher(broker),
        store=store,
        stop=stop,
    )
    threading.Thread(target=service.run, daemon=True).start()
    try:
        wait_for(lambda: store.failures < 3)
        broker.append(TOPIC, *embedding("b", 1))  # arrives while the write waits
        wait_for(lambda: broker.committed(GROUP) == {(TOPIC, 0): 2})
        assert set(products(store)) == {"a", "b"}
    finally:
        stop.set()


def test_every_record_is_counted_once_by_outcome_and_only_applied_ones_have_an_age() -> None:
    broker = MemoryBroker(partitions=1)
    stamped = [(INPUT_TIMESTAMP_HEADER, str(int(time.time() * 1000)).encode())]
    broker.append(TOPIC, *embedding("a", 1), stamped)
    broker.append(TOPIC, *embedding("a", 2), stamped)  # a's v1 is collapsed away: stale
    broker.append(TOPIC, *embedding("b", 1))  # from an older embedder: no timestamp
    broker.append(TOPIC, *embedding("c", 1, model="other", dim=8))  # skipped
    broker.append(TOPIC, b"d", b"{not an embedding")  # dead-lettered
    store = MemoryIndex()
    service, stop, _source = serve(broker, store)
    try:
        wait_for(lambda: broker.committed(GROUP) == {(TOPIC, 0): 5})
        broker.append(TOPIC, b"a", None, [(INPUT_OFFSET_HEADER, b"999999"), *stamped])
        broker.append(TOPIC, *embedding("b", 0))  # older than the stored row: stale
        wait_for(lambda: broker.committed(GROUP) == {(TOPIC, 0): 7})
    finally:
        stop.set()
    assert set(products(store)) == {"b"}
    text = service.metrics.render().decode()
    for outcome, count in [
        ("written", 2),
        ("deleted", 1),
        ("stale", 2),
        ("skipped", 1),
        ("dead_lettered", 1),
    ]:
        assert f'catalens_records_total{{outcome="{outcome}",role="sink"}} {count}.0' in text
    assert 'catalens_dead_letters_total{reason="schema_violation",role="sink"} 1.0' in text
    # a's v2 and b's v1 were written; a's tombstone removed a row, but has no occurred_at.
    assert "catalens_freshness_seconds_count 2.0" in text
    # a's v2 and a's tombstone carry the input's timestamp; b's v1 does not.
    assert "catalens_pipeline_latency_seconds_count 2.0" in text
    assert "catalens_sink_batch_size_count" in text


class WriteThenTimeout(MemoryIndex):
    """Milvus applied the write, but its answer was lost (a timeout): the sink retries."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def apply(self, plan: Plan) -> None:
        super().apply(plan)
        if self.failures:
            self.failures -= 1
            raise TransientError("deadline exceeded")


def test_a_row_written_by_an_attempt_whose_answer_was_lost_counts_as_written() -> None:
    """The retry finds the row already there; it is still this sink's write, and fresh."""
    broker = MemoryBroker(partitions=1)
    broker.append(TOPIC, *embedding("a", 1))
    store = WriteThenTimeout()
    service, stop, _ = serve(broker, store)
    try:
        wait_for(lambda: broker.committed(GROUP) == {(TOPIC, 0): 1})
    finally:
        stop.set()
    text = service.metrics.render().decode()
    assert set(products(store)) == {"a"}
    assert 'catalens_records_total{outcome="written",role="sink"} 1.0' in text
    assert 'catalens_records_total{outcome="stale",role="sink"} 0.0' in text
    assert "catalens_freshness_seconds_count 1.0" in text


def padded(pid: str, pad: int, version: int = 1) -> tuple[bytes, bytes]:
    """The key and value of an embedding record of about ``pad`` bytes more than bare."""
    value = EmbeddingRecord(
        op=Op.UPSERT,
        product_id=pid,
        version=version,
        event_id="e",
        occurred_at=datetime.now(UTC),
        model="m",
        model_fingerprint="f",
        dim=4,
        vector=EmbeddingRecord.pack(np.ones(4, dtype=np.float32)),
        attributes={f"pad{i}": "x" * min(1000, pad - 1000 * i) for i in range(-(-pad // 1000))},
        input_offset=next(_positions),
    )
    return pid.encode(), value.to_json()


def test_a_batch_holds_at_most_sink_batch_bytes_and_a_larger_record_is_a_batch_alone() -> None:
    """Records of about 1 KB and one of 5 KB, batches of at most 3,000 bytes (and 4,000
    records): every batch stays within the bytes, the large record is written in a batch of
    its own, and every record is written and committed, in order."""
    broker = MemoryBroker(partitions=1)
    for i in range(12):
        broker.append(TOPIC, *(padded("big", 5000) if i == 6 else padded(f"p{i}", 700)))
    store = MemoryIndex()
    stop = threading.Event()
    service = SinkService(
        SinkConfig(model="m", dlq_topic="dlq", batch_bytes=3000),
        make_source=lambda on_revoke: MemorySource(
            broker, group_id=GROUP, topics=[TOPIC], on_revoke=on_revoke
        ),
        publisher=MemoryPublisher(broker),
        store=store,
        stop=stop,
    )
    batches: list[list[Record]] = []
    process = service.process

    def spied(records: list[Record]) -> None:
        batches.append(records)
        process(records)

    service.process = spied  # type: ignore[method-assign]
    threading.Thread(target=service.run, daemon=True).start()
    try:
        wait_for(lambda: broker.committed(GROUP) == {(TOPIC, 0): 12})
    finally:
        stop.set()
    with_big = [batch for batch in batches if any(r.key == b"big" for r in batch)]
    assert [[r.key for r in batch] for batch in with_big] == [[b"big"]]
    assert sum(r.nbytes for r in with_big[0]) > 3000
    others = [batch for batch in batches if batch not in with_big]
    assert all(sum(r.nbytes for r in batch) <= 3000 for batch in others)
    assert len(others) >= 4  # eleven records of ~1 KB, at most two a batch
    assert [r.offset for batch in batches for r in batch] == list(range(12))
    assert set(products(store)) == {f"p{i}" for i in range(12) if i != 6} | {"big"}


def test_a_record_held_over_for_bytes_is_not_written_once_its_partition_is_revoked() -> None:
    """A record that would have taken a batch past its bytes waits for the next batch;
    when the poll that tops that batch up revokes its partition, the new owner reads it
    again from the committed offset and may write a newer version first: the old owner
    must not land the older one over it (Milvus has no conditional write)."""
    broker = MemoryBroker(partitions=2)
    broker.append(TOPIC, *padded("f", 1600), partition=1)
    broker.append(TOPIC, *padded("p", 1600), partition=1)  # held over: past 3,000 bytes

    class NewOwnerWritesBetween(MemoryIndex):
        """The new owner's batch lands between the old owner's read and its write."""

        new_owner: SinkService | None = None

        def apply(self, plan: Plan) -> None:
            if (new_owner := self.new_owner) is not None:
                self.new_owner = None
                new_owner.process(new_owner._next_batch())
            super().apply(plan)

    def sink(source: MemorySource | None = None) -> SinkService:
        return SinkService(
            SinkConfig(model="m", dlq_topic="dlq", batch_bytes=3000, batch_wait_s=0),
            make_source=lambda on_revoke: (
                source or MemorySource(broker, group_id=GROUP, topics=[TOPIC], on_revoke=on_revoke)
            ),
            publisher=MemoryPublisher(broker),
            store=store,
            stop=threading.Event(),
        )

    store = NewOwnerWritesBetween()
    old = sink()
    old.process(old._next_batch())  # f; p is held over
    broker.append(TOPIC, *padded("p", 0, version=2), partition=1)
    broker.append(TOPIC, *padded("g", 0), partition=0)  # the old owner keeps partition 0
    new = sink(MemorySource(broker, group_id=GROUP, topics=[TOPIC]))  # joins: rebalance
    batch = old._next_batch()  # partition 1 is revoked inside this poll
    assert (TOPIC, 1) in old._lost
    assert [r.key for r in batch] == [b"g"]
    store.new_owner = new
    old.process(batch)
    new._source.commit_now()
    assert broker.committed(GROUP).get((TOPIC, 1)) == 3  # the new owner committed p v2
    assert products(store)["p"] == 2


def test_records_of_a_partition_assigned_back_while_a_write_waits_are_written() -> None:
    """A partition revoked and assigned back to this sink while a write waited for Milvus
    (the retry keeps polling to stay in the group): what the poll then fetched of it is
    this sink's again, held for the next batch, and written, not dropped as lost."""
    broker = MemoryBroker(partitions=2)
    source = MemorySource(broker, group_id=GROUP, topics=[TOPIC])
    service = SinkService(
        SinkConfig(model="m", dlq_topic="dlq", batch_wait_s=0),
        make_source=lambda _on_revoke: source,
        publisher=MemoryPublisher(broker),
        store=MemoryIndex(),
        stop=threading.Event(),
    )
    service.revoked([(TOPIC, 1)])  # inside a retry's poll; then assigned back
    broker.append(TOPIC, *embedding("q", 1), partition=1)
    service._sleep_polling(0.2)  # the retry's polling fetches q
    assert [r.key for r in service._held] == [b"q"]
    assert [r.key for r in service._next_batch()] == [b"q"]
