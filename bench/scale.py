"""Catalog scale: what each index type of Milvus 2.3.5 costs per product (memory, build
time) and what it gives (recall@10, search latency) at 100K to 1M products.

The catalog is synthetic but shaped like a shop's CLIP image embeddings, never uniform
noise (on which every ANN index does its worst and no recall figure means anything):
each 512-d vector is the L2-normalised sum of a mean direction shared by all (CLIP's
image vectors sit in a narrow cone), its category's direction, its style's within the
category, its product family's (colour variants of one product are near-duplicates) and
its own variant noise. Categories have Zipf sizes; styles and families grow with the
catalog at a fixed number of products each. The random directions have a power-law
spectrum (a few directions carry most of the variance, as in real embeddings). The
parameters (``Shape``) and the measured cosine statistics (random pairs; pairs sharing a
category, a style, a family; each product's nearest neighbour) are printed and saved.

Queries: held-out products of the same catalog ("more like this", image to image), and
text-like queries: cosine 0.30 to a held-out product, the rest a text-side direction
orthogonal to the image cone plus noise (CLIP's modality gap: a text query sits far from
every image, and what ranks the images is a small part of it).

Each (size, index) runs on a Milvus standalone of its own (a fresh data folder, one
collection laid out like a Catalens generation, one row per product image):

1. build: create the collection with its index, insert, flush, and wait until
   ``pending_index_rows == 0`` (timed); then compact (merging the 42,000-row sealed
   segments as Milvus' own compaction does within minutes), index the merged segments
   and wait until Milvus is idle (timed apart);
2. memory: restart Milvus on its data (automatic compaction off) with a small collection
   of the same layout loaded, then the RSS of its processes before and after loading the
   collection;
3. recall@10 against exact search (numpy, float32 brute force over the same vectors)
   while sweeping the search parameter (``ef``, ``nprobe``, ``search_list``), with a
   single-client p50 at each value; the smallest value reaching recall@10 >= 0.95 on the
   image queries is the index's operating point;
4. latency at that point: p50/p99 and QPS with 1 client and with 8 concurrent clients (one
   ``MilvusClient`` per thread), the load average before and after.

``FLAT`` (exact search in Milvus) is the baseline of every size: memory and latency
ratios are taken against it. ``SCALARS`` loads the same rows with a 2-d vector: what the
scalar fields, primary key and row metadata cost alone. An index type the server accepts
but cannot build (its index node fails and retries forever) is reported as unsupported
with the server's error.

Raw results go to ``--out`` (JSON, rewritten after every run; runs already there are
skipped, so an interrupted invocation resumes); ``--plot`` draws memory per product and
p50 latency against catalog size, and recall against the search parameter. ``--keep``
keeps each run's Milvus data so that ``--remeasure`` can time every operating point again
later, in one go, on a quieter machine.

Milvus 2.3.5 standalone binds etcd on fixed ports: when another Milvus runs on the
machine, run this in a network namespace of its own (``ip netns exec NAME ...``).

    python bench/scale.py [--sizes 100000 500000 1000000]
        [--indexes FLAT SCALARS HNSW IVF_FLAT IVF_SQ8 IVF_PQ SCANN DISKANN]
        [--queries 1000] [--text-queries 500] [--out bench/results/scale-DATE.json]
        [--work DIR] [--keep] [--plot docs/scale.png]
    python bench/scale.py --remeasure --out bench/results/scale-DATE.json --work DIR
    python bench/scale.py --plot-only --out bench/results/scale-DATE.json --plot docs/scale.png
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

DIM = 512
K = 10
RECALL_TARGET = 0.95
COLLECTION = "scale_products"
INSERT_BATCH = 2000
# Milvus 2.3.5 here seals a growing segment at 42,000 of these rows (0.23 of the 512 MB
# segment size, so ~2.9 KB per row as Milvus estimates it), and compaction merges sealed
# segments up to 512 MB: ~182,000 rows. nlist follows Milvus' rule of thumb, 4 * sqrt(rows
# in a segment) (https://milvus.io/docs/v2.2.x/performance_faq.md).
SEGMENT_ROWS = 182_000
# Settings beside the defaults, as environment overrides of milvus.yaml: space only (the
# data of compacted segments and the write-ahead log are deleted within minutes instead of
# hours or days, so that the kept runs fit the disk); the disk index needs its query node
# switch.
MILVUS_ENV = {
    "DATACOORD_GC_INTERVAL": "60",
    "DATACOORD_GC_DROPTOLERANCE": "60",
    "ROCKSMQ_RETENTIONTIMEINMINUTES": "10",
    "ROCKSMQ_COMPACTIONINTERVAL": "600",
}
DISKANN_ENV = {"QUERYNODE_ENABLEDISK": "true"}
# Milvus 2.3 memory-maps a loaded segment's field data (every field but the vector index)
# from files under this folder instead of holding it in its heap; the pages of it that
# searches touch stay in the page cache, which the kernel can take back.
MMAP_DIR = "QUERYNODE_MMAPDIRPATH"
NO_COMPACTION = {"DATACOORD_COMPACTION_ENABLEAUTOCOMPACTION": "false"}
# Loading anything at all costs a Milvus process a fixed sum (segcore, thread pools, the
# allocator's arenas: tens of MiB, a large share of a 100K collection). Each run loads a
# small collection of the same layout first, so that what is measured is the main one.
WARMUP = "scale_warmup"
WARMUP_ROWS = 3000
SCANN_REORDER_K = 100  # candidates re-ranked on the raw vectors

HNSW_SWEEP = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
IVF_SWEEP = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
DISKANN_SWEEP = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256)


# -- the catalog ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """How the synthetic catalog is made. The five weights are shares of a vector's squared
    norm before normalisation: two products share the mean, plus the category's share when
    in one category, plus the style's in one style, plus the family's when colour variants
    of one product."""

    mean: float = 0.45
    category: float = 0.15
    style: float = 0.15
    family: float = 0.13
    variant: float = 0.12
    categories: int = 200  # sizes follow Zipf's law: share of the r-th ~ 1/r
    products_per_style: float = 24.0
    products_per_family: float = 2.5  # 1 + Poisson(1.5): many single products, some 5-8
    spectrum: float = 1.0  # the k-th direction's variance ~ k^-spectrum
    text_cosine: float = 0.30  # a text-like query's cosine to its target product
    seed: int = 23

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Catalog:
    """Products (rows of ``vectors``, in insertion order), held-out queries and the exact
    top-10 of every query over the products."""

    vectors: np.ndarray  # (n, DIM) float32, unit length
    categories: np.ndarray  # (n,) int32
    styles: np.ndarray
    families: np.ndarray
    image_queries: np.ndarray  # (q, DIM): held-out products
    text_queries: np.ndarray  # (t, DIM): text-like, aimed at held-out products
    image_truth: np.ndarray  # (q, K) row numbers, best first
    text_truth: np.ndarray
    stats: dict[str, Any]


def power_law_basis(rng: np.random.Generator, spectrum: float) -> np.ndarray:
    """A random rotation whose k-th row is scaled so that z @ basis, z standard normal, has
    variance ~ k^-spectrum along its k-th direction and squared norm 1 on average."""
    rotation, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    variances = np.arange(1, DIM + 1, dtype=np.float64) ** -spectrum
    variances /= variances.sum()
    basis: np.ndarray = (np.sqrt(variances)[:, None] * rotation).astype(np.float32)
    return basis


def directions(rng: np.random.Generator, count: int, basis: np.ndarray) -> np.ndarray:
    out: np.ndarray = rng.standard_normal((count, DIM), dtype=np.float32) @ basis
    return out


def normalised(vectors: np.ndarray) -> np.ndarray:
    out: np.ndarray = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    return out


def make_catalog(size: int, queries: int, text_queries: int, shape: Shape) -> Catalog:
    rng = np.random.default_rng([shape.seed, size])
    basis = power_law_basis(rng, shape.spectrum)
    mean = normalised(rng.standard_normal((1, DIM)))[0]
    total = size + queries
    family_sizes = 1 + rng.poisson(shape.products_per_family - 1, size=total)
    family_sizes = family_sizes[: int(np.searchsorted(np.cumsum(family_sizes), total)) + 1]
    families = np.repeat(np.arange(len(family_sizes)), family_sizes)[:total].astype(np.int32)
    n_styles = max(1, round(total / shape.products_per_style))
    family_style = rng.integers(n_styles, size=len(family_sizes)).astype(np.int32)
    zipf = 1.0 / np.arange(1, shape.categories + 1)
    style_category = rng.choice(shape.categories, size=n_styles, p=zipf / zipf.sum())
    styles = family_style[families]
    categories = style_category[styles].astype(np.int32)
    category_dirs = directions(rng, shape.categories, basis)
    style_dirs = directions(rng, n_styles, basis)
    family_dirs = directions(rng, len(family_sizes), basis)
    weights = {k: math.sqrt(getattr(shape, k)) for k in ("mean", "category", "style", "family")}
    vectors = np.empty((total, DIM), dtype=np.float32)
    for start in range(0, total, 100_000):
        part = slice(start, min(total, start + 100_000))
        chunk = (
            weights["mean"] * mean
            + weights["category"] * category_dirs[categories[part]]
            + weights["style"] * style_dirs[styles[part]]
            + weights["family"] * family_dirs[families[part]]
            + math.sqrt(shape.variant) * directions(rng, part.stop - part.start, basis)
        )
        vectors[part] = normalised(chunk)
    # Hold out random products as queries; the rest, shuffled, is the catalog.
    order = rng.permutation(total)
    held, kept = order[:queries], order[queries:]
    image_queries = vectors[held]
    texts = text_like(rng, image_queries[:text_queries], mean, basis, shape.text_cosine)
    catalog_vectors = np.ascontiguousarray(vectors[kept])
    del vectors
    probes = rng.choice(size, size=min(1000, size), replace=False)
    truth, scores = exact_top(
        catalog_vectors,
        np.concatenate([image_queries, texts, catalog_vectors[probes]]),
        K + 1,
    )
    q, t = len(image_queries), len(texts)
    stats = cosine_stats(
        catalog_vectors,
        categories[kept],
        styles[kept],
        families[kept],
        rng,
        image_nn=scores[:q, 0],
        text_scores=scores[q : q + t],
        text_target=np.einsum("ij,ij->i", texts, image_queries[:t]),
        catalog_nn=scores[q + t :, 1],  # [0] is the product itself
    )
    return Catalog(
        vectors=catalog_vectors,
        categories=categories[kept],
        styles=styles[kept],
        families=families[kept],
        image_queries=image_queries,
        text_queries=texts,
        image_truth=truth[:q, :K],
        text_truth=truth[q : q + t, :K],
        stats=stats,
    )


def text_like(
    rng: np.random.Generator,
    targets: np.ndarray,
    image_mean: np.ndarray,
    basis: np.ndarray,
    cosine: float,
) -> np.ndarray:
    """Queries at exactly ``cosine`` to their targets: the rest of each is a text-side mean
    direction (orthogonal to the image cone's) and noise with the images' spectrum, both
    made orthogonal to the target."""
    text_mean = rng.standard_normal(DIM).astype(np.float32)
    text_mean -= (text_mean @ image_mean) * image_mean
    text_mean /= np.linalg.norm(text_mean)
    rest = math.sqrt(0.5) * text_mean + math.sqrt(0.5) * directions(rng, len(targets), basis)
    rest -= np.einsum("ij,ij->i", rest, targets)[:, None] * targets
    rest = normalised(rest)
    return normalised(cosine * targets + math.sqrt(1 - cosine**2) * rest)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (float32 brute force), in chunks of the catalog."""
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    best = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(vectors), 50_000):
        scores = queries @ vectors[start : start + 50_000].T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best = np.concatenate([best, np.take_along_axis(scores, top, axis=1)], axis=1)
        best_ids = np.concatenate([best_ids, top + start], axis=1)
        keep = np.argpartition(-best, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(best, keep, axis=1)
        best_ids = np.take_along_axis(best_ids, keep, axis=1)
    order = np.argsort(-best, axis=1)
    return np.take_along_axis(best_ids, order, axis=1), np.take_along_axis(best, order, axis=1)


def summary(values: np.ndarray) -> dict[str, float]:
    p = np.percentile(values, [5, 50, 95])
    return {
        "mean": round(float(np.mean(values)), 4),
        "std": round(float(np.std(values)), 4),
        "p5": round(float(p[0]), 4),
        "p50": round(float(p[1]), 4),
        "p95": round(float(p[2]), 4),
    }


def cosine_stats(
    vectors: np.ndarray,
    categories: np.ndarray,
    styles: np.ndarray,
    families: np.ndarray,
    rng: np.random.Generator,
    *,
    image_nn: np.ndarray,
    text_scores: np.ndarray,
    text_target: np.ndarray,
    catalog_nn: np.ndarray,
) -> dict[str, Any]:
    sample = rng.choice(len(vectors), size=min(2000, len(vectors)), replace=False)
    gram = vectors[sample] @ vectors[sample].T
    upper = np.triu_indices(len(sample), 1)

    def sharing(labels: np.ndarray) -> np.ndarray:
        """Cosines of up to 5,000 random pairs of products that share a label."""
        order = np.argsort(labels, kind="stable")
        same = np.flatnonzero(labels[order][1:] == labels[order][:-1])
        pick = rng.choice(same, size=min(5000, len(same)), replace=False)
        a, b = order[pick], order[pick + 1]
        cosines: np.ndarray = np.einsum("ij,ij->i", vectors[a], vectors[b])
        return cosines

    return {
        "random_pairs": summary(gram[upper]),
        "same_category": summary(sharing(categories)),
        "same_style": summary(sharing(styles)),
        "same_family": summary(sharing(families)),
        "nearest_neighbour": summary(catalog_nn),
        "held_out_nearest_neighbour": summary(image_nn),
        "text_to_target": summary(text_target),
        "text_top1": summary(text_scores[:, 0]),
        "text_top10": summary(text_scores[:, K - 1]),
        "families": len(np.unique(families)),
        "styles": len(np.unique(styles)),
        "categories": len(np.unique(categories)),
    }


def load_catalog(work: Path, size: int, queries: int, text_queries: int, shape: Shape) -> Catalog:
    """The catalog of ``size``, from the work folder's cache when made there before."""
    path = work / f"catalog-{size}-{queries}-{text_queries}-{shape.key()}.npz"
    if path.exists():
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files if name != "stats"}
            stats = json.loads(str(data["stats"]))
        return Catalog(**arrays, stats=stats)
    started = time.perf_counter()
    catalog = make_catalog(size, queries, text_queries, shape)
    print(f"catalog of {size:,} made in {time.perf_counter() - started:.0f} s", flush=True)
    arrays = {k: v for k, v in vars(catalog).items() if k != "stats"}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays, stats=np.array(json.dumps(catalog.stats)))
    tmp.rename(path)
    return catalog


