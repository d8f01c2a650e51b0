"""The input event contract (DESIGN.md) and its precise errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from catalens.errors import BadInput
from catalens.schemas import Op, ProductImageEvent, Reason, parse_event
from catalens.schemas.embedding import EmbeddingRecord

DESIGN_EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "0f8c3a2e-4b7d-4e55-9d7e-3f1a7c2b9e10",
    "op": "upsert",
    "product_id": "0108775015",
    "version": 3,
    "occurred_at": "2026-11-24T10:00:00Z",
    "image": {"url": "https://cdn.example.com/0108775015.jpg"},
    "attributes": {"name": "Strap top", "category": "Vest top", "colour": "Black", "price": 12.99},
}


def parse(body: dict[str, Any], key: bytes | None = b"0108775015") -> ProductImageEvent:
    return parse_event(key, json.dumps(body).encode())


def reason_of(body: dict[str, Any] | bytes, key: bytes | None = b"0108775015") -> Reason:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(BadInput) as caught:
        parse_event(key, raw)
    assert caught.value.message
    return caught.value.reason


def test_the_design_example_parses_with_every_field() -> None:
    event = parse(DESIGN_EXAMPLE)
    assert event.op is Op.UPSERT and event.version == 3
    assert event.image is not None and event.image.url == DESIGN_EXAMPLE["image"]["url"]
    assert event.attributes["price"] == 12.99
    assert event.occurred_at.tzinfo is not None


def test_a_delete_needs_no_image() -> None:
    body = {k: v for k, v in DESIGN_EXAMPLE.items() if k != "image"} | {"op": "delete"}
    assert parse(body).op is Op.DELETE


@pytest.mark.parametrize("image", [{"path": "/images/a.jpg"}, {"data": "aGVsbG8="}])
def test_each_image_source_is_accepted(image: dict[str, str]) -> None:
    assert parse(DESIGN_EXAMPLE | {"image": image}).image is not None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", Reason.INVALID_JSON),
        (b"\xff\xfe", Reason.INVALID_JSON),
        (b"[1, 2]", Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"schema_version": 3}, Reason.UNSUPPORTED_SCHEMA_VERSION),
        (DESIGN_EXAMPLE | {"schema_version": "2"}, Reason.UNSUPPORTED_SCHEMA_VERSION),
        (DESIGN_EXAMPLE | {"op": "rename"}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"version": "3"}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"version": -1}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"version": 2**63}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"occurred_at": "2026-11-24T10:00:00"}, Reason.SCHEMA_VIOLATION),
        ({k: v for k, v in DESIGN_EXAMPLE.items() if k != "image"}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"image": {"url": "a", "path": "/b"}}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"image": {}}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"attributes": {"nested": {"a": 1}}}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"attributes": {"bad key": 1}}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"product_id": ""}, Reason.SCHEMA_VIOLATION),
        # What the index cannot hold is refused before any image is fetched.
        (DESIGN_EXAMPLE | {"attributes": {"n": 2**63}}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"attributes": {"n": -(2**63) - 1}}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"attributes": {"n": float("nan")}}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE | {"attributes": {"n": float("inf")}}, Reason.SCHEMA_VIOLATION),
        (json.dumps(DESIGN_EXAMPLE).replace("12.99", "1e400").encode(), Reason.SCHEMA_VIOLATION),
        (
            DESIGN_EXAMPLE | {"attributes": {f"a{i}": "é" * 2048 for i in range(16)}},
            Reason.ATTRIBUTES_TOO_LARGE,
        ),
    ],
)
def test_contract_violations_have_precise_reasons(body: Any, reason: Reason) -> None:
    assert reason_of(body) is reason


def test_the_limits_of_what_the_index_holds_are_inclusive() -> None:
    extremes = {"low": -(2**63), "high": 2**63 - 1, "small": 5e-324, "large": 1.7e308}
    assert parse(DESIGN_EXAMPLE | {"attributes": extremes}).attributes == extremes
    # 65,536 bytes of compact UTF-8 JSON exactly: {"a":"…"} is 8 bytes around the text.
    largest = {"a": "x" * 2048} | {f"b{i}": "é" * 2048 for i in range(15)}
    filler = 65_536 - len(json.dumps(largest, ensure_ascii=False, separators=(",", ":")).encode())
    largest["c"] = "x" * (filler - len(',"c":""'))
    assert parse(DESIGN_EXAMPLE | {"attributes": largest}).attributes == largest
    over = largest | {"c": largest["c"] + "x"}
    assert reason_of(DESIGN_EXAMPLE | {"attributes": over}) is Reason.ATTRIBUTES_TOO_LARGE


def test_the_error_names_the_offending_field() -> None:
    with pytest.raises(BadInput) as caught:
        parse(DESIGN_EXAMPLE | {"version": "three"})
    assert "version" in caught.value.message
    assert caught.value.product_id == "0108775015"


def test_a_key_that_differs_from_the_product_id_or_no_key_is_refused() -> None:
    assert reason_of(DESIGN_EXAMPLE, key=b"other") is Reason.KEY_MISMATCH
    assert reason_of(DESIGN_EXAMPLE, key=None) is Reason.KEY_MISMATCH
    assert parse(DESIGN_EXAMPLE, key=b"0108775015").product_id == "0108775015"


def test_embedding_records_round_trip_the_vector_exactly() -> None:
    import numpy as np

    vector = np.random.default_rng(0).normal(size=512).astype(np.float32)
    record = EmbeddingRecord(
        op=Op.UPSERT,
        product_id="p",
        version=1,
        event_id="e",
        occurred_at=datetime(2026, 11, 24, 10, tzinfo=UTC),
        model="m",
        dim=512,
        vector=EmbeddingRecord.pack(vector),
    )
    again = EmbeddingRecord.model_validate_json(record.to_json())
    assert np.array_equal(again.unpack(), vector)
    assert len(record.to_json()) < 3000  # compact: base64 float32, not a JSON list


def test_the_fast_path_and_the_diagnosing_path_agree_on_valid_events() -> None:
    from catalens.schemas.event import _parse_failing

    for body in (DESIGN_EXAMPLE, {**DESIGN_EXAMPLE, "schema_version": 1.0, "extra": [1, 2]}):
        raw = json.dumps(body).encode()
        key = b"0108775015"
        assert parse_event(key, raw) == _parse_failing(key, raw)


# -- schema version 2 -----------------------------------------------------------------------

DESIGN_EXAMPLE_V2: dict[str, Any] = {
    "schema_version": 2,
    "event_id": "7d1e",
    "op": "upsert",
    "product_id": "0108775015",
    "version": 4,
    "occurred_at": "2026-12-06T10:00:00Z",
    "images": [
        {"id": "front", "url": "https://cdn.example.com/0108775015.jpg"},
        {"id": "back", "url": "https://cdn.example.com/0108775015-2.jpg"},
    ],
    "name": "Strap top",
    "description": "Jersey top with narrow shoulder straps.",
    "attributes": {
        "category": "Vest top",
        "brand": "H&M",
        "colour": "Black",
        "price": 12.99,
        "in_stock": True,
    },
}


def test_the_design_example_of_version_2_parses_with_every_field() -> None:
    event = parse(DESIGN_EXAMPLE_V2)
    assert (event.schema_version, event.name, event.description) == (
        2,
        "Strap top",
        "Jersey top with narrow shoulder straps.",
    )
    assert [(i.id, i.position, i.ref.url) for i in event.product_images()] == [
        ("front", 0, "https://cdn.example.com/0108775015.jpg"),
        ("back", 1, "https://cdn.example.com/0108775015-2.jpg"),
    ]
    assert event.attributes["in_stock"] is True
    assert parse_event(b"0108775015", event.to_json()) == event  # round trip


def test_a_version_1_event_is_read_as_one_image_with_id_0() -> None:
    event = parse(DESIGN_EXAMPLE)
    ((image),) = event.product_images()
    assert (image.id, image.position, image.ref.url) == ("0", 0, DESIGN_EXAMPLE["image"]["url"])
    assert event.name is None and event.description is None


def test_version_1_ignores_the_fields_of_version_2_as_before_version_2_existed() -> None:
    """A version 1 producer that happened to send such fields was never refused for them."""
    body = DESIGN_EXAMPLE | {"images": "anything", "name": ["x"], "description": 5}
    event = parse(body)
    assert event.images is None and event.name is None
    assert [i.id for i in event.product_images()] == ["0"]


def test_version_2_images_without_ids_are_named_by_their_position() -> None:
    body = DESIGN_EXAMPLE_V2 | {
        "images": [{"url": "https://x/a.jpg"}, {"path": "/i/b.jpg"}, {"id": "c", "data": "aGk="}]
    }
    assert [i.id for i in parse(body).product_images()] == ["0", "1", "c"]


def test_a_version_2_delete_needs_no_images_and_sixteen_images_are_accepted() -> None:
    deleted = {k: v for k, v in DESIGN_EXAMPLE_V2.items() if k != "images"} | {"op": "delete"}
    assert parse(deleted).op is Op.DELETE
    many = [{"url": f"https://x/{i}.jpg"} for i in range(16)]
    assert len(parse(DESIGN_EXAMPLE_V2 | {"images": many}).product_images()) == 16
    longest = DESIGN_EXAMPLE_V2 | {"name": "n" * 512, "description": "d" * 8192}
    assert parse(longest).name == "n" * 512


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            DESIGN_EXAMPLE_V2 | {"images": [{"url": f"https://x/{i}.jpg"} for i in range(17)]},
            Reason.TOO_MANY_IMAGES,
        ),
        (
            DESIGN_EXAMPLE_V2
            | {"images": [{"id": "a", "url": "https://x/1"}, {"id": "a", "url": "https://x/2"}]},
            Reason.DUPLICATE_IMAGE_ID,
        ),
        (
            DESIGN_EXAMPLE_V2
            | {"images": [{"url": "https://x/1"}, {"id": "0", "url": "https://x/2"}]},
            Reason.DUPLICATE_IMAGE_ID,
        ),
        (
            DESIGN_EXAMPLE_V2 | {"images": [{"url": "https://x/1"}, {"id": "back"}]},
            Reason.IMAGE_WITHOUT_SOURCE,
        ),
        (DESIGN_EXAMPLE_V2 | {"images": [{}]}, Reason.IMAGE_WITHOUT_SOURCE),
        (DESIGN_EXAMPLE_V2 | {"name": "n" * 513}, Reason.TEXT_TOO_LONG),
        (DESIGN_EXAMPLE_V2 | {"description": "d" * 8193}, Reason.TEXT_TOO_LONG),
        (DESIGN_EXAMPLE_V2 | {"images": []}, Reason.SCHEMA_VIOLATION),
        ({k: v for k, v in DESIGN_EXAMPLE_V2.items() if k != "images"}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE_V2 | {"images": [{"url": "a", "path": "/b"}]}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE_V2 | {"images": [{"id": "", "url": "a"}]}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE_V2 | {"images": [{"id": "x" * 65, "url": "a"}]}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE_V2 | {"images": [{"url": "a", "size": 3}]}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE_V2 | {"images": {"url": "a"}}, Reason.SCHEMA_VIOLATION),
        (DESIGN_EXAMPLE_V2 | {"name": 5}, Reason.SCHEMA_VIOLATION),
        (
            DESIGN_EXAMPLE_V2
            | {"images": [{"id": "1", "url": "https://x/1"}, {"id": None, "url": "https://x/2"}]},
            Reason.DUPLICATE_IMAGE_ID,
        ),
    ],
)
def test_each_rule_of_version_2_has_its_reason(body: Any, reason: Reason) -> None:
    assert reason_of(body) is reason


def test_the_fast_path_and_the_diagnosing_path_agree_on_valid_version_2_events() -> None:
    from catalens.schemas.event import _parse_failing

    for body in (DESIGN_EXAMPLE_V2, {**DESIGN_EXAMPLE_V2, "image": {"url": "ignored"}}):
        raw = json.dumps(body).encode()
        assert parse_event(b"0108775015", raw) == _parse_failing(b"0108775015", raw)
