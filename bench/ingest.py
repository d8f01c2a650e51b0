"""Bulk ingest: events/s from the public input topic into Milvus, with a near-free model.

Runs the local stack (Tansu, Milvus 2.3.5 standalone, ``catalens embedder`` and ``catalens
sink`` as processes) with a tiny random CLIP whose vectors have 512 dimensions, so that
what is measured is the pipeline, not the model. After a warm-up event (group joins,
collection creation) it publishes ``--products`` upserts with small inline JPEGs through
the producer library and waits until a Strong count in Milvus sees all of them.

Prints, for one run:

* end to end: first event published → last product counted in Milvus, events/s;
* producer: publish rate until every event was acknowledged;
* embedder and sink: when their committed offsets covered every record (records/s;
  committed offsets follow a 1 s auto-commit, so a rate is exact to about a second);
* CPU seconds per event of every process (embedder, sink, Milvus, broker, producer):
  on a machine of few cores their sum, not any one stage, bounds the rate.

Levers are settings: ``--set NAME=VALUE`` passes ``CATALENS_NAME`` to both services, and
``--compare NAME=VALUE`` runs the stack twice in one invocation (as configured, then with
the override) and prints both with their ratio — the baseline measured in the same run.
Products have ``--images-per-product`` images each (1: schema version 1 events; more:
version 2), and ``--compare-images N`` runs a second stack whose products have N images,
printing events/s and images/s of both and the ratio of their images/s (a product's
images batch together: nothing per image should be paid per event).
``EMBEDDERS=N`` is this benchmark's own knob, not a setting: N embedder processes share
the input topic as replicas of one consumer group (how a deployment scales the embedder).

    python bench/ingest.py [--products 100000] [--set SINK_BATCH_SIZE=2000]
        [--compare EMBEDDING_ENCODING=json] [--profile DIR]
"""

from __future__ import annotations

import argparse
import base64
import io
import logging
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from catalens.dev.localstack import Child
from catalens.schemas import ProductImageEvent

log = logging.getLogger("bench.ingest")

HISTORICAL_BASELINE = 270.0  # events/s end to end before this work (issue 15)


