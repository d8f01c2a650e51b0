"""Light traffic: how long one event takes through ``catalens embedder``.

Runs Tansu and ``catalens embedder`` (its defaults, the random ViT-B/32 of
``embed_throughput.py``) as processes, warms up, then publishes one small inline-image
event at a time, each 0.6–1.2 s after the previous one's embedding, and times the produce
call to the embedding record read back. The baseline, measured in the same run, is the
encoder's own time for one image (decode, preprocess, one batch of one), the floor of
what any pipeline could reach.

    python bench/embed_latency.py [--events 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from embed_throughput import embeddings_reader, inline_event, model_dirs, running_embedder
from freshness import jpeg


def encoder_alone(hf_dir: Path, data: bytes, repeats: int) -> float:
    """Median seconds for one image: decode and preprocess, then a batch of one."""
    from catalens.encoder import ClipEncoder
    from catalens.images import ImageLimits, preprocess
    from catalens.settings import EmbedderSettings

    # The embedder's cache: the same int8 tower it loads, not quantised again here.
    encoder = ClipEncoder(str(hf_dir), towers=("image",), cache_dir=EmbedderSettings().cache_dir)
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        encoder.encode_images([preprocess(data, encoder.spec, ImageLimits())])
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def through_the_embedder(hf_dir: Path, data: bytes, events: int) -> list[float]:
    from confluent_kafka import Producer

    with running_embedder(hf_dir) as (settings, _broker, embedder):
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 0})
        # This client's own fetch wait is not what is measured: 10 ms instead of 500.
        consumer = embeddings_reader(settings, "latency", **{"fetch.wait.max.ms": 10})

        def one(product_id: str, timeout_s: float) -> float:
            started = time.perf_counter()
            producer.produce(
                settings.input_topic, key=product_id.encode(), value=inline_event(product_id, data)
            )
            producer.flush(10)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                message = consumer.poll(0.05)
                if message is not None and message.error() is None:
                    return time.perf_counter() - started
                if not embedder.running:
                    raise RuntimeError(f"embedder died; see {embedder.log_file}")
            raise TimeoutError(f"no embedding for {product_id}")

        one("warm", 300)  # start-up, group join, first inference
        latencies = []
        for index in range(events):
            time.sleep(random.uniform(0.6, 1.2))
            latencies.append(one(f"p{index}", 30))
        consumer.close()
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    hf_dir, _ = model_dirs()
    data = jpeg(0)
    latencies = sorted(through_the_embedder(hf_dir, data, args.events))
    floor = encoder_alone(hf_dir, data, repeats=args.events)
    p50 = statistics.median(latencies)
    print(f"one event at a time through the embedder ({args.events} events): ", end="")
    print(f"p50 {p50 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    print(f"the encoder alone, one image: {floor * 1000:.0f} ms; ", end="")
    print(f"the embedder's p50 is {p50 / floor:.1f}x that")


if __name__ == "__main__":
    main()
