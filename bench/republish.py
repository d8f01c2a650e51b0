"""Re-publishing a catalog: attribute changes (same images) against new images, one run.

Catalogs re-publish products far more often than they change images. The embedder
service (the code of ``catalens embedder``, with its default settings; Kafka replaced by
memory) first indexes ``--products`` products, then is timed on two re-publishes of all
of them:

* **attributes changed** — new version, new price, the same image: the vector is reused
  (for URLs a conditional GET answered 304 Not Modified; inline, the bytes' digest);
* **new images** — new version, a new image for every product: fetched, decoded, embedded
  (the baseline: what every re-publish cost before vectors were reused).

For each it prints the time, events/s, the images the model ran on (counted at the
encoder), the reused vectors, and the HTTP answers (200/304); then the ratio, and checks
that every reused vector is exactly the one the first pass made. It also measures what
the reuse cache holds per product (``CATALENS_REUSE_CACHE_SIZE`` sizing).

Images are served by a local HTTP server in a child process (``--source url``: ETag on
every answer, 304 to a matching If-None-Match; new images are at new URLs, as CDNs
version them) or travel inline in the events (``--source inline``). Every product has
its own image bytes (a pool of generated JPEGs, each copy made unique by a JPEG comment).
The model is the real ViT-B/32 architecture with random weights (``--model tiny``: a tiny
CLIP with 512-d output, where the model costs next to nothing).

    python bench/republish.py [--products 10000] [--source url|inline] [--model vit-b-32|tiny]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import logging
import multiprocessing
import os
import platform
import threading
import time
import tracemalloc
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".catalens" / "bench"
POOL = 32
log = logging.getLogger("republish")


def image_pool(count: int, width: int, height: int, seed: int) -> list[bytes]:
    """Product-shot-like JPEGs: a garment-coloured blob on a light background, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pool = []
    for _ in range(count):
        cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
        inside = ((x - cx) / (0.3 * width)) ** 2 + ((y - cy) / (0.35 * height)) ** 2 < 1
        colour = rng.uniform(20, 230, size=3)
        pixels = np.where(inside[..., None], colour, 235.0)
        pixels = pixels + rng.normal(0, 6, size=pixels.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            buffer, format="JPEG", quality=90
        )
        pool.append(buffer.getvalue())
    return pool


def unique(pools: dict[int, list[bytes]], generation: int, index: int) -> bytes:
    """Image ``index`` of a catalog ``generation``: an image of that generation's pool with
    a comment (COM segment) that makes its bytes, and so their digest, its own."""
    pool = pools[generation]
    base = pool[index % len(pool)]
    comment = f"catalog {generation} product {index}".encode()
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return base[:2] + segment + base[2:]  # right after the start-of-image marker


class Server(BaseHTTPRequestHandler):
    """``/<generation>/<index>.jpg`` with an ETag; 304 when If-None-Match holds it."""

    pools: ClassVar[dict[int, list[bytes]]] = {}
    answers: Any = None  # multiprocessing counters: [200s, 304s]

    def do_GET(self) -> None:
        generation, name = self.path.strip("/").split("/")
        index = int(name.removesuffix(".jpg"))
        etag = f'"{generation}-{index}"'
        if self.headers.get("If-None-Match") == etag:
            with self.answers.get_lock():
                self.answers[1] += 1
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        body = unique(self.pools, int(generation), index)
        with self.answers.get_lock():
            self.answers[0] += 1
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def serve(port: Any, pools: dict[int, list[bytes]], answers: Any) -> None:
    Server.pools, Server.answers = pools, answers
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    httpd.daemon_threads = True
    port.value = httpd.server_address[1]
    httpd.serve_forever()


def event(pid: str, version: int, image: dict[str, str], price: float) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": f"{pid}-{version}",
            "op": "upsert",
            "product_id": pid,
            "version": version,
            "occurred_at": "2026-11-24T10:00:00Z",
            "image": image,
            "attributes": {"name": f"product {pid}", "price": price},
        }
    ).encode()


def model_dir(size: str) -> Path:
    from catalens.dev.modelkit import build_random_clip

    if size == "vit-b-32":
        directory = CACHE / "vit-b-32"  # the one bench/embed_throughput.py builds
        if not (directory / "config.json").exists():
            build_random_clip(directory, size="vit-b-32", seed=0)
        return directory
    directory = CACHE / "tiny-512"  # a tiny CLIP with ViT-B/32's 512-d output
    if not (directory / "config.json").exists():
        build_random_clip(directory, size="tiny", seed=0, projection_dim=512)
    return directory


@dataclass
class Pass:
    name: str
    seconds: float
    events: int
    model_images: int
    reused: int
    answers: tuple[int, int]

    def row(self) -> str:
        rate = self.events / self.seconds
        ok, not_modified = self.answers
        return (
            f"{self.name:<20} {self.seconds:8.2f} s {rate:9.1f} ev/s"
            f" {self.model_images:8d} {self.reused:8d}    {ok:6d}/{not_modified:<6d}"
        )


