"""The input event of ``catalens.product-images`` (schema_version 1, DESIGN.md)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from catalens.errors import BadInput
from catalens.schemas.dead_letter import Reason

SCHEMA_VERSION = 1
MAX_VERSION = 2**63 - 1  # Milvus INT64
MAX_ATTRIBUTES = 64

ProductId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
AttributeKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]
AttributeValue = (
    StrictBool | StrictInt | StrictFloat | Annotated[str, StringConstraints(max_length=2048)]
)


class Op(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


class ImageRef(BaseModel):
    """Where the image is: exactly one of ``url``, ``path`` or inline base64 ``data``.

    Whether the source may be read (scheme, address, image roots) is decided by the
    embedder's fetch guards, not here: a refused source is a ``forbidden_source``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    data: Annotated[str, StringConstraints(min_length=1)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in ("url", "path", "data") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"image must have exactly one of url, path, data; got {given or 'none'}"
            )
        return self

    def display(self) -> str | None:
        """A reference a browser can show (URLs as is); ``None`` for inline data."""
        return self.url if self.url is not None else self.path


class ProductImageEvent(BaseModel):
    """A new, changed or deleted product image. Keyed by ``product_id`` on the topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Annotated[int, Field(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    op: Op
    product_id: ProductId
    version: Annotated[StrictInt, Field(ge=0, le=MAX_VERSION)]
    occurred_at: AwareDatetime
    image: ImageRef | None = None
    attributes: dict[AttributeKey, AttributeValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _upsert_needs_image(self) -> Self:
        if self.op is Op.UPSERT and self.image is None:
            raise ValueError("an upsert needs an image")
        if len(self.attributes) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @property
    def key(self) -> bytes:
        return self.product_id.encode()


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "event"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_event(key: bytes | None, value: bytes) -> ProductImageEvent:
    """Validate one record of the input topic, or raise :class:`BadInput` saying why.

    The key must be the product id so that all events of a product share a partition
    and keep their order.
    """
    try:  # the common case: one pass of pydantic's own JSON parser, no Python objects
        event = ProductImageEvent.model_validate_json(value)
    except ValidationError:
        return _parse_failing(key, value)  # the slow path that says precisely why
    _check_key(key, event)
    return event


def _parse_failing(key: bytes | None, value: bytes) -> ProductImageEvent:
    """Parse in steps (JSON, schema version, fields) to name the first thing wrong."""
    try:
        raw: Any = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(Reason.INVALID_JSON, f"value is not UTF-8 JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BadInput(Reason.SCHEMA_VIOLATION, "event must be a JSON object")
    product_id = raw.get("product_id") if isinstance(raw.get("product_id"), str) else None
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    version = raw.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise BadInput(
            Reason.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version {version!r} is not supported (this service reads {SCHEMA_VERSION})",
            product_id=product_id,
            event_id=event_id,
        )
    try:
        event = ProductImageEvent.model_validate(raw)
    except ValidationError as exc:
        raise BadInput(
            Reason.SCHEMA_VIOLATION, _describe(exc), product_id=product_id, event_id=event_id
        ) from None
    _check_key(key, event)
    return event


def _check_key(key: bytes | None, event: ProductImageEvent) -> None:
    if key is None:
        # Without the key, the event lands on any partition: nothing orders it against
        # the product's other events, in Kafka or in the index.
        raise BadInput(
            Reason.KEY_MISMATCH,
            f"record has no key; it must be the product id {event.product_id!r}",
            product_id=event.product_id,
            event_id=event.event_id,
        )
    if key != event.key:
        raise BadInput(
            Reason.KEY_MISMATCH,
            f"record key {key!r} differs from product_id {event.product_id!r}",
            product_id=event.product_id,
            event_id=event.event_id,
        )
