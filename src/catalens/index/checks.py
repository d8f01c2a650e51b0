"""Whether a generation may replace the one the alias serves (pure)."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass


@dataclass(frozen=True)
class Readiness:
    """What the promotion check found: problems, each a sentence; none means ready."""

    problems: list[str]

    @property
    def ready(self) -> bool:
        return not self.problems


def promotion_check(
    serving_ids: Set[str], candidate_ids: Set[str], *, tolerance: float
) -> Readiness:
    """The candidate holds the same products as the served generation, and their counts
    differ by at most ``tolerance`` (a share of the served count): a generation still
    being built, or one built from another topic, is refused."""
    problems = []
    served, built = len(serving_ids), len(candidate_ids)
    if abs(served - built) > tolerance * max(served, 1):
        problems.append(
            f"rows differ: {built} in the candidate, {served} served (tolerance {tolerance:.1%})"
        )
    missing = sorted(serving_ids - candidate_ids)
    extra = sorted(candidate_ids - serving_ids)
    if missing:
        problems.append(f"{len(missing)} served products missing, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} products not served, e.g. {extra[:5]}")
    return Readiness(problems)
