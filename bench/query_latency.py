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

Before measuring it waits until Milvus is idle (a bulk load leaves it compacting and
indexing for a minute or two). Figures, in one run:
* recall@10 of the index against exact (brute force) search;
* the raw Milvus search (top-10, default ef); ``/search`` with a cached query text (HTTP
  + search) and with a new text every time (encode + search): p50/p99; QPS at
  concurrency 8 (kept-alive connections).

The API runs as this checkout has it; ``--baseline-src`` runs another source folder's
API too (the before of a change), and each ``--compare 'NAME=VALUE ...'`` runs it with
those ``CATALENS_NAME=VALUE`` (a setting's effect), all against the same collection. The
variants' APIs run side by side and take turns request by request, with the raw Milvus
search among them: on two shared cores the machine drifts within seconds, far more than
a lever moves the figures. ``--rounds N`` starts them afresh N times; the summary gives
each figure's median over the rounds and the p50s' ratio to raw Milvus and to the first
variant.

    python bench/query_latency.py [--products 100000] [--queries 200] [--settle 90]
        [--rounds 3] [--baseline-src ../before/src] [--compare 'API_LOOP=asyncio API_HTTP=h11' ...]

Keyword and hybrid search need Milvus ≥ 2.5, which Milvus 2.3.5 is not: ``--modes`` runs
the three modes side by side on one Milvus Lite collection instead (``search_modes.py``,
its options after ``--modes``):

    python bench/query_latency.py --modes [--products 3000] [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

DIM = 512
ALIAS = "bench_products"
SETTLE_S = 90  # at least, after the load; then until Milvus is idle (at most 600 s)


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


def fill(uri: str, model: str, vectors: np.ndarray, labels: np.ndarray) -> None:
    from catalens.encoder.files import resolve_model_dir, weights_digest
    from catalens.store.admin import IndexAdmin
    from catalens.store.client import Milvus
    from catalens.store.values import ModelIdentity, Plan, Row
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
                "0",
                1,
                vectors[i],
                attributes={"category": f"c{labels[i] % 20}", "price": float(i % 100)},
                input_offset=i,
            )
            for i in range(start, min(start + batch, len(vectors)))
        ]
        writer.apply(Plan(upserts=rows))
    print(f"filled {len(vectors)} products in {time.perf_counter() - started:.1f}s")
    assert writer.collection is not None
    admin.flush_and_index(writer.collection)
    milvus.close()


