"""The layout of an index in Milvus, and its administration.

A *generation* is one collection of an alias, ``<alias>__<name>`` (the name is the model's
key by default): one row per image of every live product, its primary key ``row_key``
made of the product id and the image id, served to the query side through the alias.
Beside each, ``<alias>__<name>__floors``: what the deletes of each product left behind
(the highest version deleted, the position of the last tombstone), so that a late, older
upsert never resurrects it. Floors belong to their generation: a tombstone's floor is the
version that generation held, which can differ between generations when an image loaded
for one and not for the other.

A generation records what it is in the collection's properties (``catalens.generation``:
the model's identity, the layout, whether it has the text fields of full-text search):
Milvus Lite keeps no collection description, where older releases wrote the identity, so
that is only read, for generations made before.

Rows of a product carry its name; its description, and the ``text`` that full-text search
reads (name, description and string attributes), are on its main image's row only, so that
BM25 counts each product once, whatever its number of images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pymilvus import DataType, Function, FunctionType, MilvusClient

from catalens.errors import OperatorError, TransientError
from catalens.settings import generation_name
from catalens.store.client import Milvus
from catalens.store.indexes import IndexSpec
from catalens.store.values import ModelIdentity, ServerFeatures

log = logging.getLogger(__name__)

# Milvus measures a VARCHAR in UTF-8 bytes, the contract its strings in characters (up to
# 4 bytes each): 256-character ids, 64-character image ids, 2,048-character attribute
# values, 512-character names, 8,192-character descriptions.
MAX_ID_LENGTH = 4 * 256
MAX_IMAGE_ID_LENGTH = 4 * 64
MAX_ROW_KEY_LENGTH = 32  # 128 bits in hex (row_key)
MAX_TEXT_LENGTH = 4 * 2048
MAX_NAME_LENGTH = 4 * 512
MAX_DESCRIPTION_LENGTH = 4 * 8192
MAX_IMAGE_LENGTH = 65535  # a URL, a path, or a small data-URI thumbnail
MAX_SEARCH_TEXT_LENGTH = 65535
TOMBSTONE_DIM = 2  # Milvus needs a vector field in every collection
# The field that orders a product's records (see catalens.store.values.Row.input_offset). A
# collection without it was written under the older rule and cannot be trusted to replay.
ORDER_FIELD = "input_offset"
KEY_FIELD = "row_key"
TEXT_FIELD = "text"
SPARSE_FIELD = "sparse"
# The layouts: one row per product (written by releases before products had several
# images: served read-only, in vector mode), one row per image.
PRODUCT_ROWS, IMAGE_ROWS = 1, 2

GENERATION_PROPERTY = "catalens.generation"
# Older releases recorded a generation's identity in its description: this prefix, then
# its ModelIdentity as JSON.
_IDENTITY_PREFIX = "Catalens generation "
# The analyzer of full-text search: words as Unicode segments them, lower-cased, and
# folded to ASCII so that "Café" finds "cafe".
TEXT_ANALYZER = {
    "tokenizer": "standard",
    "filter": ["lowercase", "asciifolding"],
}


class IncompatibleIndex(OperatorError):
    """A collection exists under the expected name but does not have the expected layout
    or model: an operator must act (rebuild, drop, or name the model differently);
    retrying cannot help."""


def collection_name(alias: str, model: str, name: str = "", index: IndexSpec | None = None) -> str:
    return f"{alias}__{generation_name(model, name, index.type if index else 'HNSW')}"


FLOORS_SUFFIX = "__floors"


def floors_name(alias: str, model: str, name: str = "", index: IndexSpec | None = None) -> str:
    return collection_name(alias, model, name, index) + FLOORS_SUFFIX


@dataclass(frozen=True)
class Layout:
    """What a generation's collection holds, as recorded when it was made."""

    identity: ModelIdentity | None  # None: made by a release that did not record it
    rows: int = IMAGE_ROWS  # PRODUCT_ROWS or IMAGE_ROWS
    text: bool = False  # the text fields of full-text search
    index: IndexSpec = field(default_factory=IndexSpec.of)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        assert self.identity is not None
        return json.dumps(
            json.loads(self.identity.to_json())
            | {"layout": self.rows, "text": self.text, "index": self.index.to_json()}
            | self.extra
        )

    @classmethod
    def from_json(cls, text: str) -> Layout:
        raw = json.loads(text)
        return cls(
            identity=ModelIdentity.from_json(text),
            rows=int(raw.get("layout", PRODUCT_ROWS)),
            text=bool(raw.get("text", False)),
            index=IndexSpec.from_json(raw.get("index")),
            extra={k: v for k, v in raw.items() if k not in _RECORDED},
        )


