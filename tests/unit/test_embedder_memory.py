"""The embedder's byte budget, through its loop (in-memory broker; the real one is in
tests/integration/test_memory.py): a backlog of large events never takes it past the
budget and every event is embedded; an event over the largest is a dead letter and the
stream moves on; one over the budget is embedded alone."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from catalens.dev.modelkit import build_random_clip
from catalens.embedder.holdings import weight
from catalens.embedder.main import build_service, embedder_prefetch_bytes
from catalens.embedder.service import EmbedderService
from catalens.kafka.client import prefetch_config
from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
from catalens.kafka.records import Record
from catalens.schemas import DeadLetter, EmbeddingRecord
from catalens.settings import EmbedderSettings, MiB
from catalens.worker.metrics import EmbedderMetrics
from tests.conftest import jpeg_bytes
from tests.waits import wait_for

TOPIC = "catalens.product-images"
EMBEDDINGS = "catalens.product-embeddings"
DLQ = "catalens.product-images.dlq"
GROUP = "catalens-embedder"


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP whose input is 32×32, so that decoded images (3 KB each) leave most of
    a small budget to the records."""
    return build_random_clip(tmp_path_factory.mktemp("model") / "clip-32", image_size=32)


def event(pid: str, version: int, image: bytes) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": f"e-{pid}-{version}",
            "op": "upsert",
            "product_id": pid,
            "version": version,
            "occurred_at": "2026-12-06T10:00:00Z",
            "image": {"data": base64.b64encode(image).decode()},
        }
    ).encode()


class GivingBack(MemorySource):
    """The in-memory source, counting the records handed back to it."""

    given_back = 0

    def give_back(self, record: Record) -> bool:
        self.given_back += 1
        return super().give_back(record)


class Greedy(GivingBack):
    """A source that hands out whole batches, bytes or not (as a client might that does
    not know sizes): the embedder must give back what it cannot let in, on every
    partition, or lose it."""

    def poll(
        self,
        max_records: int,
        timeout_s: float,
        *,
        fill_s: float = 0.0,
        max_bytes: int | None = None,
    ) -> list[Record]:
        return super().poll(max_records, timeout_s, fill_s=fill_s)


class Refusing(GivingBack):
    """A source that cannot take records back (a seek the client refused)."""

    def give_back(self, record: Record) -> bool:
        super().give_back(record)  # counted, and ignored: the position stays
        with self._broker._lock:
            self._position[record.tp] = max(self._position[record.tp], record.offset + 1)
        return False


class Recording(MemoryPublisher):
    """The in-memory publisher, keeping the topic and key of each record in the order
    they were produced (across topics, which the broker's logs cannot tell)."""

    def __init__(self, broker: MemoryBroker, max_record_bytes: int | None = None) -> None:
        super().__init__(broker, max_record_bytes=max_record_bytes)
        self.produced: list[tuple[str, bytes | None]] = []

    def produce(self, topic: str, key: bytes | None, value: bytes | None, **kwargs: Any) -> None:
        self.produced.append((topic, key))
        super().produce(topic, key, value, **kwargs)


class Embedder:
    """The embedder service over ``broker`` until :meth:`close`."""

    def __init__(
        self,
        model: Path,
        broker: MemoryBroker,
        source: type[GivingBack] = GivingBack,
        max_record_bytes: int | None = None,
        **settings: Any,
    ) -> None:
        self.broker = broker
        self.metrics = EmbedderMetrics()
        self.stop = threading.Event()
        self.source = source(broker, group_id=GROUP, topics=[TOPIC])
        self.publisher = Recording(broker, max_record_bytes)
        self.service: EmbedderService
        self.service, _encoder = build_service(
            EmbedderSettings(model=str(model), precision="fp32", runtime="torch", **settings),
            self.stop,
            source=self.source,
            publisher=self.publisher,
            metrics=self.metrics,
        )
        self.runner = threading.Thread(target=self.service.run)
        self.runner.start()

    def wait_committed(self, count: int) -> None:
        wait_for(
            lambda: self.broker.committed(GROUP).get((TOPIC, 0), 0) >= count,
            120,
            f"{count} records to be committed",
        )

    def close(self) -> None:
        self.stop.set()
        self.runner.join(30)
        assert not self.runner.is_alive()

    def embedded(self) -> list[tuple[str, int]]:
        records = (
            EmbeddingRecord.model_validate_json(r.value or b"")
            for r in self.broker.records(EMBEDDINGS)
        )
        return [(record.product_id, record.version) for record in records]

    def letters(self) -> list[DeadLetter]:
        return [DeadLetter.model_validate_json(r.value or b"") for r in self.broker.records(DLQ)]


def embed_all(model: Path, records: list[tuple[bytes, bytes]], **options: Any) -> Embedder:
    """An embedder with ``options`` run over ``records`` on one partition until it has
    committed them all, then stopped."""
    broker = MemoryBroker(partitions=1)
    for key, value in records:
        broker.append(TOPIC, key, value)
    embedder = Embedder(model, broker, **options)
    try:
        embedder.wait_committed(len(records))
    finally:
        embedder.close()
    return embedder


