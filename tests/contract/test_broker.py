"""What the roles rely on from the broker seam, checked against the in-memory broker and
against the real adapter on Tansu alike.

No test asserts on watermarks (Tansu's are wrong) or on which partitions a rebalance
moves (assignors differ); each uses fresh topic and group names.
"""

from __future__ import annotations

import functools
import threading
import time

from catalens.kafka import DeliveryError, Partition, Record, RecordSource
from tests.contract.brokers import Broker, Produced, collect, contents, fresh, publish, quiet


def joined(kafka: Broker, topic: str, group_id: str) -> RecordSource:
    """A member of ``group_id`` that has received the topic's first record, ``first``."""
    source = kafka.source(group_id, [topic])
    publish(kafka.publisher(), topic, [(b"k", b"first", [])])
    got = collect(source, 1, kafka.join_s)
    assert [r.value for r in got] == [b"first"], "never joined the group"
    return source


def test_key_value_and_headers_arrive_as_produced(kafka: Broker) -> None:
    topic = kafka.topic()
    headers = [("trace", b"1"), ("trace", b"2"), ("kind", b"\x00\xff")]
    before_ms = int(time.time() * 1000)
    publish(kafka.publisher(), topic, [(b"p1", b"value", headers), (None, b"keyless", [])])
    got = collect(kafka.source(fresh("g"), [topic]), 2, kafka.join_s)
    assert [(r.topic, r.key, r.value, r.headers) for r in got] == [
        (topic, b"p1", b"value", headers),
        (topic, None, b"keyless", []),
    ]
    assert [r.offset for r in got] == [got[0].offset, got[0].offset + 1]
    # The producer's create time.
    assert all(before_ms - 5000 <= r.timestamp_ms <= time.time() * 1000 + 5000 for r in got)


def test_a_tombstone_keeps_its_key_and_headers(kafka: Broker) -> None:
    topic = kafka.topic()
    publish(kafka.publisher(), topic, [(b"p1", None, [("reason", b"deleted")])])
    got = collect(kafka.source(fresh("g"), [topic]), 1, kafka.join_s)
    assert [(r.key, r.value, r.headers) for r in got] == [(b"p1", None, [("reason", b"deleted")])]


def test_records_of_one_key_share_a_partition_and_arrive_in_the_order_produced(
    kafka: Broker,
) -> None:
    topic = kafka.topic(partitions=3)
    keys = [b"a", b"b", b"c", b"d", b"e"]
    produced: list[Produced] = [(key, b"%s-%d" % (key, i), []) for i in range(10) for key in keys]
    publish(kafka.publisher(), topic, produced)
    got = collect(kafka.source(fresh("g"), [topic]), len(produced), kafka.join_s)
    assert len(got) == len(produced)
    for key in keys:
        of_key = [r for r in got if r.key == key]
        assert len({r.partition for r in of_key}) == 1
        assert [r.value for r in of_key] == [b"%s-%d" % (key, i) for i in range(10)]


def test_each_delivery_callback_runs_once_with_none_from_poll_or_flush(kafka: Broker) -> None:
    topic = kafka.topic()
    publisher = kafka.publisher()
    outcomes: list[tuple[int, DeliveryError | None]] = []

    def delivered(i: int, error: DeliveryError | None) -> None:
        outcomes.append((i, error))

    for i in range(5):
        publisher.produce(topic, b"k", b"%d" % i, on_delivery=functools.partial(delivered, i))
    assert outcomes == []  # never from produce itself
    assert publisher.flush(10) == 0
    assert publisher.pending() == 0
    assert publisher.poll(0.2) == 0
    assert sorted(outcomes) == [(i, None) for i in range(5)]


def test_a_record_too_large_is_answered_too_large_from_poll_and_the_rest_is_delivered(
    kafka: Broker,
) -> None:
    """A record past the publisher's limit is not written; its callback (never produce
    itself) says too_large, so that a role can send a smaller one instead; the records
    around it are delivered as usual."""
    topic = kafka.topic()
    publisher = kafka.publisher(max_record_bytes=10_000)
    outcomes: dict[int, DeliveryError | None] = {}

    def delivered(i: int, error: DeliveryError | None) -> None:
        assert i not in outcomes
        outcomes[i] = error

    for i, size in enumerate([100, 20_000, 100]):
        publisher.produce(
            topic, b"k", b"%d" % i + b"." * size, on_delivery=functools.partial(delivered, i)
        )
    assert outcomes == {}  # never from produce itself
    assert publisher.flush(10) == 0
    assert publisher.pending() == 0
    assert outcomes[0] is None and outcomes[2] is None
    refused = outcomes[1]
    assert refused is not None and refused.too_large and not refused.fatal

    source = kafka.source(fresh("g"), [topic])
    got = collect(source, 2, kafka.join_s) + quiet([source], kafka.quiet_s)
    assert [(r.value or b"")[:1] for r in got] == [b"0", b"2"]


