"""The input event of ``catalens.product-images``: schema versions 1 and 2 (DESIGN.md).

Version 1 carries one ``image``; version 2 carries the product's whole image set
(``images``, 1 to 16, each with an optional ``id``) and its text (``name``,
``description``). Both are read by one model, :class:`ProductImageEvent`, and seen by the
rest of Catalens through one view: :meth:`ProductImageEvent.product_images` (a version 1
image is image ``"0"``) and the ``name``/``description`` fields (always empty in version 1,
whose producers keep a name among the attributes). A version 1 event is read exactly as
before version 2 existed: fields only version 2 has are ignored in it, like any field the
contract does not name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    ValidationInfo,
    field_validator,
    model_validator,
)

from catalens.errors import BadInput, Reason

SCHEMA_VERSION = 1  # the version an event without ``schema_version`` has
LATEST_SCHEMA_VERSION = 2
MAX_VERSION = 2**63 - 1  # Milvus INT64
MAX_ATTRIBUTES = 64
MAX_IMAGES = 16
MAX_IMAGE_ID = 64
MAX_NAME = 512
MAX_DESCRIPTION = 8192
SOURCES = ("url", "path", "data")

MAX_ATTRIBUTES_BYTES = 65_536  # what Milvus holds in a JSON field
INT64 = (-(2**63), 2**63 - 1)

ProductId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
ImageId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_IMAGE_ID)]
AttributeKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]
# What a JSON field of Milvus holds: integers in int64, finite floats (NaN and infinities are
# not JSON, and 1e400 reads as infinity).
AttributeValue = (
    StrictBool
    | Annotated[StrictInt, Field(ge=INT64[0], le=INT64[1])]
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | Annotated[str, StringConstraints(max_length=2048)]
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
        given = [name for name in SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"image must have exactly one of url, path, data; got {given or 'none'}"
            )
        return self

    def display(self) -> str | None:
        """A reference a browser can show (URLs as is); ``None`` for inline data."""
        return self.url if self.url is not None else self.path


class EventImage(ImageRef):
    """An entry of a version 2 event's ``images``: a source and an optional ``id``."""

    id: ImageId | None = None


@dataclass(frozen=True, slots=True)
class ProductImage:
    """One image of a product as every version reads: its id (given, or its position),
    its place in the product's list (0: the product's main image) and its source."""

    id: str
    position: int
    ref: ImageRef


