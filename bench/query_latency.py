"""Query latency: ``GET /search`` end to end over HTTP at 100K products, as users send
it, beside the raw Milvus search on the same collection, plus recall@10 of the default
index against exact search.

The collection is filled directly (through the sink's own store adapter, not through the
input topic) with clustered synthetic vectors that resemble CLIP embeddings — products
form tight groups around category/style centres — because recall on uniform noise is
meaningless. The API runs as ``catalens api``, its own process, with the real ViT-B/32
architecture (random weights); its log line says which text tower it chose and that
tower's min cosine to fp32 on the check queries.

Queries are what users send: ~10-word sentences ("a floral top with a round collar
number 17"), one at a time, each over a fresh connection. Note that the random model's
tokenizer has no BPE merges (about one token per character, where CLIP's vocabulary
gives about one per word), so a sentence costs the tower here what a much longer query
costs with real weights: these new-text figures are an upper bound.

Figures, in one run:
* raw Milvus search (top-10, default ef) — p50/p99, the baseline;
* ``/search`` with a cached query text (HTTP + search) — p50/p99, and QPS at
  concurrency 8 (kept-alive connections);
* ``/search`` with a new text every time (encode + search) — p50/p99, and QPS at
  concurrency 8;
* recall@10 of the index against exact (brute force) search.

    python bench/query_latency.py [--products 100000] [--queries 200] [--settle 90]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

DIM = 512
ALIAS = "bench_products"
SETTLE_S = 90


def clustered(count: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(clusters, size=count)
    # CLIP image vectors of similar products sit at cosine ~0.8-0.9 from each other.
    vectors = centres[labels] + rng.normal(scale=0.35 / np.sqrt(DIM) * 4, size=(count, DIM))
    vectors = vectors.astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, labels


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def fill(uri: str, model: str, vectors: np.ndarray, labels: np.ndarray, settle_s: float) -> None:
    from catalens.encoder.files import resolve_model_dir, weights_digest
    from catalens.records import ModelIdentity, Plan, Row
    from catalens.store.admin import IndexAdmin
    from catalens.store.client import Milvus
    from catalens.store.writer import MilvusWriter

    milvus = Milvus(uri, timeout_s=120)
    admin = IndexAdmin(milvus, ALIAS)
    admin.drop_all()
    writer = MilvusWriter(milvus, alias=ALIAS, model=model)
    writer.create(ModelIdentity(model, DIM, weights_digest(resolve_model_dir(model))))
    batch = 2000
    started = time.perf_counter()
    for start in range(0, len(vectors), batch):
        rows = [
            Row(
                f"p{i:07d}",
                1,
                vectors[i],
                {"category": f"c{labels[i] % 20}", "price": float(i % 100)},
                None,
                input_offset=i,
            )
            for i in range(start, min(start + batch, len(vectors)))
        ]
        writer.apply(Plan(upserts=rows))
    print(f"filled {len(vectors)} products in {time.perf_counter() - started:.1f}s")
    assert writer.collection is not None
    admin.flush_and_index(writer.collection)
    milvus.close()
    # Right after a bulk load Milvus compacts the sealed segments and indexes the
    # results, on the same two cores; measure the steady state, not the load's wake.
    time.sleep(settle_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--settle", type=float, default=SETTLE_S, help="seconds to let Milvus settle after the load"
    )
    args = parser.parse_args()

    from catalens.localstack import Child, free_port, start_milvus, wait_for_port
    from catalens.store.client import Milvus
    from catalens.store.reader import MilvusReader
    from embed_throughput import model_dirs
    from text_tower import sentences

    work = Path(tempfile.mkdtemp(prefix="catalens-query-bench-"))
    uri = os.environ.get("CATALENS_MILVUS_URI")
    milvus = None
    if not uri:
        port = free_port()
        milvus = start_milvus(work / "milvus", port, work / "milvus.log")
        uri = f"http://127.0.0.1:{port}"
    hf_dir, _ = model_dirs()
    api = None
    try:
        vectors, labels = clustered(args.products, clusters=max(10, args.products // 500), seed=1)
        fill(uri, str(hf_dir), vectors, labels, args.settle)
        queries, _ = clustered(args.queries, clusters=max(10, args.products // 500), seed=1)
        queries = queries[: args.queries]

        store = MilvusReader(Milvus(uri, timeout_s=60), ALIAS)
        raw: list[float] = []
        found: list[list[str]] = []
        for vector in queries:
            started = time.perf_counter()
            hits = store.search([vector], k=10, ef=64)[0]
            raw.append((time.perf_counter() - started) * 1000)
            found.append([h.product_id for h in hits])
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
        recall = statistics.mean(
            len({f"p{i:07d}" for i in exact[q]} & set(found[q])) / 10 for q in range(len(queries))
        )

        api_port = free_port()
        env = {
            "CATALENS_MILVUS_URI": uri,
            "CATALENS_MODEL": str(hf_dir),
            "CATALENS_COLLECTION": ALIAS,
            "CATALENS_API_PORT": str(api_port),
            "CATALENS_LOG_LEVEL": "INFO",  # the load line: which text tower, its cosine
        }
        api = Child(
            "api", [sys.executable, "-m", "catalens", "api"], work / "api.log", env=env
        ).start()
        wait_for_port(api_port, 300)
        base = f"http://127.0.0.1:{api_port}/search"
        client = httpx.Client(timeout=30)
        # A new TCP connection for every request, from one client: httpx.get() would also
        # build a client (and its TLS context) per request, a cost of the caller's side.
        fresh_client = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
        texts = sentences(args.queries + 20, seed=2)
        for text in texts[:20]:
            client.get(base, params={"q": text, "k": 10}).raise_for_status()  # warm-up

        def timed(text: str, fresh_connection: bool = True) -> float:
            started = time.perf_counter()
            if fresh_connection:  # as a user's browser or a client without a pool does
                response = fresh_client.get(base, params={"q": text, "k": 10})
            else:
                response = client.get(base, params={"q": text, "k": 10})
            response.raise_for_status()
            return (time.perf_counter() - started) * 1000

        cached = [timed(texts[i % 20]) for i in range(args.queries)]
        fresh = [timed(text) for text in texts[20:]]
        with ThreadPoolExecutor(8) as pool:
            started = time.perf_counter()
            repeats = range(args.queries * 2)
            total = len(list(pool.map(lambda i: timed(texts[i % 20], False), repeats)))
            qps = total / (time.perf_counter() - started)
        with ThreadPoolExecutor(8) as pool:
            started = time.perf_counter()
            fresh_texts = [f"{t} again {i}" for i, t in enumerate(texts)]
            total = len(list(pool.map(lambda t: timed(t, False), fresh_texts)))
            qps_fresh = total / (time.perf_counter() - started)
        loaded = [line for line in (work / "api.log").read_text().splitlines() if "loaded " in line]

        print(
            f"products {args.products}, queries {args.queries}, top-10, HNSW M=16 "
            f"efConstruction=200, ef=64; {os.cpu_count()} cores"
        )
        print(
            f"raw Milvus search:        p50 {percentile(raw, 50):6.2f} ms  "
            f"p99 {percentile(raw, 99):6.2f} ms"
        )
        print(
            f"/search, cached text:     p50 {percentile(cached, 50):6.2f} ms  "
            f"p99 {percentile(cached, 99):6.2f} ms  QPS@8 {qps:6.1f}  "
            f"(ratio to raw p50 {percentile(cached, 50) / percentile(raw, 50):.2f}x)"
        )
        print(
            f"/search, new text:        p50 {percentile(fresh, 50):6.2f} ms  "
            f"p99 {percentile(fresh, 99):6.2f} ms  QPS@8 {qps_fresh:6.1f}  "
            f"(ratio to raw p50 {percentile(fresh, 50) / percentile(raw, 50):.2f}x)"
        )
        print(f"recall@10 vs exact:       {recall:.4f}")
        print(f"api: {loaded[-1] if loaded else 'no load line in ' + str(work / 'api.log')}")
    finally:
        if api is not None:
            api.stop()
        if milvus is not None:
            milvus.stop(timeout_s=10)


if __name__ == "__main__":
    main()
