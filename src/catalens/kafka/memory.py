"""An in-memory broker behind the protocols of :mod:`catalens.kafka`.

:class:`MemoryBroker` holds topics of partitioned logs, committed offsets per consumer
group and each group's members; :class:`MemorySource` and :class:`MemoryPublisher` are
its clients and behave as :class:`~catalens.kafka.client.Source` and ``Publisher`` do
(``tests/contract`` runs the same cases against both). They let the service loops run
without a broker: in tests of the loops' own logic, and in benchmarks that separate
Kafka's cost from the pipeline's.

What it guarantees, as Kafka does:

- A record keeps its key, value (``None`` is a tombstone), headers and timestamp. Records
  with the same non-empty key go to the same partition (CRC-32 of the key, as
  librdkafka's default partitioner); each partition is read in offset order.
- Every produced record is acknowledged exactly once, from the publisher's ``poll`` or
  ``flush``, with ``None``; while ``hold`` is set the broker takes records (consumers see
  them) but acknowledges none.
- A group without committed offsets starts at the earliest offset. Only offsets marked
  done for partitions the member owns are stored; stored offsets are committed at the
  next ``poll`` (librdkafka's background auto-commit, with no interval), by
  ``commit_now``, when partitions are revoked, and on ``close``.
- Partitions are shared out among a group's members, stickily: when a member joins or
  leaves, only the partitions that must move do. A partition moves only after its
  losing member has run ``on_revoke`` inside its own ``poll`` (or ``close``) and
  committed what it marked done by then; the new owner resumes from the committed
  offset, so whatever was not marked is delivered again.

What it does not model: networks, latency and failures other than ``hold``; sessions
(a member that stops polling keeps its partitions until it closes); retention,
compaction, transactions, high watermarks and lag; more than one partition count per
topic over its lifetime.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from catalens.kafka import DeliveryError, Headers, Partition, Record

__all__ = ["MemoryBroker", "MemoryPublisher", "MemorySource"]

OnDelivery = Callable[[DeliveryError | None], None]


@dataclass(eq=False)
class _Group:
    members: list[MemorySource] = field(default_factory=list)
    # Where each partition is heading; it gets there once its previous owner revoked it.
    owner: dict[Partition, MemorySource] = field(default_factory=dict)
    committed: dict[Partition, int] = field(default_factory=dict)


class MemoryBroker:
    """Topics, committed offsets and consumer groups, shared by its sources and publishers.

    Topics that do not exist are created with ``partitions`` partitions when first written
    to; create them first with :meth:`create_topic` for another count.
    """

    def __init__(self, *, partitions: int = 1) -> None:
        if partitions < 1:
            raise ValueError("a topic needs at least one partition")
        self.default_partitions = partitions
        # One lock for everything: the broker is small, and rebalancing touches every
        # member of a group at once.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._logs: dict[str, list[list[Record]]] = {}
        self._unkeyed: dict[str, int] = {}
        self._groups: dict[str, _Group] = {}

    # -- topics and records ---------------------------------------------------------------

    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create ``topic`` unless it exists (idempotent, like ``ensure_topics``)."""
        with self._lock:
            self._create(topic, partitions or self.default_partitions)

    def _create(self, topic: str, partitions: int) -> list[list[Record]]:
        logs = self._logs.get(topic)
        if logs is None:
            logs = self._logs[topic] = [[] for _ in range(partitions)]
            for group in self._groups.values():
                self._rebalance(group)
        return logs

    def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Record:
        """Write one record, acknowledged at once; ``partition`` defaults to the key's."""
        with self._changed:
            logs = self._create(topic, self.default_partitions)
            if partition is None:
                if key:
                    partition = zlib.crc32(key) % len(logs)
                else:  # librdkafka spreads records without a key; round robin is simplest
                    partition = self._unkeyed.get(topic, 0) % len(logs)
                    self._unkeyed[topic] = partition + 1
            log = logs[partition]
            record = Record(
                topic=topic,
                partition=partition,
                offset=len(log),
                key=key,
                value=value,
                headers=list(headers or []),
                timestamp_ms=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            )
            log.append(record)
            self._changed.notify_all()
            return record

    def records(self, topic: str) -> list[Record]:
        """Every record of ``topic``, partition by partition, each in offset order."""
        with self._lock:
            return [record for log in self._logs.get(topic, []) for record in log]

    def wait_for(self, topic: str, count: int, timeout_s: float) -> bool:
        """Wait until ``topic`` holds at least ``count`` records; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while sum(len(log) for log in self._logs.get(topic, [])) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def committed(self, group_id: str) -> dict[Partition, int]:
        """The group's committed offsets: the next offset to read, per partition."""
        with self._lock:
            group = self._groups.get(group_id)
            return dict(group.committed) if group else {}

    # -- groups (called by MemorySource, under no lock) ------------------------------------

    def _join(self, member: MemorySource) -> None:
        with self._changed:
            group = self._groups.setdefault(member.group_id, _Group())
            group.members.append(member)
            self._rebalance(group)

    def _leave(self, member: MemorySource) -> None:
        with self._changed:
            group = self._groups[member.group_id]
            group.members.remove(member)
            member._owned.clear()
            self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        """Share each subscribed topic's partitions out evenly, moving as few as possible.

        Called with the lock held; members act on the new plan in their next poll.
        """
        previous, group.owner = group.owner, {}
        for topic in sorted({t for m in group.members for t in m.topics}):
            members = [m for m in group.members if topic in m.topics]
            if topic not in self._logs or not members:
                continue
            partitions = [(topic, p) for p in range(len(self._logs[topic]))]
            base, extra = divmod(len(partitions), len(members))
            room = {m: base + (i < extra) for i, m in enumerate(members)}
            unplaced = []
            for tp in partitions:
                keeper = previous.get(tp)
                if keeper is not None and room.get(keeper, 0) > 0:
                    group.owner[tp] = keeper
                    room[keeper] -= 1
                else:
                    unplaced.append(tp)
            for member in members:
                for _ in range(room[member]):
                    group.owner[unplaced.pop(0)] = member
        self._changed.notify_all()


