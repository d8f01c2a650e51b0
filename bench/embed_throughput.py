"""Embedding throughput: the article's loop against the Catalens embedder, same images,
same weights, one run.

* baseline — the article's loop: ``PIL.Image.open`` + sentence-transformers
  ``model.encode(images)`` in batches of 32;
* catalens in-process — the embedder service (the same code as ``catalens embedder``)
  with its default settings, fed inline images from memory instead of Kafka;
* catalens through Kafka — ``catalens embedder`` as a process with its defaults, fed
  through a real broker (Tansu), timed from the first input record produced until the
  last embedding record was produced (its timestamp: how long the reading client takes
  to fetch it is not counted).

Images are generated 1166x1750 JPEGs (the H&M catalog's size): photo-like ones with
sensor noise by default, product shots on a plain background with ``--catalog products``
(a third of the bytes, so less to move through the broker and to decode). The model is
the real ViT-B/32 architecture with random weights (speed does not depend on the weights).
Prints images/s, the ratio to the baseline, and min/mean cosine to the baseline's vectors.

    python bench/embed_throughput.py [--images 128] [--no-kafka] [--catalog products]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from confluent_kafka import Consumer

    from catalens.dev.localstack import Child
    from catalens.settings import CatalensSettings

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".catalens" / "bench"
WIDTH, HEIGHT = 1166, 1750


# The generated catalogs: what a JPEG costs to move and decode depends on its content.
CATALOGS = {
    "photos": "photo-like: smooth colour fields and sensor-like noise, about 640 KB each",
    "products": "product shots on a plain light background, about 210 KB each",
}


def make_jpegs(directory: Path, count: int, catalog: str = "photos") -> list[Path]:
    """``count`` generated 1166x1750 JPEGs (quality 90) of ``catalog`` (see CATALOGS)."""
    from catalens.encoder.calibration import product_shot

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    paths = []
    for index in range(count):
        path = directory / f"{index:04d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        if catalog == "products":
            product_shot(rng, (WIDTH, HEIGHT)).save(path, quality=90)
            continue
        a, b, c = rng.uniform(0.5, 3, size=3)
        field = np.stack(
            [
                np.sin(x / WIDTH * a * 6 + index),
                np.cos(y / HEIGHT * b * 6),
                np.sin((x + y) / (WIDTH + HEIGHT) * c * 6),
            ],
            axis=-1,
        )
        pixels = 128 + 90 * field + rng.normal(0, 10, size=field.shape)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    return paths


# The words the query benchmarks make their queries of (text_tower.py).
QUERY_WORDS = (
    "black",
    "floral",
    "dress",
    "strap",
    "top",
    "denim",
    "linen",
    "striped",
    "summer",
    "wool",
    "red",
    "jacket",
    "skirt",
    "cotton",
    "slim",
    "knit",
    "round",
    "collar",
    "with",
    "a",
    "for",
    "the",
    "blue",
    "white",
    "shirt",
    "number",
)


def model_dirs() -> tuple[Path, Path]:
    """A random ViT-B/32 as a Hugging Face folder and as a sentence-transformers folder."""
    from catalens.dev.modelkit import build_random_clip

    # The tokenizer knows the catalog words the query benchmarks send, one token each, as
    # CLIP's vocabulary knows common English words: a query costs the tower what it would.
    hf = CACHE / "vit-b-32-words"
    if not (hf / "config.json").exists():
        build_random_clip(hf, size="vit-b-32", seed=0, words=QUERY_WORDS)
    st = CACHE / "st-vit-b-32-words"
    if not (st / "modules.json").exists():
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import CLIPModel as STClip

        SentenceTransformer(modules=[STClip(str(hf))]).save(str(st))
    return hf, st


def normalise(vectors: np.ndarray) -> np.ndarray:
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def article_loop(st_dir: Path, paths: list[Path], batch: int = 32) -> tuple[float, np.ndarray]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(st_dir), device="cpu")
    model.encode([Image.open(p) for p in paths[:batch]], batch_size=batch)  # warm-up
    started = time.perf_counter()
    out = []
    for start in range(0, len(paths), batch):
        images = [Image.open(p) for p in paths[start : start + batch]]
        out.append(model.encode(images, batch_size=batch, convert_to_numpy=True))
    elapsed = time.perf_counter() - started
    return len(paths) / elapsed, normalise(np.concatenate(out))


def inline_event(product_id: str, data: bytes) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "op": "upsert",
            "product_id": product_id,
            "version": 1,
            "occurred_at": "2026-11-24T10:00:00Z",
            "image": {"data": base64.b64encode(data).decode()},
            "attributes": {},
        }
    ).encode()


def vectors_of(records: list[bytes], ids: list[str]) -> np.ndarray:
    from catalens.schemas import EmbeddingRecord

    by_id = {}
    for raw in records:
        record = EmbeddingRecord.model_validate_json(raw)
        by_id[record.product_id] = record.unpack()
    return np.stack([by_id[i] for i in ids])


def catalens_in_process(hf_dir: Path, paths: list[Path]) -> tuple[float, np.ndarray, str, float]:
    """The embedder service with default settings; Kafka replaced by memory. Returns
    images/s, the vectors, the encoder's mode and the CPU seconds used while timed."""
    from catalens.embedder.allocator import keep_freed_memory
    from catalens.embedder.main import build_service
    from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
    from catalens.settings import EmbedderSettings

    keep_freed_memory()  # as the embedder's entry point does
    settings = EmbedderSettings(model=str(hf_dir))
    broker = MemoryBroker()
    source = MemorySource(broker, group_id=settings.embedder_group, topics=[settings.input_topic])
    stop = threading.Event()
    service, encoder = build_service(
        settings, stop, source=source, publisher=MemoryPublisher(broker)
    )
    runner = threading.Thread(target=service.run)
    runner.start()

    warm = [f"warm-{i}" for i in range(32)]
    for pid, p in zip(warm, paths, strict=False):
        broker.append(settings.input_topic, pid.encode(), inline_event(pid, p.read_bytes()))
    broker.wait_for(settings.embeddings_topic, len(warm), 600)
    ids = [f"p{i:04d}" for i in range(len(paths))]
    # Events are built before the clock starts: encoding them is the producer's work.
    events = [
        (pid.encode(), inline_event(pid, p.read_bytes())) for pid, p in zip(ids, paths, strict=True)
    ]
    cpu_before = time.process_time()
    started = time.perf_counter()
    for key, value in events:
        broker.append(settings.input_topic, key, value)
    broker.wait_for(settings.embeddings_topic, len(warm) + len(ids), 3600)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    stop.set()
    runner.join()
    outputs = [r.value for r in broker.records(settings.embeddings_topic) if r.value is not None]
    info = encoder.info
    mode = f"{info.device}, {info.runtime} {info.precision}"
    if info.check_cosine is not None:
        mode += f", load-time check {info.check_cosine:.5f}"
    return len(ids) / elapsed, vectors_of(outputs, ids), mode, cpu


