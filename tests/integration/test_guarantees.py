"""The guarantees of DESIGN.md, attacked on the running system (services as processes)."""

from __future__ import annotations

import base64
import io
import random
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from PIL import Image

from tests.conftest import MilvusServer, jpeg_bytes
from tests.integration.conftest import ImageServer
from tests.integration.stack import Stack, event
from tests.waits import wait_for

pytestmark = pytest.mark.integration

SMALL = {"data": base64.b64encode(jpeg_bytes(96, 128, seed=9)).decode()}


def expected_state(stream: list[tuple[str, dict[str, Any] | None]]) -> dict[str, int]:
    """The contract, one record at a time: highest version wins, deletes set a floor,
    tombstones remove what is there."""
    live: dict[str, int] = {}
    floor: dict[str, int] = {}
    for pid, body in stream:
        if body is None:
            if pid in live:
                floor[pid] = max(floor.get(pid, -1), live.pop(pid))
        elif body["op"] == "delete":
            floor[pid] = max(floor.get(pid, -1), body["version"])
            if live.get(pid, floor[pid] + 1) <= body["version"]:
                live.pop(pid)
        elif body["version"] > max(floor.get(pid, -1), live.get(pid, -1)):
            live[pid] = body["version"]
    return live


def random_stream(products: int, events: int, seed: int) -> list[tuple[str, dict[str, Any] | None]]:
    """Out-of-order versions, duplicates, stale and fresh deletes, tombstones."""
    rng = random.Random(seed)
    stream: list[tuple[str, dict[str, Any] | None]] = []
    for _ in range(events):
        pid = f"p{rng.randrange(products):04d}"
        roll = rng.random()
        if roll < 0.08:
            stream.append((pid, None))
        elif roll < 0.22:
            stream.append((pid, event(pid, rng.randrange(12), op="delete")))
        else:
            body = event(pid, rng.randrange(12), image=SMALL, category=rng.choice("ABC"))
            stream.append((pid, body))
            if rng.random() < 0.1:
                stream.append((pid, body))  # an exact duplicate
    return stream


def produce_stream(stack: Stack, stream: list[tuple[str, dict[str, Any] | None]]) -> None:
    stack.produce((pid.encode(), body) for pid, body in stream)


def test_out_of_order_versions_duplicates_and_deletes_converge_to_the_newest_state(
    stack: Stack,
) -> None:
    stack.start("embedder", "sink", "api")
    stream = random_stream(products=40, events=300, seed=1)
    produce_stream(stack, stream)
    expected = expected_state(stream)
    assert 0 < len(expected) < 40  # the stream deletes some products and keeps others
    stack.wait_indexed(expected)


def test_every_kind_of_bad_input_is_dead_lettered_while_good_events_flow(
    stack: Stack, image_server: ImageServer
) -> None:
    stack.extra_env.update(
        {
            "CATALENS_FETCH_TIMEOUT_S": "1",
            "CATALENS_FETCH_RETRIES": "0",
            "CATALENS_MAX_IMAGE_BYTES": "300000",
            "CATALENS_MAX_IMAGE_PIXELS": "4000000",
        }
    )
    (image_server.root / "ok.jpg").write_bytes(jpeg_bytes(seed=5))
    (image_server.root / "huge.jpg").write_bytes(jpeg_bytes(1600, 1600, seed=6, quality=100))
    buffer = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buffer, format="PNG")
    (image_server.root / "bomb.png").write_bytes(buffer.getvalue())
    (stack.images / "text.jpg").write_bytes(b"this is not an image")
    outside = stack.workdir / "outside.jpg"
    outside.write_bytes(jpeg_bytes(seed=7))
    truncated = jpeg_bytes(seed=8)[:3000]

    good = [event(f"good-{i}", 1, image=SMALL) for i in range(6)]
    bad: list[tuple[bytes, bytes | dict[str, Any]]] = [
        (b"b-json", b"{not json"),
        (b"b-schema", event("b-schema", 1, image=SMALL) | {"version": "one"}),
        (b"b-version", event("b-version", 1, image=SMALL) | {"schema_version": 9}),
        (b"other-key", event("b-key", 1, image=SMALL)),
        (b"b-404", event("b-404", 1, image={"url": image_server.url("nope.jpg")})),
        (b"b-nofile", event("b-nofile", 1, image={"path": str(stack.images / "nope.jpg")})),
        (b"b-timeout", event("b-timeout", 1, image={"url": image_server.url("slow/ok.jpg")})),
        (b"b-notimage", event("b-notimage", 1, image={"path": str(stack.images / "text.jpg")})),
        (
            b"b-truncated",
            event("b-truncated", 1, image={"data": base64.b64encode(truncated).decode()}),
        ),
        (b"b-bytes", event("b-bytes", 1, image={"url": image_server.url("huge.jpg")})),
        (b"b-pixels", event("b-pixels", 1, image={"url": image_server.url("bomb.png")})),
        (
            b"b-metadata",
            event("b-metadata", 1, image={"url": "http://169.254.169.254/latest/meta-data/"}),
        ),
        (b"b-private", event("b-private", 1, image={"url": "http://10.0.0.1/a.jpg"})),
        (b"b-scheme", event("b-scheme", 1, image={"url": "file:///etc/passwd"})),
        (b"b-outside", event("b-outside", 1, image={"path": str(outside)})),
    ]
    expected_reasons = {
        "b-json": "invalid_json",
        "b-schema": "schema_violation",
        "b-version": "unsupported_schema_version",
        "other-key": "key_mismatch",
        "b-404": "image_not_found",
        "b-nofile": "image_not_found",
        "b-timeout": "fetch_timeout",
        "b-notimage": "not_an_image",
        "b-truncated": "corrupt_image",
        "b-bytes": "image_too_large",
        "b-pixels": "too_many_pixels",
        "b-metadata": "forbidden_source",
        "b-private": "forbidden_source",
        "b-scheme": "forbidden_source",
        "b-outside": "forbidden_source",
    }
    stack.start("embedder", "sink", "api")
    interleaved: list[tuple[bytes | None, bytes | dict[str, Any]]] = []
    goods = iter(good)
    for index, item in enumerate(bad):
        interleaved.append(item)
        if index % 3 == 0:
            body = next(goods)
            interleaved.append((body["product_id"].encode(), body))
    interleaved.extend((body["product_id"].encode(), body) for body in goods)
    stack.produce(interleaved)
    stack.wait_indexed({e["product_id"]: 1 for e in good})

    letters = stack.dead_letters(len(bad))
    by_key = {base64.b64decode(letter.key or "").decode(): letter for letter in letters}
    assert {k: v.reason.value for k, v in by_key.items()} == expected_reasons
    for key, value in bad:
        letter = by_key[key.decode()]
        raw = value if isinstance(value, bytes) else None
        if raw is not None:
            assert letter.original_value() == raw
        assert letter.source_topic == stack.input_topic and letter.source_offset >= 0
        assert letter.message


