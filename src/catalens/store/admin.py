"""The layout of an index in Milvus, and its administration.

One collection per model, ``<alias>__<model key>`` (a *generation*), served to the query
side through the alias; beside each, ``<alias>__<model key>__floors``: what the deletes
of each product left behind (the highest version deleted, the position of the last
tombstone), so that a late, older upsert never resurrects it. Floors belong to their
generation: a tombstone's floor is the version that generation held, which can differ
between generations when an image loaded for one and not for the other.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pymilvus import DataType, MilvusClient

from catalens.errors import OperatorError, TransientError
from catalens.settings import model_key
from catalens.store.client import Milvus
from catalens.store.values import ModelIdentity

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 4096
MAX_IMAGE_LENGTH = 65535  # a URL, a path, or a small data-URI thumbnail
TOMBSTONE_DIM = 2  # Milvus needs a vector field in every collection
# The field that orders a product's records (see catalens.store.values.Row.input_offset). A
# collection without it was written under the older rule and cannot be trusted to replay.
ORDER_FIELD = "input_offset"


class IncompatibleIndex(OperatorError):
    """A collection exists under the expected name but does not have the expected layout
    or model: an operator must act (rebuild, drop, or name the model differently);
    retrying cannot help."""


def collection_name(alias: str, model: str) -> str:
    return f"{alias}__{model_key(model)}"


FLOORS_SUFFIX = "__floors"


def floors_name(alias: str, model: str) -> str:
    return collection_name(alias, model) + FLOORS_SUFFIX


# A generation's collection description: this prefix, then its ModelIdentity as JSON.
_IDENTITY_PREFIX = "Catalens generation "


@dataclass(frozen=True)
class Generation:
    """One model's collection of an alias, as ``catalens index status`` shows it."""

    collection: str
    identity: ModelIdentity | None  # None: written by a Catalens that did not record it
    rows: int
    serving: bool

    @property
    def model(self) -> str:
        return self.identity.name if self.identity is not None else "?"


class GenerationNotFound(OperatorError):
    """An operator named a generation the alias does not have."""


class IndexAdmin:
    """Creates, opens, lists and drops the collections of one alias. Idempotent: replicas
    may race through any of these calls."""

    def __init__(self, milvus: Milvus, alias: str) -> None:
        self.milvus = milvus
        self.alias = alias

    def ensure_floors(self, model: str) -> str:
        name = floors_name(self.alias, model)
        if not self.milvus.has_collection(name):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(
                "product_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH
            )
            schema.add_field("version", DataType.INT64)  # -1: no version deleted
            schema.add_field(ORDER_FIELD, DataType.INT64)  # -1: no tombstone
            schema.add_field("marker", DataType.FLOAT_VECTOR, dim=TOMBSTONE_DIM)
            index = MilvusClient.prepare_index_params()
            index.add_index("marker", index_type="FLAT", metric_type="L2")
            self.milvus.create_collection(name, schema, index, consistency="Strong")
        self.milvus.load(name)
        return name

    def open_generation(self, model: str) -> tuple[str, ModelIdentity | None] | None:
        """Load the existing collection of ``model``: its name and the identity it was
        created for; None when there is none yet."""
        name = collection_name(self.alias, model)
        if not self.milvus.has_collection(name):
            return None
        identity = self._check_layout(name)
        self.milvus.load(name)
        return name, identity

    def ensure_generation(
        self, identity: ModelIdentity, *, hnsw_m: int = 16, ef_construction: int = 200
    ) -> str:
        """Create (if missing) and load the collection of ``identity``'s model; point the
        alias at it when the alias does not exist yet. Returns the collection's name.
        Raises :class:`IncompatibleIndex` when the collection holds another identity."""
        name = collection_name(self.alias, identity.name)
        dim = identity.dim
        if self.milvus.has_collection(name):
            stored = self._check_layout(name)
            why = None if stored is None else stored.differs(identity)
            if why is not None:
                raise IncompatibleIndex(f"generation {name}: {why}")
        else:
            schema = MilvusClient.create_schema(
                auto_id=False,
                enable_dynamic_field=False,
                description=_IDENTITY_PREFIX + identity.to_json(),
            )
            schema.add_field(
                "product_id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH
            )
            schema.add_field("version", DataType.INT64)
            schema.add_field("category", DataType.VARCHAR, max_length=MAX_TEXT_LENGTH)
            schema.add_field("image", DataType.VARCHAR, max_length=MAX_IMAGE_LENGTH)
            schema.add_field("updated_at_ms", DataType.INT64)
            schema.add_field(ORDER_FIELD, DataType.INT64)
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
            self.milvus.create_collection(name, schema, index, consistency="Bounded")
            log.info("created collection %s (dim %d)", name, dim)
        self.milvus.load(name)
        if self.alias not in self.milvus.alias_names():
            try:
                self.milvus.create_alias(name, self.alias)
                log.info("alias %s -> %s", self.alias, name)
            except TransientError as exc:  # a replica won the race, or Milvus is away
                if self.alias not in self.milvus.alias_names():
                    raise
                log.info("alias %s created by another replica (%s)", self.alias, exc)
        return name

    def _check_layout(self, name: str) -> ModelIdentity | None:
        """The identity the collection was created for, after checking its layout."""
        described = self.milvus.describe_collection(name)
        fields = {f["name"] for f in described.get("fields", [])}
        if ORDER_FIELD not in fields:
            raise IncompatibleIndex(
                f"collection {name} has no {ORDER_FIELD!r} field: it was written by an older "
                "Catalens whose replays were not safe; rebuild it by replaying the input topic "
                "into a new alias (CATALENS_COLLECTION) or drop it"
            )
        return _identity(str(described.get("description") or ""))

    # -- generations ----------------------------------------------------------------------

    def identity(self, collection: str) -> ModelIdentity | None:
        """The model identity ``collection`` was created for (None: not recorded)."""
        return _identity(str(self.milvus.describe_collection(collection).get("description") or ""))

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
            self.milvus.load(name)
            out.append(
                Generation(
                    collection=name,
                    identity=_identity(str(described.get("description") or "")),
                    rows=self.milvus.count(name),
                    serving=name == serving,
                )
            )
        return out

    def find(self, model: str) -> Generation:
        """The generation of ``model``: its name as configured, or its collection."""
        generations = self.generations()
        for generation in generations:
            if model in (generation.model, generation.collection):
                return generation
        known = ", ".join(f"{g.model} ({g.collection})" for g in generations) or "none"
        raise GenerationNotFound(
            f"no generation of {model!r} under alias {self.alias}; there are: {known}"
        )

    def product_ids(self, collection: str) -> set[str]:
        return self.milvus.all_ids(collection)

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


def _identity(description: str) -> ModelIdentity | None:
    if not description.startswith(_IDENTITY_PREFIX):
        return None
    return ModelIdentity.from_json(description[len(_IDENTITY_PREFIX) :])
