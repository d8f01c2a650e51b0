"""Plain values of the index seam: a row, what the index knows of a product, a search hit,
the writes a plan makes, and the identity of a generation's model. No client library."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from catalens.schemas.embedding import Vector
from catalens.schemas.event import AttributeValue

# The input position of a record that does not carry one (written by an older embedder).
UNKNOWN_OFFSET = -1


@dataclass(frozen=True, slots=True)
class Row:
    """One live product in the index."""

    product_id: str
    version: int
    vector: Vector
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    image: str | None = None
    updated_at_ms: int = 0
    # Position in the input topic of the event the row was made from (UNKNOWN_OFFSET when
    # not known). All events of a product share one input partition, so this orders them,
    # and it stays the same however often the embedder re-emits the event or the sink
    # re-reads it: a tombstone removes only rows made from events before it.
    input_offset: int = UNKNOWN_OFFSET


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
    input_offset: int = UNKNOWN_OFFSET  # of the live row (see Row.input_offset)
    # Input position of the last tombstone applied: rows made from events before it are
    # gone, and an upsert from before it, however late it arrives, stays out.
    wiped_upto: int = UNKNOWN_OFFSET


@dataclass(frozen=True, slots=True)
class Floor:
    """What a product's deletes leave behind: the highest version deleted (None: none) and
    the input position of the last tombstone (UNKNOWN_OFFSET: none)."""

    product_id: str
    deleted_upto: int | None
    wiped_upto: int = UNKNOWN_OFFSET


@dataclass(slots=True)
class Plan:
    """The writes that bring a set of products to their newest known state. A store
    applies them in this order: floors, then deletes, then upserts (see catalens.store)."""

    upserts: list[Row] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    floors: list[Floor] = field(default_factory=list)
    stale: int = 0  # upserts dropped as older than what the index holds


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """What makes two vectors comparable: the model's name, its output dimension and a
    fingerprint of its weights, so that two checkpoints under one name never mix."""

    name: str
    dim: int
    fingerprint: str

    def to_json(self) -> str:
        return json.dumps({"model": self.name, "dim": self.dim, "fingerprint": self.fingerprint})

    @classmethod
    def from_json(cls, text: str) -> ModelIdentity:
        raw = json.loads(text)
        return cls(str(raw["model"]), int(raw["dim"]), str(raw["fingerprint"]))

    def differs(self, other: ModelIdentity) -> str | None:
        """Why vectors of ``other`` cannot join this model's (None: they can)."""
        for what, mine, theirs in (
            ("model", self.name, other.name),
            ("dimension", self.dim, other.dim),
            ("weights fingerprint", self.fingerprint, other.fingerprint),
        ):
            if mine != theirs:
                return f"{what} {theirs!r} differs from the generation's {mine!r}"
        return None
