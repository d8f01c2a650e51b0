"""The embedder's pure steps: every output carries the input position that orders it."""

from __future__ import annotations

import json

import numpy as np

from catalens.embedder.steps import (
    ImageEmbedding,
    NeedsImages,
    Output,
    Topics,
    decide,
    embedded,
    too_large,
    within,
)
from catalens.kafka.records import Record
from catalens.schemas import DeadLetter, EmbeddingRecord
from catalens.schemas.embedding import INPUT_OFFSET_HEADER, INPUT_TIMESTAMP_HEADER, MODEL_HEADER
from catalens.store.values import ModelIdentity

TOPICS = Topics(embeddings="emb", dlq="dlq")
MODEL = ModelIdentity("m", 4, "f00d")
HEADERS = [(MODEL_HEADER, b"m")]


def consumed(
    offset: int, key: bytes | None, value: dict[str, object] | None, timestamp_ms: int = -1
) -> Record:
    body = None if value is None else json.dumps(value).encode()
    return Record("in", 2, offset, key, body, [], timestamp_ms)


def event(op: str, **extra: object) -> dict[str, object]:
    return {
        "event_id": "e1",
        "op": op,
        "product_id": "p/1",
        "version": 4,
        "occurred_at": "2026-11-24T10:00:00Z",
        **extra,
    }


def test_a_tombstone_travels_on_with_its_input_position_in_a_header() -> None:
    output = decide(consumed(41, b"p/1", None), TOPICS, MODEL)
    assert output == Output(
        "emb", b"p/1", None, [*HEADERS, (INPUT_OFFSET_HEADER, b"41")], "deleted"
    )


def test_every_output_carries_the_input_timestamp_when_the_input_has_one() -> None:
    """The sink measures the pipeline's latency from it, for tombstones too."""
    stamped = 1_796_000_000_123
    tombstone = decide(consumed(41, b"p/1", None, stamped), TOPICS, MODEL)
    delete = decide(consumed(42, b"p/1", event("delete"), stamped), TOPICS, MODEL)
    for output in (tombstone, delete):
        assert isinstance(output, Output)
        assert (INPUT_TIMESTAMP_HEADER, b"1796000000123") in output.headers
    unstamped = decide(consumed(43, b"p/1", None), TOPICS, MODEL)
    assert isinstance(unstamped, Output)
    assert INPUT_TIMESTAMP_HEADER not in dict(unstamped.headers)


def test_a_dead_letter_names_its_outcome_and_reason() -> None:
    output = decide(Record("in", 0, 3, b"p/1", b"{nope", [], -1), TOPICS, MODEL)
    assert isinstance(output, Output)
    assert (output.topic, output.outcome, output.reason) == ("dlq", "dead_lettered", "invalid_json")


def test_a_delete_carries_its_input_position() -> None:
    output = decide(consumed(7, b"p/1", event("delete")), TOPICS, MODEL)
    assert isinstance(output, Output) and output.value is not None
    assert EmbeddingRecord.model_validate_json(output.value).input_offset == 7
    assert (INPUT_OFFSET_HEADER, b"7") in output.headers


def test_an_embedding_carries_the_input_position_of_its_event() -> None:
    record = consumed(12, b"p/1", event("upsert", image={"url": "https://x/1.jpg"}))
    decision = decide(record, TOPICS, MODEL)
    assert isinstance(decision, NeedsImages)
    (image,) = decision.event.product_images()
    vector = np.full(4, 0.5, dtype=np.float32)
    output = embedded(record, decision.event, [ImageEmbedding(image, vector)], TOPICS, MODEL)
    assert output.value is not None
    parsed = EmbeddingRecord.model_validate_json(output.value)
    assert (parsed.input_offset, parsed.version, parsed.dim) == (12, 4, 4)
    assert (parsed.model, parsed.model_fingerprint) == ("m", "f00d")
    assert output.headers == [*HEADERS, (INPUT_OFFSET_HEADER, b"12")]


