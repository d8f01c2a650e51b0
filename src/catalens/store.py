"""The vector store adapter: the only module that imports pymilvus.

Layout in Milvus: one collection per model (``<alias>__<model>``), served to the query
side through the alias (``CATALENS_COLLECTION``), plus ``<alias>__tombstones``, the delete
floor of each deleted product, so that a late, older upsert can never resurrect a product
deleted at a newer version.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.exceptions import (
    DataNotMatchException,
    DataTypeNotSupportException,
    ParamError,
    PrimaryKeyException,
)

from catalens.records import Hit, Row, Stored, quote
from catalens.retry import TransientError
from catalens.schemas.embedding import Vector

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 4096
MAX_IMAGE_LENGTH = 65535  # a URL, a path, or a small data-URI thumbnail
# Milvus answers an `in [...]` filter over this many primary keys quickly.
QUERY_CHUNK = 500
_TOMBSTONE_DIM = 2


def slug(model: str) -> str:
    """A collection-name-safe rendering of a model id or path."""
    tail = model.rstrip("/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9_]", "_", tail).strip("_")[:80] or "model"


def collection_name(alias: str, model: str) -> str:
    digest = hashlib.sha1(model.encode()).hexdigest()[:8]
    return f"{alias}__{slug(model)}_{digest}"


def _is_bug(exc: Exception) -> bool:
    # Malformed requests are programming errors and must crash; everything else that
    # pymilvus raises (unavailable, timeouts, collection not loaded yet) heals with time.
    return isinstance(
        exc, ParamError | DataNotMatchException | DataTypeNotSupportException | PrimaryKeyException
    )


class VectorStore:
    """Milvus behind the few operations Catalens needs. Every call either succeeds,
    raises :class:`TransientError` (retry later), or raises a bug."""

    def __init__(self, uri: str, token: str | None = None, *, alias: str, timeout_s: float = 10):
        self.alias = alias
        self._uri = uri
        self._token = token or ""
        self._timeout = timeout_s
        self._client = self._connect()
        self._collection: str | None = None
        self._seen_collection = False
        self._reload = False
        self._has_tombstones = False

    def _connect(self) -> MilvusClient:
        try:
            return MilvusClient(uri=self._uri, token=self._token, timeout=self._timeout)
        except Exception as exc:
            raise TransientError(f"cannot reach Milvus at {self._uri}: {exc}") from exc

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``self._client.<fn>``; transient failures drop the client so that the next
        call reconnects (a channel to a restarted server does not always heal itself)."""
        if self._client is None:
            self._client = self._connect()
        if self._reload and fn != "load_collection":
            self._load_again()
        try:
            return getattr(self._client, fn)(*args, timeout=self._timeout, **kwargs)
        except Exception as exc:
            if _is_bug(exc) or not (isinstance(exc, MilvusException) or _looks_transient(exc)):
                raise
            if "not loaded" in str(exc):
                # A restarted Milvus does not always reload what was loaded before.
                self._reload = True
            elif _looks_transient(exc):
                self._reset()
            raise TransientError(f"Milvus {what} failed: {exc}") from exc

    def _load_again(self) -> None:
        names = [self.tombstones] if self._has_tombstones else []
        if self._collection is not None:
            names.append(self._collection)
        for name in names:
            log.info("loading %s again", name)
            self._call("load_collection", "load_collection", name)
        self._reload = False

    def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    @property
    def tombstones(self) -> str:
        return f"{self.alias}__tombstones"

    def open_collection(self, model: str) -> bool:
        """Use the existing collection of ``model``; False when there is none yet."""
        name = collection_name(self.alias, model)
        self._ensure_tombstones()
        if not self._call("has_collection", "has_collection", name):
            return False
        self._call("load_collection", "load_collection", name)
        self._collection = name
        return True

    def ensure_collection(
        self, model: str, dim: int, *, hnsw_m: int = 16, ef_construction: int = 200
    ) -> str:
        """Create (if missing) and load the collection for ``model``; point the alias at
        it when the alias does not exist yet. Returns the collection name. Idempotent."""
        name = collection_name(self.alias, model)
        self._ensure_tombstones()
        if not self._call("has_collection", "has_collection", name):
            schema = MilvusClient.create_schema(
                auto_id=False,
                enable_dynamic_field=False,
                description=f"Catalens products, model {model}"[:250],
            )
            schema.add_field(
                "product_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH
            )
            schema.add_field("version", DataType.INT64)
            schema.add_field("category", DataType.VARCHAR, max_length=MAX_TEXT_LENGTH)
            schema.add_field("image", DataType.VARCHAR, max_length=MAX_IMAGE_LENGTH)
            schema.add_field("updated_at_ms", DataType.INT64)
            schema.add_field("source_offset", DataType.INT64)
            schema.add_field("attributes", DataType.JSON)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            index = MilvusClient.prepare_index_params()
            # Vectors are L2-normalised, so inner product is cosine similarity.
            index.add_index(
                "vector",
                index_type="HNSW",
                metric_type="IP",
                params={"M": hnsw_m, "efConstruction": ef_construction},
            )
            self._call(
                "create_collection",
                "create_collection",
                name,
                schema=schema,
                index_params=index,
                consistency_level="Bounded",
            )
            log.info("created collection %s (dim %d)", name, dim)
        self._call("load_collection", "load_collection", name)
        aliases = self._call("list_aliases", "list_aliases")
        if self.alias not in _alias_names(aliases):
            try:
                self._call("create_alias", "create_alias", name, self.alias)
                log.info("alias %s -> %s", self.alias, name)
            except (MilvusException, TransientError) as exc:  # a replica won the race
                log.info("alias %s not created: %s", self.alias, exc)
        self._collection = name
        return name

    def _ensure_tombstones(self) -> None:
        tomb = self.tombstones
        if not self._call("has_collection", "has_collection", tomb):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(
                "product_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH
            )
            schema.add_field("version", DataType.INT64)
            schema.add_field("marker", DataType.FLOAT_VECTOR, dim=_TOMBSTONE_DIM)
            index = MilvusClient.prepare_index_params()
            index.add_index("marker", index_type="FLAT", metric_type="L2")
            self._call(
                "create_collection",
                "create_collection",
                tomb,
                schema=schema,
                index_params=index,
                consistency_level="Strong",
            )
        self._call("load_collection", "load_collection", tomb)
        self._has_tombstones = True

    def use(self, collection: str | None = None) -> None:
        """Read through ``collection`` (default: the alias)."""
        self._collection = collection or self.alias
        self._seen_collection = False

    @property
    def collection(self) -> str:
        if self._collection is None:
            raise RuntimeError("call ensure_collection() or use() first")
        return self._collection

    @property
    def has_collection(self) -> bool:
        return self._collection is not None

    # -- sink side ----------------------------------------------------------------------

    def stored_versions(self, product_ids: Sequence[str]) -> dict[str, Stored]:
        """Live version and delete floor of each product, read with Strong consistency
        so that the sink's own previous writes are seen."""
        live: dict[str, int] = {}
        floors: dict[str, int] = {}
        targets = [(self.tombstones, floors)]
        if self._collection is not None:
            targets.append((self._collection, live))
        for chunk in _chunks(product_ids, QUERY_CHUNK):
            expr = f"product_id in [{', '.join(quote(p) for p in chunk)}]"
            for target, into in targets:
                rows = self._call(
                    "query",
                    "query",
                    target,
                    filter=expr,
                    output_fields=["product_id", "version"],
                    consistency_level="Strong",
                )
                for row in rows:
                    into[row["product_id"]] = int(row["version"])
        return {p: Stored(live.get(p), floors.get(p)) for p in product_ids}

    def write(
        self, *, upserts: Sequence[Row], deletes: Sequence[str], floors: Sequence[tuple[str, int]]
    ) -> None:
        """Apply one batch. Delete floors are written first, so a crash half-way leaves
        a state that the redelivered batch completes (every step is idempotent)."""
        if floors:
            marker = [0.0] * _TOMBSTONE_DIM
            self._call(
                "upsert",
                "upsert",
                self.tombstones,
                data=[{"product_id": p, "version": v, "marker": marker} for p, v in floors],
            )
        if deletes:
            for chunk in _chunks(deletes, QUERY_CHUNK):
                self._call("delete", "delete", self.collection, ids=list(chunk))
        if upserts:
            self._call(
                "upsert",
                "upsert",
                self.collection,
                data=[_to_entity(row) for row in upserts],
            )

    # -- query side ---------------------------------------------------------------------

    def search(
        self, vectors: Sequence[Vector], *, k: int, offset: int = 0, expr: str = "", ef: int = 64
    ) -> list[list[Hit]]:
        params: dict[str, Any] = {"metric_type": "IP", "params": {"ef": max(ef, k + offset)}}
        if offset:
            params["offset"] = offset
        if not self._exists():
            return [[] for _ in vectors]  # nothing indexed yet is an empty index
        results = self._call(
            "search",
            "search",
            self.collection,
            data=[np.asarray(v, dtype=np.float32).tolist() for v in vectors],
            anns_field="vector",
            limit=k,
            filter=expr,
            search_params=params,
            output_fields=["version", "attributes", "image"],
        )
        return [[_hit(h) for h in hits] for hits in results]

    def _exists(self) -> bool:
        """Whether the collection (or alias) read from exists; remembered once true."""
        if self._seen_collection:
            return True
        names = self._call("list_collections", "list_collections")
        aliases = _alias_names(self._call("list_aliases", "list_aliases"))
        self._seen_collection = self.collection in names or self.collection in aliases
        return self._seen_collection

    def get(self, product_ids: Sequence[str], *, with_vector: bool = False) -> list[Row]:
        if not product_ids or not self._exists():
            return []
        fields = ["product_id", "version", "attributes", "image", "updated_at_ms"]
        if with_vector:
            fields.append("vector")
        expr = f"product_id in [{', '.join(quote(p) for p in product_ids)}]"
        rows = self._call("query", "query", self.collection, filter=expr, output_fields=fields)
        return [
            Row(
                product_id=r["product_id"],
                version=int(r["version"]),
                vector=np.asarray(r.get("vector", []), dtype=np.float32),
                attributes=dict(r.get("attributes") or {}),
                image=r.get("image") or None,
                updated_at_ms=int(r.get("updated_at_ms") or 0),
            )
            for r in rows
        ]

    def flush_and_index(self, timeout_s: float = 600) -> None:
        """Seal what was written and wait until the vector index covers all of it
        (benchmarks: growing segments are searched without the index)."""
        import time

        self._call("flush", "flush", self.collection)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = self._call("describe_index", "describe_index", self.collection, "vector")
            if int(info.get("pending_index_rows", 0)) == 0 and info.get("state") != "InProgress":
                return
            time.sleep(1)
        raise TransientError(f"index of {self.collection} not built in {timeout_s}s")

    def ping(self) -> None:
        self._call("list_collections", "list_collections")

    def drop_all(self) -> None:
        """Drop the alias and every collection behind it (tests, reindexing from scratch)."""
        names = self._call("list_collections", "list_collections")
        if self.alias in _alias_names(self._call("list_aliases", "list_aliases")):
            self._call("drop_alias", "drop_alias", self.alias)
        for name in names:
            if name.startswith(f"{self.alias}__"):
                self._call("drop_collection", "drop_collection", name)
        self._collection = None

    def close(self) -> None:
        self._reset()


def _to_entity(row: Row) -> dict[str, Any]:
    category = row.attributes.get("category", "")
    return {
        "product_id": row.product_id,
        "version": row.version,
        "category": str(category)[:MAX_TEXT_LENGTH],
        "image": row.image if row.image and len(row.image) <= MAX_IMAGE_LENGTH else "",
        "updated_at_ms": row.updated_at_ms,
        "source_offset": row.source_offset,
        "attributes": row.attributes,
        "vector": np.asarray(row.vector, dtype=np.float32).tolist(),
    }


def _hit(raw: Any) -> Hit:
    entity = raw.get("entity", {})
    return Hit(
        product_id=str(raw["id"]),
        score=float(raw["distance"]),
        version=int(entity.get("version", 0)),
        attributes=dict(entity.get("attributes") or {}),
        image=entity.get("image") or None,
    )


def _alias_names(aliases: Any) -> list[str]:
    if isinstance(aliases, dict):
        return list(aliases.get("aliases", []))
    return list(aliases or [])


def _looks_transient(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        s in text
        for s in (
            "unavailable",
            "connect",
            "timeout",
            "deadline",
            "closed",
            "not loaded",
            "rpcerror",
            "channel",
        )
    )


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