def backlog(count: int, side: int) -> MemoryBroker:
    """``count`` events waiting on one partition, each with its own inline JPEG of
    ``side``² pixels (200 KB at 600²)."""
    broker = MemoryBroker(partitions=1)
    for i in range(count):
        broker.append(
            TOPIC, f"p{i}".encode(), event(f"p{i}", 1, jpeg_bytes(side, side, seed=i, quality=95))
        )
    return broker


@pytest.mark.slow
def test_a_backlog_of_large_events_never_takes_the_embedder_past_its_budget(
    small_model: Path,
) -> None:
    """30 events of 270 KB (540 KB counted each, with the parsed event) wait while the
    budget is 3 MB: the embedder holds at most the budget at any moment (records and
    decoded images, as counted at every change, not sampled), pausing and giving back
    what does not fit, and still embeds every one of them and commits them."""
    budget = 3 * MiB
    broker = backlog(30, 600)
    largest = max(weight(r) for r in broker.records(TOPIC))
    embedder = Embedder(small_model, broker, max_in_flight_bytes=budget)
    try:
        embedder.wait_committed(30)
    finally:
        embedder.close()
    holdings = embedder.service.holdings
    assert holdings.peak <= budget
    # The bound bound: records waited for room (1,024 records in flight would allow all
    # thirty, 16 MB), and the budget was used, not merely respected.
    assert embedder.source.given_back > 0
    assert holdings.peak > holdings.record_share - largest
    assert sorted(embedder.embedded()) == sorted((f"p{i}", 1) for i in range(30))
    assert embedder.letters() == []
    assert broker.committed(GROUP) == {(TOPIC, 0): 30}
    assert holdings.held == 0
    assert (
        embedder.metrics.registry.get_sample_value("catalens_in_flight_bytes", {"role": "embedder"})
        == 0
    )


@pytest.mark.slow
def test_an_event_over_the_largest_is_dead_lettered_unparsed_and_the_stream_moves_on(
    small_model: Path,
) -> None:
    """An event of 270 KB where the largest is 100 KB: one dead letter with reason
    event_too_large that names where the event is but leaves its value out (a replay
    would otherwise publish it as a tombstone); the product's records before and after it
    keep their order, and every other event is embedded."""
    small = jpeg_bytes(64, 64, seed=1)
    huge = jpeg_bytes(600, 600, seed=2, quality=95)
    embedder = embed_all(
        small_model,
        [
            (b"a", event("a", 1, small)),
            (b"b", event("b", 1, small)),
            (b"b", event("b", 2, huge)),
            (b"b", event("b", 3, small)),
            (b"c", event("c", 1, small)),
        ],
        max_event_bytes=100_000,
    )
    broker = embedder.broker
    (letter,) = embedder.letters()
    assert letter.reason.value == "event_too_large"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (TOPIC, 0, 2)
    assert letter.original_key() == b"b"
    assert letter.value is None and letter.value_omitted
    assert "at most 100000" in letter.message
    assert len(broker.records(DLQ)[0].value or b"") < 2000
    assert sorted(embedder.embedded()) == [("a", 1), ("b", 1), ("b", 3), ("c", 1)]
    # Its product's records left in their order: b1's embedding, b2's letter, b3's.
    of_b = [topic for topic, key in embedder.publisher.produced if key == b"b"]
    assert of_b == [EMBEDDINGS, DLQ, EMBEDDINGS]


@pytest.mark.slow
def test_a_dead_letter_the_broker_refuses_as_too_large_goes_without_its_event(
    small_model: Path,
) -> None:
    """The dead-letter topic takes records of at most 20 KB (a broker's message.max.bytes
    is 1 MB by default, far under the largest event): the letter of a 30 KB event whose
    image does not decode is refused, and sent again without the event, naming where it
    is, instead of holding up the partition for ever; the records around it are embedded
    and every offset is committed."""
    small = jpeg_bytes(64, 64, seed=1)
    embedder = embed_all(
        small_model,
        [
            (b"a", event("a", 1, small)),
            (b"b", event("b", 1, b"not an image" * 2500)),
            (b"c", event("c", 1, small)),
        ],
        max_record_bytes=20_000,
    )
    (letter,) = embedder.letters()
    assert letter.reason.value == "not_an_image"
    assert (letter.source_topic, letter.source_offset, letter.original_key()) == (TOPIC, 1, b"b")
    assert letter.value is None and letter.value_omitted
    assert sorted(embedder.embedded()) == [("a", 1), ("c", 1)]
    # Tried once with the event, then without it.
    assert [topic for topic, key in embedder.publisher.produced if key == b"b"] == [DLQ, DLQ]
    assert (
        embedder.metrics.registry.get_sample_value(
            "catalens_dead_letters_total", {"role": "embedder", "reason": "not_an_image"}
        )
        == 1
    )


