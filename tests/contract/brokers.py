"""The brokers the contract tests run against, behind one small interface.

Each test asks its broker for fresh topics and groups, so tests never see each other's
records or offsets even on a broker shared by the whole session.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable

from catalens.kafka import Partition, Record, RecordPublisher, RecordSource
from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
from catalens.settings import CatalensSettings

OnRevoke = Callable[[list[Partition]], None]
Produced = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def fresh(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


class Broker:
    """A broker under test: fresh topics and groups, its publisher and its sources."""

    # How long a new member may take to receive its first records.
    join_s: float = 30.0
    # How long to keep polling before concluding that nothing more is coming.
    quiet_s: float = 1.5

    def __init__(self) -> None:
        self._sources: list[RecordSource] = []

    def topic(self, partitions: int = 1) -> str:
        raise NotImplementedError

    def publisher(self, max_record_bytes: int | None = None) -> RecordPublisher:
        """A publisher; one given ``max_record_bytes`` takes no larger record."""
        raise NotImplementedError

    def _source(self, group_id: str, topics: list[str], on_revoke: OnRevoke | None) -> RecordSource:
        raise NotImplementedError

    def source(
        self, group_id: str, topics: list[str], on_revoke: OnRevoke | None = None
    ) -> RecordSource:
        """A new member of ``group_id``; closed at the end of the test if still open."""
        source = self._source(group_id, topics, on_revoke)
        self._sources.append(source)
        return source

    def close(self) -> None:
        for source in self._sources:
            # The real client refuses a second close; a test may already have closed it.
            with contextlib.suppress(RuntimeError):
                source.close()


class InMemory(Broker):
    join_s = 5.0
    quiet_s = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.broker = MemoryBroker()

    def topic(self, partitions: int = 1) -> str:
        name = fresh("contract")
        self.broker.create_topic(name, partitions)
        return name

    def publisher(self, max_record_bytes: int | None = None) -> RecordPublisher:
        return MemoryPublisher(self.broker, max_record_bytes=max_record_bytes)

    def _source(self, group_id: str, topics: list[str], on_revoke: OnRevoke | None) -> RecordSource:
        return MemorySource(self.broker, group_id=group_id, topics=topics, on_revoke=on_revoke)


class Tansu(Broker):
    """The real adapter (confluent-kafka) against the session's broker.

    The client module is imported only here, so the unit run never loads confluent-kafka.
    """

    def __init__(self, bootstrap: str) -> None:
        super().__init__()
        # Tansu hands a new member its first records only after about half the session
        # timeout; the smallest accepted value keeps joins and rebalances near a second.
        self.settings = CatalensSettings(kafka_bootstrap=bootstrap, kafka_session_timeout_ms=1000)

    def topic(self, partitions: int = 1) -> str:
        from catalens.kafka.client import ensure_topics

        name = fresh("contract")
        ensure_topics(self.settings.model_copy(update={"topic_partitions": partitions}), [name])
        return name

    def publisher(self, max_record_bytes: int | None = None) -> RecordPublisher:
        from catalens.kafka.client import Publisher

        if max_record_bytes is None:
            return Publisher(self.settings)
        # The client's own limit: Tansu takes records of any size (a topic's
        # max.message.bytes is not enforced there), so the broker's refusal, which
        # reaches the client as the same error, cannot be shown against it.
        return Publisher(self.settings, extra={"message.max.bytes": max_record_bytes})

    def _source(self, group_id: str, topics: list[str], on_revoke: OnRevoke | None) -> RecordSource:
        from catalens.kafka.client import Source

        return Source(self.settings, group_id=group_id, topics=topics, on_revoke=on_revoke)


def publish(publisher: RecordPublisher, topic: str, records: Iterable[Produced]) -> None:
    """Produce ``(key, value, headers)`` records and wait until all are acknowledged."""
    for key, value, headers in records:
        publisher.produce(topic, key, value, headers=headers)
    assert publisher.flush(10) == 0


def collect(source: RecordSource, count: int, timeout_s: float) -> list[Record]:
    """Poll until ``count`` records have arrived (or ``timeout_s`` has passed)."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records += source.poll(100, 0.2)
    return records


def quiet(sources: Iterable[RecordSource], seconds: float) -> list[Record]:
    """Whatever the sources still hand out within ``seconds`` (nothing, in most tests)."""
    sources = list(sources)
    records: list[Record] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for source in sources:
            records += source.poll(100, 0.05)
    return records


def contents(records: Iterable[Record]) -> list[tuple[str, int, int, bytes | None]]:
    """Where each record sits and what it holds, in a comparable order."""
    return sorted((r.topic, r.partition, r.offset, r.value) for r in records)
