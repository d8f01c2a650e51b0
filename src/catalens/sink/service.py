"""The sink service: a consumer-group member that writes one model's embedding records
into that model's generation of the index.

Per batch (at most ``batch_size`` records and ``batch_bytes`` bytes of them, or one larger
record alone): decode ▸ skip other models' records ▸ collapse per product ▸ read stored
versions ▸ plan ▸ write ▸ mark the batch's offsets done. Offsets are only marked after
Milvus returned, so a crash anywhere replays the batch, and replaying changes nothing
(catalens.sink.plan). While Milvus is away the batch is retried with capped backoff and
consumption is paused; nothing is skipped. Vectors that claim this sink's model but not
its generation's dimension or weights stop the sink (unready, nothing committed past
them): an operator error, never a silent mix and never a dead-lettered stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from pydantic import ValidationError

from catalens.errors import OperatorError, Stopped, TransientError
from catalens.kafka import DeliveryError, Record, RecordPublisher, SourceFactory
from catalens.kafka.records import Partition
from catalens.retry import Backoff, retry_transient
from catalens.schemas import DeadLetter, EmbeddingRecord, Op, Reason
from catalens.schemas.embedding import INPUT_OFFSET_HEADER, MODEL_HEADER
from catalens.settings import SinkSettings, default
from catalens.sink.freshness import applied_ages
from catalens.sink.plan import Item, Plan, attempted, collapse, plan_writes
from catalens.store import IndexWriter
from catalens.store.values import ModelIdentity
from catalens.worker.metrics import SinkMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SinkConfig:
    model: str
    dlq_topic: str
    # Defaults as the settings have them (catalens.settings.SinkSettings says why).
    batch_size: int = default(SinkSettings, "sink_batch_size")
    batch_bytes: int = default(SinkSettings, "sink_batch_bytes")
    batch_wait_s: float = default(SinkSettings, "sink_batch_wait_ms") / 1000
    backoff: Backoff = field(default_factory=Backoff)


class SinkService:
    def __init__(
        self,
        config: SinkConfig,
        *,
        make_source: SourceFactory,
        publisher: RecordPublisher,
        store: IndexWriter,
        stop: threading.Event,
        metrics: SinkMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else SinkMetrics()
        # The source calls revoked() from inside a poll when the group takes partitions.
        self._source = make_source(self.revoked)
        self._publisher = publisher
        self._store = store
        self._stop = stop
        self.ready = threading.Event()
        self.metrics.follow(ready=self.ready.is_set, paused=lambda: self._source.paused)
        self.healthy_at = time.monotonic()
        self.written = 0
        self.stale = 0
        self.deleted = 0
        self.dead_lettered = 0
        self.other_model = 0
        self.unpositioned = 0
        # Seconds spent reading the stored state of batches and writing their plans: how
        # much of the sink's time Milvus takes (logged when the sink stops).
        self.read_s = 0.0
        self.write_s = 0.0
        self._lost: set[Partition] = set()
        self._held: list[Record] = []
        self.halted: str | None = None  # why the sink stopped consuming, if it did
        self._identity: ModelIdentity | None = None

    def run(self) -> None:
        """Serve until ``stop`` is set; the batch in hand is finished, or left uncommitted
        when the stop comes while Milvus is away (the next owner replays it)."""
        try:
            self._identity = self._retry(self._store.open, "open the index")
            self.ready.set()
            log.info("sink serving (model %s)", self.config.model)
            try:
                self._serve()
            except OperatorError as error:
                self._halt(str(error))
        except Stopped as stopped:
            log.info("stopped while waiting for: %s", stopped)
        finally:
            self._source.close()
            log.info(
                "sink stopped: written %d, deleted %d, stale %d; %.1f s reading stored "
                "versions, %.1f s writing",
                self.written,
                self.deleted,
                self.stale,
                self.read_s,
                self.write_s,
            )

    def _serve(self) -> None:
        last_report = time.monotonic()
        while not self._stop.is_set():
            records = self._next_batch()
            self.healthy_at = time.monotonic()
            if records:
                self.process(records)
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                log.info(
                    "written %d, deleted %d, stale %d, dead-lettered %d, skipped %d of other "
                    "models and %d without an input position",
                    self.written,
                    self.deleted,
                    self.stale,
                    self.dead_lettered,
                    self.other_model,
                    self.unpositioned,
                )

    def _next_batch(self) -> list[Record]:
        """Records held back come first, in the order they came (fetched while a write
        waited, or the one that would have taken the last batch past its bytes), topped up
        from the source within both bounds; what goes past them is held for the next."""
        count, nbytes = self.config.batch_size, self.config.batch_bytes
        batch, self._held = _within(self._held, count, nbytes)
        if self._held:
            return batch
        room = nbytes - sum(record.nbytes for record in batch)
        if len(batch) >= count or (batch and room <= 0):
            return batch
        # What was lost before is out of the held records already (revoked() filtered
        # them); a partition assigned back since brings records that are its own again.
        self._lost = set()
        polled = self._source.poll(
            count - len(batch),
            0 if batch else 0.5,
            fill_s=0 if batch else self.config.batch_wait_s,
            max_bytes=max(1, room),
        )
        more, self._held = _within(polled, count - len(batch), room, alone=not batch)
        # The poll may have revoked partitions (revoked() runs inside it): what this batch
        # took from the held records before it belongs to their next owner now.
        return [record for record in batch if record.tp not in self._lost] + more

    def _halt(self, reason: str) -> None:
        """Stop consuming and stay unready until stopped, staying in the group so the
        partitions do not wander to a replica that would hit the same wall."""
        self.halted = reason
        self.ready.clear()
        self._source.pause()
        log.error("sink halted, nothing is committed past this point: %s", reason)
        while not self._stop.is_set():
            self._sleep_polling(60)
            if not self._stop.is_set():
                log.error("sink still halted: %s", reason)

    def revoked(self, partitions: list[Partition]) -> None:
        """The group took ``partitions`` away (called from inside a poll). Their records in
        the batch in hand belong to the next owner now: a retry must not write them over
        what that owner writes. Records held back for them are dropped for the same reason."""
        self._lost.update(partitions)
        self._held = [record for record in self._held if record.tp not in self._lost]

    def process(self, records: list[Record]) -> None:
        """Apply one batch to Milvus, then mark its offsets done."""
        self._lost = set()
        items: list[tuple[Record, Item]] = []
        letters: list[tuple[Record, DeadLetter]] = []
        identities: set[ModelIdentity] = set()
        for record in records:
            decoded = self._decode(record)
            if decoded is Skip.OTHER_MODEL:
                self.other_model += 1
            elif decoded is Skip.UNPOSITIONED:
                self.unpositioned += 1
            elif isinstance(decoded, DeadLetter):
                letters.append((record, decoded))
            elif not isinstance(decoded, Skip):
                items.append((record, decoded))
                if (identity := _identity(decoded[1])) is not None:
                    identities.add(identity)
        if identities:
            self._retry(lambda: self._check_generation(identities), "open the generation")
        self.metrics.in_flight.set(len(records))
        self.metrics.in_flight_bytes.set(sum(record.nbytes for record in records))
        self.metrics.batch_size.observe(len(records))
        self.metrics.count("skipped", len(records) - len(items) - len(letters))
        if items:
            attempts: list[Plan] = []
            self._retry(lambda: self._apply(items, attempts), "write batch")
            # Records of partitions lost meanwhile are their new owner's to count.
            kept = [(record, item) for record, item in items if record.tp not in self._lost]
            applied = attempted(attempts, {product_id for _r, (product_id, _e, _p) in kept})
            self._observe(kept, applied, time.time())
        if letters:
            unacknowledged = list(letters)
            self._retry(lambda: self._deliver(unacknowledged), "dead-letter delivery")
            self.dead_lettered += len(letters)
            for _record, letter in letters:
                self.metrics.dead_lettered(letter.reason.value)
        offsets: dict[tuple[str, int], int] = {}
        for record in records:
            offsets[record.tp] = max(offsets.get(record.tp, 0), record.offset + 1)
        self._source.mark_done(offsets)  # skips partitions no longer owned
        self.metrics.in_flight.set(0)
        self.metrics.in_flight_bytes.set(0)

    def _observe(self, items: list[tuple[Record, Item]], plan: Plan, now_s: float) -> None:
        """Count what a batch's write did, and how old its applied changes were."""
        written, deleted = len(plan.written()), len(plan.deleted())
        # Collapsed away, older than the stored rows, or a delete of nothing stored.
        stale = max(0, len(items) - written - deleted)
        self.metrics.count("written", written)
        self.metrics.count("deleted", deleted)
        self.metrics.count("stale", stale)
        self.written += written
        self.deleted += deleted
        self.stale += stale
        ages = applied_ages(items, plan, now_s)
        for age in ages.freshness:
            self.metrics.freshness.observe(age)
        for age in ages.pipeline:
            self.metrics.pipeline_latency.observe(age)
        if log.isEnabledFor(logging.DEBUG):
            for record, (product_id, _embedding, position) in items:
                log.debug(
                    "%s@%d: product %s (input position %d) in a batch written",
                    record.tp,
                    record.offset,
                    product_id,
                    position,
                    extra={
                        "product_id": product_id,
                        "partition": record.partition,
                        "offset": record.offset,
                    },
                )

    def _apply(self, items: list[tuple[Record, Item]], attempts: list[Plan]) -> None:
        """One attempt: plan the records of partitions still owned against the stored
        state, and write. A partition lost while an earlier attempt waited is left to its
        new owner, which reads it again from the committed offset."""
        changes = collapse(item for record, item in items if record.tp not in self._lost)
        started = time.perf_counter()
        stored = self._store.stored(list(changes))
        read = time.perf_counter()
        self.read_s += read - started
        self.metrics.read_seconds.observe(read - started)
        plan = plan_writes(changes, stored)
        attempts.append(plan)  # before writing: a write may land though its answer is lost
        written = time.perf_counter()
        self._store.apply(plan)
        write_s = time.perf_counter() - written
        self.write_s += write_s
        self.metrics.write_seconds.observe(write_s)

    def _check_generation(self, identities: set[ModelIdentity]) -> None:
        """Make the generation for the first vectors; refuse vectors that cannot join it."""
        if self._identity is None:
            self._identity = self._store.open()
        if self._identity is None:
            first = min(identities, key=lambda i: (i.dim, i.fingerprint))
            self._store.create(first)
            self._identity = first
        for identity in identities:
            if (why := self._identity.differs(identity)) is not None:
                raise OperatorError(
                    f"vectors of {identity.name!r} cannot join its generation: {why}; "
                    "give the other checkpoint a model name of its own, or drop this "
                    "generation (catalens index drop) to rebuild it"
                )

    def _decode(self, record: Record) -> Item | DeadLetter | Skip:
        """The record as (product id, embedding or None for a tombstone, input position),
        or why this sink skips it: another model's record, or one written by an older
        embedder, without the input position that orders it (the embedder of this
        release re-reads its input in a group of its own and emits it again, positioned)."""
        model = next((v for k, v in record.headers if k == MODEL_HEADER), None)
        if model is not None and model.decode("utf-8", "replace") != self.config.model:
            return Skip.OTHER_MODEL
        key = record.key.decode("utf-8", "replace") if record.key else None
        if record.value is None:
            if not key:
                return self._letter(record, "tombstone without a key")
            raw = next((v for k, v in record.headers if k == INPUT_OFFSET_HEADER), None)
            if raw is None:
                return Skip.UNPOSITIONED
            position = _offset(raw)
            if position is None:
                return self._letter(record, f"bad {INPUT_OFFSET_HEADER} header {raw!r}")
            return key, None, position
        try:
            embedding = EmbeddingRecord.model_validate_json(record.value)
        except ValidationError as exc:
            return self._letter(record, f"bad embedding record: {exc}")
        if embedding.model != self.config.model:
            return Skip.OTHER_MODEL
        if embedding.input_offset is None or (
            embedding.op is Op.UPSERT and embedding.model_fingerprint is None
        ):
            return Skip.UNPOSITIONED
        return embedding.product_id, embedding, embedding.input_offset

    @staticmethod
    def _letter(record: Record, message: str) -> DeadLetter:
        log.warning("dead-lettering %s@%d: %s", record.tp, record.offset, message)
        return DeadLetter.of(
            reason=Reason.SCHEMA_VIOLATION,
            message=message[:2000],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
        )

    def _deliver(self, letters: list[tuple[Record, DeadLetter]]) -> None:
        """Produce dead letters and wait for their acknowledgement; the ones not
        acknowledged stay in ``letters`` for the next attempt."""
        acknowledged: set[int] = set()
        refused: set[int] = set()  # as too large: sent again without the record's value

        def on_delivery(index: int, shrinkable: bool) -> Callable[[DeliveryError | None], None]:
            # ``shrinkable`` is read now: a late answer to an earlier attempt may come
            # after ``letters`` has shrunk.
            def done(error: DeliveryError | None) -> None:
                if error is None:
                    acknowledged.add(index)
                elif error.fatal:
                    raise error
                elif error.too_large and shrinkable:
                    refused.add(index)

            return done

        for index, (record, letter) in enumerate(letters):
            self._publisher.produce(
                self.config.dlq_topic,
                record.key,
                letter.model_dump_json().encode(),
                headers=[("catalens-reason", letter.reason.value.encode())],
                on_delivery=on_delivery(index, letter.value is not None),
            )
        self._publisher.flush(10)
        if refused:
            log.warning(
                "%d dead letters refused as too large; sent again without their records",
                len(refused),
            )
        letters[:] = [
            (record, letter.without_value() if i in refused else letter)
            for i, (record, letter) in enumerate(letters)
            if i not in acknowledged
        ]
        if letters:
            raise TransientError(f"{len(letters)} dead letters not acknowledged")

    def _retry(self, action: Callable[[], T], what: str) -> T:
        return retry_transient(
            action,
            what=what,
            backoff=self.config.backoff,
            stop=self._stop,
            on_wait=self._waiting,
            sleep=self._sleep_polling,
        )

    def _waiting(self, waiting: bool) -> None:
        if waiting:
            self.ready.clear()
            self._source.pause()
        else:
            self.ready.set()
            self._source.resume()

    def _sleep_polling(self, seconds: float) -> None:
        # Keep polling, paused, to stay a member of the group. A partition assigned while
        # paused can still hand over what it fetched before the pause took: those records
        # are held, uncommitted, and processed next (a crash redelivers them).
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._held += self._source.poll(1, min(0.5, max(0.0, deadline - time.monotonic())))
            self.healthy_at = time.monotonic()


class Skip(Enum):
    """Records a sink passes over (counted, never dead-lettered, offsets committed)."""

    OTHER_MODEL = "other_model"
    UNPOSITIONED = "unpositioned"


def _within(
    records: list[Record], count: int, nbytes: int, *, alone: bool = True
) -> tuple[list[Record], list[Record]]:
    """The longest start of ``records`` within ``count`` records and ``nbytes`` bytes, and
    the rest; with ``alone``, a first record larger than ``nbytes`` is a start of its own."""
    end = total = 0
    for record in records[:count]:
        total += record.nbytes
        if total > nbytes and (end or not alone):
            break
        end += 1
        if total >= nbytes:
            break
    return records[:end], records[end:]


def _identity(record: EmbeddingRecord | None) -> ModelIdentity | None:
    """The identity of an upsert's vector (decoded upserts always name their weights)."""
    if record is None or record.op is not Op.UPSERT or record.model_fingerprint is None:
        return None
    return ModelIdentity(record.model, record.dim, record.model_fingerprint)


def _offset(raw: bytes) -> int | None:
    """A tombstone's input position from its header; None when it is not one."""
    try:
        position = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return position if position >= 0 else None
