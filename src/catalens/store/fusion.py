"""Hybrid search's fusion of two rankings of products (pure): by vector (each product's
best image) and by keyword (BM25 over its text).

Milvus fuses a hybrid search per primary key, and a generation's primary key is an image:
the image that matches the query best and the row that holds the product's text (its main
image's) are different rows whenever the best image is not the main one, so the server
would rank them apart instead of adding them up. The reader therefore asks the server for
both rankings, each grouped by product, and fuses them here, per product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from catalens.store.values import Fusion, Hit


def fuse(vector: Sequence[Hit], keyword: Sequence[Hit], fusion: Fusion) -> list[Hit]:
    """Every product of either ranking once, best fused score first (ties by product
    id). A product keeps the image the vector side matched (its main image when only its
    words matched) and the words the keyword side matched."""
    scores: dict[str, float] = {}
    if fusion.kind == "rrf":
        for ranking in (vector, keyword):
            for rank, hit in enumerate(ranking, start=1):
                scores[hit.product_id] = scores.get(hit.product_id, 0.0) + 1 / (fusion.k + rank)
    else:
        for hit in vector:
            scores[hit.product_id] = fusion.weight * hit.score
        for hit in keyword:
            squashed = 2 / math.pi * math.atan(max(0.0, hit.score))
            scores[hit.product_id] = (
                scores.get(hit.product_id, 0.0) + (1 - fusion.weight) * squashed
            )
    by_vector = {hit.product_id: hit for hit in vector}
    by_keyword = {hit.product_id: hit for hit in keyword}
    fused = []
    for product_id, score in scores.items():
        words = by_keyword[product_id].matched_words if product_id in by_keyword else ()
        shown = by_vector.get(product_id) or by_keyword[product_id]
        fused.append(replace(shown, score=score, matched_words=words))
    return sorted(fused, key=lambda hit: (-hit.score, hit.product_id))
