"""The sink loop with an in-memory broker and an in-memory store that can fail
(Milvus is outside the thing under test; the real one is in tests/integration)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
from catalens.records import ModelIdentity, Plan
from catalens.retry import Backoff, TransientError
from catalens.schemas import EmbeddingRecord, Op
from catalens.schemas.embedding import INPUT_OFFSET_HEADER, MODEL_HEADER
from catalens.sink.service import SinkConfig, SinkService
from catalens.store.memory import MemoryIndex

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


def embedding(
    pid: str, version: int, *, model: str = "m", fingerprint: str = "f", dim: int = 4
) -> tuple[bytes, bytes]:
    """The key and value of an embedding record."""
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
    )
    return pid.encode(), value.to_json()


def test_offsets_are_committed_only_after_the_write_and_a_failing_write_is_retried() -> None:
    broker = MemoryBroker(partitions=1)
    for key, value in [embedding("a", 1), embedding("b", 1), embedding("a", 2)]:
        broker.append(TOPIC, key, value)
    source = MemorySource(broker, group_id=GROUP, topics=[TOPIC])
    store = FlakyStore(failures=3)
    stop = threading.Event()
    service = SinkService(
        SinkConfig(model="m", dlq_topic="dlq", batch_wait_s=0.05, backoff=Backoff(0.05, 0.1)),
        source=source,
        publisher=MemoryPublisher(broker),
        store=store,
        stop=stop,
    )
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while store.failures and time.monotonic() < deadline:
            assert broker.committed(GROUP) == {}  # nothing is committed while the write fails
            assert source.paused or store.failures == 3
            time.sleep(0.01)
        while not broker.committed(GROUP) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert broker.committed(GROUP) == {(TOPIC, 0): 3}
        assert {p: r.version for p, r in store.rows.items()} == {"a": 2, "b": 1}
        assert not source.paused and service.ready.is_set()
    finally:
        stop.set()
        runner.join(10)


def serve(broker: MemoryBroker, store: MemoryIndex) -> tuple[SinkService, threading.Event]:
    stop = threading.Event()
    service = SinkService(
        SinkConfig(model="m", dlq_topic="dlq", backoff=Backoff(0.05, 0.1)),
        source=MemorySource(broker, group_id=GROUP, topics=[TOPIC]),
        publisher=MemoryPublisher(broker),
        store=store,
        stop=stop,
    )
    threading.Thread(target=service.run, daemon=True).start()
    return service, stop


def wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_other_models_records_are_skipped_not_dead_lettered() -> None:
    broker = MemoryBroker(partitions=1)
    model_headers = [(MODEL_HEADER, b"other")]
    broker.append(TOPIC, *embedding("a", 1, model="other", dim=8), model_headers)
    broker.append(TOPIC, b"b", None, [*model_headers, (INPUT_OFFSET_HEADER, b"0")])
    broker.append(TOPIC, *embedding("c", 1, model="other", dim=8))  # no header: read, skipped
    broker.append(TOPIC, *embedding("d", 1))
    store = MemoryIndex()
    service, stop = serve(broker, store)
    try:
        wait_until(lambda: broker.committed(GROUP) == {(TOPIC, 0): 4})
        assert set(store.rows) == {"d"} and service.other_model == 3
        assert broker.records("dlq") == []
    finally:
        stop.set()


def test_vectors_of_another_checkpoint_under_the_same_name_halt_the_sink() -> None:
    broker = MemoryBroker(partitions=1)
    broker.append(TOPIC, *embedding("a", 1))
    broker.append(TOPIC, *embedding("b", 1, fingerprint="retrained"))
    store = MemoryIndex()
    store.create(ModelIdentity("m", 4, "f"))
    service, stop = serve(broker, store)
    try:
        wait_until(lambda: service.halted is not None)
        assert "weights fingerprint 'retrained'" in (service.halted or "")
        assert not service.ready.is_set()
        time.sleep(0.2)
        assert store.rows == {} and broker.committed(GROUP) == {}  # nothing past the wall
        assert broker.records("dlq") == []
    finally:
        stop.set()


def test_a_tombstone_with_a_garbled_position_is_dead_lettered() -> None:
    broker = MemoryBroker(partitions=1)
    broker.append(TOPIC, b"a", None, [(INPUT_OFFSET_HEADER, b"minus one")])
    broker.append(TOPIC, *embedding("b", 1))
    store = MemoryIndex()
    _service, stop = serve(broker, store)
    try:
        wait_until(lambda: broker.committed(GROUP) == {(TOPIC, 0): 2})
        (letter,) = broker.records("dlq")
        assert letter.key == b"a" and set(store.rows) == {"b"}
    finally:
        stop.set()