def settle(data_dir: Path | None, least_s: float, most_s: float) -> None:
    """Wait until Milvus is idle: after a bulk load it compacts the sealed segments and
    indexes the results (on a timer, so not at once) for a minute or two, on the cores
    the API shares; measure the steady state, not the load's wake. Idle: at least
    ``least_s`` after the load, then 30 s in a row under 0.15 of a core; as long as
    ``most_s``. Without the server's data folder (a Milvus this benchmark did not start),
    it waits ``least_s``."""
    if data_dir is None:
        time.sleep(least_s)
        return
    from ingest import cpu_seconds, milvus_servers

    servers = milvus_servers(data_dir)

    def cpu_s() -> float:
        return cpu_seconds({"milvus": servers})["milvus"]

    started = time.monotonic()
    idle_since: float | None = None
    while (elapsed := time.monotonic() - started) < most_s:
        before = cpu_s()
        time.sleep(5)
        if (cpu_s() - before) / 5 >= 0.15:
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif elapsed >= least_s and time.monotonic() - idle_since >= 30:
            print(f"Milvus idle after {time.monotonic() - started:.0f} s")
            return
    print(f"Milvus still busy after {most_s:.0f} s: measuring anyway")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_S,
        help="seconds to wait at least after the load, then until Milvus is idle",
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

    from catalens.dev.localstack import free_port, start_milvus
    from catalens.store.client import Milvus
    from catalens.store.reader import MilvusReader
    from catalens.store.values import Search
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
        fill(uri, str(hf_dir), vectors, labels)
        settle(work / "milvus" if milvus is not None else None, args.settle, 600)
        queries, _ = clustered(args.queries, clusters=max(10, args.products // 500), seed=1)
        queries = queries[: args.queries]

        store = MilvusReader(Milvus(uri, timeout_s=60), ALIAS)
        found = [[h.product_id for h in store.search(Search([v], k=10))] for v in queries]
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
        recall = statistics.mean(
            len({f"p{i:07d}" for i in exact[q]} & set(found[q])) / 10 for q in range(len(queries))
        )

        def raw_search(i: int) -> float:
            started = time.perf_counter()
            store.search(Search([queries[i % len(queries)]], k=10))
            return (time.perf_counter() - started) * 1000

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
        if len({label for label, _ in variants}) < len(variants):
            parser.error("each --compare once: a variant's figures are kept by its name")
        # Every API process starts with an empty text cache: all see the same new texts.
        texts = sentences(args.queries + 20, seed=2)
        runs: dict[str, list[ApiFigures]] = {label: [] for label, _ in variants}
        for round_ in range(args.rounds):
            logs = work / f"round-{round_ + 1}"
            logs.mkdir()
            figures = measure_round(
                logs,
                [(label, {**env, **extra}) for label, extra in variants],
                texts[:20],
                texts[20:],
                raw_search,
            )
            for label, run in figures.items():
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


class Api:
    """One variant's ``catalens api`` process and its timed requests."""

    def __init__(self, label: str, log: Path, env: dict[str, str]) -> None:
        from catalens.dev.localstack import Child, free_port

        self.label = label
        self.log = log
        port = free_port()
        self.base = f"http://127.0.0.1:{port}/search"
        self.port = port
        self.child = Child(
            "api",
            [sys.executable, "-m", "catalens", "api"],
            log,
            env={**env, "CATALENS_API_PORT": str(port)},
        ).start()
        self.client = httpx.Client(timeout=30)
        # A new TCP connection for every request, from one client: httpx.get() would also
        # build a client (and its TLS context) per request, a cost of the caller's side.
        self.fresh_client = httpx.Client(
            timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
        )

    def timed(self, text: str, fresh_connection: bool = True) -> float:
        started = time.perf_counter()
        if fresh_connection:  # as a user's browser or a client without a pool does
            response = self.fresh_client.get(self.base, params={"q": text, "k": 10})
        else:
            response = self.client.get(self.base, params={"q": text, "k": 10})
        response.raise_for_status()
        return (time.perf_counter() - started) * 1000

    def qps(self, texts: list[str]) -> float:
        """Queries per second with 8 clients on kept-alive connections."""
        with ThreadPoolExecutor(8) as pool:
            started = time.perf_counter()
            total = len(list(pool.map(lambda t: self.timed(t, False), texts)))
            return total / (time.perf_counter() - started)

    def loaded(self) -> str:
        lines = [line for line in self.log.read_text().splitlines() if "loaded " in line]
        return lines[-1] if lines else f"no load line in {self.log}"

    def stop(self) -> None:
        self.child.stop()


def measure_round(
    logs: Path,
    variants: list[tuple[str, dict[str, str]]],
    cached_texts: list[str],
    fresh_texts: list[str],
    raw_search: Callable[[int], float],
) -> dict[str, ApiFigures]:
    """Start every variant's API at once and time them request by request, taking turns
    (the order rotating) with a raw Milvus search: on two shared cores the machine drifts
    within seconds, so the figures compared are taken in the same moments. QPS at
    concurrency 8 is measured for one variant after another."""
    from catalens.dev.localstack import wait_for_port

    apis: list[Api] = []
    try:
        for n, (label, env) in enumerate(variants):
            # One at a time: a port is free until its API binds it, and no other may get it.
            apis.append(Api(label, logs / f"api-{n}.log", env))
            wait_for_port(apis[-1].port, 300)
        for api in apis:
            for text in cached_texts:
                api.timed(text, False)  # warm-up: these texts are cached from here on

        def turns(i: int) -> list[Api | None]:  # None: the raw Milvus search's turn
            order: list[Api | None] = [*apis, None]
            return order[i % len(order) :] + order[: i % len(order)]

        raw: list[float] = []
        cached: dict[str, list[float]] = {api.label: [] for api in apis}
        fresh: dict[str, list[float]] = {api.label: [] for api in apis}
        for i in range(len(fresh_texts)):
            for turn in turns(i):
                if turn is None:
                    raw.append(raw_search(i))
                else:
                    cached[turn.label].append(turn.timed(cached_texts[i % len(cached_texts)]))
        for i, text in enumerate(fresh_texts):
            for api in apis[i % len(apis) :] + apis[: i % len(apis)]:
                fresh[api.label].append(api.timed(text))
        repeats = [cached_texts[i % len(cached_texts)] for i in range(2 * len(fresh_texts))]
        again = [f"{t} again {i}" for i, t in enumerate(fresh_texts)]
        return {
            api.label: ApiFigures(
                raw,
                cached[api.label],
                fresh[api.label],
                api.qps(repeats),
                api.qps(again),
                api.loaded(),
            )
            for api in apis
        }
    finally:
        for api in apis:
            api.stop()


if __name__ == "__main__":
    if "--modes" in sys.argv:
        import search_modes

        sys.argv.remove("--modes")
        search_modes.main()
    else:
        main()
