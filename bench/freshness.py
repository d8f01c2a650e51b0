"""Freshness: time from an event acknowledged by Kafka to the product being searchable.

Runs the local stack (Tansu, Milvus standalone, ``catalens embedder``, ``sink``, ``api``
as processes, tiny random CLIP so that the model is not what is measured), warms it up,
then publishes one upsert at a time (inline image) and polls ``GET /products/{id}``
every 20 ms until it answers. Prints p50/max over the events.

    python bench/freshness.py [--events 20]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(300, 200, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    from confluent_kafka import Producer

    from catalens.dev.localstack import Child, free_port, start_broker, start_milvus, wait_for_port
    from catalens.dev.modelkit import build_random_clip
    from catalens.kafka.client import ensure_topics
    from catalens.settings import CatalensSettings

    work = Path(tempfile.mkdtemp(prefix="catalens-freshness-"))
    model = build_random_clip(work / "tiny", size="tiny")
    kafka_port, milvus_port, api_port = free_port(), free_port(), free_port()
    broker = start_broker(kafka_port, work / "broker.log")
    milvus = start_milvus(work / "milvus", milvus_port, work / "milvus.log")
    env = {
        "CATALENS_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
        "CATALENS_MILVUS_URI": f"http://127.0.0.1:{milvus_port}",
        "CATALENS_MODEL": str(model),
        "CATALENS_API_PORT": str(api_port),
        "CATALENS_LOG_LEVEL": "WARNING",
    }
    settings = CatalensSettings(kafka_bootstrap=env["CATALENS_KAFKA_BOOTSTRAP"])
    ensure_topics(settings, [settings.input_topic, settings.embeddings_topic, settings.dlq_topic])
    services = [
        Child(role, [sys.executable, "-m", "catalens", role], work / f"{role}.log", env=env).start()
        for role in ("embedder", "sink", "api")
    ]
    producer = Producer({"bootstrap.servers": env["CATALENS_KAFKA_BOOTSTRAP"], "acks": "all"})
    client = httpx.Client(timeout=10)

    def publish_and_wait(product_id: str, seed: int, timeout_s: float) -> float:
        body = {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "op": "upsert",
            "product_id": product_id,
            "version": 1,
            "occurred_at": "2026-11-24T10:00:00Z",
            "image": {"data": base64.b64encode(jpeg(seed)).decode()},
        }
        producer.produce(
            settings.input_topic, key=product_id.encode(), value=json.dumps(body).encode()
        )
        producer.flush(10)
        acknowledged = time.perf_counter()
        deadline = acknowledged + timeout_s
        while time.perf_counter() < deadline:
            try:
                if (
                    client.get(f"http://127.0.0.1:{api_port}/products/{product_id}").status_code
                    == 200
                ):
                    return time.perf_counter() - acknowledged
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"{product_id} not searchable after {timeout_s}s")

    try:
        wait_for_port(api_port, 120)
        publish_and_wait("warm-up", 0, 120)  # group joins, collection creation
        seconds = [publish_and_wait(f"p{i}", i + 1, 60) for i in range(args.events)]
        print(
            f"event acknowledged → searchable, {args.events} events one at a time: "
            f"p50 {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s"
        )
    finally:
        for child in services:
            child.stop()
        milvus.stop(timeout_s=10)
        broker.kill()


if __name__ == "__main__":
    main()
