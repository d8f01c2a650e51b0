"""The byte budget across a revocation: what the embedder still holds of a partition taken
away counts until it is gone from memory, so that the budget it hands to new records is
budget it has."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import numpy as np

from catalens.embedder.holdings import weight
from catalens.images import Pixels, PreprocessSpec
from catalens.kafka.memory import MemoryBroker, MemorySource
from catalens.schemas.embedding import Vector
from tests.conftest import jpeg_bytes
from tests.unit.test_embedder_shutdown import service_for
from tests.unit.test_embedder_storm import GROUP, TOPIC, event
from tests.waits import wait_for


def test_records_of_a_revoked_partition_leave_or_stay_counted(tmp_path: Path) -> None:
    """Six records of one product, the first stuck in the model: when their partition is
    revoked the five waiting behind it leave (the next owner re-reads them), the one in the
    model stays counted until it ends, and new records of the partition kept get only the
    room that leaves."""
    broker = MemoryBroker(partitions=2)
    data = base64.b64encode(jpeg_bytes(seed=1)).decode()
    for _ in range(6):  # one product, stuck behind its first record (the model hangs)
        broker.append(TOPIC, b"a", event("a", {"data": data}), partition=1)
    w = weight(broker.records(TOPIC)[0])
    release = threading.Event()

    def hanging(pixels: list[Pixels]) -> list[Vector]:
        release.wait(60)  # e.g. the image host retried for minutes: transient faults wait
        return [np.full(4, 0.5, dtype=np.float32) for _ in pixels]

    stop = threading.Event()
    spec = PreprocessSpec(size=32, crop=32)
    reserve = (min(1024, 4) + 16 + 1) * spec.pixel_bytes
    budget = reserve + 6 * w + 10
    service = service_for(
        broker, stop, hanging, tmp_path, max_in_flight_bytes=budget, revoke_timeout_s=0.2
    )
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: service.holdings.records == 6 * w, 30, "six records let in")
        MemorySource(broker, group_id=GROUP, topics=[TOPIC])  # partition 1 moves away
        wait_for(lambda: not any(service._waiting.values()), 30, "the waiting records to leave")
        assert service.holdings.records == w  # the first, still in the model
        for i in range(6):
            broker.append(TOPIC, f"b{i}".encode(), event(f"b{i}", {"data": data}), partition=0)
        share = service.holdings.record_share
        room = share - w  # what the first, still in the model, leaves
        wb = weight(next(r for r in broker.records(TOPIC) if r.partition == 0))
        wait_for(
            lambda: service.holdings.records == w + (room // wb) * wb and service._source.paused,
            30,
            "partition 0 let in up to the room left, then paused",
        )
        assert service.holdings.held <= budget
    finally:
        release.set()
        stop.set()
        runner.join(30)