_RECORDED = {"model", "dim", "fingerprint", "layout", "text", "index"}


@dataclass(frozen=True)
class Generation:
    """One generation of an alias, as ``catalens index status`` shows it."""

    collection: str
    layout: Layout
    rows: int
    serving: bool
    shards: int = 0  # as the server describes it (0: not said)

    @property
    def identity(self) -> ModelIdentity | None:
        return self.layout.identity

    @property
    def model(self) -> str:
        return self.identity.name if self.identity is not None else "?"

    def name(self, alias: str) -> str:
        """The generation's name: its collection without the alias."""
        return self.collection.removeprefix(f"{alias}__")

    def memory_bytes(self) -> int | None:
        """An estimate of the query nodes' memory its vectors' index takes (None: the
        dimension is not recorded): rows × the index's bytes per vector, from the index
        type's layout (docs/scale.md measures them with the rows' scalar fields)."""
        if self.identity is None:
            return None
        return round(self.rows * self.layout.index.vector_bytes(self.identity.dim))


class GenerationNotFound(OperatorError):
    """An operator named a generation the alias does not have."""


class IndexAdmin:
    """Creates, opens, lists and drops the collections of one alias. Idempotent: replicas
    may race through any of these calls."""

    def __init__(self, milvus: Milvus, alias: str) -> None:
        self.milvus = milvus
        self.alias = alias

    def features(self) -> ServerFeatures:
        return ServerFeatures.from_version(self.milvus.server_version())

    def ensure_floors(self, model: str, name: str = "", index: IndexSpec | None = None) -> str:
        floors = floors_name(self.alias, model, name, index)
        if not self.milvus.has_collection(floors):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(
                "product_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH
            )
            schema.add_field("version", DataType.INT64)  # -1: no version deleted
            schema.add_field(ORDER_FIELD, DataType.INT64)  # -1: no tombstone
            schema.add_field("marker", DataType.FLOAT_VECTOR, dim=TOMBSTONE_DIM)
            marker = MilvusClient.prepare_index_params()
            marker.add_index("marker", index_type="FLAT", metric_type="L2")
            self.milvus.create_collection(floors, schema, marker, consistency="Strong")
        self.milvus.load(floors)
        return floors

    def open_generation(
        self, model: str, name: str = "", index: IndexSpec | None = None
    ) -> tuple[str, Layout] | None:
        """Load the existing collection of the generation, checked to be one a sink can
        write: its name and layout; None when there is none yet."""
        collection = collection_name(self.alias, model, name, index)
        if not self.milvus.has_collection(collection):
            return None
        layout = self._writable(collection)
        self.milvus.load(collection)
        return collection, layout

    def ensure_generation(
        self,
        identity: ModelIdentity,
        *,
        name: str = "",
        index: IndexSpec | None = None,
        shards: int = 0,
    ) -> str:
        """Create (if missing) and load the generation's collection for ``identity`` with
        the vector ``index`` (HNSW by default) in ``shards`` shards (0: the server's
        default; a collection that exists keeps its own); point the alias at it when the
        alias does not exist yet. Returns the collection's name. Raises :class:`IncompatibleIndex`
        when the collection holds another identity, layout or index, and an OperatorError
        when the server does not offer the index. The text fields of full-text search are
        made where the server has full-text search (Milvus ≥ 2.5)."""
        spec = index or IndexSpec.of()
        collection = collection_name(self.alias, identity.name, name, spec)
        if self.milvus.has_collection(collection):
            stored = self._writable(collection)
            why = None if stored.identity is None else stored.identity.differs(identity)
            if why is None and (stored.index.type, dict(stored.index.params)) != (
                spec.type,
                dict(spec.params),
            ):
                why = (
                    f"its index is {stored.index.type} {dict(stored.index.params)}, this sink's "
                    f"{spec.type} {dict(spec.params)}: name another generation "
                    "(CATALENS_GENERATION) for another index"
                )
            if why is not None:
                raise IncompatibleIndex(f"generation {collection}: {why}")
        else:
            features = self.features()
            spec.check(features)
            layout = Layout(identity, IMAGE_ROWS, features.full_text, spec)
            text = layout.text
            schema = _schema(layout)
            index_params = MilvusClient.prepare_index_params()
            # Vectors are L2-normalised, so inner product is cosine similarity.
            index_params.add_index(
                "vector", index_type=spec.type, metric_type="IP", params=dict(spec.params)
            )
            if text:
                index_params.add_index(
                    SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25"
                )
            self.milvus.create_collection(
                collection,
                schema,
                index_params,
                consistency="Bounded",
                properties={GENERATION_PROPERTY: layout.to_json()},
                shards=shards,
            )
            log.info(
                "created collection %s (dim %d, %s %s, %s)",
                collection,
                identity.dim,
                spec.type,
                dict(spec.params),
                "with full-text search" if text else "vector search only",
            )
        self.milvus.load(collection)
        if self.alias not in self.milvus.alias_names():
            try:
                self.milvus.create_alias(collection, self.alias)
                log.info("alias %s -> %s", self.alias, collection)
            except TransientError as exc:  # a replica won the race, or Milvus is away
                if self.alias not in self.milvus.alias_names():
                    raise
                log.info("alias %s created by another replica (%s)", self.alias, exc)
        return collection

    def _writable(self, collection: str) -> Layout:
        """The layout of ``collection``, after checking that a sink of this release can
        write it."""
        layout = self.layout(collection)
        if layout.rows != IMAGE_ROWS:
            raise IncompatibleIndex(
                f"collection {collection} was made by an older Catalens, with one row per "
                "product: it keeps serving searches (vector mode), but a sink of this release "
                "writes one row per image. Build this model's generation beside it under "
                "another name (CATALENS_GENERATION), promote it, then drop the old one "
                "(README, 'Changing the model without downtime')"
            )
        return layout

    # -- generations ----------------------------------------------------------------------

    def layout(self, collection: str) -> Layout:
        """What ``collection`` holds, as it recorded when made (checked against its fields
        for the oldest releases)."""
        return self._layout(collection, self.milvus.describe_collection(collection))

    def _layout(self, collection: str, described: dict[str, Any]) -> Layout:
        fields = {f["name"] for f in described.get("fields", [])}
        if ORDER_FIELD not in fields:
            raise IncompatibleIndex(
                f"collection {collection} has no {ORDER_FIELD!r} field: it was written by an "
                "older Catalens whose replays were not safe; rebuild it by replaying the input "
                "topic into a new alias (CATALENS_COLLECTION) or drop it"
            )
        recorded = (described.get("properties") or {}).get(GENERATION_PROPERTY)
        if recorded:
            return Layout.from_json(str(recorded))
        description = str(described.get("description") or "")
        identity = (
            ModelIdentity.from_json(description[len(_IDENTITY_PREFIX) :])
            if description.startswith(_IDENTITY_PREFIX)
            else None
        )
        rows = IMAGE_ROWS if KEY_FIELD in fields else PRODUCT_ROWS
        return Layout(identity, rows, TEXT_FIELD in fields)

    def identity(self, collection: str) -> ModelIdentity | None:
        """The model identity ``collection`` was created for (None: not recorded)."""
        return self.layout(collection).identity

    def generations(self) -> list[Generation]:
        """Every generation of the alias, with its row count (read with Strong
        consistency) and whether the alias serves it."""
        serving = self.milvus.alias_target(self.alias)
        prefix = f"{self.alias}__"
        out = []
        for name in sorted(self.milvus.list_collections()):
            if not name.startswith(prefix) or name.endswith(FLOORS_SUFFIX):
                continue
            if name == f"{self.alias}__tombstones":  # the shared floors of older releases
                continue
            described = self.milvus.describe_collection(name)
            try:
                layout = self._layout(name, described)
            except IncompatibleIndex:
                layout = Layout(None, PRODUCT_ROWS)
            self.milvus.load(name)
            out.append(
                Generation(
                    collection=name,
                    layout=layout,
                    rows=self.milvus.count(name),
                    serving=name == serving,
                    shards=int(described.get("num_shards") or 0),
                )
            )
        return out

    def find(self, model: str) -> Generation:
        """The generation named ``model``: by its name, its collection, or its model's
        name when only one generation has that model."""
        generations = self.generations()
        for generation in generations:
            if model in (generation.name(self.alias), generation.collection):
                return generation
        of_model = [g for g in generations if g.model == model]
        if len(of_model) > 1:
            names = ", ".join(g.name(self.alias) for g in of_model)
            raise GenerationNotFound(
                f"{model!r} has several generations under alias {self.alias} ({names}): name one"
            )
        for generation in of_model:
            return generation
        known = ", ".join(f"{g.model} ({g.collection})" for g in generations) or "none"
        raise GenerationNotFound(
            f"no generation of {model!r} under alias {self.alias}; there are: {known}"
        )

    def served(self) -> Generation:
        """The generation the alias serves (GenerationNotFound while there is none)."""
        for generation in self.generations():
            if generation.serving:
                return generation
        raise GenerationNotFound(f"alias {self.alias} serves no generation yet")

    def product_versions(self, collection: str) -> dict[str, int]:
        """Every product of a generation with its version (the newest of its rows)."""
        versions: dict[str, int] = {}
        for row in self.milvus.all_rows(collection, ("product_id", "version")):
            product, version = str(row["product_id"]), int(row["version"])
            versions[product] = max(version, versions.get(product, version))
        return versions

    def serve(self, collection: str) -> None:
        """Point the alias at ``collection``: one atomic switch for every reader."""
        if self.alias in self.milvus.alias_names():
            self.milvus.alter_alias(collection, self.alias)
        else:
            self.milvus.create_alias(collection, self.alias)
        log.info("alias %s -> %s", self.alias, collection)

    def drop(self, collection: str) -> None:
        if self.milvus.alias_target(self.alias) == collection:
            raise IncompatibleIndex(
                f"{collection} is served by alias {self.alias}: promote another generation first"
            )
        self.milvus.drop_collection(collection)
        if self.milvus.has_collection(collection + FLOORS_SUFFIX):
            self.milvus.drop_collection(collection + FLOORS_SUFFIX)

    def drop_all(self) -> None:
        """Drop the alias and every collection behind it (tests, reindexing from scratch)."""
        if self.alias in self.milvus.alias_names():
            self.milvus.drop_alias(self.alias)
        for name in self.milvus.list_collections():
            if name.startswith(f"{self.alias}__"):
                self.milvus.drop_collection(name)

    def flush_and_index(self, name: str, timeout_s: float = 600) -> None:
        """Seal what was written and wait until the vector index covers all of it
        (benchmarks: growing segments are searched without the index)."""
        self.milvus.flush(name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = self.milvus.describe_index(name, "vector")
            if int(info.get("pending_index_rows", 0)) == 0 and info.get("state") != "InProgress":
                return
            time.sleep(1)
        raise TransientError(f"index of {name} not built in {timeout_s}s")


def _schema(layout: Layout) -> Any:
    """The fields of a generation with one row per image."""
    assert layout.identity is not None
    schema = MilvusClient.create_schema(
        auto_id=False,
        enable_dynamic_field=False,
        # Read by releases before the property existed, on servers that keep it.
        description=_IDENTITY_PREFIX + layout.identity.to_json(),
    )
    schema.add_field(KEY_FIELD, DataType.VARCHAR, is_primary=True, max_length=MAX_ROW_KEY_LENGTH)
    schema.add_field("product_id", DataType.VARCHAR, max_length=MAX_ID_LENGTH)
    schema.add_field("image_id", DataType.VARCHAR, max_length=MAX_IMAGE_ID_LENGTH)
    schema.add_field("position", DataType.INT64)
    schema.add_field("images", DataType.INT64)
    schema.add_field("version", DataType.INT64)
    schema.add_field("category", DataType.VARCHAR, max_length=MAX_TEXT_LENGTH)
    schema.add_field("image", DataType.VARCHAR, max_length=MAX_IMAGE_LENGTH)
    schema.add_field("name", DataType.VARCHAR, max_length=MAX_NAME_LENGTH)
    schema.add_field("description", DataType.VARCHAR, max_length=MAX_DESCRIPTION_LENGTH)
    schema.add_field("updated_at_ms", DataType.INT64)
    schema.add_field(ORDER_FIELD, DataType.INT64)
    schema.add_field("attributes", DataType.JSON)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=layout.identity.dim)
    if layout.text:
        schema.add_field(
            TEXT_FIELD,
            DataType.VARCHAR,
            max_length=MAX_SEARCH_TEXT_LENGTH,
            enable_analyzer=True,
            analyzer_params=TEXT_ANALYZER,
        )
        schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=[TEXT_FIELD],
                output_field_names=[SPARSE_FIELD],
            )
        )
    return schema


def row_key(product_id: str, image_id: str) -> str:
    """The primary key of an image's row: a digest of the product id and the image id,
    unambiguous for any two strings (the ids stay readable in their own fields). Hex, so
    that no key needs quoting: pymilvus' query iterator pages by writing the last key it
    read into an expression as it is, and a key with a quote breaks it."""
    pair = json.dumps([product_id, image_id], ensure_ascii=False).encode()
    return hashlib.blake2b(pair, digest_size=16).hexdigest()
