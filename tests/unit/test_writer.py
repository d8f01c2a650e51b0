"""The Milvus writer's own arithmetic: how a plan's rows are split into upsert calls."""

from __future__ import annotations

from typing import Any

from catalens.store.writer import _by_size


def row(i: int, image_bytes: int) -> dict[str, Any]:
    return {
        "product_id": f"p{i}",
        "vector": [0.0] * 512,
        "image": "x" * image_bytes,
        "attributes": {},
    }


def test_rows_go_in_order_in_runs_under_the_limit_and_none_is_lost() -> None:
    rows = [row(i, 1000 * (i % 7)) for i in range(500)]
    runs = list(_by_size(rows, 64 * 1024))
    assert [r["product_id"] for run in runs for r in run] == [r["product_id"] for r in rows]
    assert len(runs) > 1
    for run in runs:
        assert (
            sum(2048 + len(r["product_id"]) + len(r["image"]) + 2 + 256 for r in run) <= 64 * 1024
        )


def test_runs_are_measured_in_utf8_bytes_not_characters() -> None:
    """Emoji attributes are 4 bytes a character: counted as characters, these rows would
    all go in one run of about twice the limit."""
    rows = [{**row(i, 0), "attributes": {"name": "🙂" * 1000}} for i in range(20)]
    runs = list(_by_size(rows, 64 * 1024))
    for run in runs:
        assert sum(2048 + len(str(r["attributes"]).encode()) for r in run) <= 64 * 1024
    assert [r["product_id"] for run in runs for r in run] == [r["product_id"] for r in rows]


def test_a_row_larger_than_the_limit_still_goes_alone() -> None:
    rows = [row(0, 10), row(1, 100_000), row(2, 10)]
    assert [[r["product_id"] for r in run] for run in _by_size(rows, 10_000)] == [
        ["p0"],
        ["p1"],
        ["p2"],
    ]