@pytest.mark.slow
def test_an_event_larger_than_the_budget_is_embedded_alone(small_model: Path) -> None:
    """The budget is 1 MB and one event of the backlog is 2.9 MB counted (1.4 MB of JPEG,
    under the largest event): it is let in once nothing else is held, embedded alone,
    and the events around it are embedded too — never a deadlock."""
    budget = 1 * MiB
    broker = MemoryBroker(partitions=1)
    for i in range(3):
        broker.append(TOPIC, f"p{i}".encode(), event(f"p{i}", 1, jpeg_bytes(300, 300, seed=i)))
    huge = broker.append(
        TOPIC, b"huge", event("huge", 1, jpeg_bytes(1600, 1600, seed=9, quality=95))
    )
    for i in range(3, 6):
        broker.append(TOPIC, f"p{i}".encode(), event(f"p{i}", 1, jpeg_bytes(300, 300, seed=i)))
    assert weight(huge) > budget
    embedder = Embedder(small_model, broker, max_in_flight_bytes=budget)
    try:
        embedder.wait_committed(7)
    finally:
        embedder.close()
    holdings = embedder.service.holdings
    # Alone: the most ever held is the huge event and its one decoded image, nothing else.
    assert budget < holdings.peak <= weight(huge) + 32 * 32 * 3
    assert sorted(embedder.embedded()) == sorted([(f"p{i}", 1) for i in range(6)] + [("huge", 1)])
    assert broker.committed(GROUP) == {(TOPIC, 0): 7}


def test_the_kafka_client_fetches_ahead_a_sixteenth_of_the_budget() -> None:
    """The client's own prefetch follows the budget (README, "Memory"): its queue and each
    fetch at most a sixteenth of it, never under librdkafka's 1 MB message floor nor over
    its default queue of 64 MiB."""
    assert embedder_prefetch_bytes(EmbedderSettings()) == 16 * MiB
    assert embedder_prefetch_bytes(EmbedderSettings(max_in_flight_bytes=2 * MiB)) == MiB
    assert embedder_prefetch_bytes(EmbedderSettings(max_in_flight_bytes=2**40)) == 64 * MiB
    assert prefetch_config(16 * MiB) == {
        "queued.max.messages.kbytes": 16 * 1024,
        "fetch.max.bytes": 16 * MiB,
        "max.partition.fetch.bytes": 16 * MiB,
    }


@pytest.mark.slow
def test_a_member_joining_while_the_budget_holds_records_back_loses_nothing(
    small_model: Path,
) -> None:
    """Two embedders of one group share four partitions of large events, the second joining
    while the first pauses and gives records back for want of room: partitions move with
    records given back and records let in but unfinished, and still every event is
    embedded, every offset committed, and neither member holds more than its budget (nor
    anything once it stopped)."""
    budget = 3 * MiB
    broker = spread(40, 4)
    first = Embedder(small_model, broker, max_in_flight_bytes=budget)
    second = None
    try:
        wait_for(lambda: first.source.given_back > 0, 60, "the first member to give back")
        second = Embedder(small_model, broker, max_in_flight_bytes=budget)
        wait_for(
            lambda: sum(broker.committed(GROUP).values()) == 40,
            120,
            "every record to be committed",
        )
    finally:
        first.close()
        if second is not None:
            second.close()
    assert second is not None
    assert {(TOPIC, p) for p in range(4)} == set(broker.committed(GROUP))
    embedded = first.embedded()  # one broker: both members' outputs
    assert set(embedded) == {(f"p{i}", 1) for i in range(40)}
    for member in (first, second):
        assert member.service.holdings.peak <= budget
        assert member.service.holdings.held == 0
    assert second.service.embedded > 0


def spread(count: int, partitions: int) -> MemoryBroker:
    """``count`` events of 270 KB over ``partitions`` partitions."""
    broker = MemoryBroker(partitions=partitions)
    for i in range(count):
        image = jpeg_bytes(600, 600, seed=i, quality=95)
        broker.append(TOPIC, f"p{i}".encode(), event(f"p{i}", 1, image))
    return broker


@pytest.mark.slow
def test_records_polled_after_one_given_back_are_given_back_on_every_partition(
    small_model: Path,
) -> None:
    """A source that hands out whole batches whatever their bytes: what follows the first
    record without room, on its partition and on the others, comes again rather than
    being dropped, so every event is embedded within the budget."""
    budget = 3 * MiB
    broker = spread(40, 4)
    embedder = Embedder(small_model, broker, Greedy, max_in_flight_bytes=budget)
    try:
        wait_for(lambda: sum(broker.committed(GROUP).values()) == 40, 120, "every commit")
    finally:
        embedder.close()
    assert embedder.source.given_back > 0
    assert embedder.service.holdings.peak <= budget
    assert set(embedder.embedded()) == {(f"p{i}", 1) for i in range(40)}


@pytest.mark.slow
def test_records_the_source_cannot_take_back_are_let_in_over_the_budget_not_lost(
    small_model: Path,
) -> None:
    budget = 3 * MiB
    broker = spread(30, 2)
    embedder = Embedder(small_model, broker, Refusing, max_in_flight_bytes=budget)
    try:
        wait_for(lambda: sum(broker.committed(GROUP).values()) == 30, 120, "every commit")
    finally:
        embedder.close()
    assert embedder.source.given_back > 0
    assert set(embedder.embedded()) == {(f"p{i}", 1) for i in range(30)}
