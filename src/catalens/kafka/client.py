"""Kafka over confluent-kafka: the only module that imports it.

:class:`Source` and :class:`Publisher` implement the protocols of :mod:`catalens.kafka`;
roles see plain :class:`~catalens.kafka.records.Record` values, never librdkafka objects.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from catalens.errors import TransientError
from catalens.kafka import DeliveryError
from catalens.kafka.records import Headers, Partition, Record
from catalens.settings import CatalensSettings

log = logging.getLogger(__name__)


def client_config(settings: CatalensSettings) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap}
    if settings.kafka_security_protocol:
        config["security.protocol"] = settings.kafka_security_protocol
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        config["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password:
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return config


def broker_topics(settings: CatalensSettings, *, timeout_s: float = 10) -> set[str]:
    """The topics the broker has; :class:`TransientError` when it does not answer within
    ``timeout_s``."""
    return set(_list_topics(AdminClient(client_config(settings)), settings, timeout_s))


def _list_topics(admin: AdminClient, settings: CatalensSettings, timeout_s: float) -> Any:
    try:
        return admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise TransientError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc


def ensure_topics(
    settings: CatalensSettings, topics: Iterable[str], *, timeout_s: float = 10
) -> None:
    """Create the topics that do not exist yet (idempotent; racing replicas are fine);
    :class:`TransientError` when the broker does not answer within ``timeout_s``.

    The input and embedding topics are created compacted: they keep the latest record of
    every product (their key), so replaying the input topic from the start rebuilds the
    catalog with a model (a new model's generation is built that way), and replaying the
    embedding topic rebuilds it without one (another index of the served model is built
    that way). Their tombstones must outlive the slowest reader (``delete.retention.ms``,
    README "Retention"); the dead-letter topic keeps the broker's time retention.
    """
    admin = AdminClient(client_config(settings))
    existing = _list_topics(admin, settings, timeout_s)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                config=(
                    {"cleanup.policy": "compact"}
                    if t in (settings.input_topic, settings.embeddings_topic)
                    else {}
                ),
            )
            for t in missing
        ]
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=30)
            log.info("created topic %s with %d partitions", topic, settings.topic_partitions)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TransientError(f"cannot create topic {topic}: {exc}") from exc


def group_lag(settings: CatalensSettings, group: str, topic: str) -> int | None:
    """Records of ``topic`` that ``group`` has not committed yet: end offset minus committed
    offset, summed over partitions; None when the group has committed nothing. Correct on
    Kafka; the development broker (Tansu) reports wrong end offsets."""
    lags = partition_lag(settings, group, topic)
    return None if lags is None else sum(lags.values())


def partition_lag(settings: CatalensSettings, group: str, topic: str) -> dict[int, int] | None:
    """Per partition of ``topic``, the records ``group`` has not committed yet (a partition
    it never committed counts from its low watermark); None when the topic is unknown or
    the group has committed nothing. Correct on Kafka; the development broker (Tansu)
    reports wrong end offsets, so there the figures are not to be trusted."""
    try:
        consumer = Consumer(
            client_config(settings) | {"group.id": group, "enable.auto.commit": False}
        )
    except KafkaException as exc:
        raise TransientError(f"cannot read the lag of {group}: {exc}") from exc
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return None
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        committed = consumer.committed(partitions, timeout=10)
        if all(tp.offset < 0 for tp in committed):
            return None
        behind: dict[int, int] = {}
        for tp in committed:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, tp.partition), timeout=10
            )
            behind[tp.partition] = max(0, high - (tp.offset if tp.offset >= 0 else low))
        return behind
    except KafkaException as exc:
        raise TransientError(f"cannot read the lag of {group}: {exc}") from exc
    finally:
        consumer.close()


def read_tail(
    settings: CatalensSettings,
    topic: str,
    per_partition: int,
    *,
    idle_s: float = 1.0,
    timeout_s: float = 30.0,
) -> Iterator[Record]:
    """About the last ``per_partition`` records of every partition of ``topic``, read
    outside any consumer group (nothing is committed), one at a time: dead letters carry
    whole events, images included, so they are not all held at once. Reads on until
    ``idle_s`` passes without a record (or ``timeout_s`` in all, on a topic that never goes
    quiet), not up to the end offset: the development broker reports end offsets too low,
    so there it yields some records more, never fewer. Nothing when the topic does not
    exist."""
    consumer = Consumer(
        client_config(settings)
        | {
            # Offsets are assigned explicitly and never committed; librdkafka still wants
            # a group id.
            "group.id": "catalens-status",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return
        starts = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            starts.append(TopicPartition(topic, partition, max(low, high - per_partition)))
        consumer.assign(starts)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            messages = consumer.consume(num_messages=100, timeout=idle_s)
            if not messages:
                return
            for message in messages:
                if message.error() is None:
                    yield _record(message)
    except KafkaException as exc:
        raise TransientError(f"cannot read {topic}: {exc}") from exc
    finally:
        consumer.close()


class _Taken:
    """The records of one poll, and whether there is room for more."""

    def __init__(self, max_records: int, max_bytes: int | None) -> None:
        self.records: list[Record] = []
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.nbytes = 0

    def room(self) -> int:
        """How many more records may be taken (0: full)."""
        if self.max_bytes is not None and self.records and self.nbytes >= self.max_bytes:
            return 0
        return max(0, self.max_records - len(self.records))

    def add(self, record: Record) -> None:
        self.records.append(record)
        self.nbytes += record.nbytes


def prefetch_config(queue_bytes: int) -> dict[str, Any]:
    """librdkafka settings that bound what a consumer fetches ahead of its application.

    Its queue of fetched records stops fetching once it holds ``queue_bytes``
    (``queued.max.messages.kbytes``, one queue for every partition of a group member), and
    a fetch in flight brings at most ``queue_bytes`` (``fetch.max.bytes``; per partition
    ``max.partition.fetch.bytes``), one fetch per broker at a time. So the client holds at
    most about ``queue_bytes × (1 + brokers it fetches from)``, plus one record where a
    single record is larger (Kafka still returns it whole, so that the consumer moves on).
    Pausing a partition drops what was fetched for it (fetched again on resume).
    librdkafka wants ``fetch.max.bytes`` at least its ``message.max.bytes`` (1,000,000 by
    default), hence the floor of 1 MiB, and ``max.partition.fetch.bytes`` at most 1e9,
    hence the ceiling of 512 MiB.
    """
    queue_bytes = min(max(queue_bytes, 1024 * 1024), 512 * 1024 * 1024)
    return {
        "queued.max.messages.kbytes": queue_bytes // 1024,
        "fetch.max.bytes": queue_bytes,
        "max.partition.fetch.bytes": queue_bytes,
    }


def _record(message: Message) -> Record:
    headers = message.headers() or []
    if isinstance(headers, dict):
        headers = list(headers.items())
    return Record(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        headers=[(k, v if isinstance(v, bytes) else (v or "").encode()) for k, v in headers],
        timestamp_ms=message.timestamp()[1],
    )


class Source:
    """A consumer-group member that hands out records and commits only what is marked done.

    ``on_revoke`` runs inside :meth:`poll` before partitions are taken away, so the role
    can finish (or abandon) their in-flight work; whatever is marked done by then is
    committed, the rest is redelivered to the next owner.
    """

    def __init__(
        self,
        settings: CatalensSettings,
        *,
        group_id: str,
        topics: list[str],
        on_revoke: Callable[[list[Partition]], None] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        config = (
            client_config(settings)
            | {
                "group.id": group_id,
                "auto.offset.reset": "earliest",
                # Offsets are stored by mark_done() after the effect is durable, and the
                # background auto-commit only ever commits those stored offsets.
                "enable.auto.offset.store": False,
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 1000,
                "session.timeout.ms": settings.kafka_session_timeout_ms,
                "heartbeat.interval.ms": max(500, settings.kafka_session_timeout_ms // 6),
                "max.poll.interval.ms": settings.kafka_max_poll_interval_ms,
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.partition.eof": False,
                # Events with inline images reach megabytes; with the default 1 MB per
                # partition and fetch, every round trip would bring about one event.
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
                "fetch.max.bytes": 64 * 1024 * 1024,
                # How long an idle fetch waits at the broker. Kafka answers as soon as data
                # arrives anyway; Tansu holds it to the end, which was a lone event's
                # latency with the 500 ms default. Idle, this is 10 requests/s per broker.
                "fetch.wait.max.ms": 100,
            }
            | dict(extra or {})
        )
        self._on_revoke_cb = on_revoke
        self._assigned: set[Partition] = set()
        self._paused = False
        self._consumer = Consumer(config)
        self._consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        added = {(p.topic, p.partition) for p in partitions}
        self._assigned |= added
        if self._paused and partitions:
            consumer.pause(partitions)
        log.info("assigned %s", sorted(added))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = [(p.topic, p.partition) for p in partitions]
        if self._on_revoke_cb is not None and gone:
            self._on_revoke_cb(gone)
        self._assigned -= set(gone)
        log.info("revoked %s", sorted(gone))

    def poll(
        self,
        max_records: int,
        timeout_s: float,
        *,
        fill_s: float = 0.0,
        max_bytes: int | None = None,
    ) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout_s`` for the first.

        Once one is here, waits up to ``fill_s`` more for the rest of a full batch (0: takes
        only what is already fetched). librdkafka's batch consume alone would hold even a
        lone record until the batch is full or the whole timeout has passed. With
        ``max_bytes``, taking stops at the record that brings the bytes taken to it.
        """
        taken = _Taken(max_records, max_bytes)
        self._take(taken, 0)
        if not taken.records:
            # A batch of one is full as soon as a record arrives.
            self._take(taken, timeout_s, first_only=True)
        if taken.records:
            self._take(taken, fill_s)
        return taken.records

    def _take(self, taken: _Taken, wait_s: float, *, first_only: bool = False) -> None:
        """Add records to ``taken`` until it is full or ``wait_s`` has passed. Without a
        byte bound in one consume call; with one, a record at a time, since a record's size
        is only known once it is taken (a call costs about 0.3 µs more per record)."""
        deadline = time.monotonic() + wait_s
        while taken.room():
            count = 1 if first_only or taken.max_bytes is not None else taken.room()
            messages = self._consume(count, max(0.0, deadline - time.monotonic()))
            for message in messages:
                error = message.error()
                if error is None:
                    taken.add(_record(message))
                elif error.fatal():
                    raise KafkaException(error)
                else:
                    # Broker-side hiccups (coordinator moves, transport errors) heal by
                    # themselves.
                    log.warning("consumer error: %s", error)
            if first_only or not messages or taken.max_bytes is None:
                return

    def give_back(self, record: Record) -> bool:
        """Seek ``record``'s partition back to it. A seek bumps librdkafka's version of the
        partition, so records it had fetched beyond are dropped, not handed out before
        ``record``; on a paused partition the seek holds until :meth:`resume`."""
        if record.tp not in self._assigned:
            return True  # its next owner reads it from the committed offset
        try:
            self._consumer.seek(TopicPartition(record.topic, record.partition, record.offset))
        except KafkaException as exc:
            log.warning("could not give %s@%d back: %s", record.tp, record.offset, exc)
            return False
        return True

    def _consume(self, count: int, timeout_s: float) -> list[Message]:
        try:
            return self._consumer.consume(num_messages=count, timeout=timeout_s)
        except KafkaException as exc:
            raise TransientError(f"consume failed: {exc}") from exc

    def mark_done(self, offsets: Mapping[Partition, int]) -> None:
        """Record that everything before ``offsets[tp]`` is durable downstream.

        Partitions this member no longer owns are skipped: their next owner re-reads them.
        """
        owned = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in offsets.items()
            if (topic, partition) in self._assigned
        ]
        if owned:
            self._consumer.store_offsets(offsets=owned)

    def commit_now(self) -> None:
        """Commit stored offsets synchronously (shutdown, revocation)."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit failed: %s", exc)

    def pause(self) -> None:
        """Stop fetching (backpressure) while staying in the group."""
        if not self._paused:
            self._paused = True
            self._consumer.pause(self._consumer.assignment())

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._consumer.resume(self._consumer.assignment())

    @property
    def paused(self) -> bool:
        return self._paused

    def close(self) -> None:
        """Leave the group after committing what was marked done."""
        self.commit_now()
        self._consumer.close()


class Publisher:
    """An idempotent producer with acknowledged delivery (acks=all)."""

    def __init__(self, settings: CatalensSettings, extra: Mapping[str, Any] | None = None) -> None:
        config = (
            client_config(settings)
            | {
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "none",
                "message.max.bytes": 16 * 1024 * 1024,
            }
            | dict(extra or {})
        )
        self._producer = Producer(config)
        # Records the client refused in produce (larger than message.max.bytes): their
        # answers wait for poll or flush, as the broker's do.
        self._refused: deque[tuple[Callable[[KafkaError | None, Message | None], None], KafkaError]]
        self._refused = deque()

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Headers | None = None,
        on_delivery: Callable[[DeliveryError | None], None] | None = None,
    ) -> None:
        """Queue one record; ``on_delivery`` runs from :meth:`poll` or :meth:`flush` once
        the broker answers, or once the client refused it (too large)."""

        def callback(error: KafkaError | None, _message: Message | None) -> None:
            if on_delivery is None:
                if error is not None:
                    log.error("delivery to %s failed: %s", topic, error)
                return
            on_delivery(None if error is None else _delivery_error(error))

        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers or []),
                    on_delivery=callback,
                )
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                self._producer.poll(0.1)
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() != KafkaError.MSG_SIZE_TOO_LARGE:
                    raise
                self._refused.append((callback, error))
                return

    def _answer_refused(self) -> int:
        answered = 0
        while self._refused:
            callback, error = self._refused.popleft()
            answered += 1
            callback(error, None)
        return answered

    def poll(self, timeout_s: float = 0) -> int:
        if self._refused:
            return self._answer_refused() + self._producer.poll(0)
        return self._producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding deliveries; returns how many are still unacknowledged."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._answer_refused()
            left = self._producer.flush(max(0.0, deadline - time.monotonic()))
            # A callback run by that flush may have produced a record the client refused.
            if not self._refused:
                return left

    def pending(self) -> int:
        return len(self._producer) + len(self._refused)


def _delivery_error(error: KafkaError) -> DeliveryError:
    # The client's own limit (message.max.bytes) and the broker's or the topic's
    # (MESSAGE_TOO_LARGE, the same code) say the same: this record will never be taken.
    return DeliveryError(
        str(error), fatal=error.fatal(), too_large=error.code() == KafkaError.MSG_SIZE_TOO_LARGE
    )
