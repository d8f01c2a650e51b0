"""The dead-letter storm guard in the embedder loop, with an in-memory broker: a stream
that turns into dead letters stops the embedder before its offsets pass the storm."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import numpy as np

from catalens.embedder.service import EmbedderConfig, EmbedderService
from catalens.embedder.sources import ImageSource, SourcePolicy
from catalens.embedder.steps import Topics
from catalens.embedder.storm import StormLimits
from catalens.images import ImageLimits, Pixels, PreprocessSpec
from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
from catalens.schemas.embedding import Vector
from catalens.store.values import ModelIdentity
from tests.conftest import jpeg_bytes
from tests.waits import wait_for

TOPIC = "in"
GROUP = "embedder"
TOPICS = Topics("emb", "dlq")
GOOD = 20
BAD = 300


def event(pid: str, image: dict[str, str]) -> bytes:
    body = {
        "schema_version": 1,
        "event_id": f"e-{pid}",
        "op": "upsert",
        "product_id": pid,
        "version": 1,
        "occurred_at": "2026-11-24T10:00:00Z",
        "image": image,
    }
    return json.dumps(body).encode()


def encode(pixels: list[Pixels]) -> list[Vector]:
    """The encoder is outside the loop under test: any unit vector will do."""
    return [np.full(4, 0.5, dtype=np.float32) for _ in pixels]


def start(
    roots: Path, limits: StormLimits
) -> tuple[EmbedderService, MemoryBroker, threading.Event, threading.Thread]:
    """An embedder that has embedded and committed GOOD events, then is sent BAD events
    whose image path is missing under the image roots (as with a wrong
    CATALENS_IMAGE_ROOTS)."""
    broker = MemoryBroker(partitions=1)
    data = base64.b64encode(jpeg_bytes(seed=1)).decode()
    for i in range(GOOD):
        broker.append(TOPIC, f"g{i}".encode(), event(f"g{i}", {"data": data}))
    stop = threading.Event()
    service = EmbedderService(
        EmbedderConfig(
            TOPICS,
            ModelIdentity("m", 4, "f"),
            PreprocessSpec(size=32, crop=32),
            ImageLimits(),
            storm=limits,
        ),
        make_source=lambda _on_revoke: MemorySource(broker, group_id=GROUP, topics=[TOPIC]),
        publisher=MemoryPublisher(broker),
        images=ImageSource(SourcePolicy(image_roots=(roots,)), stop=stop),
        encode=encode,
        stop=stop,
    )
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    wait_for(lambda: committed(broker) == GOOD, what="the good events to be committed")
    for i in range(BAD):
        broker.append(TOPIC, f"b{i}".encode(), event(f"b{i}", {"path": str(roots / f"{i}.jpg")}))
    return service, broker, stop, runner


def committed(broker: MemoryBroker) -> int:
    return broker.committed(GROUP).get((TOPIC, 0), 0)


def test_a_dead_letter_storm_stops_the_embedder_before_it_commits_past_the_storm(
    tmp_path: Path,
) -> None:
    service, broker, stop, runner = start(tmp_path, StormLimits(0.5, window=100, min_records=20))
    try:
        wait_for(lambda: not service.ready.is_set(), what="the storm guard to trip")
        time.sleep(1.0)  # time to commit, were it to commit anything more
        paused = 'catalens_paused{role="embedder"} 1.0'
        wait_for(lambda: paused in service.metrics.render().decode(), what="the pause")
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    # It trips on the 20th dead letter (20 of the last 40 outcomes: 50 %), and the record
    # that trips it is not committed: at most the 19 dead letters before it are.
    assert GOOD <= committed(broker) <= GOOD + 19
    text = service.metrics.render().decode()
    assert 'catalens_dead_letter_storm{role="embedder"} 1.0' in text
    dead = len(broker.records("dlq"))
    assert 20 <= dead < BAD  # the outputs in flight at the trip are produced, no more
    assert 'catalens_ready{role="embedder"} 0.0' in text


def test_with_the_guard_off_every_record_is_dead_lettered_and_committed(tmp_path: Path) -> None:
    service, broker, stop, runner = start(tmp_path, StormLimits(ratio=0))
    try:
        wait_for(lambda: committed(broker) == GOOD + BAD, what="every record to be committed")
    finally:
        stop.set()
        runner.join(30)
    assert len(broker.records("dlq")) == BAD
    assert len(broker.records("emb")) == GOOD
    text = service.metrics.render().decode()
    assert f'catalens_records_total{{outcome="embedded",role="embedder"}} {GOOD}.0' in text
    assert (
        f'catalens_dead_letters_total{{reason="image_not_found",role="embedder"}} {BAD}.0' in text
    )
    assert 'catalens_dead_letter_storm{role="embedder"} 0.0' in text
