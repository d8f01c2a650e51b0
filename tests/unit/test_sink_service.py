"""The sink loop with an in-memory broker and an in-memory store that can fail
(Milvus is outside the thing under test; the real one is in tests/integration)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import numpy as np

from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
from catalens.records import Plan
from catalens.retry import Backoff, TransientError
from catalens.schemas import EmbeddingRecord, Op
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


def embedding(pid: str, version: int) -> tuple[bytes, bytes]:
    """The key and value of an embedding record."""
    value = EmbeddingRecord(
        op=Op.UPSERT,
        product_id=pid,
        version=version,
        event_id="e",
        occurred_at=datetime.now(UTC),
        model="m",
        dim=4,
        vector=EmbeddingRecord.pack(np.ones(4, dtype=np.float32)),
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
    )  # type: ignore[arg-type]
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
