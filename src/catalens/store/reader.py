"""The query side of Milvus: search and look up through the alias (or one collection).

Results are products: a generation holds one row per image, and a search keeps each
product once, with its best-matching image. Milvus ≥ 2.4 groups the rows by product on the
server (``group_by_field``); Milvus 2.3 has no grouping (it ignores the parameter), so
there the reader asks for more rows and keeps each product's best: first four rows per
product wanted (most products have up to four images), and when those hold too few
products, sixteen (the most images a product has), which always holds enough. A page past
the first 1,024 products cannot ask for sixteen rows each (Milvus returns at most 16,384),
so on Milvus 2.3 such a page may come back shorter than ``k``.

Keyword search (Milvus ≥ 2.5, a generation made with the text fields) is BM25 over the
``text`` of each product's main row: one row per product, so nothing needs grouping.
Hybrid search asks for both rankings in two calls at once (the keyword one in a thread of
the reader's) and fuses them per product (``catalens.store.fusion`` says why not on the
server).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from catalens.schemas.event import MAX_IMAGES
from catalens.store.admin import IMAGE_ROWS, SPARSE_FIELD, TEXT_FIELD, IndexAdmin, Layout
from catalens.store.client import Milvus
from catalens.store.expressions import filter_expression, one_of
from catalens.store.fusion import fuse
from catalens.store.memory import assemble
from catalens.store.values import (
    Capabilities,
    Hit,
    ModeUnavailable,
    Product,
    Row,
    Search,
    ServerFeatures,
)

# The most rows one search may return (Milvus' topk limit).
MAX_ROWS = 16_384
# Rows asked for per product wanted, first: enough when products have up to 4 images.
FIRST_ROWS_PER_PRODUCT = 4
# The marks around the words a full-text search matched (Milvus 2.6's highlighter).
_MARKS = ("\x02", "\x03")
_MARKED = re.compile("\x02(.*?)\x03", re.S)
_HIT_FIELDS = ["product_id", "image_id", "version", "attributes", "image", "images", "name"]
# A generation of one row per product (older releases) has none of the image fields.
_PRODUCT_HIT_FIELDS = ["product_id", "version", "attributes", "image"]
_ROW_FIELDS = [
    "product_id",
    "image_id",
    "position",
    "images",
    "version",
    "attributes",
    "image",
    "name",
    "description",
    "updated_at_ms",
    "input_offset",
]


class MilvusReader:
    """Implements :class:`catalens.store.IndexReader` over ``collection`` (an alias or a
    collection name). Nothing indexed yet reads as an empty index, not an error."""

    def __init__(self, milvus: Milvus, collection: str) -> None:
        self._milvus = milvus
        self.collection = collection
        self._layout: Layout | None = None
        self._features: ServerFeatures | None = None
        self._keyword_side: ThreadPoolExecutor | None = None

    def _seen(self) -> Layout | None:
        """The collection's layout once it exists (None before). Loaded when first seen,
        which also makes the client load it again after a Milvus restart."""
        if self._layout is None:
            seen = self.collection in self._milvus.list_collections() or (
                self.collection in self._milvus.alias_names()
            )
            if seen:
                self._milvus.load(self.collection)
                admin = IndexAdmin(self._milvus, self.collection)
                target = self._milvus.alias_target(self.collection) or self.collection
                self._features = admin.features()
                self._layout = admin.layout(target)
        return self._layout

    def capabilities(self) -> Capabilities:
        layout = self._seen()
        features = self._features or ServerFeatures.from_version(self._milvus.server_version())
        return capabilities(features, layout)

    def search(self, search: Search) -> list[Hit]:
        layout = self._seen()
        if layout is None:
            return []
        if search.mode not in (offered := self.capabilities()).modes:
            raise ModeUnavailable(search.mode, offered.missing)
        expr = filter_expression(search.filters)
        if search.mode == "keyword":
            return self._keyword(search, expr, limit=search.k, offset=search.offset)
        if search.mode == "vector":
            return self._vector(search, expr)
        # Each side's best ``depth`` products, whatever the page: every page of one query
        # slices the same fused ranking, so paging never repeats or skips a product.
        window = min(MAX_ROWS, search.fusion.depth)
        both = replace(search, k=window, offset=0)
        if self._keyword_side is None:
            self._keyword_side = ThreadPoolExecutor(4, thread_name_prefix="keyword")
        # In this request's context: its wait on the server counts both sides.
        keyword = self._keyword_side.submit(
            contextvars.copy_context().run, self._keyword, both, expr, limit=window, offset=0
        )
        vector = self._vector(both, expr)
        fused = fuse(vector, keyword.result(), search.fusion)
        return fused[search.offset : search.offset + search.k]

    def _vector(self, search: Search, expr: str) -> list[Hit]:
        """Products by their best image: grouped by the server where it can."""
        layout = self._layout
        assert layout is not None and self._features is not None
        if not search.vectors:
            return []
        if layout.rows != IMAGE_ROWS:
            return self._search_products(search, expr)
        want = search.offset + search.k
        if self._features.grouping:
            single = len(search.vectors) == 1
            lists = self._search(
                search,
                expr,
                limit=search.k if single else want,
                offset=search.offset if single else 0,
                group_by="product_id",
            )
            if single:
                return [_hit(raw) for raw in lists[0]]
            return _best_per_product(lists, search.offset, search.k)
        factor = FIRST_ROWS_PER_PRODUCT
        while True:
            limit = min(MAX_ROWS, want * factor)
            lists = self._search(search, expr, limit=limit)
            hits = _best_per_product(lists, 0, want)
            # A list cut at ``limit`` rows is complete only down to its last score: a row
            # it left out scores lower. Hits at or above the highest such cut are exact
            # (their best image is in, nothing above them is out); below it, a product of
            # another query vector may be missing. At 16 rows per product wanted, every
            # list holds its vector's best ``want`` products whole: exact.
            cuts = [float(rows[-1]["distance"]) for rows in lists if len(rows) >= limit]
            exact = [h for h in hits if not cuts or h.score >= max(cuts)]
            if not cuts or len(exact) >= want or limit == MAX_ROWS or factor >= MAX_IMAGES:
                return hits[search.offset :]
            factor = MAX_IMAGES

    def _keyword(self, search: Search, expr: str, *, limit: int, offset: int) -> list[Hit]:
        """Products by BM25 over their text, which only their main row holds."""
        assert self._features is not None
        if not search.text.strip():
            return []
        params: dict[str, Any] = {"metric_type": "BM25"}
        if offset:
            params["offset"] = offset
        (rows,) = self._milvus.search(
            self.collection,
            [search.text],
            limit=limit,
            expr=expr,
            params=params,
            fields=_HIT_FIELDS,
            anns_field=SPARSE_FIELD,
            highlight=_MARKS if self._features.highlight else None,
        )
        # BM25 scores are positive; Milvus Lite reports them negated, as distances. Only a
        # product's main row holds its text, but a write cut short between the rows of an
        # event that changes its main image leaves two main rows until the redelivery
        # repairs it: the product still answers once.
        best: dict[str, Hit] = {}
        for raw in rows:  # best first
            hit = _hit(raw)
            best.setdefault(hit.product_id, replace(hit, score=abs(float(raw["distance"]))))
        return list(best.values())

    def _search(
        self,
        search: Search,
        expr: str,
        *,
        limit: int,
        offset: int = 0,
        group_by: str | None = None,
    ) -> list[list[dict[str, Any]]]:
        assert self._layout is not None
        params: dict[str, Any] = {
            "metric_type": "IP",
            "params": self._layout.index.search_params(limit + offset, search.params),
        }
        if offset:
            params["offset"] = offset
        return self._milvus.search(
            self.collection,
            [np.asarray(v, dtype=np.float32).tolist() for v in search.vectors],
            limit=limit,
            expr=expr,
            params=params,
            fields=_HIT_FIELDS
            if self._layout and self._layout.rows == IMAGE_ROWS
            else _PRODUCT_HIT_FIELDS,
            group_by=group_by,
        )

    def _search_products(self, search: Search, expr: str) -> list[Hit]:
        """A generation of one row per product (older releases): rows are products."""
        lists = self._search(search, expr, limit=search.offset + search.k)
        return _best_per_product(lists, search.offset, search.k)

    def products(self, product_ids: Sequence[str], *, with_vectors: bool = False) -> list[Product]:
        layout = self._seen()
        if not product_ids or layout is None:
            return []
        old = layout.rows != IMAGE_ROWS
        fields = (
            ["product_id", "version", "attributes", "image", "updated_at_ms", "input_offset"]
            if old
            else list(_ROW_FIELDS)
        )
        if with_vectors:
            fields.append("vector")
        found: dict[str, list[Row]] = {}
        for raw in self._milvus.query(self.collection, one_of("product_id", product_ids), fields):
            found.setdefault(str(raw["product_id"]), []).append(_row(raw))
        return [assemble(found[p], with_vectors) for p in dict.fromkeys(product_ids) if p in found]

    def ping(self) -> None:
        self._milvus.list_collections()

    def close(self) -> None:
        if self._keyword_side is not None:
            self._keyword_side.shutdown(wait=False)
        self._milvus.close()


def capabilities(features: ServerFeatures, layout: Layout | None) -> Capabilities:
    """The modes a generation of ``layout`` on a server of ``features`` answers (before
    any generation: those the first one will), and why the others are not offered."""
    grouping = features.grouping or (layout is not None and layout.rows != IMAGE_ROWS)
    if not features.full_text:
        missing = (
            "keyword and hybrid search need Milvus 2.5 or later (full-text search); "
            f"this server is {features.version}"
        )
        return Capabilities(("vector",), grouping, missing)
    if layout is not None and not layout.text:
        missing = (
            "the served generation was made before keyword search existed (it has no text "
            "fields): it answers vector search; build a new generation to search by words"
        )
        return Capabilities(("vector",), grouping, missing)
    return Capabilities(("vector", "keyword", "hybrid"), grouping)


def _best_per_product(lists: Sequence[Sequence[dict[str, Any]]], offset: int, k: int) -> list[Hit]:
    """Each product once, with its best row over every list, best first; then the page."""
    best: dict[str, Hit] = {}
    for rows in lists:
        for raw in rows:
            hit = _hit(raw)
            kept = best.get(hit.product_id)
            if kept is None or hit.score > kept.score:
                best[hit.product_id] = hit
    ranked = sorted(best.values(), key=lambda h: (-h.score, h.product_id))
    return ranked[offset : offset + k]


def _hit(raw: dict[str, Any]) -> Hit:
    entity = raw.get("entity", {})
    return Hit(
        product_id=str(entity.get("product_id", raw.get("id"))),
        score=float(raw["distance"]),
        version=int(entity.get("version", 0)),
        attributes=dict(entity.get("attributes") or {}),
        image=entity.get("image") or None,
        matched_image=str(entity.get("image_id", "0")),
        images=int(entity.get("images", 1)),
        name=str(entity.get("name") or ""),
        matched_words=matched_words(raw),
    )


def matched_words(raw: dict[str, Any]) -> tuple[str, ...]:
    """The words a full-text hit's highlight marked, each once, in order (none where the
    server reports no highlight)."""
    fragments = ((raw.get("highlight") or {}).get(TEXT_FIELD) or {}).get("fragments") or ()
    words = (word.strip() for fragment in fragments for word in _MARKED.findall(fragment))
    return tuple(dict.fromkeys(word for word in words if word))


def _row(raw: dict[str, Any]) -> Row:
    return Row(
        product_id=str(raw["product_id"]),
        image_id=str(raw.get("image_id", "0")),
        version=int(raw["version"]),
        vector=np.asarray(raw.get("vector", []), dtype=np.float32),
        image=raw.get("image") or None,
        position=int(raw.get("position", 0)),
        images=int(raw.get("images", 1)),
        attributes=dict(raw.get("attributes") or {}),
        name=str(raw.get("name") or ""),
        description=str(raw.get("description") or ""),
        updated_at_ms=int(raw.get("updated_at_ms") or 0),
        input_offset=int(raw.get("input_offset", -1)),
    )
