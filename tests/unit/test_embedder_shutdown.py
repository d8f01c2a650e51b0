"""Stopping the embedder with the source's revocation wired in, as the Kafka client has
it: closing the consumer revokes every partition, so ``on_revoke`` runs inside
``close``, after the drain and after the prepare pool has been shut down."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from catalens.embedder.service import EmbedderConfig, EmbedderService
from catalens.embedder.sources import ImageSource, SourcePolicy
from catalens.images import ImageLimits, Pixels, PreprocessSpec
from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
from catalens.schemas.embedding import Vector
from catalens.store.values import ModelIdentity
from tests.conftest import jpeg_bytes
from tests.unit.test_embedder_storm import GROUP, TOPIC, TOPICS, committed, event


def service_for(
    broker: MemoryBroker,
    stop: threading.Event,
    encode: Callable[[list[Pixels]], list[Vector]],
    tmp_path: Path,
    **options: Any,
) -> EmbedderService:
    """An embedder of 4-d vectors over the in-memory ``broker``, one record a batch;
    ``options`` are the rest of its EmbedderConfig (timeouts, byte budget)."""
    return EmbedderService(
        EmbedderConfig(
            TOPICS,
            ModelIdentity("m", 4, "f"),
            PreprocessSpec(size=32, crop=32),
            ImageLimits(),
            batch_size=1,
            **options,
        ),
        make_source=lambda on_revoke: MemorySource(
            broker, group_id=GROUP, topics=[TOPIC], on_revoke=on_revoke
        ),
        publisher=MemoryPublisher(broker),
        images=ImageSource(SourcePolicy(image_roots=(tmp_path,)), stop=stop),
        encode=encode,
        stop=stop,
    )


def started(service: EmbedderService) -> tuple[threading.Thread, list[BaseException]]:
    """``service.run()`` in a thread of its own, and what it raised (filled when it ends)."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:  # noqa: BLE001 - what the tests look at
            failures.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    return runner, failures


def stopped_once_in_the_model(
    service: EmbedderService, model: SlowModel, stop: threading.Event, join_s: float
) -> None:
    """Run ``service``, stop it as soon as the model has a batch, and check that it ended
    cleanly within ``join_s``."""
    runner, failures = started(service)
    assert model.entered.wait(30)
    stop.set()
    runner.join(join_s)
    assert not runner.is_alive()
    assert failures == []


class SlowModel:
    """A model that takes ``seconds`` per batch and counts the images it was given."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.entered = threading.Event()
        self.images = 0

    def __call__(self, pixels: list[Pixels]) -> list[Vector]:
        self.entered.set()
        time.sleep(self.seconds)
        self.images += len(pixels)
        return [np.full(4, 0.5, dtype=np.float32) for _ in pixels]


def test_a_record_finishing_after_the_drain_timed_out_does_not_start_the_next_one(
    tmp_path: Path,
) -> None:
    """The drain gives up while a product's first record is still in the model and its
    second waits behind it. The first finishes during the revocation inside ``close``:
    the second must stay unstarted and uncommitted for the next owner, not be submitted
    to the prepare pool that was shut down (a RuntimeError out of run())."""
    broker = MemoryBroker(partitions=1)
    data = base64.b64encode(jpeg_bytes(seed=1)).decode()
    broker.append(TOPIC, b"a", event("a", {"data": data}))
    broker.append(TOPIC, b"a", event("a", {"data": data}))
    model = SlowModel(1.0)
    stop = threading.Event()
    service = service_for(
        broker, stop, model, tmp_path, shutdown_timeout_s=0.2, revoke_timeout_s=5.0
    )
    stopped_once_in_the_model(service, model, stop, join_s=30)
    assert committed(broker) <= 1  # the second record is the next owner's


def test_a_failed_model_ends_the_service_without_waiting_in_the_revocation(
    tmp_path: Path,
) -> None:
    """The model raised: the records in flight can never finish, so the revocation that
    closing the consumer runs does not wait for them (it waited its whole timeout)."""
    broker = MemoryBroker(partitions=1)
    data = base64.b64encode(jpeg_bytes(seed=1)).decode()
    for i in range(3):
        broker.append(TOPIC, f"p{i}".encode(), event(f"p{i}", {"data": data}))

    def broken_encode(pixels: list[Pixels]) -> list[Vector]:
        raise RuntimeError("the model failed")

    stop = threading.Event()
    service = service_for(
        broker, stop, broken_encode, tmp_path, shutdown_timeout_s=1.0, revoke_timeout_s=10.0
    )
    began = time.monotonic()
    runner, failures = started(service)
    runner.join(30)
    assert not runner.is_alive()
    assert [str(f) for f in failures] == ["the model failed"]
    assert time.monotonic() - began < 5


def test_stopping_leaves_records_not_yet_begun_for_redelivery(tmp_path: Path) -> None:
    """A backlog is queued for preparation when the stop comes: what is under way
    finishes and is committed, what has not begun is left uncommitted instead of being
    embedded against the drain's clock."""
    broker = MemoryBroker(partitions=1)
    data = base64.b64encode(jpeg_bytes(seed=1)).decode()
    count = 60
    for i in range(count):
        broker.append(TOPIC, f"p{i}".encode(), event(f"p{i}", {"data": data}))
    model = SlowModel(0.2)
    stop = threading.Event()
    service = service_for(
        broker, stop, model, tmp_path, shutdown_timeout_s=60.0, revoke_timeout_s=5.0
    )
    stopped_once_in_the_model(service, model, stop, join_s=60)
    # Begun before the stop: at most one record per prepare thread, the batcher's queue
    # and the batch in the model; the rest was never embedded.
    assert model.images < count
    assert 0 < committed(broker) <= model.images