def test_a_new_member_resumes_after_what_its_group_marked_done_and_gets_the_rest_again(
    kafka: Broker,
) -> None:
    topic, group = kafka.topic(partitions=2), fresh("g")
    publish(kafka.publisher(), topic, [(b"k%d" % i, b"%d" % i, []) for i in range(20)])
    first = kafka.source(group, [topic])
    got = collect(first, 20, kafka.join_s)
    assert len(got) == 20
    # Three records of each partition are done; everything after them is not.
    start = {r.tp: min(s.offset for s in got if s.tp == r.tp) for r in got}
    first.mark_done({tp: offset + 3 for tp, offset in start.items()})
    first.close()

    second = kafka.source(group, [topic])
    unmarked = [r for r in got if r.offset >= start[r.tp] + 3]
    again = collect(second, len(unmarked), kafka.join_s)
    again += quiet([second], kafka.quiet_s)
    assert contents(again) == contents(unmarked)


def test_a_new_group_reads_the_topic_from_the_start(kafka: Broker) -> None:
    topic = kafka.topic()
    publish(kafka.publisher(), topic, [(b"k", b"%d" % i, []) for i in range(5)])
    old = kafka.source(fresh("g"), [topic])
    got = collect(old, 5, kafka.join_s)
    old.mark_done({got[-1].tp: got[-1].offset + 1})
    old.close()

    fresh_group = collect(kafka.source(fresh("g"), [topic]), 5, kafka.join_s)
    assert [r.value for r in fresh_group] == [b"%d" % i for i in range(5)]
    assert [r.offset for r in fresh_group] == [r.offset for r in got]


def test_a_paused_member_gets_nothing_until_it_resumes_and_then_misses_nothing(
    kafka: Broker,
) -> None:
    topic = kafka.topic()
    source = joined(kafka, topic, fresh("g"))
    source.pause()
    assert source.paused
    publish(kafka.publisher(), topic, [(b"k", b"%d" % i, []) for i in range(5)])
    assert quiet([source], kafka.quiet_s) == []
    source.resume()
    assert not source.paused
    got = collect(source, 5, kafka.join_s)
    assert [r.value for r in got] == [b"%d" % i for i in range(5)]


def test_a_joining_member_takes_over_half_after_on_revoke_and_resumes_where_marks_end(
    kafka: Broker,
) -> None:
    topic, group = kafka.topic(partitions=4), fresh("g")
    publish(kafka.publisher(), topic, [(b"k%d" % i, b"%d" % i, []) for i in range(40)])
    revoked: list[Partition] = []
    marks: dict[Partition, int] = {}

    def on_revoke(partitions: list[Partition]) -> None:
        # Still the owner here: one more record of each lost partition gets done.
        revoked.extend(partitions)
        first.mark_done({tp: marks[tp] + 1 for tp in partitions})

    first = kafka.source(group, [topic], on_revoke=on_revoke)
    got = collect(first, 40, kafka.join_s)
    assert len(got) == 40
    start = {r.tp: min(s.offset for s in got if s.tp == r.tp) for r in got}
    assert len(start) == 4, "every partition holds records"
    marks.update({tp: offset + 2 for tp, offset in start.items()})
    first.mark_done(marks)  # not committed explicitly: the revocation must do it

    second = kafka.source(group, [topic])
    taken_over: list[Record] = []
    deadline = time.monotonic() + kafka.join_s
    while time.monotonic() < deadline:
        assert first.poll(100, 0.1) == []  # the first member has handed out everything
        taken_over += second.poll(100, 0.1)
        expected = [r for r in got if r.tp in revoked and r.offset >= marks[r.tp] + 1]
        if revoked and len(taken_over) >= len(expected):
            break
    taken_over += quiet([first, second], kafka.quiet_s)

    assert len(revoked) == 2 and len(set(revoked)) == 2  # half of the four
    assert contents(taken_over) == contents(expected)  # nothing lost, nothing skipped


def test_marking_a_partition_the_member_does_not_own_is_ignored(kafka: Broker) -> None:
    owned, other, group = kafka.topic(), kafka.topic(), fresh("g")
    publish(kafka.publisher(), other, [(b"k", b"%d" % i, []) for i in range(3)])
    member = joined(kafka, owned, group)
    member.mark_done({(other, 0): 3})
    member.commit_now()
    member.close()

    reader = kafka.source(group, [other])
    got = collect(reader, 3, kafka.join_s)
    assert [r.value for r in got] == [b"0", b"1", b"2"]