class ProductImageEvent(BaseModel):
    """A new, changed or deleted product. Keyed by ``product_id`` on the topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # First: the validators of the version 2 fields below read it.
    schema_version: Annotated[int, Field(ge=SCHEMA_VERSION, le=LATEST_SCHEMA_VERSION)] = (
        SCHEMA_VERSION
    )
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    op: Op
    product_id: ProductId
    version: Annotated[StrictInt, Field(ge=0, le=MAX_VERSION)]
    occurred_at: AwareDatetime
    image: ImageRef | None = Field(default=None, description="version 1: the product's image")
    images: Annotated[list[EventImage], Field(max_length=MAX_IMAGES)] | None = Field(
        default=None, description="version 2: the product's whole image set, main image first"
    )
    name: Annotated[str, StringConstraints(max_length=MAX_NAME)] | None = None
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION)] | None = None
    attributes: dict[AttributeKey, AttributeValue] = Field(default_factory=dict)

    @field_validator("image", mode="before")
    @classmethod
    def _image_of_version_1(cls, value: Any, info: ValidationInfo) -> Any:
        return value if info.data.get("schema_version") == 1 else None

    @field_validator("images", "name", "description", mode="before")
    @classmethod
    def _fields_of_version_2(cls, value: Any, info: ValidationInfo) -> Any:
        return value if info.data.get("schema_version") == 2 else None

    @field_validator("attributes", mode="before")
    @classmethod
    def _integers_in_int64(cls, value: Any) -> Any:
        # Before the types: an integer beyond int64 would otherwise be read as a float,
        # silently another number.
        if isinstance(value, dict):
            for name, item in value.items():
                if type(item) is int and not INT64[0] <= item <= INT64[1]:
                    raise ValueError(f"attribute {name!r}: integer beyond int64")
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(self.attributes) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
        if (size := attributes_bytes(self.attributes)) > MAX_ATTRIBUTES_BYTES:
            raise ValueError(f"attributes take {size} bytes, at most {MAX_ATTRIBUTES_BYTES}")
        if self.op is Op.UPSERT and not self.product_images():
            raise ValueError(
                "an upsert needs an image" if self.schema_version == 1 else "an upsert needs images"
            )
        ids = [image.id for image in self.product_images()]
        if len(set(ids)) != len(ids):
            raise ValueError(f"image ids must be unique within the product; got {ids}")
        return self

    def product_images(self) -> tuple[ProductImage, ...]:
        """The product's images in order: version 1's one image as ``"0"``, version 2's
        with their ids, or their position where they have none."""
        if self.image is not None:
            return (ProductImage("0", 0, self.image),)
        return tuple(
            ProductImage(image.id if image.id is not None else str(position), position, image)
            for position, image in enumerate(self.images or ())
        )

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @property
    def key(self) -> bytes:
        return self.product_id.encode()


def attributes_bytes(attributes: dict[str, Any]) -> int:
    """The attributes' size as Milvus receives them: compact JSON in UTF-8."""
    return len(json.dumps(attributes, ensure_ascii=False, separators=(",", ":")).encode())


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
    """Parse in steps (JSON, schema version, the rules with reasons of their own, fields)
    to name the first thing wrong."""
    try:
        raw: Any = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(Reason.INVALID_JSON, f"value is not UTF-8 JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BadInput(Reason.SCHEMA_VIOLATION, "event must be a JSON object")
    product_id = raw.get("product_id") if isinstance(raw.get("product_id"), str) else None
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    version = raw.get("schema_version", SCHEMA_VERSION)
    if version not in (1, 2) or isinstance(version, bool):
        raise BadInput(
            Reason.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version {version!r} is not supported (this service reads 1 and 2)",
            product_id=product_id,
            event_id=event_id,
        )
    attributes = raw.get("attributes")
    if isinstance(attributes, dict) and attributes_bytes(attributes) > MAX_ATTRIBUTES_BYTES:
        raise BadInput(
            Reason.ATTRIBUTES_TOO_LARGE,
            f"attributes take {attributes_bytes(attributes)} bytes as JSON, at most "
            f"{MAX_ATTRIBUTES_BYTES} (what the index stores of them)",
            product_id=product_id,
            event_id=event_id,
        )
    if version == 2 and (broken := _version_2_rule(raw)) is not None:
        reason, message = broken
        raise BadInput(reason, message, product_id=product_id, event_id=event_id)
    try:
        event = ProductImageEvent.model_validate(raw)
    except ValidationError as exc:
        raise BadInput(
            Reason.SCHEMA_VIOLATION, _describe(exc), product_id=product_id, event_id=event_id
        ) from None
    _check_key(key, event)
    return event


def _version_2_rule(raw: dict[str, Any]) -> tuple[Reason, str] | None:
    """The first broken rule of version 2 that has a reason of its own, if any."""
    for field, limit in (("name", MAX_NAME), ("description", MAX_DESCRIPTION)):
        text = raw.get(field)
        if isinstance(text, str) and len(text) > limit:
            return Reason.TEXT_TOO_LONG, f"{field} has {len(text)} characters, at most {limit}"
    images = raw.get("images")
    if not isinstance(images, list):
        return None  # absent or malformed: the schema says what is wrong
    if len(images) > MAX_IMAGES:
        return Reason.TOO_MANY_IMAGES, f"{len(images)} images, at most {MAX_IMAGES}"
    ids: list[object] = []
    for position, image in enumerate(images):
        if not isinstance(image, dict):
            return None
        if not any(image.get(source) is not None for source in SOURCES):
            named = f"image {image['id']!r}" if isinstance(image.get("id"), str) else "an image"
            return (
                Reason.IMAGE_WITHOUT_SOURCE,
                f"{named} (images.{position}) has none of url, path, data",
            )
        given = image.get("id")
        ids.append(str(position) if given is None else given)
    repeated = sorted({repr(i) for i in ids if ids.count(i) > 1})
    if repeated:
        return (
            Reason.DUPLICATE_IMAGE_ID,
            f"image ids must be unique within the product; repeated: {', '.join(repeated)}",
        )
    return None


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
