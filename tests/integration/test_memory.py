"""The embedder's byte budget through the real broker (Tansu, confluent-kafka): a backlog
of large inline images under a small budget, and an event over the largest, dead-lettered
and passed over by ``dlq replay``. The embedder runs in this process, so that what it held
can be read from it; Milvus is not needed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from catalens.dev.modelkit import build_random_clip
from catalens.embedder.main import build_service
from catalens.embedder.service import EmbedderService
from catalens.kafka.client import Publisher, Source, ensure_topics
from catalens.kafka.records import Record
from catalens.schemas import DeadLetter, EmbeddingRecord
from catalens.settings import EmbedderSettings, MiB
from tests.conftest import jpeg_bytes
from tests.contract.brokers import collect, fresh, quiet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP with a 32×32 input: decoded images take almost nothing of the budget."""
    return build_random_clip(tmp_path_factory.mktemp("model") / "clip-32", image_size=32)


def event(pid: str, image: bytes) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": f"e-{pid}",
            "op": "upsert",
            "product_id": pid,
            "version": 1,
            "occurred_at": "2026-12-06T10:00:00Z",
            "image": {"data": base64.b64encode(image).decode()},
        }
    ).encode()


def settings_for(broker: str, model: Path, **extra: Any) -> EmbedderSettings:
    name = fresh("memory")
    return EmbedderSettings(
        kafka_bootstrap=broker,
        # Tansu hands a new member its first records after half the session timeout.
        kafka_session_timeout_ms=1000,
        topic_partitions=2,
        input_topic=f"{name}.in",
        embeddings_topic=f"{name}.emb",
        dlq_topic=f"{name}.dlq",
        embedder_group=f"{name}.embedder",
        model=str(model),
        precision="fp32",
        runtime="torch",
        **extra,
    )


def publish(settings: EmbedderSettings, events: list[tuple[bytes, bytes]]) -> None:
    ensure_topics(settings, [settings.input_topic, settings.embeddings_topic, settings.dlq_topic])
    publisher = Publisher(settings)
    for key, value in events:
        publisher.produce(settings.input_topic, key, value)
    assert publisher.flush(60) == 0


def read(settings: EmbedderSettings, topic: str, count: int) -> list[Record]:
    """``count`` records of ``topic`` (and whatever else comes within a moment)."""
    source = Source(settings, group_id=fresh("reader"), topics=[topic])
    try:
        return collect(source, count, 60) + quiet([source], 1.5)
    finally:
        source.close()


