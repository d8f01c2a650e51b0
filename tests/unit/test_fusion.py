"""Hybrid search's fusion per product, the modes a server and a generation offer, and the
words a full-text hit's highlight marked (pure)."""

from __future__ import annotations

import math

import pytest

from catalens.store.admin import IMAGE_ROWS, PRODUCT_ROWS, Layout
from catalens.store.fusion import fuse
from catalens.store.reader import capabilities, matched_words
from catalens.store.values import Fusion, Hit, ModelIdentity, ServerFeatures


def hit(product_id: str, score: float, image: str = "0", words: tuple[str, ...] = ()) -> Hit:
    return Hit(product_id, score, 1, {}, f"/{product_id}/{image}", image, 2, "", words)


def test_rrf_adds_each_products_reciprocal_ranks_and_keeps_its_matched_image() -> None:
    vector = [hit("a", 0.9, "back"), hit("b", 0.8), hit("c", 0.7, "detail")]
    keyword = [hit("c", 7.0, words=("levi's",)), hit("d", 5.0, words=("501",)), hit("a", 1.0)]
    fused = fuse(vector, keyword, Fusion("rrf", k=60))
    expected = {
        "a": 1 / 61 + 1 / 63,
        "b": 1 / 62,
        "c": 1 / 63 + 1 / 61,
        "d": 1 / 62,
    }
    assert [h.product_id for h in fused] == ["a", "c", "b", "d"]  # ties: by product id
    assert {h.product_id: h.score for h in fused} == pytest.approx(expected)
    by_id = {h.product_id: h for h in fused}
    # The image the vector side matched; the main image for a product found by words only.
    assert (by_id["a"].matched_image, by_id["c"].matched_image) == ("back", "detail")
    assert by_id["d"].matched_image == "0"
    assert (by_id["c"].matched_words, by_id["a"].matched_words) == (("levi's",), ())


def test_a_product_ranked_high_on_both_sides_beats_one_first_on_one_side_only() -> None:
    vector = [hit("solo", 0.99)] + [hit(f"v{i}", 0.5) for i in range(3)] + [hit("both", 0.4)]
    keyword = [hit(f"k{i}", 3.0) for i in range(3)] + [hit("both", 2.0)]
    assert fuse(vector, keyword, Fusion())[0].product_id == "both"


def test_weighted_fusion_mixes_the_cosine_and_a_squashed_bm25_score() -> None:
    fused = fuse([hit("a", 0.8)], [hit("a", 3.0), hit("b", 100.0)], Fusion("weighted", weight=0.7))
    scores = {h.product_id: h.score for h in fused}
    assert scores["a"] == pytest.approx(0.7 * 0.8 + 0.3 * 2 / math.pi * math.atan(3.0))
    assert scores["b"] == pytest.approx(0.3 * 2 / math.pi * math.atan(100.0))
    assert [h.product_id for h in fused] == ["a", "b"]


MODEL = ModelIdentity("m", 4, "f")


@pytest.mark.parametrize(
    ("version", "layout", "modes", "needs"),
    [
        ("v2.3.5-lite", None, ("vector",), "Milvus 2.5"),
        ("v2.4.9", Layout(MODEL, IMAGE_ROWS, False), ("vector",), "Milvus 2.5"),
        ("milvus_lite-3.2.2", None, ("vector", "keyword", "hybrid"), ""),
        ("milvus_lite-3.2.2", Layout(MODEL, IMAGE_ROWS, True), ("vector", "keyword", "hybrid"), ""),
        ("v2.6.16", Layout(MODEL, IMAGE_ROWS, False), ("vector",), "before keyword search"),
        ("v2.6.16", Layout(MODEL, PRODUCT_ROWS, False), ("vector",), "before keyword search"),
    ],
)
def test_keyword_and_hybrid_need_full_text_search_and_a_generation_with_text_fields(
    version: str, layout: Layout | None, modes: tuple[str, ...], needs: str
) -> None:
    offered = capabilities(ServerFeatures.from_version(version), layout)
    assert offered.modes == modes
    assert needs in offered.missing
    assert offered.default_mode == ("hybrid" if "hybrid" in modes else "vector")


def test_the_words_a_highlight_marked_are_read_once_each_in_order() -> None:
    raw = {
        "distance": 3.2,
        "highlight": {
            "text": {
                "fragments": [
                    "Levi's \x02501\x03 jeans in \x02denim\x03",
                    "\x02Denim\x03 \x02501\x03",
                ],
                "scores": [1.0, 0.5],
            }
        },
    }
    assert matched_words(raw) == ("501", "denim", "Denim")
    assert matched_words({"distance": 1.0}) == ()
