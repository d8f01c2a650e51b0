"""What the embedder does with one input record — pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from catalens.errors import BadInput
from catalens.kafka.records import Record
from catalens.schemas import DeadLetter, EmbeddingRecord, Op, ProductImageEvent, Reason
from catalens.schemas.embedding import (
    INPUT_OFFSET_HEADER,
    INPUT_TIMESTAMP_HEADER,
    MODEL_HEADER,
    Vector,
)
from catalens.schemas.event import parse_event
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
class NeedsImage:
    """An upsert whose image must be read, decoded and embedded."""

    event: ProductImageEvent


Decision = Output | NeedsImage


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
        value = embedding_record(event, None, model, input_offset=record.offset)
        return Output(topics.embeddings, event.key, value, headers(model, record), "deleted")
    return NeedsImage(event)


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
    vector: Vector | None,
    model: ModelIdentity,
    thumbnail: str | None = None,
    *,
    input_offset: int,
) -> bytes:
    """``thumbnail`` stands in for inline images, which have no reference to show;
    ``input_offset`` is the source event's offset in the input topic."""
    image = event.image.display() if event.image is not None else None
    return EmbeddingRecord(
        op=event.op,
        product_id=event.product_id,
        version=event.version,
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        model=model.name,
        model_fingerprint=model.fingerprint,
        dim=0 if vector is None else int(vector.shape[0]),
        vector=None if vector is None else EmbeddingRecord.pack(vector),
        attributes=event.attributes,
        image=image or thumbnail,
        input_offset=input_offset,
    ).to_json()


def embedded(
    record: Record,
    event: ProductImageEvent,
    vector: Vector,
    topics: Topics,
    model: ModelIdentity,
    thumbnail: str | None = None,
) -> Output:
    """The embedding of ``event``, read from the input ``record``."""
    value = embedding_record(event, vector, model, thumbnail, input_offset=record.offset)
    return Output(topics.embeddings, event.key, value, headers(model, record), "embedded")


def dead_letter(
    record: Record,
    error: BadInput,
    topics: Topics,
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
    )
    return Output(
        topics.dlq,
        record.key,
        letter.model_dump_json().encode(),
        [("catalens-reason", error.reason.value.encode())],
        "dead_lettered",
        error.reason.value,
    )
