"""Search modes side by side: ``GET /search`` in vector, keyword and hybrid mode on the same
generation, over HTTP, each request split by its ``Server-Timing`` header into the time it
waited on Milvus (its calls, those at once counted once) and the time Catalens added
around them (HTTP, validation, grouping, fusion, serialisation), in the same moments.

The generation is filled directly (the sink's store adapter) with ``--products`` products
of one to four images each (clustered 512-d vectors) and a name, a description and
attributes drawn from a catalog vocabulary, on Milvus Lite (the server here with
full-text search; ``CATALENS_MILVUS_URI`` for another). Milvus Lite is pure Python: its
own search times are not Milvus', so the figures that carry over to a real server are
what Catalens adds around the calls, not the totals.

The API runs as ``catalens api`` with the real ViT-B/32 architecture (random weights).
Query texts are warmed into its text cache first, so no mode pays the text tower: what is
compared is the handler, the grouping and the fusion. Each turn sends one request per
mode, in a rotating order.

    python bench/search_modes.py [--products 5000] [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

ALIAS = "bench_modes"
MODES = ("vector", "keyword", "hybrid")
COLOURS = ["black", "white", "red", "navy", "green", "beige", "pink", "grey"]
GARMENTS = ["dress", "top", "trousers", "skirt", "sweater", "jacket", "shirt", "jeans"]
FABRICS = ["cotton", "linen", "denim", "wool", "jersey", "satin", "corduroy", "chiffon"]
BRANDS = ["Northwind", "Fjordline", "Solvang", "Kestrel", "Mira", "Aster", "Lumen", "Vale"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def fill(uri: str, model: str, products: int, dim: int) -> None:
    """``products`` products of 1-4 images with text, through the sink's store adapter."""
    from catalens.encoder.files import resolve_model_dir, weights_digest
    from catalens.store.admin import IndexAdmin
    from catalens.store.client import Milvus
    from catalens.store.values import ModelIdentity, Plan, Row
    from catalens.store.writer import MilvusWriter

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(max(10, products // 50), dim)).astype(np.float32)
    milvus = Milvus(uri, timeout_s=120)
    IndexAdmin(milvus, ALIAS).drop_all()
    writer = MilvusWriter(milvus, alias=ALIAS, model=model)
    writer.create(ModelIdentity(model, dim, weights_digest(resolve_model_dir(model))))
    rows: list[Row] = []
    for i in range(products):
        colour, garment, fabric = (rng.choice(v) for v in (COLOURS, GARMENTS, FABRICS))
        brand = str(rng.choice(BRANDS))
        images = 1 + i % 4
        centre = centres[rng.integers(len(centres))]
        for n in range(images):
            vector = centre + rng.normal(scale=0.3, size=dim).astype(np.float32)
            rows.append(
                Row(
                    f"p{i:06d}",
                    str(n),
                    1,
                    (vector / np.linalg.norm(vector)).astype(np.float32),
                    f"https://cdn.example.com/p{i:06d}-{n}.jpg",
                    n,
                    images,
                    {"category": garment, "colour": colour, "brand": brand},
                    f"{colour} {fabric} {garment}".capitalize(),
                    f"A {garment} in {fabric} by {brand}, number {i}.",
                    1,
                    i,
                )
            )
        if len(rows) >= 2000:
            writer.apply(Plan(upserts=rows))
            rows = []
    writer.apply(Plan(upserts=rows))
    milvus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=300, help="per mode")
    args = parser.parse_args()

    from catalens.dev.localstack import Child, free_port, start_milvus_lite, wait_for_port
    from catalens.store.client import Milvus
    from embed_throughput import model_dirs

    work = Path(tempfile.mkdtemp(prefix="catalens-modes-"))
    uri = os.environ.get("CATALENS_MILVUS_URI")
    server = None
    if not uri:
        port = free_port()
        server = start_milvus_lite(work / "lite", port, work / "lite.log")
        uri = f"http://127.0.0.1:{port}"
    hf_dir, _ = model_dirs()
    api = None
    try:
        started = time.perf_counter()
        fill(uri, str(hf_dir), args.products, 512)
        print(f"filled {args.products} products in {time.perf_counter() - started:.0f} s")
        milvus = Milvus(uri, timeout_s=60)
        port = free_port()
        env = {
            "CATALENS_MILVUS_URI": uri,
            "CATALENS_MODEL": str(hf_dir),
            "CATALENS_COLLECTION": ALIAS,
            "CATALENS_API_PORT": str(port),
        }
        api = Child("api", [sys.executable, "-m", "catalens", "api"], work / "api.log", env=env)
        api.start()
        wait_for_port(port, 300)
        base = f"http://127.0.0.1:{port}/search"
        client = httpx.Client(timeout=60)
        texts = [
            f"{COLOURS[i % 8]} {GARMENTS[(i * 3) % 8]} {FABRICS[(i * 5) % 8]}" for i in range(24)
        ]
        for text in texts:  # into the API's text cache: no mode pays the text tower
            client.get(base, params={"q": text, "k": 10, "mode": "vector"}).raise_for_status()

        def request(mode: str, text: str) -> tuple[float, float]:
            """The request's time at the client and the time it waited on Milvus."""
            started = time.perf_counter()
            response = client.get(base, params={"q": text, "k": 10, "mode": mode})
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            assert response.json()["mode"] == mode
            return elapsed, server_timing(response)["milvus"]

        total_ms: dict[str, list[float]] = {m: [] for m in MODES}
        milvus_ms: dict[str, list[float]] = {m: [] for m in MODES}
        for i in range(args.requests):
            text = texts[i % len(texts)]
            for mode in MODES[i % 3 :] + MODES[: i % 3]:
                total, waited = request(mode, text)
                total_ms[mode].append(total)
                milvus_ms[mode].append(waited)
        print(
            f"{args.products} products ({args.products * 5 // 2} images), Milvus "
            f"{milvus.server_version()}, {os.cpu_count()} cores, {args.requests} requests "
            "per mode, query texts cached"
        )
        added = {m: [t - w for t, w in zip(total_ms[m], milvus_ms[m], strict=True)] for m in MODES}
        print("mode     /search p50    p99   Milvus p50    p99   added p50    p99  (p50 vs vector)")
        for m in MODES:
            print(
                f"{m:8} {percentile(total_ms[m], 50):11.2f} {percentile(total_ms[m], 99):6.2f}"
                f" {percentile(milvus_ms[m], 50):12.2f} {percentile(milvus_ms[m], 99):6.2f}"
                f" {percentile(added[m], 50):11.2f} {percentile(added[m], 99):6.2f}"
                f"  ({percentile(added[m], 50) - percentile(added['vector'], 50):+.2f} ms)"
            )
        milvus.close()
    finally:
        if api is not None:
            api.stop()
        if server is not None:
            server.stop(timeout_s=10)


def server_timing(response: httpx.Response) -> dict[str, float]:
    """The durations of the response's ``Server-Timing`` header, in ms by name."""
    parts = (part.strip().split(";dur=") for part in response.headers["Server-Timing"].split(","))
    return {name: float(duration) for name, duration in parts}


if __name__ == "__main__":
    main()
