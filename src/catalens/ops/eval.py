"""``catalens eval JUDGMENTS.jsonl [--mode M] [--k 10] [--json] [--generation NAME]``:
search quality as numbers — recall@k, nDCG@k and MRR per mode, of the served generation
(or another one, before its promotion), on a judgments file (DESIGN.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from catalens.index.evaluate import GenerationSearch
from catalens.index.relevance import Quality, read_judgments
from catalens.ops.table import render_table
from catalens.settings import ApiSettings
from catalens.store.admin import IndexAdmin
from catalens.store.client import Milvus
from catalens.store.values import Mode


@dataclass(frozen=True)
class Evaluation:
    generation: str
    judgments: str
    by_mode: dict[Mode, Quality]

    def to_json(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "judgments": self.judgments,
            "modes": {mode: quality.to_json() for mode, quality in self.by_mode.items()},
        }

    def render(self) -> str:
        k = next(iter(self.by_mode.values())).k
        table = render_table(
            ("mode", f"recall@{k}", f"nDCG@{k}", "MRR", "queries"),
            [
                (
                    mode,
                    f"{quality.recall:.4f}",
                    f"{quality.ndcg:.4f}",
                    f"{quality.mrr:.4f}",
                    str(quality.queries),
                )
                for mode, quality in self.by_mode.items()
            ],
        )
        return f"{self.generation}, judgments {self.judgments}\n{table}"


def evaluate(
    settings: ApiSettings,
    judgments_path: Path,
    *,
    modes: tuple[Mode, ...] = (),
    k: int = 10,
    generation: str | None = None,
) -> Evaluation:
    """Search the generation (the served one by default) with every judgment, in each of
    ``modes`` (default: every mode it answers)."""
    judgments = read_judgments(judgments_path)
    milvus = Milvus.from_settings(settings, timeout_s=60)
    try:
        admin = IndexAdmin(milvus, settings.collection)
        found = admin.find(generation) if generation else admin.served()
        search = GenerationSearch(milvus, settings.collection, found.collection, settings)
        chosen = modes or search.modes()
        by_mode = {mode: search.quality(judgments, mode, k) for mode in chosen}
        return Evaluation(found.name(settings.collection), str(judgments_path), by_mode)
    finally:
        milvus.close()


def as_json(evaluation: Evaluation) -> str:
    return json.dumps(evaluation.to_json(), indent=2)
