"""The dead-letter storm guard: when most records turn into dead letters, stop (pure).

A wrong ``CATALENS_IMAGE_ROOTS``, an expired CDN credential or a broken image host makes
every event a dead letter. Dead-lettering the whole stream and committing past it would
hand the operator a replay of everything; stopping instead leaves the records
uncommitted, and a restart after the fix redoes them. The guard watches the last
``window`` outcomes and trips once at least ``min_records`` of them are in and the share
of dead letters among them reaches ``ratio``.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StormLimits:
    """``ratio`` 0 turns the guard off."""

    ratio: float = 0.5
    window: int = 200
    min_records: int = 50

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"storm ratio {self.ratio} is not within 0..1")
        if self.window < 1 or self.min_records < 1:
            raise ValueError("storm window and minimum must be positive")

    @property
    def enabled(self) -> bool:
        return self.ratio > 0


class StormGuard:
    """Feed it every finished record's outcome, in the order they finish. Not thread-safe:
    one loop owns it."""

    def __init__(self, limits: StormLimits) -> None:
        self.limits = limits
        self._recent: deque[str | None] = deque(maxlen=limits.window)
        self._reasons: Counter[str] = Counter()
        self.tripped = False

    def observe(self, dead_letter_reason: str | None) -> bool:
        """Count one outcome (a dead letter's reason, or None for any other outcome);
        True exactly once: on the outcome that trips the guard."""
        if self.tripped or not self.limits.enabled:
            return False
        if len(self._recent) == self._recent.maxlen:
            dropped = self._recent[0]
            if dropped is not None:
                self._reasons[dropped] -= 1
        self._recent.append(dead_letter_reason)
        if dead_letter_reason is not None:
            self._reasons[dead_letter_reason] += 1
        seen = len(self._recent)
        if seen >= min(self.limits.min_records, self.limits.window):
            self.tripped = self.dead() >= self.limits.ratio * seen
        return self.tripped

    def dead(self) -> int:
        """Dead letters among the outcomes in the window."""
        return sum(self._reasons.values())

    def seen(self) -> int:
        return len(self._recent)

    def top_reasons(self, n: int = 3) -> list[tuple[str, int]]:
        """The commonest dead-letter reasons in the window, commonest first."""
        return [(reason, count) for reason, count in self._reasons.most_common(n) if count > 0]