def cache_bytes_per_product(dim: int, count: int = 20_000) -> float:
    """Memory the reuse cache holds per image (URL image with an ETag), measured."""
    from catalens.embedder.reuse import ImageReuse, Origin, image_digest
    from catalens.embedder.sources import Validators

    reuse = ImageReuse(count)
    vectors = np.random.default_rng(0).random((count, dim), dtype=np.float32)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        url = f"https://cdn.example.com/images/2026/11/{i:010d}.jpg"
        origin = Origin(image_digest(url.encode()), url, Validators(url, f'"{i:016x}"'))
        reuse.remember((f"{i:010d}", "0"), origin, vectors[i], None)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--source", choices=("url", "inline"), default="url")
    parser.add_argument("--model", choices=("vit-b-32", "tiny"), default="vit-b-32")
    parser.add_argument("--size", default="583x875", help="image size WxH (half H&M's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    width, height = (int(v) for v in args.size.split("x"))
    # Generation 1: the images of the first index and of the attribute-only re-publish;
    # generation 2: the new images.
    pools = {generation: image_pool(POOL, width, height, generation) for generation in (1, 2)}
    answers = multiprocessing.Array("q", 2)
    port = multiprocessing.Value("i", 0)
    server = multiprocessing.Process(target=serve, args=(port, pools, answers), daemon=True)
    if args.source == "url":
        server.start()
        while not port.value:
            time.sleep(0.01)

    # Imported once the server runs: its process needs none of this (nor PyTorch).
    from catalens.embedder.allocator import keep_freed_memory
    from catalens.embedder.main import build_service
    from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
    from catalens.schemas import EmbeddingRecord
    from catalens.settings import EmbedderSettings

    def image(generation: int, index: int) -> dict[str, str]:
        if args.source == "url":
            return {"url": f"http://127.0.0.1:{port.value}/{generation}/{index}.jpg"}
        return {"data": base64.b64encode(unique(pools, generation, index)).decode()}

    keep_freed_memory()  # as the embedder's entry point does
    settings = EmbedderSettings(model=str(model_dir(args.model)), allowed_networks=["127.0.0.1/32"])
    broker = MemoryBroker()
    source = MemorySource(broker, group_id=settings.embedder_group, topics=[settings.input_topic])
    stop = threading.Event()
    service, encoder = build_service(
        settings, stop, source=source, publisher=MemoryPublisher(broker)
    )
    model_images = 0
    encode = encoder.encode_images

    def counting(pixels: Any) -> np.ndarray:
        nonlocal model_images
        model_images += len(pixels)
        return encode(pixels)

    encoder.encode_images = counting  # type: ignore[method-assign]
    runner = threading.Thread(target=service.run, name="embedder")
    runner.start()
    info = encoder.info
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"model {args.model} ({info.device}, {info.runtime} {info.precision}, dim {encoder.dim}); "
        f"{args.products} products, {args.source} images {width}x{height} "
        f"(~{sum(map(len, pools[1])) // POOL // 1024} KiB)",
        flush=True,
    )
    ids = [f"{i:07d}" for i in range(args.products)]
    produced = 0

    def publish(name: str, version: int, generation: int) -> Pass:
        nonlocal produced
        # Events are built before the clock starts: encoding them is the producer's work.
        events = [
            (pid.encode(), event(pid, version, image(generation, i), float(version)))
            for i, pid in enumerate(ids)
        ]
        images_before, reused_before = model_images, service.reused
        answers_before = (answers[0], answers[1])
        started = time.perf_counter()
        for key, value in events:
            broker.append(settings.input_topic, key, value)
        produced += len(events)
        if not broker.wait_for(settings.embeddings_topic, produced, 3600):
            raise SystemExit(f"{name}: timed out")
        elapsed = time.perf_counter() - started
        return Pass(
            name,
            elapsed,
            len(events),
            model_images - images_before,
            service.reused - reused_before,
            (answers[0] - answers_before[0], answers[1] - answers_before[1]),
        )

    print(f"{'pass':<20} {'time':>10} {'rate':>14} {'model':>8} {'reused':>8}    200/304")
    try:
        first = publish("first index", 1, 1)
        print(first.row(), flush=True)
        same = publish("attributes changed", 2, 1)
        print(same.row(), flush=True)
        new = publish("new images", 3, 2)
        print(new.row(), flush=True)
    finally:
        stop.set()
        runner.join()
        if server.is_alive():
            server.terminate()

    vectors: dict[tuple[str, int], bytes] = {}
    for record in broker.records(settings.embeddings_topic):
        parsed = EmbeddingRecord.model_validate_json(record.value or b"")
        vectors[parsed.product_id, parsed.version] = hashlib.sha256(
            (parsed.vector or "").encode()
        ).digest()
    identical = sum(vectors[pid, 2] == vectors[pid, 1] for pid in ids)
    changed = sum(vectors[pid, 3] != vectors[pid, 1] for pid in ids)

    print(
        f"attributes changed vs new images: {new.seconds / same.seconds:.1f}x faster, "
        f"{same.model_images} vs {new.model_images} images through the model"
    )
    print(
        f"reused vectors identical to the first pass's: {identical}/{len(ids)}; "
        f"new images gave new vectors: {changed}/{len(ids)}"
    )
    per = cache_bytes_per_product(encoder.dim)
    print(
        f"reuse cache: {per / 1024:.2f} KiB per product at dim {encoder.dim} "
        f"(default 100,000 products: {per * 100_000 / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