class MemorySource:
    """A member of consumer group ``group_id`` of a :class:`MemoryBroker`.

    Implements :class:`~catalens.kafka.RecordSource` with the guarantees of
    :class:`~catalens.kafka.client.Source`: records come from the group's committed
    offsets (the earliest when none), only marked offsets are committed, and
    ``on_revoke`` runs inside :meth:`poll` (and :meth:`close`) before partitions move.
    """

    def __init__(
        self,
        broker: MemoryBroker,
        *,
        group_id: str,
        topics: list[str],
        on_revoke: Callable[[list[Partition]], None] | None = None,
    ) -> None:
        self.group_id = group_id
        self.topics = tuple(topics)
        self._broker = broker
        self._on_revoke = on_revoke
        # Guarded by the broker's lock.
        self._owned: set[Partition] = set()
        self._position: dict[Partition, int] = {}
        self._stored: dict[Partition, int] = {}
        self._paused = False
        self._closed = False
        self._turn = 0
        broker._join(self)

    @property
    def paused(self) -> bool:
        return self._paused

    def poll(
        self,
        max_records: int,
        timeout_s: float,
        *,
        fill_s: float = 0.0,
        max_bytes: int | None = None,
    ) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout_s`` for the first and
        then up to ``fill_s`` more for the rest of a full batch; with ``max_bytes``, the
        record that brings the bytes taken to it is the last."""
        if self._closed:
            raise RuntimeError("poll on a closed source")
        # The real client commits stored offsets in the background every second; here each
        # poll does, so tests need not wait for an interval to see what was marked.
        self.commit_now()
        records: list[Record] = []
        room = max_bytes
        deadline = time.monotonic() + timeout_s
        while True:
            self._settle()
            with self._broker._changed:
                had_any = bool(records)
                taken = self._take(max_records - len(records), room)
                records += taken
                if room is not None:
                    room -= sum(record.nbytes for record in taken)
                if len(records) >= max_records or (records and room is not None and room <= 0):
                    return records
                if records and not had_any:
                    deadline = time.monotonic() + fill_s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return records
                if not self._unsettled():
                    self._broker._changed.wait(remaining)

    def _take(self, count: int, room: int | None) -> list[Record]:
        """The next records of owned partitions, starting at a different one each time so
        that a busy partition cannot starve the others; with ``room``, up to the record
        that brings their bytes to it. Called with the lock held."""
        if self._paused or not self._owned or count <= 0:
            return []
        owned = sorted(self._owned)
        self._turn = (self._turn + 1) % len(owned)
        taken: list[Record] = []
        for topic, partition in owned[self._turn :] + owned[: self._turn]:
            position = self._position[(topic, partition)]
            chunk = self._broker._logs[topic][partition][position : position + count - len(taken)]
            if room is not None:
                chunk = _within(chunk, room)
                room -= sum(record.nbytes for record in chunk)
            self._position[(topic, partition)] = position + len(chunk)
            taken += chunk
            if len(taken) >= count or (room is not None and room <= 0):
                break
        return taken

    def give_back(self, record: Record) -> bool:
        """The partition's next record is ``record`` again (ignored for a partition this
        member no longer owns: its next owner reads from the committed offset)."""
        with self._broker._changed:
            if record.tp in self._owned:
                self._position[record.tp] = min(self._position[record.tp], record.offset)
            return True

    def _lost(self) -> list[Partition]:
        group = self._broker._groups[self.group_id]
        return sorted(tp for tp in self._owned if group.owner.get(tp) is not self)

    def _gained(self) -> list[Partition]:
        """Partitions planned for this member that their previous owner has let go."""
        group = self._broker._groups[self.group_id]
        held = set().union(*(m._owned for m in group.members))
        return [tp for tp, m in group.owner.items() if m is self and tp not in held]

    def _unsettled(self) -> bool:
        return bool(self._lost() or self._gained())

    def _settle(self) -> None:
        """Carry out the group's plan: revoke lost partitions (the callback runs without the
        lock, so it may mark done and commit), then take up the gained ones."""
        with self._broker._lock:
            lost = self._lost()
        if lost:
            if self._on_revoke is not None:
                self._on_revoke(lost)
            self._release(lost)
        with self._broker._lock:
            committed = self._broker._groups[self.group_id].committed
            for tp in self._gained():
                self._owned.add(tp)
                self._position[tp] = committed.get(tp, 0)

    def _release(self, partitions: list[Partition]) -> None:
        with self._broker._changed:
            committed = self._broker._groups[self.group_id].committed
            for tp in partitions:
                if tp in self._stored:
                    committed[tp] = self._stored.pop(tp)
                self._owned.discard(tp)
                self._position.pop(tp, None)
            self._broker._changed.notify_all()

    def mark_done(self, offsets: Mapping[Partition, int]) -> None:
        """Record that everything before ``offsets[tp]`` is durable downstream.

        Partitions this member does not own are skipped: their owner re-reads them.
        """
        with self._broker._lock:
            for tp, offset in offsets.items():
                if tp in self._owned:
                    self._stored[tp] = offset

    def commit_now(self) -> None:
        """Commit the offsets marked done."""
        with self._broker._lock:
            self._broker._groups[self.group_id].committed.update(self._stored)

    def pause(self) -> None:
        """Stop handing out records while staying in the group."""
        self._paused = True

    def resume(self) -> None:
        with self._broker._changed:
            self._paused = False
            self._broker._changed.notify_all()

    def close(self) -> None:
        """Revoke every partition (``on_revoke`` runs), commit what was marked, leave."""
        if self._closed:
            return
        with self._broker._lock:
            owned = sorted(self._owned)
        if owned and self._on_revoke is not None:
            self._on_revoke(owned)
        self._release(owned)
        self._closed = True
        self._broker._leave(self)


def _within(records: list[Record], room: int) -> list[Record]:
    """The first of ``records`` up to the one that brings their bytes to ``room``."""
    for end, record in enumerate(records, 1):
        room -= record.nbytes
        if room <= 0:
            return records[:end]
    return records


class MemoryPublisher:
    """Implements :class:`~catalens.kafka.RecordPublisher` over a :class:`MemoryBroker`.

    ``produce`` writes the record at once; its acknowledgement (``None``) is handed to
    ``on_delivery`` exactly once, from :meth:`poll` or :meth:`flush`. While :attr:`hold`
    is set the broker "does not answer": records are written, nothing is acknowledged.
    A record of more than ``max_record_bytes`` (its key, value and headers; the Kafka
    client's ``message.max.bytes`` also counts a few dozen bytes of framing) is not
    written: its answer is a :class:`DeliveryError` ``too_large``, as the Kafka client's
    and a broker's are.
    """

    def __init__(
        self, broker: MemoryBroker, *, hold: bool = False, max_record_bytes: int | None = None
    ) -> None:
        self._broker = broker
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Each record's callback, and the error it is answered with (None: acknowledged).
        self._unacknowledged: deque[tuple[OnDelivery | None, DeliveryError | None]] = deque()
        self._hold = hold
        self._max_record_bytes = max_record_bytes

    @property
    def hold(self) -> bool:
        return self._hold

    @hold.setter
    def hold(self, value: bool) -> None:
        with self._changed:
            self._hold = value
            self._changed.notify_all()

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Headers | None = None,
        on_delivery: OnDelivery | None = None,
    ) -> None:
        size = len(key or b"") + len(value or b"") + sum(len(n) + len(v) for n, v in headers or ())
        if self._max_record_bytes is not None and size > self._max_record_bytes:
            answer: DeliveryError | None = DeliveryError(
                f"record of {size} bytes, larger than {self._max_record_bytes}",
                fatal=False,
                too_large=True,
            )
        else:
            self._broker.append(topic, key, value, headers)
            answer = None
        with self._changed:
            self._unacknowledged.append((on_delivery, answer))
            self._changed.notify_all()

    def poll(self, timeout_s: float = 0) -> int:
        """Serve acknowledgements, waiting up to ``timeout_s`` for the first; returns how
        many were served."""
        wait_until = time.monotonic() + timeout_s
        served = 0
        while True:
            answered, (callback, error) = self._next_answer(wait_until)
            if not answered:
                return served
            served += 1
            wait_until = 0.0  # only the first is waited for
            # One at a time, outside the lock: a callback may produce, or raise without
            # losing the acknowledgements behind it.
            if callback is not None:
                callback(error)

    def _next_answer(
        self, wait_until: float
    ) -> tuple[bool, tuple[OnDelivery | None, DeliveryError | None]]:
        with self._changed:
            while self._hold or not self._unacknowledged:
                remaining = wait_until - time.monotonic()
                if remaining <= 0:
                    return False, (None, None)
                self._changed.wait(remaining)
            return True, self._unacknowledged.popleft()

    def flush(self, timeout_s: float) -> int:
        """Serve every acknowledgement, waiting up to ``timeout_s`` while held; returns how
        many records are still unacknowledged."""
        deadline = time.monotonic() + timeout_s
        while self.pending() and self.poll(max(0.0, deadline - time.monotonic())):
            pass
        return self.pending()

    def pending(self) -> int:
        with self._lock:
            return len(self._unacknowledged)