def float16_recall(catalog: Catalog) -> dict[str, float]:
    """recall@10 of exact search over the catalog and queries rounded to float16, against
    float32: what FLOAT16_VECTOR fields (Milvus >= 2.4) cost in recall before any index."""
    vectors = catalog.vectors.astype(np.float16).astype(np.float32)
    out = {}
    for name, queries, truth in (
        ("image", catalog.image_queries, catalog.image_truth),
        ("text", catalog.text_queries, catalog.text_truth),
    ):
        top, _ = exact_top(vectors, queries.astype(np.float16).astype(np.float32), K)
        out[name] = recall([row.tolist() for row in top], truth)
    return out


# -- rows ----------------------------------------------------------------------------------

COLOURS = ("black", "white", "navy", "beige", "red", "green", "grey", "pink", "blue", "brown")
MATERIALS = ("cotton", "linen", "wool", "polyester", "viscose", "denim", "leather", "silk")
SIZES = ("XS", "S", "M", "L", "XL")
DESCRIPTION = (
    "Relaxed-fit shirt in a soft woven fabric with a classic collar, buttons down the front, "
    "a chest pocket and long sleeves with buttoned cuffs. Rounded hem, slightly longer at the "
    "back. Machine wash at 40 degrees."
)


def rows(catalog: Catalog, start: int, stop: int, spec: IndexSpec) -> list[dict[str, Any]]:
    """Rows as a Catalens generation holds them, one per product image: a 32-character
    row key (``catalens.store.admin.row_key``'s width; the row number leads it so that a
    hit names its row), a ~60-character image URL, a ~40-character name, a ~200-character
    description and ~150 bytes of JSON attributes."""
    out = []
    tiny = np.array([1.0, 0.0], dtype=np.float32)
    for i in range(start, stop):
        product = f"sku-{i:010d}"
        family = int(catalog.families[i])
        out.append(
            {
                "row_key": f"{i:010d}{hashlib.blake2b(product.encode()).hexdigest()[:22]}",
                "product_id": product,
                "image_id": "front",
                "position": 0,
                "images": 1,
                "version": 1,
                "category": f"category-{int(catalog.categories[i]):03d}",
                "image": f"https://cdn.example-shop.com/p/{i:010d}/front-1200x1800.jpg",
                "name": f"{MATERIALS[family % len(MATERIALS)].title()} shirt, style {family}",
                "description": DESCRIPTION,
                "updated_at_ms": 1_765_000_000_000 + i,
                "input_offset": i,
                "attributes": {
                    "colour": COLOURS[i % len(COLOURS)],
                    "sizes": list(SIZES[: 2 + i % 4]),
                    "price": round(9.99 + (family % 200), 2),
                    "material": MATERIALS[family % len(MATERIALS)],
                    "style": f"style-{int(catalog.styles[i])}",
                    "family": f"family-{family}",
                },
                "vector": (
                    tiny
                    if spec.name == "SCALARS"
                    else catalog.vectors[i].astype(np.float16)
                    if spec.float16
                    else catalog.vectors[i]
                ),
            }
        )
    return out


