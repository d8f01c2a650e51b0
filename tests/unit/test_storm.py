"""The dead-letter storm guard's decision, alone."""

from __future__ import annotations

import pytest

from catalens.embedder.storm import StormGuard, StormLimits


def feed(guard: StormGuard, outcomes: list[str | None]) -> list[int]:
    """The indexes of the outcomes on which ``guard`` said it tripped."""
    return [i for i, outcome in enumerate(outcomes) if guard.observe(outcome)]


def test_a_stream_of_nothing_but_dead_letters_trips_once_the_minimum_is_in() -> None:
    guard = StormGuard(StormLimits(ratio=0.5, window=200, min_records=50))
    assert feed(guard, ["image_not_found"] * 300) == [49]
    assert guard.tripped
    assert guard.top_reasons() == [("image_not_found", 50)]


def test_scattered_dead_letters_below_the_ratio_never_trip() -> None:
    guard = StormGuard(StormLimits(ratio=0.5, window=100, min_records=100))
    # Two in five are dead letters: 40 % of every full window, under the 50 % limit.
    outcomes = [("invalid_json" if i % 5 < 2 else None) for i in range(5000)]
    assert feed(guard, outcomes) == []
    assert not guard.tripped


def test_only_the_window_counts_so_old_dead_letters_age_out() -> None:
    guard = StormGuard(StormLimits(ratio=0.5, window=10, min_records=10))
    # 4 dead letters then 6 good records (4 of 10), then good ones push the dead out,
    # then 5 dead letters: 5 of the last 10 reaches the limit on the fifth.
    outcomes: list[str | None] = ["not_an_image"] * 4 + [None] * 16 + ["fetch_failed"] * 5
    assert feed(guard, outcomes) == [24]
    assert guard.top_reasons() == [("fetch_failed", 5)]
    assert (guard.dead(), guard.seen()) == (5, 10)


def test_the_commonest_reasons_come_first() -> None:
    guard = StormGuard(StormLimits(ratio=0.9, window=10, min_records=10))
    feed(guard, ["a", "b", "b", "c", "c", "c", None])
    assert guard.top_reasons(2) == [("c", 3), ("b", 2)]


def test_ratio_zero_turns_the_guard_off() -> None:
    guard = StormGuard(StormLimits(ratio=0.0, window=10, min_records=1))
    assert feed(guard, ["image_not_found"] * 100) == []


def test_a_minimum_above_the_window_waits_for_a_full_window() -> None:
    guard = StormGuard(StormLimits(ratio=1.0, window=5, min_records=50))
    assert feed(guard, ["x"] * 10) == [4]


@pytest.mark.parametrize(
    "limits", [{"ratio": 1.5}, {"ratio": -0.1}, {"window": 0}, {"min_records": 0}]
)
def test_limits_out_of_range_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        StormLimits(**limits)  # type: ignore[arg-type]
