"""The Kafka plumbing (catalens.kafka) against the real broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from catalens.kafka.client import Publisher, Source, ensure_topics
from catalens.records import Record
from catalens.settings import CatalensSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def topic_and_settings(broker: str) -> tuple[str, CatalensSettings]:
    settings = CatalensSettings(kafka_bootstrap=broker, topic_partitions=1)
    topic = f"test.poll.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic])
    return topic, settings


def publish(settings: CatalensSettings, topic: str, *values: bytes) -> None:
    publisher = Publisher(settings)
    for value in values:
        publisher.produce(topic, b"k", value)
    assert publisher.flush(10) == 0


@pytest.fixture
def source(topic_and_settings: tuple[str, CatalensSettings]) -> Iterator[Source]:
    """A member that has joined its group and consumed the topic's first record."""
    topic, settings = topic_and_settings
    source = Source(settings, group_id=f"g-{uuid.uuid4().hex[:8]}", topics=[topic])
    publish(settings, topic, b"first")
    deadline = time.monotonic() + 30
    while not (got := source.poll(1, 0.5)):
        assert time.monotonic() < deadline, "never joined the group"
    assert [r.value for r in got] == [b"first"]
    yield source
    source.close()


def test_a_lone_record_is_handed_over_at_once_not_after_the_whole_timeout(
    topic_and_settings: tuple[str, CatalensSettings], source: Source
) -> None:
    topic, settings = topic_and_settings
    publish(settings, topic, b"lone")
    time.sleep(0.5)  # fetched by now
    started = time.monotonic()
    got = source.poll(32, timeout_s=20)
    waited = time.monotonic() - started
    assert [r.value for r in got] == [b"lone"]
    # librdkafka's batch consume alone would have waited all 20 s for 31 more.
    assert waited < 5, waited


def test_fill_s_collects_records_that_arrive_while_the_batch_fills(
    topic_and_settings: tuple[str, CatalensSettings], source: Source
) -> None:
    topic, settings = topic_and_settings
    late = threading.Timer(1.0, publish, (settings, topic, b"late"))
    publish(settings, topic, b"early")
    late.start()
    got: list[Record] = []
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        got = source.poll(10, timeout_s=1, fill_s=4)
    late.join()
    assert [r.value for r in got] == [b"early", b"late"]
