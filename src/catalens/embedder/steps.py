"""What the embedder does with one input record — pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from catalens.errors import BadInput
from catalens.kafka.records import Record
from catalens.schemas import DeadLetter, EmbeddingRecord, Op, ProductImageEvent, Reason
from catalens.schemas.embedding import (
    INPUT_OFFSET_HEADER,
    INPUT_TIMESTAMP_HEADER,
    MODEL_HEADER,
    EmbeddedImage,
    Vector,
    pack,
)
from catalens.schemas.event import ProductImage, parse_event
from catalens.store.values import ModelIdentity


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce for an input record: its acknowledgement finishes the input.
    ``outcome`` names what became of the input (catalens_records_total), and ``reason``
    why it is a dead letter."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    outcome: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class NeedsImages:
    """An upsert whose images must be read, decoded and embedded."""

    event: ProductImageEvent


Decision = Output | NeedsImages


@dataclass(frozen=True, slots=True)
class ImageEmbedding:
    """What was made of one image of an event: its vector, and for an inline image the
    thumbnail it is shown by (it has no reference of its own)."""

    image: ProductImage
    vector: Vector
    thumbnail: str | None = None

    @property
    def shown_by(self) -> str | None:
        return self.image.ref.display() or self.thumbnail


@dataclass(frozen=True)
class Topics:
    embeddings: str
    dlq: str


def decide(record: Record, topics: Topics, model: ModelIdentity) -> Decision:
    """Route one input record: dead letter, pass-through delete, or image work."""
    if record.value is None:
        if not record.key:
            return dead_letter(
                record, BadInput(Reason.SCHEMA_VIOLATION, "tombstone without a key"), topics
            )
        # A tombstone deletes the product; it travels on as a tombstone, with the
        # position that orders it among the product's records.
        return Output(topics.embeddings, record.key, None, headers(model, record), "deleted")
    try:
        event = parse_event(record.key, record.value)
    except BadInput as error:
        return dead_letter(record, error, topics)
    if event.op is Op.DELETE:
        value = embedding_record(event, (), model, input_offset=record.offset)
        return Output(topics.embeddings, event.key, value, headers(model, record), "deleted")
    return NeedsImages(event)


def headers(model: ModelIdentity, record: Record) -> list[tuple[str, bytes]]:
    """The model that made a record, the input position that orders it and the input's
    timestamp: a tombstone has nothing else to carry them, a sink skips other models'
    records by them and measures the pipeline's latency from the timestamp."""
    out = [
        (MODEL_HEADER, model.name.encode()),
        (INPUT_OFFSET_HEADER, str(record.offset).encode("ascii")),
    ]
    if record.timestamp_ms > 0:  # librdkafka reports -1 when the record has none
        out.append((INPUT_TIMESTAMP_HEADER, str(record.timestamp_ms).encode("ascii")))
    return out


def embedding_record(
    event: ProductImageEvent,
    embeddings: Sequence[ImageEmbedding],
    model: ModelIdentity,
    *,
    input_offset: int,
) -> bytes:
    """The record of ``event`` (``embeddings``: one per image, in order; none for a
    delete). A version 1 event makes a schema version 1 record, which every sink reads; a
    version 2 event a version 2 record with every image and the product's text.
    ``input_offset`` is the source event's offset in the input topic."""
    dim = int(embeddings[0].vector.shape[0]) if embeddings else 0
    first = embeddings[0] if embeddings else None
    several = event.schema_version > 1 and first is not None
    return EmbeddingRecord(
        schema_version=2 if several else 1,
        op=event.op,
        product_id=event.product_id,
        version=event.version,
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        model=model.name,
        model_fingerprint=model.fingerprint,
        dim=dim,
        vector=None if several or first is None else pack(first.vector),
        image=None if several or first is None else first.shown_by,
        images=[
            EmbeddedImage(id=e.image.id, vector=pack(e.vector), image=e.shown_by)
            for e in embeddings
        ]
        if several
        else None,
        name=event.name if several else None,
        description=event.description if several else None,
        attributes=event.attributes,
        input_offset=input_offset,
    ).to_json()


def embedded(
    record: Record,
    event: ProductImageEvent,
    embeddings: Sequence[ImageEmbedding],
    topics: Topics,
    model: ModelIdentity,
    outcome: str = "embedded",
) -> Output:
    """The embedding of ``event``'s images, read from the input ``record``."""
    value = embedding_record(event, embeddings, model, input_offset=record.offset)
    return Output(topics.embeddings, event.key, value, headers(model, record), outcome)


def too_large(record: Record, limit: int, topics: Topics) -> Output:
    """The dead letter of a record larger than ``limit`` bytes, unparsed: it names where the
    event is, but cannot carry it (it would be as large)."""
    error = BadInput(
        Reason.EVENT_TOO_LARGE,
        f"event has {record.nbytes} bytes, at most {limit} (CATALENS_MAX_EVENT_BYTES); its "
        "value is left out of this letter: publish it again from the catalog, smaller "
        "(images by URL or path instead of inline)",
    )
    return dead_letter(record, error, topics, value_omitted=True)


def within(output: Output, limit: int) -> Output:
    """``output`` as it may be produced: a dead letter larger than ``limit`` bytes (the
    letter of an event near the largest, whose base64 is 4/3 of it) leaves the event's
    value out, which no broker set for the largest event would take, and which the
    embedder would otherwise retry for ever."""
    if output.value is None or len(output.value) <= limit:
        return output
    return without_event(output) or output


def without_event(output: Output) -> Output | None:
    """The dead letter ``output`` without the event's value (it names where the event
    is); None when ``output`` is no dead letter or already carries no value."""
    if output.reason is None or output.value is None:
        return None
    letter = DeadLetter.model_validate_json(output.value)
    if letter.value is None:
        return None
    return replace(output, value=letter.without_value().model_dump_json().encode())


def dead_letter(
    record: Record,
    error: BadInput,
    topics: Topics,
    *,
    value_omitted: bool = False,
) -> Output:
    letter = DeadLetter.of(
        reason=error.reason,
        message=error.message,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        product_id=error.product_id,
        event_id=error.event_id,
        value_omitted=value_omitted,
    )
    return Output(
        topics.dlq,
        record.key,
        letter.model_dump_json().encode(),
        [("catalens-reason", error.reason.value.encode())],
        "dead_lettered",
        error.reason.value,
    )
