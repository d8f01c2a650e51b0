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
    reproduces the input exactly even when it was not valid UTF-8. An event too large to
    carry (``event_too_large``, or a letter that would be larger than the largest event)
    leaves its value out: ``value`` is None and ``value_omitted`` true, and a replay
    skips it (its source position says where it is; publish it again from the catalog).
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
    value_omitted: bool = Field(
        default=False,
        description="the original value was too large to carry: `value` is null although "
        "the record had one, and a replay cannot restore it",
    )
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
        value_omitted: bool = False,
    ) -> DeadLetter:
        """The letter of a bad record; ``value_omitted`` leaves its value out."""
        return cls(
            reason=reason,
            message=message,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            key=None if key is None else base64.b64encode(key).decode("ascii"),
            value=None
            if value is None or value_omitted
            else base64.b64encode(value).decode("ascii"),
            value_omitted=value_omitted and value is not None,
            product_id=product_id,
            event_id=event_id,
        )

    def without_value(self) -> DeadLetter:
        """The same letter with its value left out."""
        if self.value is None:
            return self
        return self.model_copy(update={"value": None, "value_omitted": True})

    def original_key(self) -> bytes | None:
        return None if self.key is None else base64.b64decode(self.key)

    def original_value(self) -> bytes | None:
        return None if self.value is None else base64.b64decode(self.value)
