"""Embedder memory under a backlog of large events: resident memory before and while it
drains (issue 25's operator test, repeatable).

Starts Tansu and one ``catalens embedder`` process (a tiny random CLIP; no sink, no
Milvus: the embedder's memory is what is measured). After a warm-up event the embedder is
frozen (SIGSTOP) while ``--events`` events with an inline JPEG of ``--image-side`` pixels
(about 1 MB of event at the default) are published, as if it had been down while a
catalog job ran; then it is released and drains the backlog. Prints, for each run:

* resident memory of the embedder (RSS, sampled every 0.1 s): before the backlog, at its
  peak while draining, and the growth;
* the most it counted against ``CATALENS_MAX_IN_FLIGHT_BYTES`` (``catalens_in_flight_bytes``
  read from ``/metrics`` at the same samples, and the peak it logs, counted at every
  change);
* how long the backlog took to drain (committed offsets cover every event).

``--set NAME=VALUE`` passes ``CATALENS_NAME`` to the embedder; ``--compare NAME=VALUE``
runs a second stack with the override on top and prints both, e.g.
``--compare MAX_IN_FLIGHT_BYTES=1099511627776`` (the byte bound effectively off: only the
record bound, as before it).

    python bench/memory.py [--events 1200] [--image-side 1150] [--compare NAME=VALUE]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from catalens.dev.localstack import Child

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from ingest import committed, jpegs, parse_setting, wait_until  # noqa: E402

log = logging.getLogger("bench.memory")
MB = 1e6


@dataclass
class Run:
    label: str
    events: int
    event_bytes: float
    base_rss: float = 0.0
    peak_rss: float = 0.0
    counted: list[float] = field(default_factory=list)
    logged_peak: float | None = None
    drain_s: float = 0.0

    def report(self) -> str:
        counted = max(self.counted, default=0.0)
        logged = "not logged" if self.logged_peak is None else f"{self.logged_peak / MB:.0f} MB"
        return "\n".join(
            [
                f"[{self.label}] {self.events} events of {self.event_bytes / MB:.2f} MB "
                f"({self.events * self.event_bytes / MB:.0f} MB)",
                f"  embedder RSS      {self.base_rss / MB:6.0f} MB before the backlog, "
                f"{self.peak_rss / MB:6.0f} MB at most while draining: "
                f"+{(self.peak_rss - self.base_rss) / MB:.0f} MB",
                f"  counted held      {counted / MB:6.0f} MB at most (sampled); "
                f"{logged} at most (counted at every change, as it logs when it stops)",
                f"  drain             {self.drain_s:6.1f} s, "
                f"{self.events / self.drain_s if self.drain_s else float('nan'):.0f} events/s",
            ]
        )


def rss(process: psutil.Process) -> float:
    try:
        return float(sum(p.memory_info().rss for p in [process, *process.children(True)]))
    except psutil.NoSuchProcess:
        return 0.0


def held(url: str) -> float | None:
    """``catalens_in_flight_bytes`` of the embedder, or None when it does not answer."""
    try:
        text = httpx.get(url, timeout=1).text
    except httpx.HTTPError:
        return None
    found = re.search(r'^catalens_in_flight_bytes\{role="embedder"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def sample(
    process: psutil.Process, url: str, stop: threading.Event, every_s: float = 0.1
) -> tuple[list[float], list[float]]:
    """RSS and counted bytes every ``every_s`` until ``stop``; read when it is set."""
    memory: list[float] = []
    counted: list[float] = []

    def loop() -> None:
        while not stop.wait(every_s):
            memory.append(rss(process))
            if (value := held(url)) is not None:
                counted.append(value)

    threading.Thread(target=loop, daemon=True).start()
    return memory, counted


def run_once(
    label: str,
    events: int,
    images: list[bytes],
    model: Path,
    overrides: dict[str, str],
    timeout_s: float,
) -> Run:
    from catalens.dev.localstack import free_port, start_broker
    from catalens.kafka.client import Publisher, ensure_topics
    from catalens.settings import CatalensSettings

    work = Path(tempfile.mkdtemp(prefix=f"catalens-memory-{label.split('=')[0]}-"))
    port, health = free_port(), free_port()
    broker = start_broker(port, work / "broker.log")
    settings = CatalensSettings(kafka_bootstrap=f"127.0.0.1:{port}", topic_partitions=6)
    env = {
        "CATALENS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CATALENS_MODEL": str(model),
        "CATALENS_CACHE_DIR": str(model.parent / "model-cache"),
        "CATALENS_RUNTIME": "torch",
        "CATALENS_PRECISION": "fp32",
        "CATALENS_EMBEDDER_GROUP": "bench-memory",
        "CATALENS_HEALTH_PORT": str(health),
        "CATALENS_LOG_LEVEL": "INFO",
    } | {f"CATALENS_{k.upper()}": v for k, v in overrides.items()}
    argv = [sys.executable, "-m", "catalens", "embedder"]
    embedder = Child("embedder", argv, work / "embedder.log", env=env)
    encoded = [base64.b64encode(image).decode() for image in images]
    values = [
        json.dumps(
            {
                "schema_version": 1,
                "event_id": f"e{i}",
                "op": "upsert",
                "product_id": f"p{i:07d}",
                "version": 1,
                "occurred_at": "2026-12-06T10:00:00Z",
                "image": {"data": encoded[i % len(encoded)]},
                "attributes": {"name": f"Product {i}"},
            }
        ).encode()
        for i in range(events)
    ]
    result = Run(label, events, statistics.mean(map(len, values)))
    try:
        ensure_topics(
            settings, [settings.input_topic, settings.embeddings_topic, settings.dlq_topic]
        )
        embedder.start()
        assert embedder.process is not None
        process = psutil.Process(embedder.process.pid)
        publisher = Publisher(settings)
        url = f"http://127.0.0.1:{health}/metrics"

        def done(count: int) -> Callable[[], bool]:
            return lambda: (
                committed(settings.kafka_bootstrap, "bench-memory", settings.input_topic, 6)
                >= count
            )

        publisher.produce(settings.input_topic, b"warm", values[0])  # warm-up: joins, model
        assert publisher.flush(30) == 0
        wait_until(done(1), 300, "the warm-up event committed")
        time.sleep(2)  # settled
        result.base_rss = rss(process)

        process.send_signal(signal.SIGSTOP)  # "down" while the catalog job publishes
        for i, value in enumerate(values):
            publisher.produce(settings.input_topic, f"p{i:07d}".encode(), value)
            publisher.poll(0)
        assert publisher.flush(600) == 0
        stop = threading.Event()
        memory, counted = sample(process, url, stop)
        started = time.perf_counter()
        process.send_signal(signal.SIGCONT)
        wait_until(done(events + 1), timeout_s, "the backlog committed", 0.2)
        result.drain_s = time.perf_counter() - started
        stop.set()
        result.peak_rss = max(memory, default=0.0)
        result.counted = counted
    finally:
        embedder.stop()
        broker.kill()
    peaks = re.findall(r"held at most ([0-9.]+) MB", (work / "embedder.log").read_text())
    if peaks:
        result.logged_peak = float(peaks[-1]) * MB
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1200)
    parser.add_argument("--image-side", type=int, default=1150, help="pixels of the JPEGs")
    parser.add_argument("--distinct-images", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=224, help="the tiny CLIP's input")
    parser.add_argument(
        "--set", type=parse_setting, action="append", default=[], help="NAME=VALUE for both"
    )
    parser.add_argument(
        "--compare",
        type=parse_setting,
        action="append",
        default=[],
        help="also run with NAME=VALUE on top of --set",
    )
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from catalens.dev.modelkit import build_random_clip

    work = Path(tempfile.mkdtemp(prefix="catalens-memory-"))
    model = build_random_clip(work / "tiny", size="tiny", image_size=args.input_size)
    images = jpegs(args.distinct_images, args.image_side)
    base = dict(args.set)
    runs = [run_once("configured", args.events, images, model, base, args.timeout)]
    print(runs[0].report(), flush=True)
    if args.compare:
        label = ",".join(f"{k}={v}" for k, v in args.compare)
        runs.append(
            run_once(label, args.events, images, model, base | dict(args.compare), args.timeout)
        )
        print(runs[1].report(), flush=True)


if __name__ == "__main__":
    main()