def test_close_revokes_every_partition_and_commits_what_on_revoke_marks(kafka: Broker) -> None:
    topic, group = kafka.topic(partitions=2), fresh("g")
    publish(kafka.publisher(), topic, [(b"k%d" % i, b"%d" % i, []) for i in range(10)])
    revoked: list[Partition] = []
    got: list[Record] = []

    def on_revoke(partitions: list[Partition]) -> None:
        revoked.extend(partitions)
        member.mark_done({r.tp: r.offset + 1 for r in got if r.tp in partitions})

    member = kafka.source(group, [topic], on_revoke=on_revoke)
    got = collect(member, 10, kafka.join_s)
    assert len(got) == 10
    member.close()
    assert sorted(revoked) == [(topic, 0), (topic, 1)]

    publish(kafka.publisher(), topic, [(b"k", b"after", [])])
    reader = kafka.source(group, [topic])
    after = collect(reader, 1, kafka.join_s) + quiet([reader], kafka.quiet_s)
    assert [r.value for r in after] == [b"after"]


def test_a_lone_record_is_handed_over_at_once_not_after_the_whole_timeout(
    kafka: Broker,
) -> None:
    topic = kafka.topic()
    source = joined(kafka, topic, fresh("g"))
    publish(kafka.publisher(), topic, [(b"k", b"lone", [])])
    time.sleep(0.5)  # fetched by now
    started = time.monotonic()
    got = source.poll(32, timeout_s=20)
    waited = time.monotonic() - started
    assert [r.value for r in got] == [b"lone"]
    # librdkafka's batch consume alone would have waited all 20 s for 31 more.
    assert waited < 5, waited


def test_fill_s_collects_records_that_arrive_while_the_batch_fills(kafka: Broker) -> None:
    topic = kafka.topic()
    source = joined(kafka, topic, fresh("g"))
    publisher = kafka.publisher()
    late = threading.Timer(0.5, publish, (publisher, topic, [(b"k", b"late", [])]))
    publish(publisher, topic, [(b"k", b"early", [])])
    late.start()
    got: list[Record] = []
    started = time.monotonic()
    while not got and time.monotonic() - started < 10:
        got = source.poll(2, timeout_s=1, fill_s=4)
    waited = time.monotonic() - started
    late.join()
    assert [r.value for r in got] == [b"early", b"late"]
    assert waited < 4, "a full batch is handed over without waiting out fill_s"


def test_a_poll_with_max_bytes_ends_with_the_record_that_reaches_it(kafka: Broker) -> None:
    """Each record holds 1 + 1000 bytes (key and value): 2,500 bytes are reached by the
    third, so a poll takes three, however many more are there; a record larger than the
    bound alone is still handed over, alone."""
    topic = kafka.topic()
    source = joined(kafka, topic, fresh("g"))
    publish(kafka.publisher(), topic, [(b"k", b"%d" % i * 1000, []) for i in range(1, 6)])
    first = source.poll(100, kafka.join_s, fill_s=kafka.join_s, max_bytes=2500)
    assert [r.value for r in first] == [b"%d" % i * 1000 for i in (1, 2, 3)]
    assert [r.nbytes for r in first] == [1001, 1001, 1001]
    assert [r.value for r in source.poll(100, kafka.join_s, max_bytes=10)] == [b"4" * 1000]
    rest = collect(source, 1, kafka.join_s) + quiet([source], kafka.quiet_s)
    assert [r.value for r in rest] == [b"5" * 1000]


def test_a_record_given_back_to_a_paused_member_comes_again_first_after_it_resumes(
    kafka: Broker,
) -> None:
    """What the embedder does with a record its byte budget has no room for: the record
    and everything after it on its partition come again, in order, nothing skipped."""
    topic = kafka.topic()
    source = joined(kafka, topic, fresh("g"))
    publish(kafka.publisher(), topic, [(b"k", b"%d" % i, []) for i in range(6)])
    taken = source.poll(3, kafka.join_s, fill_s=kafka.join_s)
    assert [r.value for r in taken] == [b"0", b"1", b"2"]
    assert source.give_back(taken[-1])
    source.pause()
    assert quiet([source], kafka.quiet_s) == []
    source.resume()
    again = collect(source, 4, kafka.join_s) + quiet([source], kafka.quiet_s)
    assert [r.value for r in again] == [b"2", b"3", b"4", b"5"]
    assert [r.offset for r in again] == [taken[-1].offset + i for i in range(4)]


def test_a_record_given_back_without_pausing_is_the_next_one_handed_out(kafka: Broker) -> None:
    topic = kafka.topic()
    source = joined(kafka, topic, fresh("g"))
    publish(kafka.publisher(), topic, [(b"k", b"%d" % i, []) for i in range(4)])
    taken = source.poll(2, kafka.join_s, fill_s=kafka.join_s)
    assert [r.value for r in taken] == [b"0", b"1"]
    assert source.give_back(taken[-1])
    again = collect(source, 3, kafka.join_s) + quiet([source], kafka.quiet_s)
    assert [r.value for r in again] == [b"1", b"2", b"3"]
