"""``catalens index status | promote MODEL | drop MODEL``: the operator's view of the
generations of an alias, and the switch between them."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from catalens.errors import OperatorError
from catalens.index.checks import promotion_check
from catalens.kafka.client import group_lag
from catalens.settings import CatalensSettings, model_key
from catalens.store.admin import Generation, IndexAdmin
from catalens.store.client import Milvus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationStatus:
    generation: Generation
    # Records the generation's embedder and sink still have to read (None: no such group).
    # Derived from the broker's end offsets, which are wrong on the development broker.
    embedder_behind: int | None
    sink_behind: int | None

    def to_json(self) -> dict[str, Any]:
        identity = self.generation.identity
        return {
            "model": self.generation.model,
            "collection": self.generation.collection,
            "dim": identity.dim if identity else None,
            "fingerprint": identity.fingerprint if identity else None,
            "rows": self.generation.rows,
            "serving": self.generation.serving,
            "embedder_behind": self.embedder_behind,
            "sink_behind": self.sink_behind,
        }


def status(settings: CatalensSettings) -> list[GenerationStatus]:
    out = []
    for generation in generations(settings):
        embedder, sink = generation_groups(generation)
        out.append(
            GenerationStatus(
                generation,
                group_lag(settings, embedder, settings.input_topic),
                group_lag(settings, sink, settings.embeddings_topic),
            )
        )
    return out


def generations(settings: CatalensSettings) -> list[Generation]:
    """Every generation of the alias ``settings.collection``, with its row count."""
    milvus = Milvus.from_settings(settings)
    try:
        return IndexAdmin(milvus, settings.collection).generations()
    finally:
        milvus.close()


def generation_groups(generation: Generation) -> tuple[str, str]:
    """The consumer groups (embedder, sink) that build ``generation`` when the workers
    keep their default group names (settings.EmbedderSettings.embedder_group)."""
    key = model_key(generation.model)
    return f"catalens-embedder.{key}", f"catalens-sink.{key}"


def promote(settings: CatalensSettings, model: str, *, tolerance: float, force: bool) -> str:
    """Point the alias at ``model``'s generation after the promotion check; raises
    :class:`PromotionRefused` (unless ``force``) with what the check found."""
    milvus = Milvus.from_settings(settings, timeout_s=120)
    try:
        admin = IndexAdmin(milvus, settings.collection)
        candidate = admin.find(model)
        served = next((g for g in admin.generations() if g.serving), None)
        if candidate.serving:
            return f"{candidate.model} is already served by {settings.collection}"
        if served is not None:
            readiness = promotion_check(
                admin.product_ids(served.collection),
                admin.product_ids(candidate.collection),
                tolerance=tolerance,
            )
            if not readiness.ready and not force:
                raise PromotionRefused(readiness.problems)
            for problem in readiness.problems:
                log.warning("promoting despite: %s", problem)
        admin.serve(candidate.collection)
        return f"{settings.collection} now serves {candidate.model} ({candidate.collection})"
    finally:
        milvus.close()


def drop(settings: CatalensSettings, model: str) -> str:
    milvus = Milvus.from_settings(settings, timeout_s=120)
    try:
        admin = IndexAdmin(milvus, settings.collection)
        generation = admin.find(model)
        admin.drop(generation.collection)
        return f"dropped {generation.model} ({generation.collection})"
    finally:
        milvus.close()


class PromotionRefused(OperatorError):
    """The promotion check found differences between the served generation and the
    candidate; ``problems`` says which, and the message holds them all on one line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("not promoted: " + "; ".join(problems))
        self.problems = problems


def as_json(rows: list[GenerationStatus]) -> str:
    return json.dumps([row.to_json() for row in rows], indent=2)