def test_dead_letters_replay_after_the_input_is_fixed(stack: Stack) -> None:
    image = stack.images / "later.jpg"
    stack.start("embedder", "sink", "api")
    stack.publish(event("late", 2, image={"path": str(image)}), event("fine", 1, image=SMALL))
    stack.wait_indexed({"fine": 1})
    assert [d.reason.value for d in stack.dead_letters(1)] == ["image_not_found"]

    image.write_bytes(jpeg_bytes(seed=11))
    replay = subprocess.run(
        [
            sys.executable,
            "-m",
            "catalens",
            "dlq",
            "replay",
            "--reason",
            "image_not_found",
            "--timeout",
            "8",
        ],
        env=stack.full_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stderr
    assert "replayed 1 dead letters" in replay.stdout
    stack.wait_indexed({"fine": 1, "late": 2})


def test_kill_9_of_embedder_and_sink_mid_stream_loses_nothing(stack: Stack) -> None:
    stack.start("embedder", "sink", "api")
    stream = random_stream(products=120, events=900, seed=2)
    chunks = [stream[i : i + 30] for i in range(0, len(stream), 30)]

    def produce_in_chunks() -> None:
        for chunk in chunks:
            produce_stream(stack, chunk)
            time.sleep(0.15)

    producing = threading.Thread(target=produce_in_chunks)
    producing.start()
    wait_for(lambda: len(stack.indexed()) >= 10, 60, "the first products to be indexed")
    stack.kill("embedder")
    time.sleep(1.0)
    stack.kill("sink")
    time.sleep(1.0)
    stack.start("embedder", "sink")
    time.sleep(3.0)
    stack.kill("embedder")  # and once more, while it is catching up
    stack.start("embedder")
    producing.join()
    stack.wait_indexed(expected_state(stream), timeout_s=180)


def test_sigterm_finishes_in_flight_work_and_a_restart_resumes(stack: Stack) -> None:
    stack.start("embedder", "sink", "api")
    stream = random_stream(products=60, events=300, seed=3)
    produce_stream(stack, stream[:150])
    wait_for(lambda: len(stack.indexed()) >= 5, 60, "some products indexed")
    assert stack.terminate("embedder") == 0
    assert stack.terminate("sink") == 0
    produce_stream(stack, stream[150:])
    stack.start("embedder", "sink")
    stack.wait_indexed(expected_state(stream), timeout_s=120)
    assert "stopped" in stack.log("embedder")


def test_a_milvus_restart_mid_stream_is_waited_out(
    stack: Stack, milvus_server: MilvusServer | None
) -> None:
    if milvus_server is None:
        pytest.skip("Milvus is external to the tests")
    stack.start("embedder", "sink", "api")
    stream = random_stream(products=50, events=300, seed=4)
    produce_stream(stack, stream[:100])
    wait_for(lambda: len(stack.indexed()) >= 5, 60, "some products indexed")
    milvus_server.kill()
    produce_stream(stack, stream[100:])
    time.sleep(3)
    import httpx

    assert httpx.get(f"{stack.api}/readyz", timeout=30).status_code == 503
    milvus_server.start()
    stack.wait_indexed(expected_state(stream), timeout_s=180)
    assert httpx.get(f"{stack.api}/readyz", timeout=30).status_code == 200
    stack.assert_running()
    assert stack.children["sink"].running and stack.children["embedder"].running


def test_sigterm_while_milvus_is_down_exits_cleanly_and_loses_nothing(
    stack: Stack, milvus_server: MilvusServer | None
) -> None:
    if milvus_server is None:
        pytest.skip("Milvus is external to the tests")
    stack.start("embedder", "sink", "api")
    stack.publish(event("before", 1, image=SMALL))
    stack.wait_indexed({"before": 1})
    milvus_server.kill()
    try:
        stack.publish(event("during", 1, image=SMALL))
        wait_for(lambda: "retrying" in stack.log("sink"), 60, "the sink to wait for Milvus")
        assert stack.terminate("sink") == 0
    finally:
        milvus_server.start()
    assert "Traceback" not in stack.log("sink")
    stack.start("sink")  # the batch it held was not committed: the next sink writes it
    stack.wait_indexed({"before": 1, "during": 1})