def row_number(key: str) -> int:
    return int(key[:10])


# -- index types ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexSpec:
    name: str  # Milvus' index type, or SCALARS
    param: str | None  # the search parameter swept
    sweep: tuple[int, ...]

    def build_params(self, size: int) -> dict[str, Any]:
        nlist = round(4 * math.sqrt(min(size, SEGMENT_ROWS)))
        params: dict[str, dict[str, Any]] = {
            "HNSW": {"M": 16, "efConstruction": 200},
            "HNSW_FP16": {"M": 16, "efConstruction": 200},
            "HNSW_SQ": {"M": 16, "efConstruction": 200, "sq_type": "SQ8"},  # Milvus >= 2.5
            "IVF_FLAT": {"nlist": nlist},
            "IVF_SQ8": {"nlist": nlist},
            "IVF_SQ8_MMAP": {"nlist": nlist},
            "IVF_PQ": {"nlist": nlist, "m": 64, "nbits": 8},  # 8 dimensions per code byte
            "SCANN": {"nlist": nlist},  # with_raw_data is on by default: re-ranking
            "DISKANN": {},  # MaxDegree 56, SearchListSize 100 from milvus.yaml
        }
        return params.get(self.name, {})

    def search_params(self, value: int | None) -> dict[str, Any]:
        if self.param is None or value is None:
            return {}
        params: dict[str, Any] = {self.param: value}
        if self.name == "SCANN":
            params["reorder_k"] = SCANN_REORDER_K
        return params

    @property
    def index_type(self) -> str:
        return {"SCALARS": "FLAT", "HNSW_FP16": "HNSW", "IVF_SQ8_MMAP": "IVF_SQ8"}.get(
            self.name, self.name
        )

    def env(self, data_dir: Path) -> dict[str, str]:
        """What the server needs beside MILVUS_ENV for this run."""
        if self.name == "DISKANN":
            return DISKANN_ENV
        if self.name.endswith("_MMAP"):
            return {MMAP_DIR: str(data_dir / "mmap")}
        return {}

    @property
    def float16(self) -> bool:
        """A FLOAT16_VECTOR field instead of FLOAT_VECTOR (half the raw vector bytes)."""
        return self.name == "HNSW_FP16"

    @property
    def vector_dim(self) -> int:
        return 2 if self.name == "SCALARS" else DIM


INDEXES = {
    spec.name: spec
    for spec in (
        IndexSpec("FLAT", None, ()),
        IndexSpec("SCALARS", None, ()),
        IndexSpec("HNSW", "ef", HNSW_SWEEP),
        IndexSpec("IVF_FLAT", "nprobe", IVF_SWEEP),
        IndexSpec("IVF_SQ8", "nprobe", IVF_SWEEP),
        IndexSpec("IVF_SQ8_MMAP", "nprobe", IVF_SWEEP),
        IndexSpec("IVF_PQ", "nprobe", IVF_SWEEP),
        IndexSpec("SCANN", "nprobe", IVF_SWEEP),
        IndexSpec("DISKANN", "search_list", DISKANN_SWEEP),
        IndexSpec("HNSW_SQ", "ef", HNSW_SWEEP),
        IndexSpec("HNSW_FP16", "ef", HNSW_SWEEP),
    )
}


# -- Milvus --------------------------------------------------------------------------------


class Unsupported(RuntimeError):
    """The server accepted the index but its index node cannot build it."""