def committed(settings: EmbedderSettings) -> int:
    """What the embedder's group committed on the input topic, summed over partitions."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.embedder_group}
    )
    try:
        partitions = [TopicPartition(settings.input_topic, p) for p in range(2)]
        return sum(max(0, tp.offset) for tp in consumer.committed(partitions, timeout=10))
    finally:
        consumer.close()


@pytest.fixture
def running() -> Iterator[list[tuple[EmbedderService, threading.Event, threading.Thread]]]:
    started: list[tuple[EmbedderService, threading.Event, threading.Thread]] = []
    yield started
    for _service, stop, runner in started:
        stop.set()
        runner.join(60)
        assert not runner.is_alive()


def start(
    settings: EmbedderSettings,
    running: list[tuple[EmbedderService, threading.Event, threading.Thread]],
    *,
    hold_model_until: Callable[[EmbedderService], bool] | None = None,
) -> EmbedderService:
    """The embedder on Kafka, as ``catalens embedder`` wires it, in a thread. With
    ``hold_model_until``, the model's first batch waits (up to 30 s) until the condition
    holds, as a full-size model on CPU keeps the embedder waiting while the broker hands
    over more: the tiny test model is otherwise faster than a loaded broker hands over
    large records, and the budget would never be what holds the embedder back."""
    stop = threading.Event()
    service, encoder = build_service(settings, stop)
    if hold_model_until is not None:
        condition = hold_model_until
        encode = encoder.encode_images
        held = threading.Event()

        def held_encode(pixels: Any) -> Any:
            deadline = time.monotonic() + 30
            while not held.is_set() and not condition(service) and time.monotonic() < deadline:
                time.sleep(0.02)
            held.set()
            return encode(pixels)

        encoder.encode_images = held_encode  # type: ignore[method-assign]
    runner = threading.Thread(target=service.run)
    runner.start()
    running.append((service, stop, runner))
    return service


def stop_all(running: list[tuple[EmbedderService, threading.Event, threading.Thread]]) -> None:
    for _service, stop, runner in running:
        stop.set()
        runner.join(60)
    running.clear()


def test_a_backlog_of_large_inline_images_through_kafka_stays_within_the_budget(
    broker: str,
    small_model: Path,
    running: list[tuple[EmbedderService, threading.Event, threading.Thread]],
) -> None:
    """40 events of 0.3-1.9 MB (some past the client's 1 MiB fetch size, which Kafka still
    hands over whole) wait while the embedder was down; started with an 8 MiB budget
    (events counted twice, so a few at a time), it never holds more than the budget,
    embeds every event and commits them all."""
    budget = 8 * MiB
    settings = settings_for(broker, small_model, max_in_flight_bytes=budget)
    sides = [600 + 100 * (i % 10) for i in range(40)]  # 0.2 to 1.4 MB of JPEG
    events = [
        (f"p{i}".encode(), event(f"p{i}", jpeg_bytes(s, s, seed=i, quality=95)))
        for i, s in enumerate(sides)
    ]
    assert max(len(value) for _, value in events) > MiB
    publish(settings, events)

    largest = max(len(key) + 2 * len(value) for key, value in events)

    def full(service: EmbedderService) -> bool:
        # What the loop holds once the next record no longer fits: more than the
        # records' share less that record.
        return service.holdings.records > service.holdings.record_share - largest

    service = start(settings, running, hold_model_until=full)
    outputs = read(settings, settings.embeddings_topic, len(events))
    stop_all(running)

    embedded = [EmbeddingRecord.model_validate_json(r.value or b"") for r in outputs]
    assert sorted(e.product_id for e in embedded) == sorted(f"p{i}" for i in range(40))
    assert committed(settings) == len(events)
    assert service.holdings.peak <= budget
    # The budget was filled, not merely respected.
    assert service.holdings.peak > service.holdings.record_share - largest
    assert sum(len(key) + 2 * len(value) for key, value in events) > 5 * budget
    assert service.holdings.held == 0


def test_an_event_over_the_largest_is_dead_lettered_through_kafka_and_not_replayed(
    broker: str,
    small_model: Path,
    running: list[tuple[EmbedderService, threading.Event, threading.Thread]],
) -> None:
    """An event of 1.4 MB where the largest is 1 MB: a dead letter event_too_large without
    the event, the stream moves on; ``dlq replay`` passes over the letter, saying why,
    and publishes nothing (its value would be a tombstone)."""
    settings = settings_for(broker, small_model, max_event_bytes=1_000_000)
    small = jpeg_bytes(64, 64, seed=1)
    huge = event("b", jpeg_bytes(1400, 1400, seed=2, quality=95))
    assert len(huge) > 1_000_000
    publish(settings, [(b"a", event("a", small)), (b"b", huge), (b"c", event("c", small))])

    start(settings, running)
    (letter_record,) = read(settings, settings.dlq_topic, 1)
    embedded = read(settings, settings.embeddings_topic, 2)
    stop_all(running)

    letter = DeadLetter.model_validate_json(letter_record.value or b"")
    assert letter.reason.value == "event_too_large"
    assert letter.value is None and letter.value_omitted
    assert letter.original_key() == b"b" and letter.source_topic == settings.input_topic
    assert sorted(r.key or b"" for r in embedded) == [b"a", b"c"]
    assert committed(settings) == 3

    env = os.environ | {
        "CATALENS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CATALENS_INPUT_TOPIC": settings.input_topic,
        "CATALENS_DLQ_TOPIC": settings.dlq_topic,
        "CATALENS_KAFKA_SESSION_TIMEOUT_MS": "1000",
    }
    replay = subprocess.run(
        [sys.executable, "-m", "catalens", "dlq", "replay", "--timeout", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stderr
    assert "replayed 0 dead letters (1 without their event, not replayed)" in replay.stdout
    assert f"{settings.input_topic}/{letter.source_partition}@{letter.source_offset}" in (
        replay.stderr
    )
    # No tombstone (nor anything else) was published for b.
    assert len(read(settings, settings.input_topic, 3)) == 3
    assert len(letter_record.value or b"") < 2000
