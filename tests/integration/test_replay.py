"""Replays change nothing (DESIGN.md): the real services, the real broker, real Milvus.

Each test builds an index from a stream that holds what replays used to break — a
product upserted, tombstoned and upserted again — among out-of-order versions, deletes
and duplicates; then makes a role read its topic again and checks that every product's
version, input position and delete floor are what they were.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from catalens.store.client import Milvus
from catalens.store.values import Stored
from catalens.store.writer import MilvusWriter
from tests.integration.stack import Stack, event
from tests.integration.test_guarantees import SMALL, expected_state, produce_stream, random_stream
from tests.waits import wait_for

pytestmark = pytest.mark.integration

Stream = list[tuple[str, dict[str, Any] | None]]


def re_added(products: int) -> Stream:
    """upsert v1, tombstone, upsert v2 for each product: the replay that lost them all."""
    stream: Stream = []
    for i in range(products):
        pid = f"r{i:03d}"
        stream += [
            (pid, event(pid, 1, image=SMALL)),
            (pid, None),
            (pid, event(pid, 2, image=SMALL)),
        ]
    return stream


def mixed_stream() -> Stream:
    return re_added(50) + random_stream(products=40, events=250, seed=21)


def ends(stack: Stack, topic: str) -> dict[int, int]:
    """partition → offset after its last record, read record by record (this broker's
    high watermark is wrong, so it is not asked)."""
    consumer = Consumer(
        {"bootstrap.servers": stack.bootstrap, "group.id": "ends", "enable.auto.commit": False}
    )
    partitions = [TopicPartition(topic, p, 0) for p in range(3)]
    consumer.assign(partitions)
    last: dict[int, int] = {}
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < 3:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None  # set on consumed messages
                last[partition] = offset + 1
                idle_since = time.monotonic()
    finally:
        consumer.close()
    return last


def committed(stack: Stack, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group})
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in got if tp.offset >= 0}


def rewind(stack: Stack, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Set ``group``'s committed offsets back, as if its last commits had been lost (the
    group has no member: the broker refuses commits from outside a live group)."""

    def commit() -> bool:
        consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group})
        try:
            positions = [TopicPartition(topic, p, o) for p, o in offsets.items()]
            consumer.commit(offsets=positions, asynchronous=False)
        except KafkaException:
            return False
        finally:
            consumer.close()
        return committed(stack, group, topic) == offsets

    wait_for(commit, 60, f"the offsets of {group} to be set back to {offsets}", every_s=1)


def caught_up(stack: Stack, group: str, topic: str, end: dict[int, int]) -> None:
    def done() -> bool:
        stack.assert_running()
        have = committed(stack, group, topic)
        return all(have.get(p, 0) >= o for p, o in end.items())

    wait_for(done, 120, f"group {group} to read {topic} to its end {end}")


def snapshot(stack: Stack, product_ids: Iterable[str]) -> dict[str, Stored]:
    """Version, input position and delete floor of every product (read with Strong
    consistency), plus what the query API returns for the whole index."""
    milvus = Milvus(stack.milvus_uri)
    writer = MilvusWriter(milvus, alias=stack.collection, model=str(stack.model))
    try:
        return dict(writer.stored(sorted(product_ids)))
    finally:
        milvus.close()


def indexed_stream(stack: Stack, stream: Stream) -> tuple[dict[str, Stored], dict[str, int]]:
    stack.start("embedder", "sink", "api")
    produce_stream(stack, stream)
    expected = expected_state(stream)
    assert all(expected[f"r{i:03d}"] == 2 for i in range(50))
    stack.wait_indexed(expected)
    ids = {pid for pid, _ in stream}
    return snapshot(stack, ids), expected


def test_a_new_sink_group_replaying_the_embedding_topic_changes_nothing(stack: Stack) -> None:
    stream = mixed_stream()
    before, expected = indexed_stream(stack, stream)
    end = ends(stack, stack.embeddings_topic)
    caught_up(stack, f"t{stack.name}-sink", stack.embeddings_topic, end)

    assert stack.terminate("sink") == 0
    stack.extra_env["CATALENS_SINK_GROUP"] = f"t{stack.name}-rebuild"
    stack.start("sink")  # a new group: reads the embedding topic from its start
    caught_up(stack, f"t{stack.name}-rebuild", stack.embeddings_topic, end)

    assert snapshot(stack, before) == before
    assert stack.indexed() == expected


def test_a_sink_that_wrote_but_did_not_commit_replays_its_batches_unchanged(
    stack: Stack,
) -> None:
    """The state a kill -9 between the Milvus write and the offset commit leaves: the
    index holds the batches, the group's offsets are behind them. Made exactly, at
    several points (the sink leaves its group, its offsets are set back), the sink
    replays from each, and nothing changes."""
    stream = mixed_stream()
    before, expected = indexed_stream(stack, stream)
    group = f"t{stack.name}-sink"
    end = ends(stack, stack.embeddings_topic)
    caught_up(stack, group, stack.embeddings_topic, end)
    for fraction in (0.0, 0.5, 0.9):
        assert stack.terminate("sink") == 0
        rewind(stack, group, stack.embeddings_topic, {p: int(o * fraction) for p, o in end.items()})
        stack.start("sink")
        caught_up(stack, group, stack.embeddings_topic, end)
        assert snapshot(stack, before) == before, f"replay from {fraction:.0%} changed the index"
    assert stack.indexed() == expected


def test_an_embedder_that_reads_its_input_again_changes_nothing(stack: Stack) -> None:
    """An embedder restarted before its commit emits the same events again: tombstones
    after the re-adds they preceded, with their original input positions."""
    stream = mixed_stream()
    before, expected = indexed_stream(stack, stream)
    group = f"t{stack.name}-embedder"
    inputs = ends(stack, stack.input_topic)
    caught_up(stack, group, stack.input_topic, inputs)
    emitted = ends(stack, stack.embeddings_topic)
    caught_up(stack, f"t{stack.name}-sink", stack.embeddings_topic, emitted)

    assert stack.terminate("embedder") == 0
    rewind(stack, group, stack.input_topic, dict.fromkeys(inputs, 0))
    stack.start("embedder")
    caught_up(stack, group, stack.input_topic, inputs)
    again = ends(stack, stack.embeddings_topic)
    assert again == {p: 2 * o for p, o in emitted.items()}  # every record, emitted twice
    caught_up(stack, f"t{stack.name}-sink", stack.embeddings_topic, again)

    assert snapshot(stack, before) == before
    assert stack.indexed() == expected