class Server:
    """A Milvus standalone on a data folder of its own, started through the project's
    launcher; stopped by the PIDs of every process that holds the folder (the server can
    leave its wrapper's process group)."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.child: Any = None
        self.uri = ""

    def start(self) -> None:
        from catalens.dev.localstack import free_port, start_milvus

        port = free_port()
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)  # the launcher's child inherits them
        try:
            self.child = start_milvus(
                self.data_dir, port, self.data_dir.parent / f"{self.data_dir.name}.log", 300
            )
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.uri = f"http://127.0.0.1:{port}"

    def processes(self) -> list[Any]:
        from ingest import milvus_servers

        return milvus_servers(self.data_dir)

    def rss(self) -> int:
        total = 0
        for process in self.processes():
            with contextlib.suppress(Exception):
                total += int(process.memory_info().rss)
        return total

    def rss_file(self) -> int:
        """The part of :meth:`rss` mapped from files (``RssFile``)."""
        total = 0
        for process in self.processes():
            with contextlib.suppress(Exception):
                status = Path(f"/proc/{process.pid}/status").read_text()
                kib = next(ln.split()[1] for ln in status.splitlines() if ln.startswith("RssFile:"))
                total += int(kib) * 1024
        return total

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(timeout_s=20)
            self.child = None
        deadline = time.monotonic() + 30
        while (left := self.processes()) and time.monotonic() < deadline:
            for process in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
            time.sleep(0.5)

    def log_text(self, offset: int = 0) -> str:
        texts = []
        for path in sorted((self.data_dir / "logs").glob("standalone*.log")):
            with path.open("rb") as f:
                f.seek(offset)
                texts.append(f.read().decode(errors="replace"))
        return "".join(texts)

    def log_size(self) -> int:
        return sum(p.stat().st_size for p in (self.data_dir / "logs").glob("standalone*.log"))

    def idle(self, least_s: float, most_s: float) -> float:
        """Wait until Milvus is idle (see bench/query_latency.py); the seconds waited."""
        from query_latency import settle

        started = time.monotonic()
        settle(self.data_dir, least_s, most_s)
        return time.monotonic() - started


def client(uri: str) -> Any:
    from pymilvus import MilvusClient

    return MilvusClient(uri, timeout=600)


def create(milvus: Any, spec: IndexSpec, size: int, name: str = COLLECTION) -> None:
    from pymilvus import DataType, MilvusClient

    from catalens.store.admin import (
        KEY_FIELD,
        MAX_DESCRIPTION_LENGTH,
        MAX_ID_LENGTH,
        MAX_IMAGE_ID_LENGTH,
        MAX_IMAGE_LENGTH,
        MAX_NAME_LENGTH,
        MAX_ROW_KEY_LENGTH,
        MAX_TEXT_LENGTH,
        ORDER_FIELD,
    )

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    # The fields of catalens.store.admin._schema on a server without full-text search.
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
    vector_type = DataType.FLOAT16_VECTOR if spec.float16 else DataType.FLOAT_VECTOR
    schema.add_field("vector", vector_type, dim=spec.vector_dim)
    index = MilvusClient.prepare_index_params()
    index.add_index(
        "vector",
        index_type=spec.index_type,
        metric_type="IP",  # unit vectors: inner product is cosine
        params=spec.build_params(size),
    )
    milvus.create_collection(name, schema=schema, index_params=index, consistency_level="Bounded")
    milvus.release_collection(name)  # create_collection with an index loads it


def wait_indexed(
    milvus: Any, server: Server, log_from: int, timeout_s: float, name: str = COLLECTION
) -> None:
    """Until every sealed row of ``name`` is indexed; :class:`Unsupported` once the index
    node has failed to build three times (it would retry forever)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = milvus.describe_index(name, "vector")
        if int(info.get("pending_index_rows", 1)) == 0 and info.get("state") == "Finished":
            return
        failures = [
            line
            for line in server.log_text(log_from).splitlines()
            if "[ERROR]" in line and "failed to build index" in line
        ]
        if len(failures) >= 3:
            error = failures[-1].split('[error="', 1)[-1].split('"]', 1)[0]
            raise Unsupported(error.replace("\\n", " ").strip())
        time.sleep(2)
    raise TimeoutError(f"index not built in {timeout_s:.0f} s")


def compact(milvus: Any, server: Server, log_from: int) -> None:
    """Merge the sealed segments now, as Milvus' own compaction would within minutes (it
    merges segments under half the 512 MB size), and wait until the merged ones are
    indexed and Milvus is idle: the collection as it will be served."""
    for _ in range(3):
        before = sorted(int(s.num_rows) for s in milvus.list_persistent_segments(COLLECTION))
        job = milvus.compact(COLLECTION)
        while milvus.get_compaction_state(job) != "Completed":
            time.sleep(2)
        wait_indexed(milvus, server, log_from, timeout_s=4 * 3600)
        server.idle(30, 3600)
        wait_indexed(milvus, server, log_from, timeout_s=4 * 3600)
        after = sorted(int(s.num_rows) for s in milvus.list_persistent_segments(COLLECTION))
        if after == before:
            return


# -- measurements --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def search(milvus: Any, queries: np.ndarray, spec: IndexSpec, value: int | None) -> list[list[int]]:
    found: list[list[int]] = []
    for start in range(0, len(queries), 100):
        hits = milvus.search(
            COLLECTION,
            [q.tolist() for q in queries[start : start + 100]],
            limit=K,
            search_params={"metric_type": "IP", "params": spec.search_params(value)},
        )
        found.extend([row_number(str(hit["id"])) for hit in result] for result in hits)
    return found


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return statistics.mean(
        len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)
    )


def timed_searches(
    milvus: Any, queries: np.ndarray, spec: IndexSpec, value: int | None
) -> list[float]:
    """Milliseconds of one top-10 search per query, one after another."""
    out = []
    params = {"metric_type": "IP", "params": spec.search_params(value)}
    for q in queries:
        vector = [q.tolist()]
        started = time.perf_counter()
        milvus.search(COLLECTION, vector, limit=K, search_params=params)
        out.append((time.perf_counter() - started) * 1000)
    return out


