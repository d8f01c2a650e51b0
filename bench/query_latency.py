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
number 17"), one at a time, each over a fresh connection. The random model's tokenizer
knows the words these sentences are made of, one token each, so a sentence is about 12
tokens, as with CLIP's own vocabulary (the tower's work grows with tokens).

Figures, in one run:
* recall@10 of the index against exact (brute force) search;
* for each API run, beside a raw Milvus search (top-10, default ef) timed just before
  it: ``/search`` with a cached query text (HTTP + search) and with a new text every
  time (encode + search) — p50/p99, and QPS at concurrency 8 (kept-alive connections).

The API runs as this checkout has it; ``--baseline-src`` runs another source folder's
API too, first (the before of a change), and each ``--compare 'NAME=VALUE ...'`` runs it
with those ``CATALENS_NAME=VALUE`` (a setting's effect), all against the same collection.
With ``--rounds N`` the variants take turns N times; the summary gives each figure's
median over the rounds and the p50s' ratio to raw Milvus and to the first variant.

    python bench/query_latency.py [--products 100000] [--queries 200] [--settle 90]
        [--rounds 3] [--baseline-src ../before/src] [--compare 'API_LOOP=asyncio API_HTTP=h11' ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
    parser.add_argument(
        "--rounds", type=int, default=1, help="times each API variant runs, taking turns"
    )
    parser.add_argument(
        "--baseline-src",
        help="run the API first from this source folder (another checkout's src, e.g. from "
        "`git worktree add`), as the baseline of the same run",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="'NAME=VALUE ...'",
        help="run the API again with CATALENS_NAME=VALUE, each of them (repeatable)",
    )
    args = parser.parse_args()

    from catalens.localstack import free_port, start_milvus
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
    try:
        vectors, labels = clustered(args.products, clusters=max(10, args.products // 500), seed=1)
        fill(uri, str(hf_dir), vectors, labels, args.settle)
        queries, _ = clustered(args.queries, clusters=max(10, args.products // 500), seed=1)
        queries = queries[: args.queries]

        store = MilvusReader(Milvus(uri, timeout_s=60), ALIAS)
        found = [[h.product_id for h in store.search([v], k=10, ef=64)[0]] for v in queries]
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
        recall = statistics.mean(
            len({f"p{i:07d}" for i in exact[q]} & set(found[q])) / 10 for q in range(len(queries))
        )

        def raw_milvus() -> list[float]:
            raw = []
            for vector in queries:
                started = time.perf_counter()
                store.search([vector], k=10, ef=64)
                raw.append((time.perf_counter() - started) * 1000)
            return raw

        print(
            f"products {args.products}, queries {args.queries}, top-10, HNSW M=16 "
            f"efConstruction=200, ef=64; {os.cpu_count()} cores; {args.rounds} round(s)"
        )
        print(f"recall@10 vs exact:       {recall:.4f}")
        env = {
            "CATALENS_MILVUS_URI": uri,
            "CATALENS_MODEL": str(hf_dir),
            "CATALENS_COLLECTION": ALIAS,
            "CATALENS_LOG_LEVEL": "INFO",  # the load line: which text tower, its cosine
        }
        variants: list[tuple[str, dict[str, str]]] = []
        if args.baseline_src:
            variants.append((f"baseline {args.baseline_src}", {"PYTHONPATH": args.baseline_src}))
        variants.append(("this checkout", {}))
        for overrides in args.compare:
            settings = (o.partition("=") for o in overrides.split())
            variants.append((overrides, {f"CATALENS_{n}": value for n, _, value in settings}))
        # Every API process starts with an empty text cache: all see the same new texts.
        texts = sentences(args.queries + 20, seed=2)
        runs: dict[str, list[ApiFigures]] = {label: [] for label, _ in variants}
        for round_ in range(args.rounds):
            # Variants take turns, each beside a raw Milvus measurement of its own: the
            # machine drifts over minutes, and a comparison should not follow the drift.
            for n, (label, extra) in enumerate(variants):
                raw = raw_milvus()
                log = work / f"api-{round_}-{n}.log"
                run = measure_api(log, {**env, **extra}, texts[:20], texts[20:], raw)
                runs[label].append(run)
                print(f"round {round_ + 1}, {label}: {run.line()}", flush=True)
        print("--- median over rounds of each figure")
        for label, of_label in runs.items():
            print(summary(label, of_label, runs[variants[0][0]]))
        print(f"api: {runs[variants[-1][0]][-1].loaded}")
    finally:
        if milvus is not None:
            milvus.stop(timeout_s=10)


@dataclass
class ApiFigures:
    raw: list[float]
    cached: list[float]
    fresh: list[float]
    qps: float
    qps_fresh: float
    loaded: str

    def line(self) -> str:
        return (
            f"raw Milvus p50 {percentile(self.raw, 50):.2f} ms; "
            f"cached p50 {percentile(self.cached, 50):.2f} ms; "
            f"new text p50 {percentile(self.fresh, 50):.2f} ms"
        )


def summary(label: str, runs: list[ApiFigures], baseline: list[ApiFigures]) -> str:
    """Each figure's median over the rounds, and the p50s' ratio to the first variant's."""

    def median(field: str, q: float, of: list[ApiFigures] = runs) -> float:
        return statistics.median(percentile(getattr(r, field), q) for r in of)

    raw = median("raw", 50)
    lines = [f"{label}:", f"  raw Milvus search:    p50 {raw:6.2f} ms"]
    for name, field, qps in (("cached text", "cached", "qps"), ("new text", "fresh", "qps_fresh")):
        p50 = median(field, 50)
        lines.append(
            f"  /search, {name + ':':<13}p50 {p50:6.2f} ms  p99 {median(field, 99):6.2f} ms  "
            f"QPS@8 {statistics.median(getattr(r, qps) for r in runs):6.1f}  "
            f"(p50: {p50 / raw:.2f}x raw Milvus', "
            f"{p50 / median(field, 50, baseline):.2f}x the first variant's)"
        )
    return "\n".join(lines)


def measure_api(
    log: Path,
    env: dict[str, str],
    cached_texts: list[str],
    fresh_texts: list[str],
    raw: list[float],
) -> ApiFigures:
    """Start ``catalens api`` with ``env``, time cached and new query texts, stop it."""
    from catalens.localstack import Child, free_port, wait_for_port

    port = free_port()
    api = Child(
        "api",
        [sys.executable, "-m", "catalens", "api"],
        log,
        env={**env, "CATALENS_API_PORT": str(port)},
    ).start()
    try:
        wait_for_port(port, 300)
        base = f"http://127.0.0.1:{port}/search"
        client = httpx.Client(timeout=30)
        # A new TCP connection for every request, from one client: httpx.get() would also
        # build a client (and its TLS context) per request, a cost of the caller's side.
        fresh_client = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
        for text in cached_texts:
            client.get(base, params={"q": text, "k": 10}).raise_for_status()  # warm-up

        def timed(text: str, fresh_connection: bool = True) -> float:
            started = time.perf_counter()
            if fresh_connection:  # as a user's browser or a client without a pool does
                response = fresh_client.get(base, params={"q": text, "k": 10})
            else:
                response = client.get(base, params={"q": text, "k": 10})
            response.raise_for_status()
            return (time.perf_counter() - started) * 1000

        count = len(fresh_texts)
        cached = [timed(cached_texts[i % len(cached_texts)]) for i in range(count)]
        fresh = [timed(text) for text in fresh_texts]
        with ThreadPoolExecutor(8) as pool:
            started = time.perf_counter()
            repeats = range(count * 2)
            total = len(
                list(pool.map(lambda i: timed(cached_texts[i % len(cached_texts)], False), repeats))
            )
            qps = total / (time.perf_counter() - started)
        with ThreadPoolExecutor(8) as pool:
            started = time.perf_counter()
            again = [f"{t} again {i}" for i, t in enumerate(fresh_texts)]
            total = len(list(pool.map(lambda t: timed(t, False), again)))
            qps_fresh = total / (time.perf_counter() - started)
    finally:
        api.stop()
    loaded = [line for line in log.read_text().splitlines() if "loaded " in line]
    return ApiFigures(
        raw, cached, fresh, qps, qps_fresh, loaded[-1] if loaded else f"no load line in {log}"
    )


if __name__ == "__main__":
    main()
