"""Plain values shared by the roles and their adapters: no client library imported here.

A consumed Kafka record, a row of the index, what the index knows of a product, a search
hit. The pure logic (the sink's plan, the embedder's steps, the API's filters) works on
these, so it can be tested, and imported, without a broker or a database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from catalens.schemas.embedding import Vector
from catalens.schemas.event import AttributeValue

Partition = tuple[str, int]
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, detached from the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int

    @property
    def tp(self) -> Partition:
        return (self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class Row:
    """One live product in the index."""

    product_id: str
    version: int
    vector: Vector
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    image: str | None = None
    updated_at_ms: int = 0
    # Offset of the embedding record that wrote the row. All records of a product share
    # one partition, so offsets order them; a redelivered tombstone only removes rows
    # written before it.
    source_offset: int = -1


@dataclass(frozen=True, slots=True)
class Hit:
    product_id: str
    score: float
    version: int
    attributes: dict[str, AttributeValue]
    image: str | None


@dataclass(frozen=True, slots=True)
class Stored:
    """What the index knows of a product: its live version and its delete floor."""

    live: int | None = None
    deleted_upto: int | None = None
    live_offset: int = -1


def quote(text: str) -> str:
    """A Milvus expression string literal for ``text``: no input can break out of it."""
    return json.dumps(text, ensure_ascii=False)
