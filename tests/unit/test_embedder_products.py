"""Products of several images through the embedder loop (in-memory broker; the real one is
in tests/integration): one output per event carrying every image, a bad image making the
whole event a dead letter, and unchanged images reused one by one."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catalens.embedder.main import build_service
from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
from catalens.schemas import DeadLetter, EmbeddingRecord
from catalens.settings import EmbedderSettings
from catalens.worker.metrics import EmbedderMetrics
from tests.conftest import jpeg_bytes

pytestmark = pytest.mark.slow

TOPIC = "catalens.product-images"
EMBEDDINGS = "catalens.product-embeddings"
DLQ = "catalens.product-images.dlq"
GROUP = "catalens-embedder"


def inline(seed: int) -> dict[str, str]:
    return {"data": base64.b64encode(jpeg_bytes(seed=seed)).decode()}


def product(pid: str, version: int, images: list[dict[str, str]], **extra: Any) -> bytes:
    body = {
        "schema_version": 2,
        "event_id": f"e-{pid}-{version}",
        "op": "upsert",
        "product_id": pid,
        "version": version,
        "occurred_at": "2026-12-06T10:00:00Z",
        "images": images,
        "name": f"Product {pid}",
        "description": "Jersey top with narrow shoulder straps.",
    } | extra
    return json.dumps(body).encode()


class Embedder:
    """The embedder service over an in-memory broker; its metrics count the images that
    reached the model (the inference batches' sizes)."""

    def __init__(self, tiny_model: Path) -> None:
        settings = EmbedderSettings(model=str(tiny_model), precision="fp32", runtime="torch")
        self.broker = MemoryBroker(partitions=1)
        self.metrics = EmbedderMetrics()
        self.stop = threading.Event()
        source = MemorySource(self.broker, group_id=GROUP, topics=[TOPIC])
        self.service, _encoder = build_service(
            settings,
            self.stop,
            source=source,
            publisher=MemoryPublisher(self.broker),
            metrics=self.metrics,
        )
        self.runner = threading.Thread(target=self.service.run)
        self.runner.start()

    @property
    def images_encoded(self) -> int:
        value = self.metrics.registry.get_sample_value("catalens_embedder_batch_size_sum")
        return int(value or 0)

    def feed(self, *values: tuple[bytes, bytes]) -> None:
        for key, value in values:
            self.broker.append(TOPIC, key, value)
        total = len(self.broker.records(TOPIC))
        deadline = time.monotonic() + 60
        while self.broker.committed(GROUP).get((TOPIC, 0), 0) < total:
            assert time.monotonic() < deadline, "the embedder did not finish its input"
            time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        self.runner.join(30)
        assert not self.runner.is_alive()

    def embeddings(self) -> list[EmbeddingRecord]:
        return [
            EmbeddingRecord.model_validate_json(r.value)
            for r in self.broker.records(EMBEDDINGS)
            if r.value
        ]

    def letters(self) -> list[DeadLetter]:
        return [
            DeadLetter.model_validate_json(r.value) for r in self.broker.records(DLQ) if r.value
        ]


@pytest.fixture
def embedder(tiny_model: Path) -> Any:
    running = Embedder(tiny_model)
    yield running
    running.close()


def test_a_products_images_leave_in_one_record_in_their_order(embedder: Embedder) -> None:
    images = [{"id": "front", **inline(1)}, inline(2), {"id": "detail", **inline(3)}]
    embedder.feed((b"p", product("p", 1, images)))
    (record,) = embedder.embeddings()
    assert (record.schema_version, record.name) == (2, "Product p")
    assert record.description == "Jersey top with narrow shoulder straps."
    vectors = record.image_vectors()
    assert [(v.id, v.position) for v in vectors] == [("front", 0), ("1", 1), ("detail", 2)]
    for vector in vectors:
        assert vector.vector.shape == (16,)
        assert abs(float(np.linalg.norm(vector.vector)) - 1) < 1e-4
        assert vector.image is not None and vector.image.startswith("data:image/jpeg")
    # Three images of three different pictures: three different vectors.
    assert len({v.vector.tobytes() for v in vectors}) == 3
    assert embedder.images_encoded == 3


def test_one_bad_image_makes_the_whole_event_a_dead_letter_with_its_reason(
    embedder: Embedder,
) -> None:
    bad = {"id": "back", "data": base64.b64encode(b"not an image").decode()}
    embedder.feed(
        (b"p", product("p", 1, [inline(1), bad, inline(3)])), (b"q", product("q", 1, [inline(4)]))
    )
    (letter,) = embedder.letters()
    assert (letter.reason.value, letter.product_id) == ("not_an_image", "p")
    assert letter.message.startswith("image 'back': ")
    assert [e.product_id for e in embedder.embeddings()] == ["q"]  # the stream moved on


def test_a_new_version_that_adds_one_image_runs_the_model_once(embedder: Embedder) -> None:
    front, back = {"id": "front", **inline(1)}, {"id": "back", **inline(2)}
    embedder.feed((b"p", product("p", 1, [front])))
    assert embedder.images_encoded == 1
    embedder.feed((b"p", product("p", 2, [front, back])))
    assert embedder.images_encoded == 2  # only the back view ran through the model
    first, second = embedder.embeddings()
    np.testing.assert_array_equal(first.image_vectors()[0].vector, second.image_vectors()[0].vector)
    embedder.feed((b"p", product("p", 3, [back], attributes={"price": 9.5})))
    assert embedder.images_encoded == 2  # a removed image and an unchanged one: no model
    assert embedder.service.reused == 1
