"""A re-published product whose image did not change runs no model: counted at the
service, with the in-memory broker (outside the thing under test) and a local HTTP server
answering conditional GETs."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from catalens.embedder.main import build_service
from catalens.embedder.service import EmbedderService
from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
from catalens.schemas import EmbeddingRecord
from catalens.settings import EmbedderSettings
from tests.conftest import http_server, jpeg_bytes
from tests.unit.test_embedder_service import event as upsert
from tests.waits import wait_for

TOPIC = "catalens.product-images"
EMBEDDINGS = "catalens.product-embeddings"
GROUP = "catalens-embedder"
# Fields that differ between two events of a product by design; the rest of an embedding
# record made with a reused vector must be what running the model gave.
PER_EVENT = {"version", "event_id", "occurred_at", "embedded_at", "attributes", "input_offset"}

pytestmark = pytest.mark.slow


class Catalog(BaseHTTPRequestHandler):
    """Serves /<seed>.jpg with an ETag, and answers 304 to a request that holds it."""

    answers: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        seed = int(self.path.strip("/").removesuffix(".jpg"))
        etag = f'"{seed}"'
        if self.headers.get("If-None-Match") == etag:
            Catalog.answers.append(304)
            self.send_response(304)
            self.end_headers()
            return
        body = jpeg_bytes(seed=seed)
        Catalog.answers.append(200)
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def cdn() -> Iterator[str]:
    with http_server(Catalog) as url:
        yield url


def event(pid: str, version: int, image: dict[str, str], price: float) -> bytes:
    return upsert(pid, version, image=image, attributes={"price": price})


def inline(seed: int) -> dict[str, str]:
    return {"data": base64.b64encode(jpeg_bytes(seed=seed)).decode()}


def catalog(cdn: str, version: int, price: float) -> list[tuple[bytes, bytes]]:
    """Products a-c with inline images, u with a URL: the same images at every version."""
    inlines = [(pid, inline(seed)) for seed, pid in enumerate("abc")]
    url = [("u", {"url": f"{cdn}/7.jpg"})]
    return [(pid.encode(), event(pid, version, img, price)) for pid, img in inlines + url]


class Embedder:
    """One embedder service running on ``broker``, its images counted at the model."""

    def __init__(self, service: EmbedderService, broker: MemoryBroker) -> None:
        self.service = service
        self.broker = broker
        self.images_encoded = 0

    def first_records(self, count: int) -> dict[tuple[str, int], EmbeddingRecord]:
        """The first ``count`` embedding records, by product id and version, once all of
        them are acknowledged (and so counted by the service)."""
        wait_for(
            lambda: self.service.embedded + self.service.reused >= count,
            60,
            f"{count} records to be acknowledged",
        )
        produced = self.broker.records(EMBEDDINGS)
        assert len(produced) == count
        records = [EmbeddingRecord.model_validate_json(r.value or b"") for r in produced]
        return {(r.product_id, r.version): r for r in records}


@contextmanager
def embedder(tiny_model: Path, broker: MemoryBroker, **extra: Any) -> Iterator[Embedder]:
    settings = EmbedderSettings(
        model=str(tiny_model),
        precision="fp32",
        runtime="torch",
        allowed_networks=["127.0.0.1/32"],
        **extra,
    )
    source = MemorySource(broker, group_id=GROUP, topics=[TOPIC])
    stop = threading.Event()
    service, encoder = build_service(
        settings, stop, source=source, publisher=MemoryPublisher(broker)
    )
    running = Embedder(service, broker)
    encode = encoder.encode_images

    def counting(pixels: Any) -> np.ndarray:
        running.images_encoded += len(pixels)
        return encode(pixels)

    encoder.encode_images = counting  # type: ignore[method-assign]
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        yield running
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()


def same_but_per_event(a: EmbeddingRecord, b: EmbeddingRecord) -> bool:
    return a.model_dump(exclude=PER_EVENT) == b.model_dump(exclude=PER_EVENT)


def test_an_attribute_only_republish_runs_no_model_and_emits_the_same_vectors(
    tiny_model: Path, cdn: str
) -> None:
    broker = MemoryBroker(partitions=2)
    for key, value in catalog(cdn, version=1, price=10.0):
        broker.append(TOPIC, key, value)
    with embedder(tiny_model, broker) as running:
        first = running.first_records(4)
        assert running.images_encoded == 4
        Catalog.answers.clear()
        for key, value in catalog(cdn, version=2, price=8.5):
            broker.append(TOPIC, key, value)
        second = running.first_records(8)
        assert running.images_encoded == 4  # no model call for the re-publish
        assert Catalog.answers == [304]  # and the URL's bytes were not sent again
        assert (running.service.embedded, running.service.reused) == (4, 4)
        metrics = running.service.metrics.render().decode()
        assert 'catalens_records_total{outcome="reused",role="embedder"} 4.0' in metrics
        assert 'catalens_records_total{outcome="embedded",role="embedder"} 4.0' in metrics
        for pid in "abcu":
            record = second[pid, 2]
            assert record.attributes == {"price": 8.5}
            assert same_but_per_event(record, first[pid, 1])
        assert (second["a", 2].image or "").startswith("data:image/jpeg")

        # A changed image is embedded: new bytes inline, and a new URL.
        broker.append(TOPIC, b"a", event("a", 3, inline(99), 8.5))
        broker.append(TOPIC, b"u", event("u", 3, {"url": f"{cdn}/8.jpg"}, 8.5))
        third = running.first_records(10)
        assert running.images_encoded == 6
        assert third["a", 3].vector != first["a", 1].vector
        assert third["u", 3].vector != first["u", 1].vector
        assert (running.service.embedded, running.service.reused) == (6, 4)
    assert sum(broker.committed(GROUP).values()) == 10  # every input committed


def test_a_replica_without_the_entries_embeds_normally(tiny_model: Path, cdn: str) -> None:
    """Another replica, or a restarted one, starts with nothing: it runs the model, and
    gives the vectors the first one did."""
    first_broker = MemoryBroker(partitions=1)
    for key, value in catalog(cdn, version=1, price=10.0):
        first_broker.append(TOPIC, key, value)
    with embedder(tiny_model, first_broker) as running:
        before = {pid: r.unpack() for (pid, _), r in running.first_records(4).items()}
    replica_broker = MemoryBroker(partitions=1)
    for key, value in catalog(cdn, version=2, price=8.5):
        replica_broker.append(TOPIC, key, value)
    with embedder(tiny_model, replica_broker) as replica:
        after = {pid: r.unpack() for (pid, _), r in replica.first_records(4).items()}
        assert replica.images_encoded == 4 and replica.service.reused == 0
    for pid, vector in after.items():
        assert float(np.dot(vector, before[pid])) > 0.9999


def test_reuse_can_be_turned_off(tiny_model: Path, cdn: str) -> None:
    broker = MemoryBroker(partitions=1)
    for version in (1, 2):
        for key, value in catalog(cdn, version=version, price=float(version)):
            broker.append(TOPIC, key, value)
    with embedder(tiny_model, broker, reuse_cache_size=0) as running:
        running.first_records(8)
        assert running.images_encoded == 8 and running.service.reused == 0
