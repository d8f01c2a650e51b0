"""Whether a generation may replace the one the alias serves (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Readiness:
    """What the promotion check found: problems, each a sentence; none means ready."""

    problems: list[str]

    @property
    def ready(self) -> bool:
        return not self.problems


def promotion_check(
    serving: Mapping[str, int], candidate: Mapping[str, int], *, tolerance: float
) -> Readiness:
    """The candidate holds the same products as the served generation (product id →
    version), none at an older version, and their counts differ by at most ``tolerance``
    (a share of the served count): a generation still being built, one built from another
    topic, or one built from a compacted topic that lost a product's newest version (its
    last record was an older one, README "Retention") is refused. A candidate ahead of the
    served generation is not: its sink only ran ahead."""
    problems = []
    served, built = len(serving), len(candidate)
    if abs(served - built) > tolerance * max(served, 1):
        problems.append(
            f"rows differ: {built} in the candidate, {served} served (tolerance {tolerance:.1%})"
        )
    missing = sorted(serving.keys() - candidate.keys())
    extra = sorted(candidate.keys() - serving.keys())
    if missing:
        problems.append(f"{len(missing)} served products missing, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} products not served, e.g. {extra[:5]}")
    behind = sorted(p for p, v in candidate.items() if p in serving and v < serving[p])
    if behind:
        examples = ", ".join(f"{p}: {candidate[p]} < {serving[p]}" for p in behind[:5])
        problems.append(
            f"{len(behind)} products at an older version than served, e.g. {examples} "
            "(still catching up, or built from a topic that lost their newest version)"
        )
    return Readiness(problems)
