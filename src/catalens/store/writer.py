"""The sink's side of Milvus: read what the index holds for a batch, apply a plan."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from catalens.store.admin import (
    KEY_FIELD,
    MAX_IMAGE_LENGTH,
    MAX_SEARCH_TEXT_LENGTH,
    ORDER_FIELD,
    TEXT_FIELD,
    TOMBSTONE_DIM,
    IndexAdmin,
    Layout,
    floors_name,
    row_key,
)
from catalens.store.client import Milvus
from catalens.store.expressions import one_of
from catalens.store.indexes import IndexSpec
from catalens.store.values import (
    UNKNOWN_OFFSET,
    ModelIdentity,
    Plan,
    Row,
    Stored,
    StoredImage,
    category_of,
)

# Milvus answers an `in [...]` filter over this many products quickly; at 16 images each
# that is 8,000 rows, under the 16,384 a query may return.
QUERY_CHUNK = 500
# One upsert call carries at most this many bytes of rows (an estimate), far under gRPC's
# 64 MB message limit: big batches with inline thumbnails would otherwise exceed it.
UPSERT_BYTES = 16 * 1024 * 1024
_NONE = -1  # a floor's version when no version was deleted (versions are ≥ 0)


class MilvusWriter:
    """One generation of an alias; implements :class:`catalens.store.IndexWriter`.

    The generation's collection is made by :meth:`create`, for the identity of the first
    vectors; until then the index holds only delete floors.
    """

    def __init__(
        self,
        milvus: Milvus,
        *,
        alias: str,
        model: str,
        generation: str = "",
        index: IndexSpec | None = None,
        read_concurrency: int = 8,
        shards: int = 0,
    ) -> None:
        self._milvus = milvus
        # A Strong read waits for Milvus to have applied every write before it (about one
        # time tick, ~0.2 s, whatever the size of the read). Run one at a time, a batch's
        # chunks of live rows and floors waited one tick each; run together, one tick.
        self._reads = ThreadPoolExecutor(max(1, read_concurrency), thread_name_prefix="stored")
        self._admin = IndexAdmin(milvus, alias)
        self._model = model
        self._generation = generation
        self._index = index or IndexSpec.of()
        self._shards = shards
        self._collection: str | None = None
        self._layout: Layout | None = None
        self._floors = floors_name(alias, model, generation, self._index)
        self._opened = False

    @property
    def collection(self) -> str | None:
        return self._collection

    def open(self) -> ModelIdentity | None:
        if not self._opened:
            self._admin.ensure_floors(self._model, self._generation, self._index)
            self._opened = True
        if self._collection is None:
            # Another replica may have created the generation since: a partition it wrote
            # can move here, and its rows must be seen before this one writes over them.
            found = self._admin.open_generation(self._model, self._generation, self._index)
            if found is not None:
                self._collection, self._layout = found
        return None if self._layout is None else self._layout.identity

    def create(self, identity: ModelIdentity) -> None:
        self._collection = self._admin.ensure_generation(
            identity, name=self._generation, index=self._index, shards=self._shards
        )
        self._layout = self._admin.layout(self._collection)

    def stored(self, product_ids: Sequence[str]) -> dict[str, Stored]:
        """Read with Strong consistency, so the sink's own previous writes are seen."""
        self.open()
        queries = [
            (name, fields, one_of("product_id", chunk))
            for chunk in _chunks(product_ids, QUERY_CHUNK)
            for name, fields in (
                (self._floors, ["product_id", "version", ORDER_FIELD]),
                (self._collection, ["product_id", "image_id", "version", ORDER_FIELD, "images"]),
            )
            if name is not None
        ]
        answers = self._reads.map(
            lambda query: self._milvus.query(query[0], query[2], query[1], strong=True), queries
        )
        rows: dict[str, list[StoredImage]] = {}
        floors: dict[str, tuple[int, int]] = {}
        for (name, _fields, _expr), found in zip(queries, answers, strict=True):
            for row in found:
                product_id = row["product_id"]
                if name == self._floors:
                    floors[product_id] = (int(row["version"]), int(row[ORDER_FIELD]))
                else:
                    rows.setdefault(product_id, []).append(
                        StoredImage(
                            str(row["image_id"]),
                            int(row["version"]),
                            int(row[ORDER_FIELD]),
                            int(row["images"]),
                        )
                    )
        out: dict[str, Stored] = {}
        for p in product_ids:
            deleted, wiped = floors.get(p, (_NONE, UNKNOWN_OFFSET))
            out[p] = Stored.of(
                rows.get(p, []),
                deleted_upto=None if deleted == _NONE else deleted,
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
        if plan.removals and self._collection is not None:
            keys = [row_key(product_id, image_id) for product_id, image_id in plan.removals]
            for chunk in _chunks(keys, QUERY_CHUNK):
                self._milvus.delete(self._collection, list(chunk))
        if plan.upserts and self._collection is not None:
            text = self._layout is not None and self._layout.text
            entities = [_to_entity(row, text=text) for row in plan.upserts]
            for run in _by_size(entities, UPSERT_BYTES):
                self._milvus.upsert(self._collection, run)

    def close(self) -> None:
        self._reads.shutdown(wait=False, cancel_futures=True)
        self._milvus.close()


def _to_entity(row: Row, *, text: bool) -> dict[str, Any]:
    main = row.position == 0
    entity: dict[str, Any] = {
        KEY_FIELD: row_key(row.product_id, row.image_id),
        "product_id": row.product_id,
        "image_id": row.image_id,
        "position": row.position,
        "images": row.images,
        "version": row.version,
        "category": category_of(row.attributes),
        "image": row.image if row.image and len(row.image) <= MAX_IMAGE_LENGTH else "",
        "name": row.name,
        # On the main image's row only: a product's text is stored, and counted, once.
        "description": row.description if main else "",
        "updated_at_ms": row.updated_at_ms,
        ORDER_FIELD: row.input_offset,
        "attributes": row.attributes,
        "vector": np.asarray(row.vector, dtype=np.float32),
    }
    if text:
        entity[TEXT_FIELD] = search_text(row) if main else ""
    return entity


def search_text(row: Row) -> str:
    """What full-text search matches a product by: its name, its description and its
    string attributes, cut to what the field holds (in UTF-8 bytes, whole characters)."""
    parts = [row.name, row.description]
    parts += [v for v in row.attributes.values() if isinstance(v, str)]
    joined = "\n".join(p for p in parts if p)
    encoded = joined.encode()
    if len(encoded) <= MAX_SEARCH_TEXT_LENGTH:
        return joined
    return encoded[:MAX_SEARCH_TEXT_LENGTH].decode(errors="ignore")


def _by_size(rows: list[dict[str, Any]], limit: int) -> Iterable[list[dict[str, Any]]]:
    """``rows`` in runs of at most ``limit`` estimated bytes (at least one row each)."""
    run: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        # The vector, the variable-length fields in UTF-8, and a margin for the rest.
        variable = (
            row["product_id"],
            row.get("category", ""),
            row["image"],
            row.get("name", ""),
            row.get("description", ""),
            row.get(TEXT_FIELD, ""),
            str(row["attributes"]),
        )
        cost = 4 * len(row["vector"]) + sum(_utf8_len(t) for t in variable) + 256
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
