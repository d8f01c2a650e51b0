"""The query side of Milvus: search and look up through the alias (or one collection)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from catalens.schemas.embedding import Vector
from catalens.store.client import Milvus
from catalens.store.expressions import literal
from catalens.store.values import Hit, Row


class MilvusReader:
    """Implements :class:`catalens.store.IndexReader` over ``collection`` (an alias or a
    collection name). Nothing indexed yet reads as an empty index, not an error."""

    def __init__(self, milvus: Milvus, collection: str) -> None:
        self._milvus = milvus
        self.collection = collection
        self._seen = False

    def _exists(self) -> bool:
        """Whether the collection (or alias) exists; remembered once true. Loaded when
        first seen, which also makes the client load it again after a Milvus restart."""
        if not self._seen:
            seen = self.collection in self._milvus.list_collections() or (
                self.collection in self._milvus.alias_names()
            )
            if seen:
                self._milvus.load(self.collection)
            self._seen = seen
        return self._seen

    def search(
        self, vectors: Sequence[Vector], *, k: int, offset: int = 0, expr: str = "", ef: int = 64
    ) -> list[list[Hit]]:
        if not self._exists():
            return [[] for _ in vectors]
        params: dict[str, Any] = {"metric_type": "IP", "params": {"ef": max(ef, k + offset)}}
        if offset:
            params["offset"] = offset
        results = self._milvus.search(
            self.collection,
            [np.asarray(v, dtype=np.float32).tolist() for v in vectors],
            limit=k,
            expr=expr,
            params=params,
            fields=["version", "attributes", "image"],
        )
        return [[_hit(h) for h in hits] for hits in results]

    def get(self, product_ids: Sequence[str], *, with_vector: bool = False) -> list[Row]:
        if not product_ids or not self._exists():
            return []
        fields = ["product_id", "version", "attributes", "image", "updated_at_ms"]
        if with_vector:
            fields.append("vector")
        expr = f"product_id in [{', '.join(literal(p) for p in product_ids)}]"
        return [
            Row(
                product_id=r["product_id"],
                version=int(r["version"]),
                vector=np.asarray(r.get("vector", []), dtype=np.float32),
                attributes=dict(r.get("attributes") or {}),
                image=r.get("image") or None,
                updated_at_ms=int(r.get("updated_at_ms") or 0),
            )
            for r in self._milvus.query(self.collection, expr, fields)
        ]

    def ping(self) -> None:
        self._milvus.list_collections()

    def close(self) -> None:
        self._milvus.close()


def _hit(raw: dict[str, Any]) -> Hit:
    entity = raw.get("entity", {})
    return Hit(
        product_id=str(raw["id"]),
        score=float(raw["distance"]),
        version=int(entity.get("version", 0)),
        attributes=dict(entity.get("attributes") or {}),
        image=entity.get("image") or None,
    )
