"""The embedder loop with an in-memory broker (the broker is outside the thing under test;
the real one is in tests/integration)."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from catalens.embedder.main import build_service
from catalens.kafka import Record
from catalens.kafka.memory import MemoryPublisher, MemorySource
from catalens.schemas import DeadLetter, EmbeddingRecord
from catalens.settings import EmbedderSettings
from tests.conftest import jpeg_bytes

TOPIC = "catalens.product-images"


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


def run(tiny_model: Path, records: list[Record]) -> tuple[MemorySource, MemoryPublisher]:
    settings = EmbedderSettings(model=str(tiny_model))
    source, publisher = MemorySource(records), MemoryPublisher()
    stop = threading.Event()
    service, _ = build_service(settings, stop, source=source, publisher=publisher)
    runner = threading.Thread(target=service.run)
    runner.start()
    deadline = time.monotonic() + 60
    while len(publisher.records) < len(records) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # let the last acknowledgements be served and offsets stored
    stop.set()
    runner.join(30)
    assert not runner.is_alive()
    return source, publisher


@pytest.fixture
def records() -> list[Record]:
    raw = [
        (b"a", event("a", 1)),
        (b"bad", b"{nope"),
        (b"b", event("b", 2, op="delete", image=None)),
        (b"a", None),  # tombstone right behind a's upsert
        (None, event("c", 3)),
        (b"d", event("d", 4, image={"data": base64.b64encode(b"not an image").decode()})),
    ]
    return [Record(TOPIC, 0, offset, key, value, [], 0) for offset, (key, value) in enumerate(raw)]


def test_every_input_yields_exactly_one_output_and_offsets_follow_them(
    tiny_model: Path, records: list[Record]
) -> None:
    source, publisher = run(tiny_model, records)
    topics = [topic for topic, _, _ in publisher.records]
    assert len(publisher.records) == len(records)
    assert topics.count("catalens.product-images.dlq") == 2
    assert source.committed == {(TOPIC, 0): len(records)}
    letters = [
        DeadLetter.model_validate_json(v)
        for t, _, v in publisher.records
        if t.endswith(".dlq") and v
    ]
    assert sorted(letter.reason.value for letter in letters) == ["invalid_json", "not_an_image"]
    embeddings = [
        EmbeddingRecord.model_validate_json(v)
        for t, _, v in publisher.records
        if t == "catalens.product-embeddings" and v
    ]
    by_id = {e.product_id: e for e in embeddings}
    assert by_id["c"].unpack().shape == (16,)
    assert by_id["c"].image is not None and by_id["c"].image.startswith("data:image/jpeg")
    assert by_id["b"].vector is None and by_id["b"].op.value == "delete"


def test_records_of_one_product_leave_in_the_order_they_came(
    tiny_model: Path, records: list[Record]
) -> None:
    _, publisher = run(tiny_model, records)
    of_a = [value for _, key, value in publisher.records if key == b"a"]
    assert len(of_a) == 2 and of_a[0] is not None and of_a[1] is None  # upsert, then tombstone


def test_no_offset_is_committed_before_its_output_is_acknowledged(
    tiny_model: Path, records: list[Record]
) -> None:
    settings = EmbedderSettings(model=str(tiny_model))
    source, publisher = MemorySource(records), MemoryPublisher()
    publisher.hold = True  # the broker takes the records but acknowledges none yet
    stop = threading.Event()
    service, _ = build_service(settings, stop, source=source, publisher=publisher)
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        # Everything but a's tombstone goes out; the tombstone waits for a's upsert
        # to be acknowledged, so that it can never overtake it.
        deadline = time.monotonic() + 60
        while len(publisher.records) < len(records) - 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert len(publisher.records) == len(records) - 1
        assert (b"a", None) not in [(key, value) for _, key, value in publisher.records]
        assert source.committed == {}
        publisher.hold = False
        deadline = time.monotonic() + 10
        while source.committed != {(TOPIC, 0): len(records)} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.committed == {(TOPIC, 0): len(records)}
    finally:
        publisher.hold = False
        stop.set()
        runner.join(30)


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
    records = [
        Record(TOPIC, 0, 0, b"x", event("x", 1, image={"url": url}), [], 0),
        Record(TOPIC, 0, 1, b"x", event("x", 2, image={"url": url}), [], 0),
        Record(TOPIC, 1, 0, b"y", event("y", 3), [], 0),
    ]
    settings = EmbedderSettings(
        model=str(tiny_model), allowed_networks=["127.0.0.1/32"], fetch_retries=1000
    )
    source, publisher = MemorySource(records), MemoryPublisher()
    stop = threading.Event()
    service, _ = build_service(settings, stop, source=source, publisher=publisher)
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while source.committed.get((TOPIC, 1)) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.committed.get((TOPIC, 1)) == 1  # y done while x keeps retrying
        stopped_at = time.monotonic()
        stop.set()
        runner.join(30)
        assert not runner.is_alive()
        assert time.monotonic() - stopped_at < 5
    finally:
        stop.set()
        server.shutdown()
    assert [key for _, key, _ in publisher.records] == [b"y"]
    assert (TOPIC, 0) not in source.committed