def concurrent_latency(
    uri: str, queries: np.ndarray, spec: IndexSpec, value: int | None, clients: int, total: int
) -> dict[str, float]:
    """p50/p99 and QPS with ``clients`` threads, each with its own client, searching at
    once (after a warm-up of 20 searches each)."""
    per_client = max(1, total // clients)
    barrier = threading.Barrier(clients)
    times: list[list[float]] = [[] for _ in range(clients)]
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * clients

    def work(n: int) -> None:
        milvus = client(uri)
        try:
            mine = queries[(np.arange(per_client + 20) * clients + n) % len(queries)]
            timed_searches(milvus, mine[:20], spec, value)
            barrier.wait()
            started = time.perf_counter()
            times[n] = timed_searches(milvus, mine[20:], spec, value)
            spans[n] = (started, time.perf_counter())
        finally:
            milvus.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [t for part in times for t in part]
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return {
        "p50_ms": round(percentile(flat, 50), 3),
        "p99_ms": round(percentile(flat, 99), 3),
        "qps": round(len(flat) / wall, 1),
        "searches": len(flat),
    }


def latency(
    uri: str, catalog: Catalog, spec: IndexSpec, value: int | None, n: int
) -> dict[str, Any]:
    before = loadavg()
    one = concurrent_latency(uri, catalog.image_queries, spec, value, 1, n)
    eight = concurrent_latency(uri, catalog.image_queries, spec, value, 8, 4 * n)
    return {
        "param": value,
        "c1": one,
        "c8": eight,
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@dataclass
class Run:
    index: str
    size: int
    status: str = "ok"  # ok | unsupported | failed
    error: str | None = None
    build_params: dict[str, Any] = field(default_factory=dict)
    insert_s: float = 0.0
    flush_s: float = 0.0
    index_s: float = 0.0
    build_s: float = 0.0  # first insert -> pending_index_rows == 0
    settle_s: float = 0.0  # then compaction merging the segments, their indexes, idle
    load_s: float = 0.0
    rss_before: int = 0
    rss_loaded: int = 0
    rss_after_search: int = 0
    # Of those, the pages mapped from files (RssFile: memory-mapped field data, the
    # binaries): reclaimable by the kernel, unlike the rest.
    rss_file_before: int = 0
    rss_file_loaded: int = 0
    rss_file_after_search: int = 0
    bytes_per_product: float = 0.0
    milvus_mem_size: int = 0  # Milvus' own estimate of the loaded segments (0: none given)
    segments: list[int] = field(default_factory=list)
    disk_bytes: int = 0
    sweep: list[dict[str, Any]] = field(default_factory=list)
    chosen: int | None = None  # smallest value with image recall@10 >= target
    chosen_text: int | None = None  # the same for text-like queries
    recall_image: float | None = None
    recall_text: float | None = None
    latency: dict[str, Any] | None = None
    latency_text: dict[str, Any] | None = None  # at chosen_text, where it differs
    latency_final: dict[str, Any] | None = None
    latency_text_final: dict[str, Any] | None = None
    data_dir: str | None = None
    loadavg: list[float] = field(default_factory=list)


def sweep(milvus: Any, catalog: Catalog, spec: IndexSpec, run: Run, size: int) -> None:
    """Recall and a single-client p50 at each value of the search parameter, until the
    recall of both query sets has been 0.99 or more for three values or has stopped
    growing (four values within 0.002), the p50 passes 2 s, or IVF's nprobe reaches nlist."""
    nlist = spec.build_params(size).get("nlist")
    past = 0
    values: tuple[int | None, ...] = spec.sweep or (None,)
    for value in values:
        if nlist is not None and value is not None and value > nlist:
            break
        image = recall(search(milvus, catalog.image_queries, spec, value), catalog.image_truth)
        text = recall(search(milvus, catalog.text_queries, spec, value), catalog.text_truth)
        p50 = percentile(timed_searches(milvus, catalog.image_queries[:100], spec, value), 50)
        run.sweep.append(
            {
                "value": value,
                "recall_image": round(image, 4),
                "recall_text": round(text, 4),
                "p50_ms": round(p50, 3),
            }
        )
        print(
            f"  {spec.param or 'exact'}={value}: recall@10 image {image:.4f}, "
            f"text {text:.4f}; p50 {p50:.2f} ms",
            flush=True,
        )
        if run.chosen is None and image >= RECALL_TARGET:
            run.chosen, run.recall_image, run.recall_text = value, image, text
        if run.chosen_text is None and text >= RECALL_TARGET:
            run.chosen_text = value
        if min(image, text) >= 0.99:
            past += 1
        last = run.sweep[-4:]
        flat = len(last) == 4 and all(
            max(s[k] for s in last) - min(s[k] for s in last) < 0.002
            for k in ("recall_image", "recall_text")
        )
        if past >= 3 or flat or p50 > 2000:
            break
    if run.chosen is None:  # the target is out of reach: report the best point
        best = max(run.sweep, key=lambda s: s["recall_image"])
        run.chosen, run.recall_image, run.recall_text = (
            best["value"],
            best["recall_image"],
            best["recall_text"],
        )


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and "bin" not in p.parts)


def measure(
    work: Path, catalog: Catalog, spec: IndexSpec, size: int, args: argparse.Namespace
) -> Run:
    from pymilvus import MilvusException

    run = Run(spec.name, size, build_params=spec.build_params(size))
    data_dir = work / f"milvus-{spec.name.lower()}-{size}"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = MILVUS_ENV | spec.env(data_dir)
    server = Server(data_dir, env)
    server.start()
    try:
        milvus = client(server.uri)
        log_from = server.log_size()
        try:
            create(milvus, spec, size, WARMUP)
        except MilvusException as exc:  # the proxy refuses index types it does not know
            raise Unsupported(f"create_index: {exc.message}") from None
        milvus.insert(WARMUP, rows(catalog, 0, WARMUP_ROWS, spec))
        milvus.flush(WARMUP)
        wait_indexed(milvus, server, log_from, timeout_s=600, name=WARMUP)
        create(milvus, spec, size)
        started = time.perf_counter()
        for start in range(0, size, INSERT_BATCH):
            milvus.insert(COLLECTION, rows(catalog, start, min(size, start + INSERT_BATCH), spec))
            if (start // INSERT_BATCH) % 100 == 99:
                done = start + INSERT_BATCH
                rate = done / (time.perf_counter() - started)
                print(f"  inserted {done:,} ({rate:,.0f} rows/s)", flush=True)
        run.insert_s = time.perf_counter() - started
        milvus.flush(COLLECTION)
        run.flush_s = time.perf_counter() - started - run.insert_s
        wait_indexed(milvus, server, log_from, timeout_s=4 * 3600)
        run.build_s = time.perf_counter() - started
        run.index_s = run.build_s - run.insert_s - run.flush_s
        print(
            f"  built in {run.build_s:.0f} s (insert {run.insert_s:.0f}, flush "
            f"{run.flush_s:.0f}, index {run.index_s:.0f} more)",
            flush=True,
        )
        settle_started = time.perf_counter()
        compact(milvus, server, log_from)
        run.settle_s = time.perf_counter() - settle_started
        milvus.close()

        # Memory: a fresh server process with the small collection loaded, then the main one;
        # no compaction may start meanwhile (it would build indexes and leave the process's
        # heap grown before the load).
        server.stop()
        server.env = env | NO_COMPACTION
        server.start()
        server.idle(10, 300)  # also lets the sessions of the stopped process expire
        milvus = client(server.uri)
        milvus.load_collection(WARMUP, timeout=600)
        server.idle(10, 300)
        run.rss_before = int(statistics.median(sample_rss(server)))
        run.rss_file_before = server.rss_file()
        started = time.perf_counter()
        milvus.load_collection(COLLECTION, timeout=3600)
        run.load_s = time.perf_counter() - started
        server.idle(10, 300)
        run.rss_loaded = int(statistics.median(sample_rss(server)))
        run.rss_file_loaded = server.rss_file()
        run.bytes_per_product = (run.rss_loaded - run.rss_before) / size
        loaded = milvus.list_loaded_segments(COLLECTION)
        run.segments = sorted(int(s.num_rows) for s in loaded)
        run.milvus_mem_size = sum(int(s.mem_size) for s in loaded)
        print(
            f"  memory: {run.bytes_per_product:,.0f} B/product (RSS {run.rss_before / 2**20:,.0f}"
            f" -> {run.rss_loaded / 2**20:,.0f} MiB, of it mapped from files "
            f"{run.rss_file_before / 2**20:,.0f} -> {run.rss_file_loaded / 2**20:,.0f} MiB); "
            f"segments {run.segments}",
            flush=True,
        )
        if spec.name != "SCALARS":
            milvus.release_collection(WARMUP)
            sweep(milvus, catalog, spec, run, size)
            run.latency = latency(server.uri, catalog, spec, run.chosen, args.latency_queries)
            print(
                f"  latency at {spec.param}={run.chosen}: {latency_line(run.latency)}", flush=True
            )
            if run.chosen_text not in (None, run.chosen):
                run.latency_text = latency(
                    server.uri, catalog, spec, run.chosen_text, args.latency_queries
                )
                print(
                    f"  latency at {spec.param}={run.chosen_text} (text queries' point): "
                    f"{latency_line(run.latency_text)}",
                    flush=True,
                )
        run.rss_after_search = server.rss()
        run.rss_file_after_search = server.rss_file()
        milvus.close()
    except Unsupported as exc:
        run.status, run.error = "unsupported", str(exc)
        print(f"  {spec.name}: unsupported: {exc}", flush=True)
    finally:
        server.stop()
        run.disk_bytes = folder_bytes(data_dir)
        if args.keep and run.status == "ok" and spec.name != "SCALARS":
            run.data_dir = str(data_dir)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return run


def sample_rss(server: Server) -> list[int]:
    out = []
    for _ in range(3):
        out.append(server.rss())
        time.sleep(1)
    return out


def latency_line(figures: dict[str, Any]) -> str:
    one, eight = figures["c1"], figures["c8"]
    return (
        f"1 client p50 {one['p50_ms']:.2f} / p99 {one['p99_ms']:.2f} ms, {one['qps']:.0f} QPS; "
        f"8 clients p50 {eight['p50_ms']:.2f} / p99 {eight['p99_ms']:.2f} ms, "
        f"{eight['qps']:.0f} QPS (load {figures['loadavg_before']:.2f} -> "
        f"{figures['loadavg_after']:.2f})"
    )


def remeasure(results: dict[str, Any], work: Path, args: argparse.Namespace) -> None:
    """Time every kept run's operating point again, one after another."""
    for run in results["runs"]:
        if run["status"] != "ok" or not run.get("data_dir") or run["index"] == "SCALARS":
            continue
        if run["size"] not in args.sizes or run["index"] not in args.indexes:
            continue
        data_dir = Path(run["data_dir"])
        if not data_dir.exists():
            print(f"{run['index']} {run['size']:,}: {data_dir} is gone; skipped")
            continue
        spec = INDEXES[run["index"]]
        catalog = load_catalog(work, run["size"], args.queries, args.text_queries, Shape())
        env = MILVUS_ENV | NO_COMPACTION | spec.env(data_dir)
        server = Server(data_dir, env)
        server.start()
        try:
            server.idle(10, 300)
            milvus = client(server.uri)
            milvus.load_collection(COLLECTION, timeout=3600)
            server.idle(10, 300)
            milvus.close()
            run["latency_final"] = latency(
                server.uri, catalog, spec, run["chosen"], args.latency_queries
            )
            print(f"{spec.name} {run['size']:,}: {latency_line(run['latency_final'])}", flush=True)
            if run.get("latency_text"):
                run["latency_text_final"] = latency(
                    server.uri, catalog, spec, run["chosen_text"], args.latency_queries
                )
                print(
                    f"{spec.name} {run['size']:,}, text queries' point: "
                    f"{latency_line(run['latency_text_final'])}",
                    flush=True,
                )
        finally:
            server.stop()
        save(results, args.out)


# -- the machine and the report ------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if "model name" in ln), "?"
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), []
    )
    from pymilvus import __version__ as pymilvus_version

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "simd": sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c")),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pymilvus": pymilvus_version,
        "milvus": "2.3.5 standalone (PyPI milvus==2.3.5)",
        "lscpu": subprocess.run(["lscpu"], capture_output=True, text=True).stdout,
    }


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.rename(path)


