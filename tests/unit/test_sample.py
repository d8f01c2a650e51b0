"""The sample catalog of `catalens up` and the judgments shipped with it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from catalens.index.relevance import read_judgments
from catalens.producer.catalog import read_csv
from catalens.producer.sample import VIEWS, sample_judgments, sample_products, write_sample_catalog
from catalens.schemas import ProductImageEvent

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_judgments_are_those_of_the_default_sample_catalog() -> None:
    """docs/sample-judgments.jsonl is what `catalens up` writes beside its sample: the
    two cannot drift apart."""
    made = "".join(json.dumps(j) + "\n" for j in sample_judgments(sample_products()))
    assert (ROOT / "docs" / "sample-judgments.jsonl").read_text() == made
    judgments = read_judgments(ROOT / "docs" / "sample-judgments.jsonl")
    assert len(judgments) >= 20
    assert all(j.relevant for j in judgments)


def test_the_sample_has_products_of_one_to_four_images_with_names_and_judgments(
    tmp_path: Path,
) -> None:
    path = write_sample_catalog(tmp_path, count=12)
    events = [
        e
        for e in read_csv(path, tmp_path / "images", version=1)
        if isinstance(e, ProductImageEvent)
    ]
    assert len(events) == 12
    assert sorted({len(e.product_images()) for e in events}) == [1, 2, 3, 4]
    for event in events:
        assert event.schema_version == 2 and event.name and event.description
        assert [i.id for i in event.product_images()] == [
            "0",
            *VIEWS[1 : len(event.product_images())],
        ]
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    judgments = read_judgments(tmp_path / "judgments.jsonl")
    ids = {row["article_id"] for row in rows}
    assert all(j.relevant <= ids for j in judgments)
    brand = rows[0]["brand"]
    (by_brand,) = [j for j in judgments if j.query == brand]
    assert by_brand.relevant == {row["article_id"] for row in rows if row["brand"] == brand}
