"""What one result per product costs: a vector search's rows grouped by product, against
the same search without grouping, on the same generation, in the same run.

A generation holds one row per image. Milvus ≥ 2.4 groups rows by product on the server
(``group_by_field``); Milvus 2.3 has no grouping, so the reader asks for 4 rows per
product wanted and keeps each product's best, then 16 (the most images a product has)
when those held too few products (catalens.store.reader). This benchmark fills
``--products`` products of 1 to 4 images (2.5 on average) of clustered 512-d vectors and
times, taking turns query by query:

* ``rows``: a plain top-k search of rows (what Catalens did when a row was a product);
* ``products``: the reader's search for k products, grouped as the server allows.

    python bench/grouping.py [--products 20000] [--queries 300] [--k 10]
        [--server standalone|lite]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--server", choices=["standalone", "lite"], default="standalone")
    args = parser.parse_args()

    from catalens.dev.localstack import free_port, start_milvus, start_milvus_lite
    from catalens.store.admin import IndexAdmin
    from catalens.store.client import Milvus
    from catalens.store.reader import MilvusReader
    from catalens.store.values import ModelIdentity, Plan, Row, Search
    from catalens.store.writer import MilvusWriter

    work = Path(tempfile.mkdtemp(prefix="catalens-grouping-"))
    port = free_port()
    start = start_milvus if args.server == "standalone" else start_milvus_lite
    server = start(work / "milvus", port, work / "milvus.log")
    uri = f"http://127.0.0.1:{port}"
    try:
        rng = np.random.default_rng(1)
        dim = 512
        centres = rng.normal(size=(max(10, args.products // 50), dim)).astype(np.float32)
        milvus = Milvus(uri, timeout_s=300)
        writer = MilvusWriter(milvus, alias="bench_grouping", model="bench")
        writer.create(ModelIdentity("bench", dim, "f"))
        rows: list[Row] = []
        images = 0
        for i in range(args.products):
            count = 1 + i % 4
            centre = centres[rng.integers(len(centres))]
            for n in range(count):
                vector = centre + rng.normal(scale=0.3, size=dim).astype(np.float32)
                vector /= np.linalg.norm(vector)
                rows.append(Row(f"p{i:07d}", str(n), 1, vector, None, n, count, {}, "", "", 1, i))
            images += count
            if len(rows) >= 5000:
                writer.apply(Plan(upserts=rows))
                rows = []
        writer.apply(Plan(upserts=rows))
        assert writer.collection is not None
        IndexAdmin(milvus, "bench_grouping").flush_and_index(writer.collection)
        reader = MilvusReader(milvus, writer.collection)
        grouped_by = "the server" if reader.capabilities().server_grouping else "the reader"
        queries = rng.normal(size=(args.queries, dim)).astype(np.float32)
        queries = centres[rng.integers(len(centres), size=args.queries)] + 0.3 * queries
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)

        def plain(vector: np.ndarray) -> None:
            milvus.search(
                writer.collection or "",
                [vector.tolist()],
                limit=args.k,
                expr="",
                params={"metric_type": "IP", "params": {"ef": 64}},
                fields=["product_id", "image_id", "version", "attributes", "image"],
            )

        def products(vector: np.ndarray) -> None:
            hits = reader.search(Search([vector], k=args.k))
            assert len({h.product_id for h in hits}) == len(hits)

        for vector in queries[:20]:  # warm-up
            plain(vector)
            products(vector)
        timings: dict[str, list[float]] = {"rows": [], "products": []}
        for i, vector in enumerate(queries):
            order = [("rows", plain), ("products", products)]
            for label, run in order if i % 2 else order[::-1]:
                started = time.perf_counter()
                run(vector)
                timings[label].append((time.perf_counter() - started) * 1000)
        print(
            f"Milvus {milvus.server_version()}: {args.products} products, {images} images; "
            f"top {args.k}; grouped by {grouped_by}; {args.queries} queries taking turns"
        )
        for label, values in timings.items():
            print(
                f"  {label:9} p50 {percentile(values, 50):7.2f} ms  "
                f"p99 {percentile(values, 99):7.2f} ms  mean {statistics.mean(values):7.2f} ms"
            )
        ratio = percentile(timings["products"], 50) / percentile(timings["rows"], 50)
        print(f"  one result per product costs {ratio:.2f}x a plain search (p50)")
        milvus.close()
    finally:
        server.stop(timeout_s=10)


if __name__ == "__main__":
    main()
