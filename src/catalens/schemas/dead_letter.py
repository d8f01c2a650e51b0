"""The dead-letter record: a bad input, its reason, and everything needed to replay it."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from catalens.errors import Reason

__all__ = ["DeadLetter", "Reason"]


class DeadLetter(BaseModel):
    """One record of ``catalens.product-images.dlq``.

    ``key`` and ``value`` are the original bytes, base64-encoded, so that a replay
    reproduces the input exactly even when it was not valid UTF-8.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: int = 1
    reason: Reason
    message: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: str | None = Field(description="original key, base64")
    value: str | None = Field(description="original value, base64")
    product_id: str | None = None
    event_id: str | None = None
    failed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(
        cls,
        *,
        reason: Reason,
        message: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        product_id: str | None = None,
        event_id: str | None = None,
    ) -> DeadLetter:
        return cls(
            reason=reason,
            message=message,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            key=None if key is None else base64.b64encode(key).decode("ascii"),
            value=None if value is None else base64.b64encode(value).decode("ascii"),
            product_id=product_id,
            event_id=event_id,
        )

    def original_key(self) -> bytes | None:
        return None if self.key is None else base64.b64decode(self.key)

    def original_value(self) -> bytes | None:
        return None if self.value is None else base64.b64decode(self.value)