def cpu_seconds(process: object) -> float | None:
    """User + system CPU seconds of a child process (Linux), to show what the broker
    takes from the cores the embedder runs on."""
    try:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()  # type: ignore[attr-defined]
    except (OSError, AttributeError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def running_embedder(hf_dir: Path) -> Iterator[tuple[CatalensSettings, Child, Child]]:
    """Tansu and ``catalens embedder`` (its defaults, model ``hf_dir``) as processes, the
    topics created; yields (settings, broker, embedder), and stops both afterwards."""
    from catalens.dev.localstack import Child, free_port, start_broker
    from catalens.kafka.client import ensure_topics
    from catalens.settings import CatalensSettings

    work = Path(tempfile.mkdtemp(prefix="catalens-bench-"))
    port = free_port()
    broker = start_broker(port, work / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    env = {"CATALENS_KAFKA_BOOTSTRAP": bootstrap, "CATALENS_MODEL": str(hf_dir)}
    embedder = Child(
        "embedder", [sys.executable, "-m", "catalens", "embedder"], work / "embedder.log", env=env
    ).start()
    try:
        settings = CatalensSettings(kafka_bootstrap=bootstrap)
        # Subscribing to a topic that does not exist yet only sees it at the next
        # metadata refresh (minutes), so create the topics first.
        ensure_topics(
            settings, [settings.input_topic, settings.embeddings_topic, settings.dlq_topic]
        )
        yield settings, broker, embedder
    finally:
        embedder.stop()
        broker.kill()


def embeddings_reader(settings: CatalensSettings, group: str, **extra: object) -> Consumer:
    """A consumer of the embedding topic from its start (``extra``: librdkafka settings)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            **extra,
        }
    )
    consumer.subscribe([settings.embeddings_topic])
    return consumer


def catalens_through_kafka(hf_dir: Path, paths: list[Path]) -> tuple[float, float | None]:
    """``catalens embedder`` as a process with its defaults, through a real broker.
    Returns images/s and the embedder's CPU seconds while timed (None off Linux)."""
    from confluent_kafka import Producer

    with running_embedder(hf_dir) as (settings, broker, embedder):
        producer = Producer(
            {"bootstrap.servers": settings.kafka_bootstrap, "message.max.bytes": 16_000_000}
        )
        consumer = embeddings_reader(settings, "bench")

        def wait_records(count: int, timeout_s: float) -> float:
            """When the last of ``count`` records was produced (its timestamp, wall
            clock): how long this client takes to read it back is not counted."""
            seen, last, deadline = 0, 0.0, time.monotonic() + timeout_s
            while seen < count and time.monotonic() < deadline:
                for message in consumer.consume(100, 0.2):
                    if message.error() is None:
                        seen += 1
                        last = max(last, message.timestamp()[1] / 1000)
                if not embedder.running:
                    raise RuntimeError(f"embedder died; see {embedder.log_file}")
            if seen < count:
                raise TimeoutError(f"only {seen} of {count} embeddings arrived")
            return last

        blob = paths[0].read_bytes()
        deadline = time.monotonic() + 300
        while True:  # the topic appears when the embedder has started
            try:
                producer.produce(
                    settings.input_topic, key=b"warm", value=inline_event("warm", blob)
                )
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        producer.flush(30)
        wait_records(1, 300)
        events = [
            (f"k{i:04d}", inline_event(f"k{i:04d}", p.read_bytes())) for i, p in enumerate(paths)
        ]
        cpu_before = cpu_seconds(broker.process), cpu_seconds(embedder.process)
        own_before = time.process_time()
        started = time.time()  # the records' timestamps are wall-clock milliseconds
        for pid, value in events:
            producer.produce(settings.input_topic, key=pid.encode(), value=value)
            producer.poll(0)
        producer.flush(60)
        finished = wait_records(len(paths), 1800)
        cpu_after = cpu_seconds(broker.process), cpu_seconds(embedder.process)
        own = time.process_time() - own_before
        consumer.close()
        embedder_cpu = None
        if None not in cpu_before + cpu_after:
            embedder_cpu = cpu_after[1] - cpu_before[1]  # type: ignore[operator]
            print(  # printed during the phase, before the summary lines
                "through Kafka, CPU seconds while timed: "
                f"broker {cpu_after[0] - cpu_before[0]:.2f}, "  # type: ignore[operator]
                f"embedder {cpu_after[1] - cpu_before[1]:.2f}, "  # type: ignore[operator]
                f"this process (producer, consumer) {own:.2f}, "
                f"wall {finished - started:.2f} ({os.cpu_count()} cores shared)"
            )
        return len(paths) / (finished - started), embedder_cpu


def settle() -> None:
    """Hand the memory an earlier phase freed back to the kernel before the next one. On
    the development VM, hundreds of MB left free inside this process made the kernel's
    page faults about twice as dear for the broker and the embedder (Tansu used 1.1-1.5
    instead of 0.6 CPU seconds for the same events)."""
    import gc

    from catalens.embedder.allocator import give_back_freed_memory

    gc.collect()
    give_back_freed_memory()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--no-kafka", action="store_true")
    parser.add_argument("--catalog", choices=sorted(CATALOGS), default="photos")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    folder = "jpegs" if args.catalog == "photos" else f"jpegs-{args.catalog}"
    paths = make_jpegs(CACHE / folder, args.images, args.catalog)
    hf_dir, st_dir = model_dirs()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{args.images} JPEGs {WIDTH}x{HEIGHT}, {CATALOGS[args.catalog]}; "
        "ViT-B/32, random weights"
    )

    base_ips, base_vectors = article_loop(st_dir, paths)
    print(f"article loop (PIL open + sentence-transformers encode): {base_ips:7.2f} images/s")
    # Through Kafka runs before in process: the embedder's allocator setting
    # (catalens.embedder.allocator) applies to the whole process it is built in, and this
    # process's own producer should not run under it.
    kafka = None
    if not args.no_kafka:
        settle()
        kafka = catalens_through_kafka(hf_dir, paths)
    settle()
    ours_ips, ours_vectors, mode, ours_cpu = catalens_in_process(hf_dir, paths)
    cosines = (ours_vectors * base_vectors).sum(axis=1)
    print(
        f"catalens embedder, in process ({mode}):      {ours_ips:7.2f} images/s  "
        f"ratio {ours_ips / base_ips:.2f}x  cosine min {cosines.min():.5f} "
        f"mean {cosines.mean():.5f}"
    )
    if kafka is not None:
        kafka_ips, kafka_cpu = kafka
        print(
            f"catalens embedder, through Kafka:               {kafka_ips:7.2f} images/s  "
            f"ratio {kafka_ips / base_ips:.2f}x  ({kafka_ips / ours_ips:.0%} of in-process)"
        )
        if kafka_cpu is not None:
            # What the Kafka plumbing costs the embedder itself, apart from the cores the
            # broker and the feeding client take when they share the machine.
            per_image = 1000 / args.images
            print(
                f"  embedder CPU per image: in process {ours_cpu * per_image:.1f} ms, "
                f"through Kafka {kafka_cpu * per_image:.1f} ms "
                f"({kafka_cpu / ours_cpu - 1:+.0%})"
            )


if __name__ == "__main__":
    main()
