"""The record of ``catalens.product-embeddings``: one product's vectors at one version.

Schema version 1 carries one vector (``vector``, ``image``): the product's one image,
image ``"0"``. Schema version 2 carries the product's whole image set in one record
(``images``: id, vector and displayable image of each, main image first) and its text, so
that per-key order and compaction keep working for products of several images. The
embedder writes version 1 for a version 1 input event and version 2 for a version 2 one;
the sink reads both. (Upgrade the sinks before publishing version 2 input events: an
older sink dead-letters version 2 records, and ``catalens dlq replay`` sends them back.)
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Self

import numpy as np
import numpy.typing as npt
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from catalens.schemas.event import (
    MAX_DESCRIPTION,
    MAX_IMAGES,
    MAX_NAME,
    MAX_VERSION,
    AttributeValue,
    ImageId,
    Op,
    ProductId,
)

Vector = npt.NDArray[np.float32]


# A tombstone has no value to carry its source position, so it travels in this header;
# every record of an embedder also names its model in a header, so that the sink of
# another model's generation skips it without parsing it.
INPUT_OFFSET_HEADER = "catalens-input-offset"
MODEL_HEADER = "catalens-model"
# The Kafka timestamp (ms since the epoch) of the input record a record was made from, so
# the sink can measure the whole pipeline's latency, tombstones included (optional: absent
# from older embedders, and where the input record had no timestamp).
INPUT_TIMESTAMP_HEADER = "catalens-input-timestamp"


def pack(vector: Vector) -> str:
    """A vector as float32 little-endian bytes in base64: compact, and exact."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def unpack(text: str) -> Vector:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


class EmbeddedImage(BaseModel):
    """One image of a version 2 record: its id, its vector and a reference to show it by
    (its URL or path, or a thumbnail data URI for an inline image)."""

    model_config = ConfigDict(frozen=True)

    id: ImageId
    vector: str = Field(description="float32 little-endian, base64")
    image: str | None = None


@dataclass(frozen=True, slots=True)
class ImageVector:
    """One image of a record as every schema version reads."""

    id: str
    position: int
    vector: Vector
    image: str | None


class EmbeddingRecord(BaseModel):
    """An upsert carries L2-normalised float32 vectors (little-endian bytes, base64): one
    in ``vector`` (schema version 1) or one per image in ``images`` (version 2); a delete
    carries none. A Kafka tombstone on this topic deletes the product too; its input
    position is in the ``catalens-input-offset`` header (decimal ASCII)."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = 1
    op: Op
    product_id: ProductId
    version: Annotated[int, Field(ge=0, le=MAX_VERSION)]
    event_id: str
    occurred_at: AwareDatetime
    embedded_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    model: str = Field(description="the model that made the vector")
    model_fingerprint: str | None = Field(
        default=None,
        description="digest of the model's weights: two checkpoints under one name never mix "
        "(absent from older embedders)",
    )
    dim: int = Field(ge=0)
    vector: str | None = Field(default=None, description="float32 little-endian, base64")
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    image: str | None = Field(default=None, description="a displayable image reference")
    images: Annotated[list[EmbeddedImage], Field(max_length=MAX_IMAGES)] | None = Field(
        default=None, description="schema version 2: every image of the product, main first"
    )
    name: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] | None = None
    input_offset: int | None = Field(
        default=None,
        ge=0,
        description="offset of the source event in the input topic: orders a product's "
        "records however often they are re-emitted (absent from older embedders)",
    )

    @model_validator(mode="after")
    def _vectors_match_op(self) -> Self:
        if self.op is not Op.UPSERT:
            return self
        if self.images is None:
            if self.vector is None:
                raise ValueError("an upsert carries a vector")
            encoded = [self.vector]
        else:
            if not self.images:
                raise ValueError("an upsert carries at least one image")
            ids = [image.id for image in self.images]
            if len(set(ids)) != len(ids):
                raise ValueError(f"image ids must be unique; got {ids}")
            encoded = [image.vector for image in self.images]
        for text in encoded:
            if len(base64.b64decode(text)) != 4 * self.dim:
                raise ValueError(f"vector does not hold {self.dim} float32 values")
        return self

    @staticmethod
    def pack(vector: Vector) -> str:
        return pack(vector)

    def unpack(self) -> Vector:
        """The vector of a version 1 record (its one image)."""
        if self.vector is None:
            raise ValueError(f"{self.op} record of {self.product_id} has no vector")
        return unpack(self.vector)

    def image_vectors(self) -> list[ImageVector]:
        """Every image of an upsert, main image first, whatever the schema version."""
        if self.images is None:
            return [ImageVector("0", 0, self.unpack(), self.image)] if self.vector else []
        return [
            ImageVector(image.id, position, unpack(image.vector), image.image)
            for position, image in enumerate(self.images)
        ]

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
