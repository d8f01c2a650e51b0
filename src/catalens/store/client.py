"""Milvus behind typed calls and one rule for what is transient: the only module of the
store that talks to pymilvus's client.

Every call either returns, raises :class:`TransientError` (Milvus is away or busy: retry
later), or raises the original exception (a malformed request is a bug and must crash).
After a transient failure the client is dropped and rebuilt on the next call, and every
collection this client had loaded is loaded again: a channel to a restarted server does
not always heal by itself, and a restarted Milvus does not always reload what it served.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np
from pymilvus import (
    Collection,
    CollectionSchema,
    DataType,
    MilvusClient,
    MilvusException,
    connections,
)
from pymilvus.decorators import PyMilvusDeprecationWarning
from pymilvus.exceptions import (
    DataNotMatchException,
    DataTypeNotSupportException,
    ParamError,
    PrimaryKeyException,
)
from pymilvus.milvus_client.index import IndexParams

try:  # pymilvus >= 2.6: the highlighter of full-text search
    from pymilvus.orm.schema import LexicalHighlighter
except ImportError:  # pragma: no cover - older pymilvus: searches without highlights
    LexicalHighlighter = None

from catalens.errors import TransientError
from catalens.settings import CatalensSettings
from catalens.store.waiting import server_call

log = logging.getLogger(__name__)
T = TypeVar("T")

# Requests that can never succeed as sent: programming errors, not outages.
_BUGS = (ParamError, DataNotMatchException, DataTypeNotSupportException, PrimaryKeyException)
# What an unreachable, restarting or overloaded server raises: pymilvus' own errors (it
# wraps most server statuses), gRPC failures that escape it, and socket-level errors.
_OUTAGES = (MilvusException, grpc.RpcError, ConnectionError, TimeoutError)
# Writes go through the ORM's column-based path (see :meth:`Milvus.upsert`), which pymilvus
# marks as deprecated; the warning says nothing an operator can act on.
warnings.filterwarnings(
    "ignore", message=r"`(Collection|connections)", category=PyMilvusDeprecationWarning
)


def is_transient(exc: BaseException) -> bool:
    """The one rule: an outage heals with time; a malformed request never does."""
    return isinstance(exc, _OUTAGES) and not isinstance(exc, _BUGS)


class Milvus:
    """A resilient :class:`MilvusClient`: typed calls, one transient rule, reconnects."""

    def __init__(
        self,
        uri: str,
        token: str | None = None,
        *,
        timeout_s: float = 10,
        connect_timeout_s: float | None = None,
        replicas: int = 1,
    ) -> None:
        """``timeout_s`` bounds every call; ``connect_timeout_s`` (default: the same)
        bounds reaching the server, so a long call need not mean a long wait for an
        unreachable server. Collections are loaded as ``replicas`` in-memory replicas."""
        self.uri = uri
        self._replicas = replicas
        self._token = token or ""
        self._timeout = timeout_s
        self._connect_timeout = timeout_s if connect_timeout_s is None else connect_timeout_s
        self._client: MilvusClient | None = None
        # The column-based writes' own connection and the collections it writes to.
        # Unique for the process's life: an id() could be reused by a later instance.
        self._orm = f"catalens-{uuid.uuid4().hex}"
        self._orm_connected = False
        self._columns: dict[str, Collection] = {}
        self._loaded: set[str] = set()
        self._reload = False
        self._connecting = threading.Lock()
        self._version: str | None = None

    @classmethod
    def from_settings(cls, settings: CatalensSettings, *, timeout_s: float = 10) -> Milvus:
        """The Milvus that ``settings`` name, with their token when they hold one; reaching
        it takes at most ``settings.connect_timeout_s`` of a call's ``timeout_s``."""
        token = settings.milvus_token
        return cls(
            settings.milvus_uri,
            token.get_secret_value() if token is not None else None,
            timeout_s=timeout_s,
            connect_timeout_s=min(timeout_s, settings.connect_timeout_s),
            replicas=settings.milvus_replicas,
        )

    # -- the one place where calls are made -----------------------------------------------

    def _run(self, what: str, call: Callable[[MilvusClient], T]) -> T:
        try:
            client = self._connected()
            with server_call():
                return call(client)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._reset()
            raise TransientError(f"Milvus {what} failed: {exc}") from exc

    def _connected(self) -> MilvusClient:
        with self._connecting:  # calls come from several threads (the sink's reads)
            return self._connect()

    def _connect(self) -> MilvusClient:
        if self._client is None:
            self._client = MilvusClient(
                uri=self.uri, token=self._token, timeout=self._connect_timeout
            )
        if self._reload:
            for name in sorted(self._loaded):
                log.info("loading %s again", name)
                self._client.load_collection(name, **self._load_options())
            self._reload = False
        return self._client

    def _writing(self, name: str) -> Collection:
        """The ORM collection ``name`` for column-based writes, on its own connection."""
        with self._connecting:
            if not self._orm_connected:
                connections.connect(
                    self._orm, uri=self.uri, token=self._token, timeout=self._connect_timeout
                )
                self._orm_connected = True
            if name not in self._columns:
                self._columns[name] = Collection(name, using=self._orm)
            return self._columns[name]

    def _reset(self) -> None:
        with self._connecting:
            client, self._client = self._client, None
            self._reload = bool(self._loaded)
            self._columns.clear()
            if self._orm_connected:
                self._orm_connected = False
                with contextlib.suppress(Exception):
                    connections.disconnect(self._orm)
                    connections.remove_connection(self._orm)  # no alias left behind
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()

    def close(self) -> None:
        self._reset()

    def server_version(self) -> str:
        """The server's version string (``v2.3.5``, ``milvus_lite-3.2.2``), read once."""
        if self._version is None:
            self._version = str(
                self._run("server version", lambda c: c.get_server_version(timeout=self._timeout))
            )
        return self._version

    # -- collections and aliases ----------------------------------------------------------

    def list_collections(self) -> list[str]:
        return list(
            self._run("list collections", lambda c: c.list_collections(timeout=self._timeout))
        )

    def has_collection(self, name: str) -> bool:
        return bool(
            self._run("has collection", lambda c: c.has_collection(name, timeout=self._timeout))
        )

    def describe_collection(self, name: str) -> dict[str, Any]:
        return dict(
            self._run(
                "describe collection", lambda c: c.describe_collection(name, timeout=self._timeout)
            )
        )

    def create_collection(
        self,
        name: str,
        schema: CollectionSchema,
        index: IndexParams,
        *,
        consistency: str,
        properties: dict[str, str] | None = None,
        shards: int = 0,
    ) -> None:
        """``shards``: 0 for the server's default."""
        extra: dict[str, Any] = {"properties": properties} if properties else {}
        if shards:
            extra["num_shards"] = shards
        self._run(
            "create collection",
            lambda c: c.create_collection(
                name,
                schema=schema,
                index_params=index,
                consistency_level=consistency,
                timeout=self._timeout,
                **extra,
            ),
        )

    def load(self, name: str) -> None:
        self._run("load collection", lambda c: c.load_collection(name, **self._load_options()))
        self._loaded.add(name)

    def _load_options(self) -> dict[str, Any]:
        # The replica count only when it is not the server's default: Milvus standalone
        # and Milvus Lite know one replica.
        options: dict[str, Any] = {"timeout": self._timeout}
        if self._replicas > 1:
            options["replica_number"] = self._replicas
        return options

    def drop_collection(self, name: str) -> None:
        self._loaded.discard(name)
        self._columns.pop(name, None)
        self._run("drop collection", lambda c: c.drop_collection(name, timeout=self._timeout))

    def alias_names(self) -> list[str]:
        return _alias_names(
            self._run("list aliases", lambda c: c.list_aliases(timeout=self._timeout))
        )

    def alias_target(self, alias: str) -> str | None:
        """The collection ``alias`` points at; None when there is no such alias."""
        if alias not in self.alias_names():
            return None
        described = self._run(
            "describe alias", lambda c: c.describe_alias(alias, timeout=self._timeout)
        )
        return str(described["collection_name"])

    def create_alias(self, collection: str, alias: str) -> None:
        self._run(
            "create alias", lambda c: c.create_alias(collection, alias, timeout=self._timeout)
        )

    def alter_alias(self, collection: str, alias: str) -> None:
        self._run("alter alias", lambda c: c.alter_alias(collection, alias, timeout=self._timeout))

    def drop_alias(self, alias: str) -> None:
        self._run("drop alias", lambda c: c.drop_alias(alias, timeout=self._timeout))

    # -- rows -----------------------------------------------------------------------------

    def query(
        self, name: str, expr: str, fields: Sequence[str], *, strong: bool = False
    ) -> list[dict[str, Any]]:
        """Rows matching ``expr``. ``strong`` sees every write acknowledged before it."""
        extra: dict[str, Any] = {"consistency_level": "Strong"} if strong else {}
        return list(
            self._run(
                "query",
                lambda c: c.query(
                    name, filter=expr, output_fields=list(fields), timeout=self._timeout, **extra
                ),
            )
        )

    def upsert(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Insert or replace ``rows`` (one dict per row, every field of the schema).

        Sent column by column: pymilvus' row-based path checks a VARCHAR value as if it
        were a list of strings, one Python step per character, so 1 000 rows with 4 KB
        images spent about a second in the client before anything was sent; the column
        path checks each string once (bench/milvus_write.py measures both).
        """
        if not rows:
            return

        def write(_: MilvusClient) -> None:
            collection = self._writing(name)
            columns = [
                _column(rows, field.name, field.dtype)
                for field in collection.schema.fields
                # Made by the server from other fields (full-text search's sparse vectors).
                if not getattr(field, "is_function_output", False)
            ]
            collection.upsert(columns, timeout=self._timeout)

        self._run("upsert", write)

    def delete(self, name: str, ids: list[str]) -> None:
        self._run("delete", lambda c: c.delete(name, ids=ids, timeout=self._timeout))

    def search(
        self,
        name: str,
        data: list[Any],
        *,
        limit: int,
        expr: str,
        params: dict[str, Any],
        fields: Sequence[str],
        anns_field: str = "vector",
        group_by: str | None = None,
        highlight: tuple[str, str] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """One search call: ``data`` holds the query vectors (or texts, for a BM25 field).
        ``group_by`` keeps each value of that field once, with its best hit (Milvus 2.4;
        older servers ignore it). ``highlight`` (opening and closing mark) asks a full-text
        search for the fragments of text its words matched, in each hit's ``highlight``
        (Milvus 2.6)."""
        extra: dict[str, Any] = {"group_by_field": group_by} if group_by else {}
        if highlight is not None and LexicalHighlighter is not None:
            extra["highlighter"] = LexicalHighlighter(
                pre_tags=[highlight[0]], post_tags=[highlight[1]], highlight_search_text=True
            )
        return [
            list(hits)
            for hits in self._run(
                "search",
                lambda c: c.search(
                    name,
                    data=data,
                    anns_field=anns_field,
                    limit=limit,
                    filter=expr,
                    search_params=params,
                    output_fields=list(fields),
                    timeout=self._timeout,
                    **extra,
                ),
            )
        ]

    def count(self, name: str) -> int:
        """Live rows of a collection, deletes applied (Strong consistency)."""
        rows = self.query(name, "", ["count(*)"], strong=True)
        return int(rows[0]["count(*)"]) if rows else 0

    def all_rows(
        self, name: str, fields: Sequence[str], batch: int = 10_000
    ) -> list[dict[str, Any]]:
        """``fields`` of every row of a collection, read in batches."""

        def read(client: MilvusClient) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            iterator = client.query_iterator(
                name, batch_size=batch, output_fields=list(fields), timeout=self._timeout
            )
            try:
                while rows := iterator.next():
                    found += ({f: r[f] for f in fields} for r in rows)
            finally:
                iterator.close()
            return found

        return self._run(f"read {', '.join(fields)}", read)

    def flush(self, name: str) -> None:
        self._run("flush", lambda c: c.flush(name, timeout=self._timeout))

    def describe_index(self, name: str, field: str) -> dict[str, Any]:
        return dict(
            self._run(
                "describe index", lambda c: c.describe_index(name, field, timeout=self._timeout)
            )
        )


def _column(rows: list[dict[str, Any]], field: str, dtype: DataType) -> Any:
    values = [row[field] for row in rows]
    if dtype == DataType.FLOAT_VECTOR:
        # Lists of floats: pymilvus flattens the vectors element by element, and a numpy
        # array's elements are numpy scalars, several times slower to iterate and copy.
        return np.asarray(values, dtype=np.float32).tolist()
    return values


def _alias_names(described: Any) -> list[str]:
    if isinstance(described, dict):
        return list(described.get("aliases", []))
    return list(described or [])
