"""The record of ``catalens.product-embeddings``: one product's vector at one version."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Self

import numpy as np
import numpy.typing as npt
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from catalens.schemas.event import MAX_VERSION, AttributeValue, Op, ProductId

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


class EmbeddingRecord(BaseModel):
    """An upsert carries an L2-normalised float32 vector (little-endian bytes, base64);
    a delete carries none. A Kafka tombstone on this topic deletes the product too; its
    input position is in the ``catalens-input-offset`` header (decimal ASCII)."""

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
    input_offset: int | None = Field(
        default=None,
        ge=0,
        description="offset of the source event in the input topic: orders a product's "
        "records however often they are re-emitted (absent from older embedders)",
    )

    @model_validator(mode="after")
    def _vector_matches_op(self) -> Self:
        if self.op is Op.UPSERT:
            if self.vector is None:
                raise ValueError("an upsert carries a vector")
            if len(base64.b64decode(self.vector)) != 4 * self.dim:
                raise ValueError(f"vector does not hold {self.dim} float32 values")
        return self

    @staticmethod
    def pack(vector: Vector) -> str:
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")

    def unpack(self) -> Vector:
        if self.vector is None:
            raise ValueError(f"{self.op} record of {self.product_id} has no vector")
        return np.frombuffer(base64.b64decode(self.vector), dtype="<f4").astype(np.float32)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()
