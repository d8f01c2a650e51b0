"""The promotion check: a candidate generation holds what the served one holds."""

from __future__ import annotations

from catalens.index.checks import promotion_check


def test_the_same_products_at_the_same_versions_are_ready() -> None:
    served = {"a": 3, "b": 1}
    assert promotion_check(served, dict(served), tolerance=0.0).ready


def test_a_product_at_an_older_version_is_refused_one_ahead_is_not() -> None:
    """A generation built from a compacted topic whose last record of ``a`` was an older
    event than the newest one holds that older version: refused. One whose sink ran ahead
    of the served one's holds a newer version: ready."""
    served = {"a": 5, "b": 1, "c": 2}
    stale = promotion_check(served, {"a": 3, "b": 1, "c": 2}, tolerance=0.01)
    assert stale.problems == [
        "1 products at an older version than served, e.g. a: 3 < 5 (still catching up, or "
        "built from a topic that lost their newest version)"
    ]
    assert promotion_check(served, {"a": 6, "b": 1, "c": 2}, tolerance=0.0).ready


def test_missing_and_extra_products_are_named() -> None:
    found = promotion_check({"a": 1, "b": 1}, {"a": 1, "z": 1}, tolerance=0.5)
    assert found.problems == [
        "1 served products missing, e.g. ['b']",
        "1 products not served, e.g. ['z']",
    ]