def print_distribution(size: int, stats: dict[str, Any]) -> None:
    print(
        f"catalog of {size:,}: {stats['categories']} categories, {stats['styles']:,} styles, "
        f"{stats['families']:,} families"
    )
    for name in (
        "random_pairs",
        "same_category",
        "same_style",
        "same_family",
        "nearest_neighbour",
        "held_out_nearest_neighbour",
        "text_to_target",
        "text_top1",
        "text_top10",
    ):
        s = stats[name]
        print(
            f"  cosine, {name.replace('_', ' '):<27} mean {s['mean']:.3f}  std {s['std']:.3f}"
            f"  p5 {s['p5']:.3f}  p50 {s['p50']:.3f}  p95 {s['p95']:.3f}"
        )


def print_table(results: dict[str, Any]) -> None:
    """Every run, with its memory and p50 as ratios to FLAT of the same size."""
    runs = results["runs"]
    flat = {r["size"]: r for r in runs if r["index"] == "FLAT" and r["status"] == "ok"}
    print(
        f"{'index':<9} {'size':>9} {'B/product':>9} {'xFLAT':>6} {'build s':>8} {'param':>6} "
        f"{'recall':>6} {'text':>6} {'p50':>7} {'p99':>7} {'QPS1':>6} {'p50@8':>7} {'QPS8':>6} "
        f"{'p50 xFLAT':>9}"
    )
    for r in sorted(runs, key=lambda r: (list(INDEXES).index(r["index"]), r["size"])):
        if r["status"] != "ok":
            print(f"{r['index']:<9} {r['size']:>9,} {r['status']}: {r['error']}")
            continue
        base = flat.get(r["size"])
        mem_ratio = r["bytes_per_product"] / base["bytes_per_product"] if base else float("nan")
        lat = final(r)
        if lat is None:
            print(
                f"{r['index']:<9} {r['size']:>9,} {r['bytes_per_product']:>9,.0f} {mem_ratio:>6.2f}"
            )
            continue
        base_lat = final(base) if base else None
        p50_ratio = lat["c1"]["p50_ms"] / base_lat["c1"]["p50_ms"] if base_lat else float("nan")
        print(
            f"{r['index']:<9} {r['size']:>9,} {r['bytes_per_product']:>9,.0f} {mem_ratio:>6.2f} "
            f"{r['build_s']:>8.0f} {r['chosen'] if r['chosen'] is not None else '-':>6} "
            f"{r['recall_image']:>6.3f} {r['recall_text']:>6.3f} {lat['c1']['p50_ms']:>7.2f} "
            f"{lat['c1']['p99_ms']:>7.2f} {lat['c1']['qps']:>6.0f} {lat['c8']['p50_ms']:>7.2f} "
            f"{lat['c8']['qps']:>6.0f} {p50_ratio:>9.2f}"
        )


def final(run: dict[str, Any], key: str = "latency") -> dict[str, Any] | None:
    """A run's latency figures: the re-measured ones where there are."""
    figures: dict[str, Any] | None = run.get(f"{key}_final") or run.get(key)
    return figures


def reached(run: dict[str, Any]) -> bool:
    """Whether image queries reached the recall target at the run's chosen parameter."""
    return (run.get("recall_image") or 0.0) >= RECALL_TARGET


