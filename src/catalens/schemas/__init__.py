"""The event contracts between Catalens roles (see DESIGN.md, "Contracts")."""

from catalens.schemas.dead_letter import DeadLetter, Reason
from catalens.schemas.embedding import EmbeddingRecord
from catalens.schemas.event import (
    SCHEMA_VERSION,
    ImageRef,
    Op,
    ProductImageEvent,
    parse_event,
)

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetter",
    "EmbeddingRecord",
    "ImageRef",
    "Op",
    "ProductImageEvent",
    "Reason",
    "parse_event",
]
