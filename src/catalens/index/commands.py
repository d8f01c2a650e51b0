"""``catalens index status | promote NAME | drop NAME``: the operator's view of the
generations of an alias, and the switch between them. A generation is named by its name
(``catalens index status``), its collection, or its model where the model has one."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from catalens.errors import OperatorError
from catalens.index.checks import promotion_check
from catalens.index.evaluate import GenerationSearch
from catalens.index.relevance import Judgment
from catalens.kafka.client import group_lag
from catalens.settings import (
    ApiSettings,
    CatalensSettings,
    default_embedder_group,
    default_sink_group,
)
from catalens.store.admin import Generation, IndexAdmin
from catalens.store.client import Milvus
from catalens.store.values import Mode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationStatus:
    generation: Generation
    alias: str
    # Records the generation's embedder and sink still have to read (None: no such group).
    # Derived from the broker's end offsets, which are wrong on the development broker.
    embedder_behind: int | None
    sink_behind: int | None

    def to_json(self) -> dict[str, Any]:
        identity = self.generation.identity
        index = self.generation.layout.index
        return {
            "name": self.generation.name(self.alias),
            "model": self.generation.model,
            "collection": self.generation.collection,
            "index": index.to_json(),
            "memory_bytes": self.generation.memory_bytes(),
            "shards": self.generation.shards,
            "keyword_search": self.generation.layout.text,
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
        embedder, sink = generation_groups(generation, settings.collection)
        out.append(
            GenerationStatus(
                generation,
                settings.collection,
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


def generation_groups(generation: Generation, alias: str) -> tuple[str, str]:
    """The consumer groups (embedder, sink) that build ``generation`` when the workers
    keep their default group names (catalens.settings: the embedder's follows the model,
    the sink's the generation)."""
    return (
        default_embedder_group(generation.model),
        default_sink_group(generation.model, generation.name(alias)),
    )


@dataclass(frozen=True)
class QualityCheck:
    """``promote --eval``: the judgments both generations are searched with, and how much
    lower the candidate's nDCG@k may be than the served one's."""

    judgments: list[Judgment]
    tolerance: float = 0.02
    k: int = 10
    mode: Mode | None = None  # None: the candidate's default mode


def promote(
    settings: CatalensSettings,
    model: str,
    *,
    tolerance: float,
    force: bool,
    quality: QualityCheck | None = None,
) -> str:
    """Point the alias at the generation named ``model`` after the promotion check (the
    same products as the served one, none at an older version) and, with ``quality``, the
    quality check (its nDCG@k on the judgments no worse than the served one's by more than
    the tolerance);
    raises :class:`PromotionRefused` (unless ``force``) with what the checks found."""
    milvus = Milvus.from_settings(settings, timeout_s=120)
    try:
        admin = IndexAdmin(milvus, settings.collection)
        candidate = admin.find(model)
        served = next((g for g in admin.generations() if g.serving), None)
        if candidate.serving:
            return f"{candidate.model} is already served by {settings.collection}"
        if served is not None:
            readiness = promotion_check(
                admin.product_versions(served.collection),
                admin.product_versions(candidate.collection),
                tolerance=tolerance,
            )
            problems = list(readiness.problems)
            if quality is not None:
                problems += quality_problems(milvus, settings, served, candidate, quality)
            if problems and not force:
                raise PromotionRefused(problems)
            for problem in problems:
                log.warning("promoting despite: %s", problem)
        admin.serve(candidate.collection)
        return f"{settings.collection} now serves {candidate.model} ({candidate.collection})"
    finally:
        milvus.close()


def quality_problems(
    milvus: Milvus,
    settings: CatalensSettings,
    served: Generation,
    candidate: Generation,
    check: QualityCheck,
) -> list[str]:
    """Why the candidate searches worse than the served generation on the judgments, in
    the mode both answer (the candidate's default where the served one answers it too,
    else vector); nothing when it does not."""
    api = ApiSettings(**settings.model_dump(exclude={"model"}))
    old = GenerationSearch(milvus, settings.collection, served.collection, api)
    new = GenerationSearch(milvus, settings.collection, candidate.collection, api)
    mode = check.mode or new.default_mode()
    if mode not in old.modes() or mode not in new.modes():
        mode = "vector"
    before = old.quality(check.judgments, mode, check.k)
    after = new.quality(check.judgments, mode, check.k)
    log.info(
        "nDCG@%d in %s mode: served %.4f, candidate %.4f", check.k, mode, before.ndcg, after.ndcg
    )
    if after.ndcg < before.ndcg - check.tolerance:
        return [
            f"nDCG@{check.k} ({mode}) {after.ndcg:.4f} in the candidate, {before.ndcg:.4f} served "
            f"(tolerance {check.tolerance})"
        ]
    return []


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
