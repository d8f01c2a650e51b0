"""The embedder loop with an in-memory broker (the broker is outside the thing under test;
the real one is in tests/integration)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from catalens.embedder.main import build_service
from catalens.kafka.memory import MemoryBroker, MemoryPublisher, MemorySource
from catalens.schemas import DeadLetter, EmbeddingRecord
from catalens.settings import EmbedderSettings
from tests.conftest import jpeg_bytes
from tests.waits import wait_for

TOPIC = "catalens.product-images"
GROUP = "catalens-embedder"
Event = tuple[bytes | None, bytes | None]


def event(pid: str, version: int, **extra: Any) -> bytes:
    body = {
        "schema_version": 1,
        "event_id": f"e-{pid}-{version}",
        "op": "upsert",
        "product_id": pid,
        "version": version,
        "occurred_at": "2026-11-24T10:00:00Z",
        "image": {"data": base64.b64encode(jpeg_bytes(seed=version)).decode()},
    } | extra
    return json.dumps(body).encode()


def settings_for(tiny_model: Path, **extra: Any) -> EmbedderSettings:
    """The loop is under test here, not the encoder: fp32 on PyTorch needs no int8 model
    quantised and checked first (test_encoder covers choosing the precision)."""
    return EmbedderSettings(model=str(tiny_model), precision="fp32", runtime="torch", **extra)


def broker_with(records: list[Event]) -> MemoryBroker:
    """A broker whose one-partition input topic holds ``records`` at offsets 0, 1, ..."""
    broker = MemoryBroker(partitions=1)
    for key, value in records:
        broker.append(TOPIC, key, value)
    return broker


def outputs(broker: MemoryBroker) -> list[tuple[str, bytes | None, bytes | None]]:
    """(topic, key, value) of everything the embedder produced."""
    return [
        (r.topic, r.key, r.value)
        for topic in ("catalens.product-embeddings", "catalens.product-images.dlq")
        for r in broker.records(topic)
    ]


def run(tiny_model: Path, records: list[Event]) -> MemoryBroker:
    settings = settings_for(tiny_model)
    broker = broker_with(records)
    source = MemorySource(broker, group_id=GROUP, topics=[TOPIC])
    stop = threading.Event()
    service, _ = build_service(settings, stop, source=source, publisher=MemoryPublisher(broker))
    runner = threading.Thread(target=service.run)
    runner.start()
    # Every output acknowledged and its offset committed: the whole input went through.
    wait_for(
        lambda: broker.committed(GROUP) == {(TOPIC, 0): len(records)},
        60,
        "every record's offset to be committed",
    )
    stop.set()
    runner.join(30)
    assert not runner.is_alive()
    return broker


@pytest.fixture
def records() -> list[Event]:
    return [
        (b"a", event("a", 1)),
        (b"bad", b"{nope"),
        (b"b", event("b", 2, op="delete", image=None)),
        (b"a", None),  # tombstone right behind a's upsert
        (b"c", event("c", 3)),
        (None, event("e", 5)),  # no key: nothing would order it against e's others
        (b"d", event("d", 4, image={"data": base64.b64encode(b"not an image").decode()})),
    ]


@pytest.mark.slow
def test_every_input_yields_exactly_one_output_and_offsets_follow_them(
    tiny_model: Path, records: list[Event]
) -> None:
    broker = run(tiny_model, records)
    produced = outputs(broker)
    topics = [topic for topic, _, _ in produced]
    assert len(produced) == len(records)
    assert topics.count("catalens.product-images.dlq") == 3
    assert broker.committed(GROUP) == {(TOPIC, 0): len(records)}
    letters = [
        DeadLetter.model_validate_json(v) for t, _, v in produced if t.endswith(".dlq") and v
    ]
    assert sorted(letter.reason.value for letter in letters) == [
        "invalid_json",
        "key_mismatch",
        "not_an_image",
    ]
    embeddings = [
        EmbeddingRecord.model_validate_json(v)
        for t, _, v in produced
        if t == "catalens.product-embeddings" and v
    ]
    by_id = {e.product_id: e for e in embeddings}
    assert by_id["c"].unpack().shape == (16,)
    assert by_id["c"].image is not None and by_id["c"].image.startswith("data:image/jpeg")
    assert by_id["b"].vector is None and by_id["b"].op.value == "delete"


@pytest.mark.slow
def test_records_of_one_product_leave_in_the_order_they_came(
    tiny_model: Path, records: list[Event]
) -> None:
    of_a = [value for _, key, value in outputs(run(tiny_model, records)) if key == b"a"]
    assert len(of_a) == 2 and of_a[0] is not None and of_a[1] is None  # upsert, then tombstone


@contextmanager
def running_held(
    settings: EmbedderSettings, broker: MemoryBroker
) -> Iterator[tuple[MemorySource, MemoryPublisher]]:
    """The embedder running over ``broker``, whose publisher takes the outputs but
    acknowledges none until its ``hold`` is cleared; stopped on exit."""
    source = MemorySource(broker, group_id=GROUP, topics=[TOPIC])
    publisher = MemoryPublisher(broker, hold=True)
    stop = threading.Event()
    service, _ = build_service(settings, stop, source=source, publisher=publisher)
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        yield source, publisher
    finally:
        publisher.hold = False
        stop.set()
        runner.join(30)


@pytest.mark.slow
def test_no_offset_is_committed_before_its_output_is_acknowledged(
    tiny_model: Path, records: list[Event]
) -> None:
    broker = broker_with(records)
    with running_held(settings_for(tiny_model), broker) as (_, publisher):
        # Everything but a's tombstone goes out; the tombstone waits for a's upsert
        # to be acknowledged, so that it can never overtake it.
        wait_for(lambda: len(outputs(broker)) >= len(records) - 1, 60)
        time.sleep(0.5)
        assert len(outputs(broker)) == len(records) - 1
        assert (b"a", None) not in [(key, value) for _, key, value in outputs(broker)]
        assert broker.committed(GROUP) == {}
        publisher.hold = False
        wait_for(lambda: broker.committed(GROUP) == {(TOPIC, 0): len(records)}, 10)
        assert broker.committed(GROUP) == {(TOPIC, 0): len(records)}


@pytest.mark.slow
def test_past_max_in_flight_it_pauses_until_half_have_drained(tiny_model: Path) -> None:
    """Backpressure: acknowledgements held back, the embedder takes no more than
    max_in_flight records (plus one poll's worth) and pauses; released, it resumes and
    every record goes through."""
    count, limit, batch = 20, 4, 2
    settings = settings_for(tiny_model, max_in_flight=limit, batch_size=batch)
    broker = broker_with([(f"p{i}".encode(), event(f"p{i}", i + 1)) for i in range(count)])
    with running_held(settings, broker) as (source, publisher):
        wait_for(lambda: len(outputs(broker)) >= limit, 60)
        time.sleep(0.5)  # time to take more, were it not paused
        assert limit <= len(outputs(broker)) <= limit + batch - 1
        assert source.paused
        publisher.hold = False
        wait_for(lambda: broker.committed(GROUP) == {(TOPIC, 0): count}, 60)
        assert broker.committed(GROUP) == {(TOPIC, 0): count}
        assert len(outputs(broker)) == count and not source.paused


@pytest.mark.slow
def test_stopping_does_not_wait_for_a_url_that_keeps_failing_nor_dead_letters_it(
    tiny_model: Path,
) -> None:
    """A fetch waiting to retry gives up when the service stops; its record (and the
    product's records behind it) stay uncommitted for the next owner, and other
    products' work still finishes and is committed."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Unavailable(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/x.jpg"
    broker = MemoryBroker(partitions=2)
    broker.append(TOPIC, b"x", event("x", 1, image={"url": url}), partition=0)
    broker.append(TOPIC, b"x", event("x", 2, image={"url": url}), partition=0)
    broker.append(TOPIC, b"y", event("y", 3), partition=1)
    settings = settings_for(tiny_model, allowed_networks=["127.0.0.1/32"], fetch_retries=1000)
    source = MemorySource(broker, group_id=GROUP, topics=[TOPIC])
    publisher = MemoryPublisher(broker)
    stop = threading.Event()
    service, _ = build_service(settings, stop, source=source, publisher=publisher)
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        # y is done while x keeps retrying.
        wait_for(lambda: broker.committed(GROUP).get((TOPIC, 1)) == 1, 60, "y to be committed")
        stopped_at = time.monotonic()
        stop.set()
        runner.join(30)
        assert not runner.is_alive()
        assert time.monotonic() - stopped_at < 5
    finally:
        stop.set()
        server.shutdown()
    assert [key for _, key, _ in outputs(broker)] == [b"y"]
    assert (TOPIC, 0) not in broker.committed(GROUP)


def test_building_the_service_leaves_the_process_allocator_alone(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tuning glibc is process-wide, so only the entry point (``run``) does it."""
    import catalens.embedder.main

    tuned: list[bool] = []
    monkeypatch.setattr(catalens.embedder.main, "keep_freed_memory", lambda: tuned.append(True))
    settings = settings_for(tiny_model)
    broker = MemoryBroker(partitions=1)
    source = MemorySource(broker, group_id=GROUP, topics=[TOPIC])
    build_service(settings, threading.Event(), source=source, publisher=MemoryPublisher(broker))
    assert tuned == []
