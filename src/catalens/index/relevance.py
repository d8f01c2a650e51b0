"""Search quality as numbers (pure): judgments in, recall@k, nDCG@k and MRR out.

A judgment is one query and the products that are relevant to it (DESIGN.md:
``{"query": "...", "relevant": ["product id", ...]}`` per line of a JSON Lines file).
Relevance is binary: nDCG@k counts a relevant product at rank i (from 1) as
1 / log2(i + 1), divided by what the best possible ranking of the query's relevant
products would count; MRR is 1 / the rank of the first relevant product within k (0 when
none is). Each figure is the mean over the queries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from catalens.errors import UsageError


@dataclass(frozen=True)
class Judgment:
    query: str
    relevant: frozenset[str]


@dataclass(frozen=True)
class Quality:
    """The mean figures of one mode over a set of judgments."""

    k: int
    queries: int
    recall: float
    ndcg: float
    mrr: float

    def to_json(self) -> dict[str, float | int]:
        return {
            "k": self.k,
            "queries": self.queries,
            f"recall@{self.k}": round(self.recall, 4),
            f"ndcg@{self.k}": round(self.ndcg, 4),
            "mrr": round(self.mrr, 4),
        }


def read_judgments(path: Path) -> list[Judgment]:
    """The judgments of a JSON Lines file; a :class:`UsageError` naming the line of the
    first one that is not ``{"query": text, "relevant": [product ids]}``."""
    judgments = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read judgments {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            query, relevant = raw["query"], raw["relevant"]
            if not isinstance(query, str) or not query.strip():
                raise ValueError("query must be a non-blank string")
            if not isinstance(relevant, list) or not all(isinstance(p, str) for p in relevant):
                raise ValueError("relevant must be a list of product ids")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{path}:{number}: not a judgment ({exc})") from None
        judgments.append(Judgment(query, frozenset(relevant)))
    if not judgments:
        raise UsageError(f"{path} holds no judgments")
    return judgments


def ranking_quality(ranked: Sequence[str], relevant: frozenset[str], k: int) -> Quality:
    """The figures of one ranking (its first ``k`` products) for one query."""
    top = list(ranked[:k])
    gains = [1.0 if product in relevant else 0.0 for product in top]
    dcg = sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(k, len(relevant)) + 1))
    first = next((rank for rank, gain in enumerate(gains, start=1) if gain), None)
    return Quality(
        k=k,
        queries=1,
        recall=sum(gains) / len(relevant) if relevant else 0.0,
        ndcg=dcg / ideal if ideal else 0.0,
        mrr=1 / first if first else 0.0,
    )


def evaluate(
    judgments: Iterable[Judgment], search: Callable[[str], Sequence[str]], k: int
) -> Quality:
    """The mean figures of ``search`` (query → ranked product ids) over ``judgments``."""
    each = [ranking_quality(search(j.query), j.relevant, k) for j in judgments]
    if not each:
        raise ValueError("no judgments to evaluate")
    return Quality(
        k=k,
        queries=len(each),
        recall=sum(q.recall for q in each) / len(each),
        ndcg=sum(q.ndcg for q in each) / len(each),
        mrr=sum(q.mrr for q in each) / len(each),
    )
