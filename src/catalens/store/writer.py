"""The sink's side of Milvus: read what the index holds for a batch, apply a plan."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from catalens.store.admin import (
    MAX_IMAGE_LENGTH,
    MAX_TEXT_LENGTH,
    ORDER_FIELD,
    TOMBSTONE_DIM,
    IndexAdmin,
    floors_name,
)
from catalens.store.client import Milvus
from catalens.store.expressions import literal
from catalens.store.values import UNKNOWN_OFFSET, ModelIdentity, Plan, Row, Stored

# Milvus answers an `in [...]` filter over this many primary keys quickly.
QUERY_CHUNK = 500
# One upsert call carries at most this many bytes of rows (an estimate), far under gRPC's
# 64 MB message limit: big batches with inline thumbnails would otherwise exceed it.
UPSERT_BYTES = 16 * 1024 * 1024
_NONE = -1  # a floor's version when no version was deleted (versions are ≥ 0)


class MilvusWriter:
    """One model's generation of an alias; implements :class:`catalens.store.IndexWriter`.

    The generation's collection is made by :meth:`create`, for the identity of the first
    vectors; until then the index holds only delete floors.
    """

    def __init__(
        self,
        milvus: Milvus,
        *,
        alias: str,
        model: str,
        hnsw_m: int = 16,
        ef_construction: int = 200,
        read_concurrency: int = 8,
    ) -> None:
        self._milvus = milvus
        # A Strong read waits for Milvus to have applied every write before it (about one
        # time tick, ~0.2 s, whatever the size of the read). Run one at a time, a batch's
        # chunks of live rows and floors waited one tick each; run together, one tick.
        self._reads = ThreadPoolExecutor(max(1, read_concurrency), thread_name_prefix="stored")
        self._admin = IndexAdmin(milvus, alias)
        self._model = model
        self._hnsw = {"hnsw_m": hnsw_m, "ef_construction": ef_construction}
        self._collection: str | None = None
        self._floors = floors_name(alias, model)
        self._identity: ModelIdentity | None = None
        self._opened = False

    @property
    def collection(self) -> str | None:
        return self._collection

    def open(self) -> ModelIdentity | None:
        if not self._opened:
            self._admin.ensure_floors(self._model)
            self._opened = True
        if self._collection is None:
            # Another replica may have created the generation since: a partition it wrote
            # can move here, and its rows must be seen before this one writes over them.
            found = self._admin.open_generation(self._model)
            if found is not None:
                self._collection, self._identity = found
        return self._identity

    def create(self, identity: ModelIdentity) -> None:
        self._collection = self._admin.ensure_generation(identity, **self._hnsw)
        self._identity = identity

    def stored(self, product_ids: Sequence[str]) -> dict[str, Stored]:
        """Read with Strong consistency, so the sink's own previous writes are seen."""
        self.open()
        fields = ["product_id", "version", ORDER_FIELD]
        queries = [
            (name, f"product_id in [{', '.join(literal(p) for p in chunk)}]")
            for chunk in _chunks(product_ids, QUERY_CHUNK)
            for name in (self._floors, self._collection)
            if name is not None
        ]
        answers = self._reads.map(
            lambda query: self._milvus.query(query[0], query[1], fields, strong=True), queries
        )
        live: dict[str, tuple[int, int]] = {}
        floors: dict[str, tuple[int, int]] = {}
        for (name, _), rows in zip(queries, answers, strict=True):
            found = floors if name == self._floors else live
            for row in rows:
                found[row["product_id"]] = (int(row["version"]), int(row[ORDER_FIELD]))
        out: dict[str, Stored] = {}
        for p in product_ids:
            version, position = live.get(p, (None, UNKNOWN_OFFSET))
            deleted, wiped = floors.get(p, (_NONE, UNKNOWN_OFFSET))
            out[p] = Stored(
                live=version,
                deleted_upto=None if deleted == _NONE else deleted,
                input_offset=position,
                wiped_upto=wiped,
            )
        return out

    def apply(self, plan: Plan) -> None:
        """Floors first: a crash half-way leaves a state the redelivered batch completes,
        and never one where a deleted product is missing its floor."""
        self.open()
        if plan.upserts and self._collection is None:
            raise RuntimeError("create() the generation before writing vectors")
        if plan.floors:
            marker = [0.0] * TOMBSTONE_DIM
            self._milvus.upsert(
                self._floors,
                [
                    {
                        "product_id": f.product_id,
                        "version": _NONE if f.deleted_upto is None else f.deleted_upto,
                        ORDER_FIELD: f.wiped_upto,
                        "marker": marker,
                    }
                    for f in plan.floors
                ],
            )
        if plan.deletes and self._collection is not None:
            for chunk in _chunks(plan.deletes, QUERY_CHUNK):
                self._milvus.delete(self._collection, list(chunk))
        if plan.upserts and self._collection is not None:
            for rows in _by_size([_to_entity(row) for row in plan.upserts], UPSERT_BYTES):
                self._milvus.upsert(self._collection, rows)

    def close(self) -> None:
        self._reads.shutdown(wait=False, cancel_futures=True)
        self._milvus.close()


def _to_entity(row: Row) -> dict[str, Any]:
    category = row.attributes.get("category", "")
    return {
        "product_id": row.product_id,
        "version": row.version,
        "category": str(category)[:MAX_TEXT_LENGTH],
        "image": row.image if row.image and len(row.image) <= MAX_IMAGE_LENGTH else "",
        "updated_at_ms": row.updated_at_ms,
        ORDER_FIELD: row.input_offset,
        "attributes": row.attributes,
        "vector": np.asarray(row.vector, dtype=np.float32),
    }


def _by_size(rows: list[dict[str, Any]], limit: int) -> Iterable[list[dict[str, Any]]]:
    """``rows`` in runs of at most ``limit`` estimated bytes (at least one row each)."""
    run: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        # The vector, the variable-length fields in UTF-8, and a margin for the rest.
        text = (row["product_id"], row.get("category", ""), row["image"], str(row["attributes"]))
        cost = 4 * len(row["vector"]) + sum(_utf8_len(t) for t in text) + 256
        if run and size + cost > limit:
            yield run
            run, size = [], 0
        run.append(row)
        size += cost
    if run:
        yield run


def _utf8_len(text: str) -> int:
    """Bytes of ``text`` in UTF-8: a character of another script or an emoji is 2 to 4 of
    them, so counting characters could let a run of such rows past the message limit."""
    return len(text) if text.isascii() else len(text.encode())


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
