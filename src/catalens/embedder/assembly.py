"""One event's images on their way to its one output record (pure threading).

An upsert's images are read and decoded one by one, side by side in the prepare pool,
and the decoded ones join the inference batches with every other event's images, so a
product's images are batched together and nothing per image is paid per event. Each image
ends in one of three ways: embedded (by the inference thread), reused (an unchanged image:
no decode, no model) or failed (a bad image: the whole event becomes a dead letter with
that image's reason, and the product keeps its previous version). :class:`Assembly`
collects the endings and, once the last image has one, hands over the event's single
output: the embedding record of every image, in order, or the dead letter.

A stop while an image waits to be fetched again abandons the event at once: it has no
output and is not committed, and its next owner redoes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from catalens.embedder.reuse import REUSED
from catalens.embedder.steps import ImageEmbedding, Output, Topics, dead_letter, embedded
from catalens.errors import BadInput
from catalens.kafka.records import Record
from catalens.schemas import ProductImageEvent
from catalens.schemas.embedding import Vector
from catalens.schemas.event import ProductImage
from catalens.store.values import ModelIdentity


@dataclass(frozen=True, slots=True)
class Abandoned:
    """A record left unfinished because the service stopped while an image fetch was
    waiting to retry: no output, no commit; the next owner of its partition redoes it."""

    record: Record


Done = Callable[[Record, "Output | Abandoned"], None]


class Assembly:
    """The images of one event, resolved from any thread; ``done`` is called once, by the
    thread that resolves the last image (or abandons the event)."""

    def __init__(
        self,
        record: Record,
        event: ProductImageEvent,
        *,
        topics: Topics,
        model: ModelIdentity,
        done: Done,
    ) -> None:
        self.record = record
        self.event = event
        self.images = event.product_images()
        self._topics = topics
        self._model = model
        self._done = done
        self._lock = threading.Lock()
        self._embeddings: dict[int, ImageEmbedding] = {}
        self._failures: dict[int, BadInput] = {}
        self._reused = 0
        self._finished = False

    def embedded(
        self, image: ProductImage, vector: Vector, thumbnail: str | None, *, reused: bool = False
    ) -> None:
        with self._lock:
            self._embeddings[image.position] = ImageEmbedding(image, vector, thumbnail)
            self._reused += reused
        self._maybe_done()

    def failed(self, image: ProductImage, error: BadInput) -> None:
        with self._lock:
            self._failures[image.position] = error
        self._maybe_done()

    def abandoned(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
        self._done(self.record, Abandoned(self.record))

    @property
    def finished(self) -> bool:
        return self._finished

    def _maybe_done(self) -> None:
        with self._lock:
            if self._finished or len(self._embeddings) + len(self._failures) < len(self.images):
                return
            self._finished = True
        self._done(self.record, self._output())

    def _output(self) -> Output:
        event = self.event
        if self._failures:
            position = min(self._failures)
            error = self._failures[position]
            image = self.images[position]
            where = "" if len(self.images) == 1 else f"image {image.id!r}: "
            failure = BadInput(error.reason, where + error.message)
            return dead_letter(
                self.record, failure.about(event.product_id, event.event_id), self._topics
            )
        embeddings = [self._embeddings[image.position] for image in self.images]
        outcome = REUSED if self._reused == len(self.images) else "embedded"
        return embedded(self.record, event, embeddings, self._topics, self._model, outcome)
