"""Milvus writes alone: rows/s of each way pymilvus can send the sink's rows, and where
the time of one call goes (the client building the request vs the server and the wire).

Starts its own Milvus 2.3.5 standalone (or uses ``--uri``), makes a product collection
with the sink's own schema (``IndexAdmin.ensure_generation``, 512-d vectors), and writes
``--rows`` rows per call, fresh product ids every call, ``--rounds`` calls per cell
(median), for each size of the ``image`` field (``--sizes``, bytes of a data URI) and
each path:

* ``client rows upsert``: ``MilvusClient.upsert(name, data=[dict, ...])``, the sink's
  writes before they went column by column (the baseline);
* ``client rows insert``: the same rows through ``MilvusClient.insert``;
* ``orm columns upsert`` / ``insert``: ``Collection.upsert`` / ``insert`` with one list
  per field, the vectors as lists of floats;
* ``orm columns upsert (numpy vectors)``: the same with the vectors as one float32 array
  (pymilvus then iterates numpy scalars one by one);
* ``orm columns upsert (no attributes)``: the same with every JSON ``attributes`` empty (what
  the JSON field costs);
* ``store``: ``catalens.store.client.Milvus.upsert``, the sink's writes now.

Each line: seconds per call, rows/s, the client's seconds building the request (the
same conversion pymilvus does, timed alone), the rest (serialisation, wire and server),
the request's bytes, and rows/s as a ratio of the baseline at that size. Then rows/s of
the store path for each ``--batches`` size of a call, at the largest image size.

    python bench/milvus_write.py [--rows 1000] [--sizes 0,1024,4096] [--rounds 3]
        [--batches 250,1000,4000] [--uri http://127.0.0.1:19530]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import Collection, MilvusClient, connections
from pymilvus.orm.prepare import Prepare

from catalens.dev.localstack import free_port, start_milvus
from catalens.store.admin import ORDER_FIELD, IndexAdmin
from catalens.store.client import Milvus
from catalens.store.values import ModelIdentity

DIM = 512
ALIAS = "bench_write"
BASELINE = "client rows upsert"
NUMPY_VECTORS = "orm columns upsert (numpy vectors)"
NO_ATTRIBUTES = "orm columns upsert (no attributes)"


@dataclass(frozen=True)
class Cell:
    seconds: float  # median per call
    client_s: float | None  # median of building the request alone
    request_bytes: int | None


class Bench:
    def __init__(self, uri: str, rows: int, rounds: int) -> None:
        self.milvus = Milvus(uri, timeout_s=120)
        self.admin = IndexAdmin(self.milvus, ALIAS)
        self.admin.drop_all()
        identity = ModelIdentity("bench-write", DIM, "0" * 64)
        self.name = self.admin.ensure_generation(identity)
        self.milvus.load(self.name)
        self.client = MilvusClient(uri=uri, timeout=120)
        connections.connect("bench-write", uri=uri, timeout=120)
        self.collection = Collection(self.name, using="bench-write")
        self.handler = self.client._get_connection()
        self.rows = rows
        self.rounds = rounds
        self._ids = count()
        self._rng = np.random.default_rng(0)

    def close(self) -> None:
        connections.disconnect("bench-write")
        self.client.close()
        self.admin.drop_all()
        self.milvus.close()

    def make_rows(self, n: int, image_bytes: int, attributes: bool = True) -> list[dict[str, Any]]:
        """The sink's entities (``writer._to_entity``) with an image data URI of a size."""
        prefix = "data:image/jpeg;base64,"
        vectors = self._rng.standard_normal((n, DIM), dtype=np.float32)
        out = []
        for i in range(n):
            k = next(self._ids)
            image = "" if image_bytes == 0 else (prefix + f"{k:08d}" * image_bytes)[:image_bytes]
            attrs = {"category": f"c{k % 20}", "brand": "b", "colour": "red", "price": 9.5}
            out.append(
                {
                    "product_id": f"p{k:09d}",
                    "version": 1,
                    "category": attrs["category"],
                    "image": image,
                    "updated_at_ms": 1_700_000_000_000 + k,
                    ORDER_FIELD: k,
                    "attributes": attrs if attributes else {},
                    "vector": vectors[i],
                }
            )
        return out

    def columns(self, rows: list[dict[str, Any]], numpy_vectors: bool = False) -> list[Any]:
        cols: list[Any] = []
        for field in self.collection.schema.fields:
            values = [row[field.name] for row in rows]
            if field.name == "vector":
                stacked = np.stack(values).astype(np.float32)
                cols.append(stacked if numpy_vectors else stacked.tolist())
            else:
                cols.append(values)
        return cols

    def cell(self, image_bytes: int, path: str, n: int | None = None) -> Cell:
        n = n or self.rows
        times, client, sizes = [], [], []
        for _ in range(self.rounds):
            rows = self.make_rows(n, image_bytes, attributes=path != NO_ATTRIBUTES)
            send, build = self.path(path, rows)
            if build is not None:
                started = time.perf_counter()
                request = build()
                client.append(time.perf_counter() - started)
                sizes.append(request.ByteSize())
            started = time.perf_counter()
            send()
            times.append(time.perf_counter() - started)
        return Cell(
            statistics.median(times),
            statistics.median(client) if client else None,
            max(sizes) if sizes else None,
        )

    def path(
        self, path: str, rows: list[dict[str, Any]]
    ) -> tuple[Callable[[], Any], Callable[[], Any] | None]:
        """(send the rows, build the same request without sending it) for a path. Both
        start from the writer's entities (vectors as float32 arrays), so each path pays
        for its own conversion of them."""
        name, handler, schema = self.name, self.handler, self.collection.schema

        def listed() -> list[dict[str, Any]]:
            return [{**r, "vector": r["vector"].tolist()} for r in rows]

        def cols() -> list[Any]:
            return self.columns(rows, numpy_vectors=path == NUMPY_VECTORS)

        if path == "client rows insert":
            return (
                lambda: self.client.insert(name, data=listed()),
                lambda: handler._prepare_row_insert_request(name, listed()),
            )
        if path == BASELINE:
            return (
                lambda: self.client.upsert(name, data=listed()),
                lambda: handler._prepare_row_upsert_request(name, listed()),
            )
        if path == "store":
            return (lambda: self.milvus.upsert(name, rows)), None
        if path == "orm columns insert":
            return (
                lambda: self.collection.insert(cols()),
                lambda: handler._prepare_batch_insert_request(
                    name, Prepare.prepare_data(cols(), schema, True), schema=self.schema_dict
                ),
            )
        return (
            lambda: self.collection.upsert(cols()),
            lambda: handler._prepare_batch_upsert_request(
                name, Prepare.prepare_data(cols(), schema, False), schema=self.schema_dict
            ),
        )

    @property
    def schema_dict(self) -> dict[str, Any]:
        return dict(self.collection._schema_dict)