def test_a_version_1_event_makes_a_version_1_record_that_every_sink_reads() -> None:
    record = consumed(3, b"p/1", event("upsert", image={"url": "https://x/1.jpg"}))
    decision = decide(record, TOPICS, MODEL)
    assert isinstance(decision, NeedsImages)
    (image,) = decision.event.product_images()
    output = embedded(
        record, decision.event, [ImageEmbedding(image, np.ones(4, np.float32))], TOPICS, MODEL
    )
    assert output.value is not None
    raw = json.loads(output.value)
    assert raw["schema_version"] == 1 and "images" not in raw
    assert raw["image"] == "https://x/1.jpg"
    parsed = EmbeddingRecord.model_validate_json(output.value)
    assert [(i.id, i.image) for i in parsed.image_vectors()] == [("0", "https://x/1.jpg")]


def test_a_version_2_event_makes_one_record_with_every_image_and_the_products_text() -> None:
    images = [
        {"id": "front", "url": "https://x/1.jpg"},
        {"path": "/images/1-back.jpg"},
        {"id": "swatch", "data": "aGVsbG8="},
    ]
    body = event("upsert", schema_version=2, images=images, name="Top", description="Jersey")
    record = consumed(5, b"p/1", body)
    decision = decide(record, TOPICS, MODEL)
    assert isinstance(decision, NeedsImages)
    embeddings = [
        ImageEmbedding(image, np.full(4, n, np.float32), "data:thumb" if n == 2 else None)
        for n, image in enumerate(decision.event.product_images())
    ]
    output = embedded(record, decision.event, embeddings, TOPICS, MODEL)
    assert output.key == b"p/1" and output.value is not None
    parsed = EmbeddingRecord.model_validate_json(output.value)
    assert (parsed.schema_version, parsed.name, parsed.description) == (2, "Top", "Jersey")
    assert [(i.id, i.position, i.image, float(i.vector[0])) for i in parsed.image_vectors()] == [
        ("front", 0, "https://x/1.jpg", 0.0),
        ("1", 1, "/images/1-back.jpg", 1.0),
        ("swatch", 2, "data:thumb", 2.0),
    ]


def test_a_too_large_event_becomes_a_letter_that_says_where_it_is_without_carrying_it() -> None:
    record = Record("in", 2, 7, b"p/1", b"x" * 5000, [], -1)
    output = too_large(record, 4096, TOPICS)
    assert (output.topic, output.key, output.outcome, output.reason) == (
        "dlq",
        b"p/1",
        "dead_lettered",
        "event_too_large",
    )
    letter = DeadLetter.model_validate_json(output.value or b"")
    assert (letter.source_partition, letter.source_offset, letter.original_key()) == (2, 7, b"p/1")
    assert letter.value is None and letter.value_omitted
    assert "event has 5003 bytes, at most 4096" in letter.message


def test_a_dead_letter_larger_than_the_largest_event_leaves_the_value_out() -> None:
    """An event just under the limit that is not JSON: its letter, base64 and all, would be
    a third larger than the limit (and refused by a broker set for it)."""
    output = decide(Record("in", 2, 7, b"p/1", b"{" + b"x" * 3500, [], -1), TOPICS, MODEL)
    assert isinstance(output, Output) and output.value is not None
    assert within(output, len(output.value)) is output
    fitted = within(output, 4000)
    letter = DeadLetter.model_validate_json(fitted.value or b"")
    assert letter.value is None and letter.value_omitted
    assert letter == DeadLetter.model_validate_json(output.value).without_value()
    assert (fitted.topic, fitted.reason, fitted.headers) == (
        output.topic,
        output.reason,
        output.headers,
    )


def test_outputs_other_than_dead_letters_are_produced_as_they_are() -> None:
    output = decide(consumed(41, b"p/1", None), TOPICS, MODEL)
    assert within(output, 1) is output  # type: ignore[arg-type]