def jpegs(count: int, side: int) -> list[bytes]:
    """Small but real product photos: smooth colour fields with noise, JPEG quality 85."""
    rng = np.random.default_rng(0)
    images = []
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    for _ in range(count):
        base = rng.integers(0, 255, size=3).astype(np.float32)
        field_ = base * ramp[:, None, None] + (255 - base) * ramp[None, :, None] * 0.5
        noise = rng.normal(0, 12, size=(side, side, 3))
        pixels = np.clip(field_ + noise, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        images.append(buffer.getvalue())
    return images


@dataclass
class Run:
    label: str
    products: int
    per_product: int = 1
    publish_s: float = 0.0
    embedder_s: float | None = None
    sink_s: float | None = None
    end_to_end_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    sink_read_s: float | None = None
    sink_write_s: float | None = None

    def rate(self, seconds: float | None) -> float:
        return self.products / seconds if seconds else float("nan")

    def image_rate(self, seconds: float | None) -> float:
        return self.per_product * self.rate(seconds)

    def milvus_share(self) -> str:
        if self.sink_read_s is None or self.sink_write_s is None or not self.sink_s:
            return "not reported"
        return (
            f"{100 * (self.sink_read_s + self.sink_write_s) / self.sink_s:.0f} % of the "
            f"sink's time ({self.sink_read_s:.1f} s reading, {self.sink_write_s:.1f} s writing)"
        )

    def report(self) -> str:
        n = self.products
        lines = [
            f"[{self.label}] {n} products of {self.per_product} image(s)",
            f"  end to end        {self.rate(self.end_to_end_s):8.0f} events/s "
            f"{self.image_rate(self.end_to_end_s):8.0f} images/s "
            f"({self.end_to_end_s:.1f} s, first publish → last image counted in Milvus)",
            f"  producer          {self.rate(self.publish_s):8.0f} events/s "
            f"({self.publish_s:.1f} s until all acknowledged)",
            f"  embedder          {self.rate(self.embedder_s):8.0f} records/s "
            f"{self.image_rate(self.embedder_s):8.0f} images/s "
            "(committed input offsets cover every event)",
            f"  sink              {self.rate(self.sink_s):8.0f} records/s "
            "(committed embedding offsets cover every record)",
            f"  sink in Milvus    {self.milvus_share()} (reading stored versions, writing)",
            "  CPU per event     "
            + ", ".join(f"{name} {1000 * s / n:.2f} ms" for name, s in self.cpu_s.items())
            + f"; total {1000 * sum(self.cpu_s.values()) / n:.2f} ms",
            "  CPU share         "
            + ", ".join(
                f"{name} {100 * s / max(1e-9, sum(self.cpu_s.values())):.0f} %"
                for name, s in self.cpu_s.items()
            ),
        ]
        return "\n".join(lines)


class Stack:
    """Broker and Milvus for one run, and the two services with their settings."""

    def __init__(self, work: Path, model: Path, overrides: dict[str, str]) -> None:
        from catalens.dev.localstack import free_port, start_broker, start_milvus

        overrides = dict(overrides)
        self.roles = [
            *(f"embedder-{n}" for n in range(1, int(overrides.pop("EMBEDDERS", "1")) + 1)),
            "sink",
        ]
        self.work = work
        self.kafka_port, self.milvus_port = free_port(), free_port()
        self.broker = start_broker(self.kafka_port, work / "broker.log")
        self.milvus = start_milvus(work / "milvus", self.milvus_port, work / "milvus.log")
        self.env = {
            "CATALENS_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "CATALENS_MILVUS_URI": f"http://127.0.0.1:{self.milvus_port}",
            "CATALENS_MODEL": str(model),
            "CATALENS_CACHE_DIR": str(model.parent / "model-cache"),
            "CATALENS_TOPIC_PARTITIONS": "6",
            "CATALENS_EMBEDDER_GROUP": "bench-embedder",
            "CATALENS_SINK_GROUP": "bench-sink",
            "CATALENS_LOG_LEVEL": "INFO",
        } | {f"CATALENS_{k.upper()}": v for k, v in overrides.items()}
        self.services: dict[str, Child] = {}
        self.spies: list[subprocess.Popen[bytes]] = []

    def start_services(self, profile: Path | None) -> None:
        for role in self.roles:
            argv = [sys.executable, "-m", "catalens", role.split("-")[0]]
            self.services[role] = Child(role, argv, self.work / f"{role}.log", env=self.env).start()
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            self.spies = [
                subprocess.Popen(
                    [
                        shutil.which("py-spy") or "py-spy",
                        "record",
                        "--pid",
                        str(self.pid(role)),
                        "--rate",
                        "50",
                        "--threads",
                        "--format",
                        "raw",
                        "-o",
                        str(profile / f"{role}.folded"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for role in self.roles
            ]

    def pid(self, role: str) -> int:
        process = self.services[role].process
        assert process is not None
        return process.pid

    def processes(self) -> dict[str, list[psutil.Process]]:
        def tree(pid: int) -> list[psutil.Process]:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]

        milvus = self.milvus.process
        broker = self.broker.process
        assert milvus is not None and broker is not None
        found = {
            "embedder": [p for r in self.roles if r != "sink" for p in tree(self.pid(r))],
            "sink": tree(self.pid("sink")),
            "broker": tree(broker.pid),
            "producer": [psutil.Process()],
        }
        servers = milvus_servers(self.work / "milvus")
        found["milvus"] = list({p.pid: p for p in tree(milvus.pid) + servers}.values())
        return found

    def stop(self) -> None:
        for spy in self.spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
        for child in self.services.values():
            child.stop()
        for spy in self.spies:
            spy.wait(60)
        self.milvus.stop(timeout_s=10)
        self.broker.kill()


def milvus_servers(data_dir: Path) -> list[psutil.Process]:
    """Milvus' server processes, found by their data folder on the command line: the
    server can leave its wrapper's process group."""
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(str(data_dir) in part for part in p.info["cmdline"] or ())
    ]


def cpu_seconds(processes: dict[str, list[psutil.Process]]) -> dict[str, float]:
    out = {}
    for name, group in processes.items():
        total = 0.0
        for process in group:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        out[name] = total
    return out


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Sum of a group's committed offsets: a record count, as every partition starts at 0."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        return sum(max(0, tp.offset) for tp in tps)
    finally:
        consumer.close()


def events(
    count: int, images: list[bytes], prefix: str, per_product: int = 1
) -> Iterator[ProductImageEvent]:
    """Upserts with inline images: version 1 events of one image, or version 2 events of
    ``per_product`` images (each a different picture of the set) and a name."""
    encoded = [base64.b64encode(image).decode() for image in images]
    now = datetime.now(UTC)
    for i in range(count):
        attributes = {
            "category": ("Vest top", "Trousers", "Sweater", "Dress")[i % 4],
            "colour": ("Black", "White", "Blue")[i % 3],
            "price": round(5 + (i % 500) / 10, 2),
        }
        common = {
            "event_id": f"{prefix}-{i}",
            "op": "upsert",
            "product_id": f"{prefix}{i:07d}",
            "version": 1,
            "occurred_at": now,
        }
        if per_product == 1:
            body = common | {
                "image": {"data": encoded[i % len(encoded)]},
                "attributes": {"name": f"Product {i}", **attributes},
            }
        else:
            pictures = [encoded[(i * per_product + n) % len(encoded)] for n in range(per_product)]
            body = common | {
                "schema_version": 2,
                "images": [{"data": data} for data in pictures],
                "name": f"Product {i}",
                "attributes": attributes,
            }
        yield ProductImageEvent.model_validate(body)


def run_once(
    label: str,
    products: int,
    images: list[bytes],
    model: Path,
    overrides: dict[str, str],
    profile: Path | None,
    timeout_s: float,
    per_product: int = 1,
) -> Run:
    from catalens.kafka.client import Publisher, ensure_topics
    from catalens.producer.publisher import EventPublisher
    from catalens.settings import CatalensSettings
    from catalens.store.client import Milvus

    work = Path(tempfile.mkdtemp(prefix=f"catalens-ingest-{label}-"))
    stack = Stack(work, model, overrides)
    try:
        settings = CatalensSettings(
            kafka_bootstrap=stack.env["CATALENS_KAFKA_BOOTSTRAP"], topic_partitions=6
        )
        topics = [settings.input_topic, settings.embeddings_topic, settings.dlq_topic]
        ensure_topics(settings, topics)
        stack.start_services(profile / label if profile else None)
        publisher = EventPublisher(Publisher(settings), settings.input_topic)
        milvus = Milvus(stack.env["CATALENS_MILVUS_URI"], timeout_s=30)

        def count() -> int:
            """Rows in Milvus: one per image."""
            if not milvus.has_collection(settings.collection):
                return 0
            return milvus.count(settings.collection)

        # Every embedder in the group before the clock starts: one joining later would
        # count its start-up and a rebalance in the measured time.
        embedders = [work / f"{role}.log" for role in stack.roles if role != "sink"]
        wait_until(
            lambda: all("assigned" in path.read_text(errors="replace") for path in embedders),
            300,
            "every embedder assigned partitions",
        )
        publisher.publish_many(events(1, images, "warm", per_product))
        wait_until(lambda: count() >= per_product, 180, "the warm-up event in Milvus")
        # Built before the clock starts.
        batch = list(events(products, images, "p", per_product))
        processes = stack.processes()
        cpu_before = cpu_seconds(processes)
        result = Run(label, products, per_product)
        embedder_group = stack.env["CATALENS_EMBEDDER_GROUP"]
        sink_group = stack.env["CATALENS_SINK_GROUP"]
        done_at: dict[str, float] = {}

        def watch_offsets(stop: threading.Event) -> None:
            bootstrap = stack.env["CATALENS_KAFKA_BOOTSTRAP"]
            while not stop.wait(0.5):
                for name, group, topic in (
                    ("embedder", embedder_group, settings.input_topic),
                    ("sink", sink_group, settings.embeddings_topic),
                ):
                    if (
                        name not in done_at
                        and committed(bootstrap, group, topic, 6) >= products + 1
                    ):
                        done_at[name] = time.perf_counter()

        started = time.perf_counter()
        stop_watch = threading.Event()
        watcher = threading.Thread(target=watch_offsets, args=(stop_watch,), daemon=True)
        watcher.start()
        acknowledged, failures = publisher.publish_many(batch, timeout_s=timeout_s)
        result.publish_s = time.perf_counter() - started
        if failures or acknowledged != products:
            raise RuntimeError(f"{acknowledged} of {products} acknowledged: {failures[:3]}")
        rows = (products + 1) * per_product
        wait_until(lambda: count() >= rows, timeout_s, "every image in Milvus", 0.25)
        result.end_to_end_s = time.perf_counter() - started
        cpu_after = cpu_seconds(processes)
        result.cpu_s = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
        wait_until(lambda: len(done_at) == 2, 30, "committed offsets")
        stop_watch.set()
        result.embedder_s = done_at["embedder"] - started
        result.sink_s = done_at["sink"] - started
        milvus.close()
    finally:
        stack.stop()
    # The sink logs its time in Milvus when it stops.
    found = re.findall(
        r"([0-9.]+) s reading stored versions, ([0-9.]+) s writing",
        (work / "sink.log").read_text(errors="replace"),
    )
    if found:
        result.sink_read_s, result.sink_write_s = map(float, found[-1])
    return result


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not after {timeout_s:.0f} s")


def parse_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--image-side", type=int, default=96, help="pixels of the JPEGs")
    parser.add_argument("--distinct-images", type=int, default=256)
    parser.add_argument(
        "--input-size",
        type=int,
        default=224,
        help="side of the tiny CLIP's image input (224 as CLIP; 32 makes the model free)",
    )
    parser.add_argument(
        "--set", type=parse_setting, action="append", default=[], help="NAME=VALUE for both"
    )
    parser.add_argument(
        "--compare",
        type=parse_setting,
        action="append",
        default=[],
        help="also run with NAME=VALUE on top of --set and print the ratio",
    )
    parser.add_argument("--images-per-product", type=int, default=1, choices=range(1, 17))
    parser.add_argument(
        "--compare-images",
        type=int,
        choices=range(1, 17),
        help="also run with products of this many images and print the ratio of images/s",
    )
    parser.add_argument("--profile", type=Path, help="py-spy profiles of both services here")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from catalens.dev.modelkit import build_random_clip

    work = Path(tempfile.mkdtemp(prefix="catalens-ingest-"))
    model = build_random_clip(
        work / "tiny-512", size="tiny", projection_dim=512, image_size=args.input_size
    )
    images = jpegs(args.distinct_images, args.image_side)
    log.info(
        "%d distinct JPEGs of %d×%d, %.1f KB on average; model input %d×%d",
        len(images),
        args.image_side,
        args.image_side,
        sum(map(len, images)) / len(images) / 1024,
        args.input_size,
        args.input_size,
    )
    base = dict(args.set)
    runs = [
        run_once(
            "configured",
            args.products,
            images,
            model,
            base,
            args.profile,
            args.timeout,
            args.images_per_product,
        )
    ]
    print(runs[0].report(), flush=True)
    if args.compare_images:
        label = f"{args.compare_images} images"
        other_run = run_once(
            label,
            args.products,
            images,
            model,
            base,
            args.profile,
            args.timeout,
            args.compare_images,
        )
        print(other_run.report(), flush=True)
        base_run = runs[0]
        for what, mine, theirs in (
            ("embedder", base_run.embedder_s, other_run.embedder_s),
            ("end to end", base_run.end_to_end_s, other_run.end_to_end_s),
        ):
            print(
                f"images/s {what}: {other_run.per_product} per product / {base_run.per_product} "
                f"per product: {other_run.image_rate(theirs) / base_run.image_rate(mine):.2f}×"
            )
    if args.compare:
        other = base | dict(args.compare)
        label = ",".join(f"{k}={v}" for k, v in args.compare)
        runs.append(
            run_once(label, args.products, images, model, other, args.profile, args.timeout)
        )
        print(runs[1].report(), flush=True)
        first, second = runs
        print(
            f"end to end {second.label} / configured: "
            f"{first.end_to_end_s / second.end_to_end_s:.2f}×"
        )
    print(
        f"historical baseline (issue 15, before this work): {HISTORICAL_BASELINE:.0f} events/s; "
        f"this run: {runs[0].rate(runs[0].end_to_end_s) / HISTORICAL_BASELINE:.1f}× that"
    )


if __name__ == "__main__":
    main()