PATHS = [
    BASELINE,
    "client rows insert",
    "orm columns upsert",
    "orm columns insert",
    NUMPY_VECTORS,
    NO_ATTRIBUTES,
    "store",
]


@contextmanager
def milvus_server(uri: str | None) -> Iterator[str]:
    if uri:
        yield uri
        return
    with tempfile.TemporaryDirectory(prefix="bench-write-") as work:
        port = free_port()
        child = start_milvus(Path(work) / "milvus", port, Path(work) / "milvus.log")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            child.kill()


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows per call")
    parser.add_argument("--sizes", default="0,1024,4096", help="image field bytes, comma list")
    parser.add_argument("--rounds", type=int, default=3, help="calls per cell (median)")
    parser.add_argument("--batches", default="250,1000,4000", help="rows per call to compare")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma list of paths")
    parser.add_argument("--uri", help="an existing Milvus instead of starting one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = [int(s) for s in args.sizes.split(",")]
    paths = args.paths.split(",")
    with milvus_server(args.uri) as uri:
        bench = Bench(uri, args.rows, args.rounds)
        try:
            bench.cell(0, "store")  # warm-up: connections, schema caches, first segment
            print(f"{args.rows} rows per call, 512-d vectors, median of {args.rounds} calls")
            header = "image B | path | s/call | rows/s | client ms | rest ms | request KB | ×base"
            print(header)
            for size in sizes:
                base: float | None = None
                for path in paths:
                    c = bench.cell(size, path)
                    rate = args.rows / c.seconds
                    if path == BASELINE:
                        base = rate
                    rest = None if c.client_s is None else c.seconds - c.client_s
                    kb = "—" if c.request_bytes is None else f"{c.request_bytes / 1024:.0f}"
                    ratio = "—" if base is None else f"{rate / base:.1f}"
                    print(
                        f"{size} | {path} | {c.seconds:.3f} | {rate:.0f} | {ms(c.client_s)} | "
                        f"{ms(rest)} | {kb} | {ratio}",
                        flush=True,
                    )
            size = max(sizes)
            for n in [int(b) for b in args.batches.split(",")]:
                c = bench.cell(size, "store", n)
                print(f"store, {n} rows per call, image {size} B: {n / c.seconds:.0f} rows/s")
        finally:
            bench.close()


if __name__ == "__main__":
    main()
