"""An in-memory index: the sink's and the query API's store without Milvus.

It passes the same contract suite as the Milvus adapters (``tests/contract/test_store.py``),
so what the sink's property tests prove over it holds for Milvus too. It holds one row per
image as Milvus does, so a write cut short between rows leaves the same half-written
product there as in Milvus. Search is exact (inner product over every row), grouped by
product, filtered by :meth:`Filters.matches`; vector mode only (full-text search is
Milvus' own).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from catalens.errors import OperatorError
from catalens.store.values import (
    Capabilities,
    Floor,
    Hit,
    ModelIdentity,
    ModeUnavailable,
    Plan,
    Product,
    ProductImage,
    Row,
    RowKey,
    Search,
    Stored,
    StoredImage,
    category_of,
)


class MemoryIndex:
    """Implements :class:`catalens.store.IndexWriter` and :class:`~catalens.store.IndexReader`."""

    def __init__(self) -> None:
        self.rows: dict[RowKey, Row] = {}
        self.floors: dict[str, Floor] = {}
        self.identity: ModelIdentity | None = None
        self._lock = threading.Lock()

    # -- the writer ---------------------------------------------------------------------

    def open(self) -> ModelIdentity | None:
        return self.identity

    def create(self, identity: ModelIdentity) -> None:
        with self._lock:
            if self.identity is None:
                self.identity = identity
            elif (why := self.identity.differs(identity)) is not None:
                raise OperatorError(f"generation of {self.identity.name}: {why}")

    def stored(self, product_ids: Sequence[str]) -> dict[str, Stored]:
        wanted = set(product_ids)
        with self._lock:
            rows: dict[str, list[StoredImage]] = {}
            for row in self.rows.values():
                if row.product_id in wanted:
                    rows.setdefault(row.product_id, []).append(
                        StoredImage(row.image_id, row.version, row.input_offset, row.images)
                    )
            out: dict[str, Stored] = {}
            for p in product_ids:
                floor = self.floors.get(p)
                out[p] = Stored.of(
                    rows.get(p, []),
                    deleted_upto=None if floor is None else floor.deleted_upto,
                    wiped_upto=Stored().wiped_upto if floor is None else floor.wiped_upto,
                )
            return out

    def apply(self, plan: Plan) -> None:
        with self._lock:
            if plan.upserts and self.identity is None:
                raise RuntimeError("create() the generation before writing vectors")
            self.floors.update((f.product_id, f) for f in plan.floors)
            for key in plan.removals:
                self.rows.pop(key, None)
            for row in plan.upserts:
                vector = np.asarray(row.vector, dtype=np.float32).copy()
                self.rows[row.key] = replace(row, vector=vector)

    # -- the reader ---------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return Capabilities(("vector",), True, "the in-memory index searches by vector only")

    def search(self, search: Search) -> list[Hit]:
        if search.mode != "vector":
            raise ModeUnavailable(search.mode, self.capabilities().missing)
        with self._lock:
            rows = [
                r
                for r in self.rows.values()
                if search.filters.matches(r.product_id, category_of(r.attributes), r.attributes)
            ]
        if not rows or not search.vectors:
            return []
        matrix = np.stack([row.vector for row in rows])
        best: dict[str, tuple[float, Row]] = {}
        for vector in search.vectors:
            scores = matrix @ np.asarray(vector, dtype=np.float32)
            for row, score in zip(rows, scores.tolist(), strict=True):
                kept = best.get(row.product_id)
                if kept is None or score > kept[0]:
                    best[row.product_id] = (score, row)
        ranked = sorted(best.values(), key=lambda item: (-item[0], item[1].product_id))
        return [_hit(row, score) for score, row in ranked[search.offset : search.offset + search.k]]

    def products(self, product_ids: Sequence[str], *, with_vectors: bool = False) -> list[Product]:
        with self._lock:
            found: dict[str, list[Row]] = {}
            wanted = set(product_ids)
            for row in self.rows.values():
                if row.product_id in wanted:
                    found.setdefault(row.product_id, []).append(row)
        return [assemble(found[p], with_vectors) for p in dict.fromkeys(product_ids) if p in found]

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


def assemble(rows: Sequence[Row], with_vectors: bool = False) -> Product:
    """A product from its rows: the newest event's rows, main image first (a product that
    a crash left half-written shows what that event wrote, until the redelivery)."""
    newest = max(rows, key=lambda r: (r.version, r.input_offset))
    own = sorted(
        (r for r in rows if (r.version, r.input_offset) == (newest.version, newest.input_offset)),
        key=lambda r: (r.position, r.image_id),
    )
    main = own[0]
    return Product(
        product_id=main.product_id,
        version=main.version,
        images=tuple(
            ProductImage(r.image_id, r.position, r.image, r.vector if with_vectors else None)
            for r in own
        ),
        attributes=dict(main.attributes),
        name=main.name,
        description=next((r.description for r in own if r.description), ""),
        updated_at_ms=main.updated_at_ms,
    )


def _hit(row: Row, score: float) -> Hit:
    return Hit(
        product_id=row.product_id,
        score=score,
        version=row.version,
        attributes=dict(row.attributes),
        image=row.image,
        matched_image=row.image_id,
        images=row.images,
        name=row.name,
    )