def markdown(results: dict[str, Any]) -> str:
    """The tables of docs/scale.md, straight from the results."""
    runs = [r for r in results["runs"] if r["status"] == "ok"]
    order = sorted(runs, key=lambda r: (list(INDEXES).index(r["index"]), r["size"]))
    by = {(r["index"], r["size"]): r for r in runs}
    out = [
        "| index | products | memory / product | build (insert + flush + index) "
        "| then idle after | search param | recall@10 image / text | 1 client p50 / p99 | "
        "1 client QPS | 8 clients p50 / p99 | 8 clients QPS | load avg |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | --- | ---: | --- |",
    ]
    for r in order:
        build = (
            f"{r['build_s']:,.0f} s ({r['insert_s']:,.0f} + {r['flush_s']:,.0f} + "
            f"{r['index_s']:,.0f})"
        )
        lat = final(r)
        if lat is None:
            cells = ["-"] * 7
        else:
            one, eight = lat["c1"], lat["c8"]
            param = INDEXES[r["index"]].param
            cells = [
                f"{param}={r['chosen']}" if param else "exact",
                f"{r['recall_image']:.3f} / {r['recall_text']:.3f}",
                f"{one['p50_ms']:.1f} / {one['p99_ms']:.1f} ms",
                f"{one['qps']:,.0f}",
                f"{eight['p50_ms']:.1f} / {eight['p99_ms']:.1f} ms",
                f"{eight['qps']:,.0f}",
                f"{lat['loadavg_before']:.1f} → {lat['loadavg_after']:.1f}",
            ]
        out.append(
            f"| {r['index']} | {r['size']:,} | {r['bytes_per_product']:,.0f} B | "
            f"{build} | {r['settle_s']:,.0f} s | " + " | ".join(cells) + " |"
        )
    out += [
        "",
        "At the text queries' operating point (recall@10 >= 0.95 for text-like queries):",
        "",
        "| index | products | search param | recall@10 image / text | 1 client p50 / p99 | "
        "1 client QPS | 8 clients p50 / p99 | 8 clients QPS |",
        "| --- | ---: | --- | --- | --- | ---: | --- | ---: |",
    ]
    for r in order:
        text = final(r, "latency_text")
        point = next((p for p in r["sweep"] if p["value"] == r.get("chosen_text")), None)
        if text is None or point is None:
            continue
        one, eight = text["c1"], text["c8"]
        out.append(
            f"| {r['index']} | {r['size']:,} | {INDEXES[r['index']].param}={r['chosen_text']} | "
            f"{point['recall_image']:.3f} / {point['recall_text']:.3f} | "
            f"{one['p50_ms']:.1f} / {one['p99_ms']:.1f} ms | {one['qps']:,.0f} | "
            f"{eight['p50_ms']:.1f} / {eight['p99_ms']:.1f} ms | {eight['qps']:,.0f} |"
        )
    sizes = sorted({r["size"] for r in runs})
    # Each step, then the whole range where there are several steps.
    steps = list(itertools.pairwise(sizes))
    steps += [(sizes[0], sizes[-1])] if len(steps) > 1 else []
    for small, large in steps:
        out += [
            "",
            f"Growth from {small:,} to {large:,} products ({large / small:.0f}× the products):",
            "",
            "| index | memory / product | build time | recall@10 image | search param | "
            "1 client p50 | 8 clients QPS |",
            "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for name in INDEXES:
            a, b = by.get((name, small)), by.get((name, large))
            if a is None or b is None:
                continue
            la, lb = final(a), final(b)
            timing = (
                [
                    f"{lb['c1']['p50_ms'] / la['c1']['p50_ms']:.2f}×",
                    f"{lb['c8']['qps'] / la['c8']['qps']:.2f}×",
                ]
                if la and lb
                else ["-", "-"]
            )
            recall_cell = f"{a['recall_image']:.3f} → {b['recall_image']:.3f}" if la and lb else "-"
            param = f"{a['chosen']} → {b['chosen']}" if INDEXES[name].param else "-"
            out.append(
                f"| {name} | {b['bytes_per_product'] / a['bytes_per_product']:.2f}× | "
                f"{b['build_s'] / a['build_s']:.1f}× | {recall_cell} | {param} | "
                + " | ".join(timing)
                + " |"
            )
    out += ["", "Sweeps (recall@10 image / text, single-client p50):", ""]
    for r in order:
        if len(r["sweep"]) < 2:
            continue
        points = ", ".join(
            f"{s['value']}: {s['recall_image']:.3f} / {s['recall_text']:.3f} ({s['p50_ms']:.1f} ms)"
            for s in r["sweep"]
        )
        text = final(r, "latency_text")
        at_text = (
            f"; text queries reach 0.95 at {r['chosen_text']}"
            + (
                f" (p50 {text['c1']['p50_ms']:.1f} ms, {text['c8']['qps']:,.0f} QPS at 8)"
                if text
                else ""
            )
            if r["chosen_text"] is not None
            else "; text queries never reach 0.95 here"
        )
        out.append(f"* {r['index']} {r['size']:,}, {INDEXES[r['index']].param}: {points}{at_text}")
    return "\n".join(out)


# -- the capacity plan ---------------------------------------------------------------------

PLAN_SIZES = (1_000_000, 10_000_000, 100_000_000, 1_000_000_000)


@dataclass(frozen=True)
class Fleet:
    """What the capacity plan assumes beyond the measured figures; docs/scale.md names
    each one, and each is a ``--plan-*`` option."""

    node_cores: int = 16
    node_gib: float = 64.0
    # The share of a query node's RAM one generation may fill: the rest is the process,
    # growing segments, and a second generation loaded beside it while it is rebuilt.
    usable: float = 0.45
    qps: float = 1000.0  # the peak searches per second the catalog must answer
    busy: float = 0.6  # the CPU utilisation query nodes are planned at (peaks above it)
    replicas_min: int = 2  # a replica can fail or restart without an outage
    sink_rate: float = 1000.0  # products/s one sink writes (docs/ingest-speed.md)
    sinks: int = 16  # sinks of a rebuild: at most the embedding topic's partitions
    index_cores: int = 64  # index nodes' cores building the rebuilt generation
    # Rows per sealed segment (0: as measured). Milvus searches every segment, so CPU per
    # search follows their number; larger segments (dataCoord.segment.maxSize) mean
    # fewer. What a graph walk or a list scan costs more in a larger segment is ignored.
    segment_rows: int = 0


@dataclass(frozen=True)
class Costs:
    """One index's measured costs, as functions of the catalog's size."""

    index: str
    bytes_per_product: float  # at the largest size measured
    search_cpu: tuple[float, float]  # CPU seconds per search = a + b * products
    index_cpu_per_product: float  # CPU seconds the index build takes per product
    param: str  # the text queries' operating point at the largest size
    segment_rows: float  # the mean sealed segment of the largest size

    def cpu(self, products: int, segment_rows: int = 0) -> float:
        a, b = self.search_cpu
        fewer = self.segment_rows / segment_rows if segment_rows else 1.0
        return a + b * products * fewer


def costs(results: dict[str, Any], index: str) -> Costs | None:
    """An index's costs from its two largest measured sizes: memory per product at the
    largest; CPU per search at the text queries' operating point (the machine's cores over
    the QPS of 8 clients, which keep them busy: an upper bound, the clients' own CPU is in
    it), a straight line through the two sizes (Milvus searches every segment of a fixed
    size, so the work grows with the number of segments)."""
    cores = results["meta"]["machine"]["cores"]
    runs = sorted(
        (r for r in results["runs"] if r["index"] == index and r["status"] == "ok"),
        key=lambda r: r["size"],
    )
    points = [
        (r["size"], cores / figures["c8"]["qps"])
        for r in runs
        if (figures := final(r, "latency_text") or final(r)) is not None
    ]
    if not points:
        return None
    large = runs[-1]
    if len(points) > 1:
        (n1, c1), (n2, c2) = points[-2], points[-1]
        slope = max(0.0, (c2 - c1) / (n2 - n1))
        line = (c2 - slope * n2, slope)
    else:
        line = (points[-1][1], 0.0)
    spec = INDEXES[index]
    chosen = large.get("chosen_text") or large.get("chosen")
    return Costs(
        index=index,
        bytes_per_product=large["bytes_per_product"],
        search_cpu=line,
        index_cpu_per_product=large["index_s"] * cores / large["size"],
        param=f"{spec.param}={chosen}" if spec.param else "exact",
        segment_rows=statistics.mean(large["segments"]) if large["segments"] else 0,
    )


def hours(value: float) -> str:
    if value >= 1:
        return f"{value:,.1f} h"
    return f"{value * 60:,.0f} min" if value * 60 >= 1 else "<1 min"


def plan(results: dict[str, Any], fleet: Fleet, indexes: list[str]) -> str:
    """The capacity table of docs/scale.md: for each catalog size and index, the memory a
    replica holds, the query nodes it takes, the replicas the QPS target takes, and the
    hours a rebuilt generation takes."""
    node_bytes = fleet.node_gib * 2**30 * fleet.usable
    out = [
        f"Fleet: query nodes of {fleet.node_cores} cores and {fleet.node_gib:.0f} GiB, "
        f"{fleet.usable:.0%} of it for one generation; {fleet.qps:,.0f} searches/s at "
        f"{fleet.busy:.0%} CPU, at least {fleet.replicas_min} replicas; rebuilds by "
        f"{fleet.sinks} sinks of {fleet.sink_rate:,.0f} products/s and "
        f"{fleet.index_cores} index-node cores; "
        + (
            f"segments of {fleet.segment_rows:,} rows."
            if fleet.segment_rows
            else "segments as measured."
        ),
        "",
        "| products | index (text queries' point) | memory per replica | query nodes per "
        "replica | CPU per search | replicas | query nodes | rebuild: sinks + index build |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for products in PLAN_SIZES:
        for name in indexes:
            c = costs(results, name)
            if c is None:
                continue
            memory = products * c.bytes_per_product
            per_replica = max(1, math.ceil(memory / node_bytes))
            cpu = c.cpu(products, fleet.segment_rows)
            replicas = max(
                fleet.replicas_min,
                math.ceil(fleet.qps * cpu / (per_replica * fleet.node_cores * fleet.busy)),
            )
            write_h = products / (fleet.sink_rate * fleet.sinks) / 3600
            build_h = products * c.index_cpu_per_product / fleet.index_cores / 3600
            out.append(
                f"| {products:,} | {name} ({c.param}) | {memory / 2**30:,.1f} GiB | "
                f"{per_replica:,} | {cpu * 1000:,.1f} ms | {replicas:,} | "
                f"{replicas * per_replica:,} | {hours(write_h)} + {hours(build_h)} |"
            )
    return "\n".join(out)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results["runs"] if r["status"] == "ok"]
    names = [n for n in INDEXES if any(r["index"] == n for r in runs)]
    palette = plt.get_cmap("tab10")
    colours = {name: palette(i) for i, name in enumerate(names)}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    memory, latency_ax, recall_ax = axes
    for name in names:
        mine = sorted((r for r in runs if r["index"] == name), key=lambda r: r["size"])
        sizes = [r["size"] for r in mine]
        memory.plot(
            sizes, [r["bytes_per_product"] for r in mine], "o-", label=name, color=colours[name]
        )
        for key, style, what in (("latency_text", "o-", "text"), ("latency", "s--", "image")):
            # An index that never reached the target (IVF_PQ) was timed at its largest
            # parameter: not a point of this panel.
            timed = [
                (r["size"], lat["c1"]["p50_ms"])
                for r in mine
                if (lat := final(r, key)) and (key != "latency" or reached(r))
            ]
            if timed:
                latency_ax.plot(
                    *zip(*timed, strict=True), style, label=f"{name}, {what}", color=colours[name]
                )
        if mine and mine[-1]["sweep"] and INDEXES[name].param:
            largest = mine[-1]
            for key, style, what in (
                ("recall_text", "o-", "text"),
                ("recall_image", "s--", "image"),
            ):
                points = [(s["value"], s[key]) for s in largest["sweep"]]
                recall_ax.plot(
                    *zip(*points, strict=True),
                    style,
                    color=colours[name],
                    label=f"{name}, {what} ({INDEXES[name].param}, {largest['size']:,})",
                )
    memory.set(
        xscale="log",
        yscale="log",
        xlabel="products",
        ylabel="Milvus RSS per product (bytes)",
        title="Memory per product, collection loaded",
    )
    latency_ax.set(
        xscale="log",
        yscale="log",
        xlabel="products",
        ylabel="p50 (ms), 1 client, top-10",
        title="Search latency at recall@10 ≥ 0.95 (text / image queries)",
    )
    recall_ax.axhline(RECALL_TARGET, color="grey", linestyle="--", linewidth=1)
    recall_ax.set(
        xscale="log",
        xlabel="search parameter (ef / nprobe / search_list)",
        ylabel="recall@10",
        title="Recall against the search parameter (text / image queries)",
        ylim=(0.4, 1.005),
    )
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        "Milvus 2.3.5 standalone, 512-d clustered CLIP-like vectors, "
        f"{results['meta']['machine']['cores']} cores ({results['meta']['machine']['cpu']}), "
        f"{results['meta']['date']}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 500_000, 1_000_000])
    parser.add_argument("--indexes", nargs="+", default=list(INDEXES), choices=list(INDEXES))
    parser.add_argument("--queries", type=int, default=1000, help="held-out image queries")
    parser.add_argument("--text-queries", type=int, default=500)
    parser.add_argument(
        "--latency-queries", type=int, default=500, help="searches timed at 1 client (x4 at 8)"
    )
    today = datetime.now(UTC).date().isoformat()
    parser.add_argument("--out", type=Path, default=ROOT / f"bench/results/scale-{today}.json")
    parser.add_argument("--work", type=Path, default=Path("/tmp/catalens-scale"))
    parser.add_argument("--keep", action="store_true", help="keep each run's Milvus data")
    parser.add_argument("--remeasure", action="store_true", help="time kept runs again")
    parser.add_argument("--plot", type=Path, help="draw the figures into this PNG")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--report", action="store_true", help="print the Markdown tables")
    parser.add_argument("--force", action="store_true", help="run again what --out holds")
    parser.add_argument("--plan", action="store_true", help="print the capacity plan")
    parser.add_argument(
        "--float16", action="store_true", help="recall of exact search on float16 vectors"
    )
    parser.add_argument("--plan-indexes", nargs="+", default=["HNSW", "IVF_SQ8"])
    for name, value in asdict(Fleet()).items():
        parser.add_argument(f"--plan-{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    shape = Shape()
    if args.out.exists():
        results = json.loads(args.out.read_text())
        if results["meta"]["shape"] != asdict(shape):
            parser.error(f"{args.out} was made with another Shape; name another --out")
    else:
        results = {
            "meta": {
                "date": today,
                "machine": machine(),
                "shape": asdict(shape),
                "milvus_env": MILVUS_ENV,
                "recall_target": RECALL_TARGET,
                "k": K,
                "queries": args.queries,
                "text_queries": args.text_queries,
            },
            "catalogs": {},
            "runs": [],
        }
    if args.report:
        print(markdown(results))
        return
    if args.float16:
        for size in args.sizes:
            catalog = load_catalog(args.work, size, args.queries, args.text_queries, shape)
            found = float16_recall(catalog)
            results["catalogs"][str(size)]["float16_recall"] = found
            image, text = found["image"], found["text"]
            print(f"{size:,}: float16 recall@10 image {image:.4f}, text {text:.4f}")
        save(results, args.out)
        return
    if args.plan:
        fleet = Fleet(**{name: getattr(args, f"plan_{name}") for name in asdict(Fleet())})
        print(plan(results, fleet, args.plan_indexes))
        return
    if args.plot_only:
        print_table(results)
        if args.plot:
            plot(results, args.plot)
        return
    if args.remeasure:
        remeasure(results, args.work, args)
        print_table(results)
        if args.plot:
            plot(results, args.plot)
        return

    print(f"shape: {json.dumps(asdict(shape))}")
    for size in args.sizes:
        catalog = load_catalog(args.work, size, args.queries, args.text_queries, shape)
        results["catalogs"][str(size)] = catalog.stats
        print_distribution(size, catalog.stats)
        save(results, args.out)
        for name in args.indexes:
            done = [r for r in results["runs"] if r["index"] == name and r["size"] == size]
            if done and not args.force:
                print(f"{name} {size:,}: in {args.out} already")
                continue
            print(f"{name} {size:,} (load {loadavg():.2f})", flush=True)
            run = measure(args.work, catalog, INDEXES[name], size, args)
            results["runs"] = [r for r in results["runs"] if r not in done] + [asdict(run)]
            save(results, args.out)
        del catalog
    print_table(results)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
