"""The embedder service: a consumer-group member wiring Kafka, image reading and CLIP.

Threads and what they own::

    main loop ── consume ─▶ decide ─▶ prepare pool (read + decode, I/O-bound, bounded)
        ▲                                   │
        │                                   ▼
        └── outcomes ◀── inference thread (adaptive batches ─▶ ClipEncoder)

An upsert's images are prepared one by one (side by side in the prepare pool) and batched
with every other image for the model; the event's one output is made when its last image
is done (``assembly.py``). An image with the bytes last embedded for it (or whose URL
answers 304 Not Modified) skips decoding and inference: its vector is reused
(``reuse.py``).

Only the main loop talks to Kafka. Every input record yields exactly one output (an
embedding record, a pass-through delete, or a dead letter); the input's offset becomes
committable when that output is acknowledged by the broker (at-least-once). Records of
one product are handled one at a time, in order, so a tombstone can never overtake an
earlier upsert of the same product.

Backpressure, in records and in bytes: past ``max_in_flight`` unfinished records, or when
the bytes held (``holdings.py``: records in flight and decoded images) leave no room for
the next record, the partitions are paused (the member stays in its group) until half
drain. A record taken from the source that the byte budget has no room for is given back
to it (its partition seeks back to it) and comes again after the pause, so what the
embedder holds never exceeds the budget; except that a record larger than the whole
budget is let in when nothing else is held, and embedded alone. A record larger than
``max_event_bytes`` is dead-lettered (``event_too_large``) unparsed, in its product's turn.

Dead-letter storm: when the storm guard (catalens.embedder.storm) trips, the embedder
stops for good: partitions paused, unready, and nothing finished from the tripping record
on is committed (outputs already in flight are still produced: at-least-once). It stays a
member of its group, so the partitions do not wander to a replica that would dead-letter
them; an operator fixes the cause and restarts it, and the uncommitted records are redone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from catalens.embedder.assembly import Abandoned, Assembly
from catalens.embedder.batcher import Batcher, Closed
from catalens.embedder.holdings import Holdings, weight
from catalens.embedder.offsets import OffsetTracker
from catalens.embedder.reuse import REUSED, ImageReuse, Known, Origin
from catalens.embedder.sources import ImageSource
from catalens.embedder.steps import (
    NeedsImages,
    Output,
    Topics,
    decide,
    too_large,
    within,
    without_event,
)
from catalens.embedder.storm import StormGuard, StormLimits
from catalens.errors import BadInput, Stopped
from catalens.images import (
    ImageLimits,
    Pixels,
    PreprocessSpec,
    preprocess,
    preprocess_with_thumbnail,
)
from catalens.kafka import (
    DeliveryError,
    Partition,
    Record,
    RecordPublisher,
    SourceFactory,
)
from catalens.schemas.embedding import Vector
from catalens.schemas.event import ProductImage
from catalens.settings import EmbedderSettings, default
from catalens.store.values import ModelIdentity
from catalens.worker.metrics import EmbedderMetrics

log = logging.getLogger(__name__)

Encode = Callable[[list[Pixels]], "list[Vector]"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """One decoded image waiting for the model."""

    assembly: Assembly
    image: ProductImage
    pixels: Pixels
    thumbnail: str | None
    origin: Origin


@dataclass(frozen=True)
class EmbedderConfig:
    topics: Topics
    model: ModelIdentity
    spec: PreprocessSpec
    limits: ImageLimits
    # Defaults as the settings have them (catalens.settings.EmbedderSettings says why).
    batch_size: int = default(EmbedderSettings, "batch_size")
    batch_wait_s: float = default(EmbedderSettings, "batch_wait_ms") / 1000
    fetch_concurrency: int = default(EmbedderSettings, "fetch_concurrency")
    # Decoding shares the cores with inference; on 2 cores 4 decoders did best (they
    # finish a burst sooner and keep the batches full; docs/embedding-speed.md). The
    # setting's default (0) picks twice the cores.
    decode_workers: int = 4
    max_in_flight: int = default(EmbedderSettings, "max_in_flight")
    max_in_flight_bytes: int = default(EmbedderSettings, "max_in_flight_bytes")
    max_event_bytes: int = default(EmbedderSettings, "max_event_bytes")
    reuse_cache_size: int = default(EmbedderSettings, "reuse_cache_size")
    shutdown_timeout_s: float = 30.0
    revoke_timeout_s: float = 10.0
    storm: StormLimits = field(default_factory=StormLimits)


# Batches of decoded images that may wait for the model (bounds the pixels in memory).
PREPARED_BATCHES = 4


class EmbedderService:
    def __init__(
        self,
        config: EmbedderConfig,
        *,
        make_source: SourceFactory,
        publisher: RecordPublisher,
        images: ImageSource,
        encode: Callable[[list[Pixels]], list[Vector]],
        stop: threading.Event,
        metrics: EmbedderMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else EmbedderMetrics()
        self._storm = StormGuard(config.storm)
        self._publisher = publisher
        self._images = images
        self._encode = encode
        self._stop = stop
        self._tracker = OffsetTracker()
        self._outcomes: queue.Queue[tuple[Record, Output] | Abandoned | BaseException] = (
            queue.Queue()
        )
        # Records behind an earlier one of their product, each with its output when it was
        # decided on arrival (an event too large to parse).
        self._waiting: dict[object, deque[tuple[Record, Output | None]]] = {}
        # Products whose record was abandoned: it, and their records queued behind it,
        # can no longer finish, so shutdown does not wait for them.
        self._abandoned: set[object] = set()
        self._preparing = 0
        self._preparing_lock = threading.Lock()
        # Set by _close: the prepare pool and the batcher are shut, and closing the source
        # revokes every partition (on_revoke runs inside it) after the drain had its time.
        self._closing = False
        self._decoding = threading.BoundedSemaphore(config.decode_workers)
        self._pool = ThreadPoolExecutor(config.fetch_concurrency, thread_name_prefix="prepare")
        # Four batches of decoded images keep the model busy; more records wait as their
        # events' bytes, not as pixels.
        capacity = min(config.max_in_flight, PREPARED_BATCHES * config.batch_size)
        self._batcher: Batcher[Prepared] = Batcher(
            config.batch_size,
            config.batch_wait_s,
            capacity=capacity,
            more_coming=lambda: self._preparing > 0,
        )
        # Every decoded image that can exist at once: queued, one in each prepare thread
        # (waiting for room in the queue), one batch in the model.
        decoded = capacity + config.fetch_concurrency + config.batch_size
        self.holdings = Holdings(config.max_in_flight_bytes, decoded * config.spec.pixel_bytes)
        if self.holdings.record_share < config.max_in_flight_bytes // 2:
            log.warning(
                "decoded images may take %d of the %d bytes of CATALENS_MAX_IN_FLIGHT_BYTES "
                "(%d images of %d bytes), leaving records %d: raise it",
                config.max_in_flight_bytes - self.holdings.record_share,
                config.max_in_flight_bytes,
                decoded,
                config.spec.pixel_bytes,
                self.holdings.record_share,
            )
        # The weight of the record last given back for want of room: partitions resume only
        # once it fits (0: none given back since the last resume).
        self._needed = 0
        self._inference = threading.Thread(
            target=self._infer_forever, name="inference", daemon=True
        )
        self._reuse = ImageReuse(config.reuse_cache_size)
        self._source = make_source(self._on_revoke)
        self.embedded = 0
        # Upserts that got the vector already made from the same image: no model run.
        self.reused = 0
        self.dead_lettered = 0
        self.healthy_at = time.monotonic()
        self.ready = threading.Event()
        self.metrics.follow(ready=self.ready.is_set, paused=lambda: self._source.paused)

    # -- main loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until ``stop`` is set, then finish what is in flight and commit it."""
        self._inference.start()
        self.ready.set()
        log.info(
            "embedder serving %s (model %s, dim %d, weights %s)",
            self.config.topics,
            self.config.model.name,
            self.config.model.dim,
            self.config.model.fingerprint,
        )
        last_report = time.monotonic()
        try:
            while not self._stop.is_set():
                # Once a storm stopped it, what is in flight stays there: nothing to hurry.
                busy = self._tracker.in_flight() > 0 and not self._storm.tripped
                self._take_in(0.02 if busy else 0.5)
                self._pump(wait_s=0.01 if busy else 0)
                self._backpressure()
                self.healthy_at = time.monotonic()
                self.metrics.in_flight.set(self._tracker.in_flight())
                self.metrics.in_flight_bytes.set(self.holdings.held)
                if time.monotonic() - last_report > (60 if self._storm.tripped else 10):
                    last_report = time.monotonic()
                    self._report()
            self._drain(self.config.shutdown_timeout_s)
        finally:
            self._close()

    def _take_in(self, timeout_s: float) -> None:
        """Poll, and let in what was polled while the bounds allow; give back the rest."""
        polled = self._source.poll(
            self.config.batch_size,
            timeout_s,
            # A record weighs at most twice its bytes: every record but the last one polled
            # fits in the room left, and that one is given back when it does not.
            max_bytes=max(1, self.holdings.room() // 2),
        )
        for index, record in enumerate(polled):
            if self._storm.tripped:
                return  # left uncommitted, for the restart
            if not self._admit(record):
                self._give_back_after(record, polled[index + 1 :])
                return

    def _admit(self, record: Record, *, over_budget: bool = False) -> bool:
        """Let ``record`` in; or, when the byte budget has no room for it, give it back to
        the source and pause (False): it comes again once the work in flight made room.
        ``over_budget`` lets it in whatever the budget says."""
        decided = None
        if record.nbytes > self.config.max_event_bytes:
            decided = too_large(record, self.config.max_event_bytes, self.config.topics)
            # The letter carries no value: the bytes go now, not when the letter is written.
            record = replace(record, value=None)
        held = weight(record)
        if not over_budget and decided is None and not self.holdings.fits(held):
            if self._source.give_back(record):
                self._needed = held
                self._source.pause()
                return False
            log.warning(
                "%s@%d could not be given back; let in over the byte budget",
                record.tp,
                record.offset,
            )
        self._tracker.start(record.tp, record.offset)
        self.holdings.take(record.tp, record.offset, held)
        waiting = self._waiting.get(_gate(record))
        if waiting is not None:  # an earlier record of this product is still in flight
            waiting.append((record, decided))
            return True
        self._waiting[_gate(record)] = deque()
        self._begin(record, decided)
        return True

    def _give_back_after(self, given: Record, rest: list[Record]) -> None:
        """The records polled after ``given``: those of its partition come again with it;
        every other partition is given back from its first one. A partition the client
        could not rewind keeps its records, over the budget: they must not be lost."""
        rewound = {given.tp}
        kept: set[Partition] = set()
        for record in rest:
            if record.tp in kept:
                self._admit(record, over_budget=True)
            elif record.tp not in rewound:
                if self._source.give_back(record):
                    rewound.add(record.tp)
                else:
                    log.warning(
                        "%s@%d could not be given back; let in over the byte budget",
                        record.tp,
                        record.offset,
                    )
                    kept.add(record.tp)
                    self._admit(record, over_budget=True)

    def _begin(self, record: Record, decided: Output | None = None) -> None:
        if self._closing:
            # A record that finished during the revocation inside close() would start the
            # next of its product on the shut pool; it stays uncommitted for the next owner.
            return
        if decided is not None:
            self._produce(record, decided)
            return
        decision = decide(record, self.config.topics, self.config.model)
        if isinstance(decision, NeedsImages):
            assembly = Assembly(
                record,
                decision.event,
                topics=self.config.topics,
                model=self.config.model,
                done=lambda record, output: self._outcomes.put(
                    output if isinstance(output, Abandoned) else (record, output)
                ),
            )
            with self._preparing_lock:
                self._preparing += len(assembly.images)
            for image in assembly.images:
                self._pool.submit(self._prepare, assembly, image)
        else:
            self._produce(record, decision)

    def _pump(self, wait_s: float) -> None:
        """Produce finished outputs, serve delivery reports, store committable offsets."""
        try:
            item = self._outcomes.get(timeout=wait_s) if wait_s else self._outcomes.get_nowait()
            while True:
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Abandoned):
                    self._abandoned.add(_gate(item.record))
                else:
                    self._produce(*item)
                item = self._outcomes.get_nowait()
        except queue.Empty:
            pass
        self._publisher.poll(0)
        ready = self._tracker.take_committable()
        if ready:
            self._source.mark_done(ready)

    def _produce(self, record: Record, output: Output) -> None:
        # No larger record than the largest event: a dead letter of one near it leaves the
        # event's value out (a broker set for that event would refuse the letter).
        output = within(output, self.config.max_event_bytes)

        def delivered(error: DeliveryError | None) -> None:
            if error is None:
                self._finished(record, output)
            elif error.fatal:
                self._outcomes.put(error)
            elif error.too_large and (smaller := without_event(output)) is not None:
                # The dead-letter topic takes less than the largest event (a broker's
                # default message.max.bytes is 1 MB): the letter goes without the event,
                # naming where it is, rather than holding up its partition for ever.
                log.warning(
                    "dead letter for %s@%d refused as too large (%s); sent without its event",
                    record.tp,
                    record.offset,
                    error,
                )
                self._outcomes.put((record, smaller))
            else:  # not acknowledged: produce it again, never skip it
                log.warning(
                    "delivery for %s@%d failed (%s); retrying", record.tp, record.offset, error
                )
                self._outcomes.put((record, output))

        self._publisher.produce(
            output.topic, output.key, output.value, headers=output.headers, on_delivery=delivered
        )

    def _report(self) -> None:
        if self._storm.tripped:
            log.error("embedder still stopped by a dead-letter storm; fix the cause, restart it")
        else:
            log.info(
                "embedded %d, reused %d, dead-lettered %d, in flight %d (%.1f MB, at most "
                "%.1f MB so far)",
                self.embedded,
                self.reused,
                self.dead_lettered,
                self._tracker.in_flight(),
                self.holdings.held / 1e6,
                self.holdings.peak / 1e6,
            )

    def _finished(self, record: Record, output: Output) -> None:
        if output.topic == self.config.topics.dlq:
            self.dead_lettered += 1
            self.metrics.dead_lettered(output.reason or "unknown")
        else:
            if output.outcome == REUSED:
                self.reused += 1
            else:
                self.embedded += 1
            self.metrics.count(output.outcome)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s@%d: %s",
                record.tp,
                record.offset,
                output.outcome,
                extra={
                    "product_id": output.key.decode("utf-8", "replace") if output.key else None,
                    "partition": record.partition,
                    "offset": record.offset,
                    "outcome": output.outcome,
                },
            )
        if self._storm.observe(output.reason):
            self._stop_for_storm()
        if self._storm.tripped:
            return  # not finished: nothing from the tripping record on is committed
        self._tracker.finish(record.tp, record.offset)
        self.holdings.release(record.tp, record.offset)
        waiting = self._waiting.get(_gate(record))
        if waiting:
            self._begin(*waiting.popleft())
        else:
            self._waiting.pop(_gate(record), None)

    def _stop_for_storm(self) -> None:
        self.ready.clear()
        self._source.pause()
        self.metrics.storm.set(1)
        reasons = ", ".join(f"{reason} ×{n}" for reason, n in self._storm.top_reasons())
        log.error(
            "dead-letter storm: %d of the last %d records were dead letters (%s); the "
            "embedder stops consuming and commits nothing from here on. Fix the cause "
            "(image roots, image host, credentials) and restart it: the uncommitted "
            "records are redone (CATALENS_DEAD_LETTER_STORM_RATIO=0 turns the guard off)",
            self._storm.dead(),
            self._storm.seen(),
            reasons,
        )

    def _backpressure(self) -> None:
        """Pause when either bound is reached; resume once both are half drained and the
        record given back last (if any) fits."""
        if self._storm.tripped:
            return  # stays paused
        in_flight = self._tracker.in_flight()
        if in_flight >= self.config.max_in_flight or not self.holdings.fits(self._needed or 1):
            self._source.pause()
        elif (
            self._source.paused
            and in_flight <= self.config.max_in_flight // 2
            and self.holdings.records <= self.holdings.record_share // 2
            and self.holdings.fits(self._needed)
        ):
            self._needed = 0
            self._source.resume()

    # -- workers --------------------------------------------------------------------------

    def _prepare(self, assembly: Assembly, image: ProductImage) -> None:
        """Read one image of an event and decode it for the model, or end it: reused,
        failed, or abandoned when the service stops while its fetch waits to retry."""
        product_id = assembly.event.product_id
        try:
            if assembly.finished:
                return  # abandoned meanwhile: nothing more to do for it
            started = time.perf_counter()
            try:
                read = self._reuse.read(product_id, image, self._images.fetch)
            finally:  # failed fetches too: timeouts are what an operator looks for here
                self.metrics.fetch_seconds.observe(time.perf_counter() - started)
            if isinstance(read, Known):  # embedded last time: no decode, no model
                assembly.embedded(image, read.vector, read.thumbnail, reused=True)
                return
            thumbnail = None
            with self._decoding:
                started = time.perf_counter()
                if image.ref.data is not None:  # nothing else to show it by
                    pixels, thumbnail = preprocess_with_thumbnail(
                        read.data, self.config.spec, self.config.limits
                    )
                else:
                    pixels = preprocess(read.data, self.config.spec, self.config.limits)
                self.metrics.decode_seconds.observe(time.perf_counter() - started)
            self.holdings.take_pixels(pixels.nbytes)
        except BadInput as exc:
            assembly.failed(image, exc)
        except Stopped:
            log.debug(
                "stopping: %s@%d left for redelivery", assembly.record.tp, assembly.record.offset
            )
            assembly.abandoned()
        except BaseException as exc:  # noqa: BLE001 - a bug: the main loop re-raises it
            self._outcomes.put(exc)
        else:
            try:
                self._batcher.put(Prepared(assembly, image, pixels, thumbnail, read.origin))
            except Closed:
                self.holdings.release_pixels(pixels.nbytes)
                raise
        finally:
            with self._preparing_lock:
                self._preparing -= 1

    def _infer_forever(self) -> None:
        while True:
            try:
                batch = self._batcher.next_batch()
            except Closed:
                return
            try:
                started = time.perf_counter()
                vectors = self._encode([item.pixels for item in batch])
                self.metrics.inference_seconds.observe(time.perf_counter() - started)
                self.metrics.batch_size.observe(len(batch))
            except BaseException as exc:  # noqa: BLE001 - the main loop re-raises it
                self._outcomes.put(exc)
                return
            finally:
                # Before the outputs: a record finishes only after its images are released,
                # so nothing is held once no record is.
                self.holdings.release_pixels(sum(item.pixels.nbytes for item in batch))
            for item, vector in zip(batch, vectors, strict=True):
                # Before the output: the product's next record starts only after it.
                key = (item.assembly.event.product_id, item.image.id)
                self._reuse.remember(key, item.origin, vector, item.thumbnail)
                item.assembly.embedded(item.image, vector, item.thumbnail)

    # -- lifecycle ------------------------------------------------------------------------

    def _on_revoke(self, partitions: list[Partition]) -> None:
        """Finish (briefly) what is in flight for partitions being taken away, commit it,
        and forget the rest: the next owner re-reads it from the committed offset. Records
        still waiting for an earlier record of their product leave now; those started end
        in their own time (their outputs are the same the next owner makes) and stay
        counted against the byte budget until then, for they are in memory until then."""
        deadline = time.monotonic() + self.config.revoke_timeout_s
        owned = set(partitions)
        while (
            # Closing: the drain already waited (or a bug ended the loop, and what is in
            # flight may never finish); waiting again would only delay the exit.
            not self._closing
            and not self._storm.tripped
            and self._tracker.in_flight(owned)
            and time.monotonic() < deadline
        ):
            self._pump(wait_s=0.01)
        self._pump(wait_s=0)
        self._source.commit_now()
        self._tracker.forget(partitions)
        gone = set(partitions)
        for gate, waiting in list(self._waiting.items()):
            for record, _decided in waiting:
                if record.tp in gone:
                    self.holdings.release(record.tp, record.offset)
            self._waiting[gate] = deque(item for item in waiting if item[0].tp not in gone)

    def _drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        self._source.pause()
        while self._tracker.in_flight() > self._stuck() and time.monotonic() < deadline:
            self._pump(wait_s=0.02)
        self._publisher.flush(max(0.0, deadline - time.monotonic()))
        self._pump(wait_s=0)
        left = self._tracker.in_flight()
        if left:
            log.warning("stopping with %d records unfinished; they will be redelivered", left)

    def _stuck(self) -> int:
        """Records in flight that cannot finish: the abandoned ones and those behind them,
        or all of them once a dead-letter storm stopped the embedder."""
        if self._storm.tripped:
            return self._tracker.in_flight()
        return sum(1 + len(self._waiting.get(gate) or ()) for gate in self._abandoned)

    def _close(self) -> None:
        self._closing = True
        self._batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._source.close()
        self._images.close()
        log.info(
            "embedder stopped: embedded %d, reused %d, dead-lettered %d; held at most %.1f MB "
            "of %.1f MB (CATALENS_MAX_IN_FLIGHT_BYTES)",
            self.embedded,
            self.reused,
            self.dead_lettered,
            self.holdings.peak / 1e6,
            self.holdings.budget / 1e6,
        )


def _gate(record: Record) -> object:
    """Records of one product pass one at a time; a record without a key (a product id
    only in its value) cannot be ordered against others and waits for nobody."""
    return record.key if record.key is not None else (record.tp, record.offset)
