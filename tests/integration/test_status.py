"""``catalens status`` against a running deployment: the real broker, the real Milvus and
the real services, plus workers that answer with metrics, without them, or not at all."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from catalens.dev.localstack import free_port
from tests.integration.stack import Stack, event
from tests.integration.test_guarantees import SMALL
from tests.waits import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def metrics_worker() -> Iterator[str]:
    """A worker's /metrics serving a real registry with the sink's freshness histogram:
    20 writes within 1 s of their event, 80 within 2 s."""
    registry = CollectorRegistry()
    freshness = Histogram(
        "catalens_freshness_seconds", "freshness", buckets=(1, 2, 5), registry=registry
    )
    for value in [0.5] * 20 + [1.5] * 80:
        freshness.observe(value)
    body = generate_latest(registry)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def status(stack: Stack, *workers: str) -> tuple[int, dict[str, Any]]:
    argv = ["status", "--json"]
    for worker in workers:
        argv += ["--worker", worker]
    done = stack.cli(*argv)
    assert done.stdout, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def test_status_shows_groups_generation_rows_dead_letters_and_freshness(
    stack: Stack, metrics_worker: str
) -> None:
    stack.start("sink", "embedder")
    good = [event(f"p{i}", 1, image=SMALL) for i in range(5)]
    stack.publish(*good)
    stack.produce(
        [
            (b"bad-1", b"{not json"),
            (b"bad-2", b"[nor this]"),
            (b"gone", event("gone", 1, image={"path": str(stack.images / "nope.jpg")})),
        ]
    )
    wait_for(
        lambda: len(stack.products([e["product_id"] for e in good])) == len(good), 90, "the rows"
    )
    stack.dead_letters(3)

    gone = f"http://127.0.0.1:{free_port()}"
    sink = stack.metrics_url("sink").removesuffix("/metrics")  # a worker's base URL

    def settled() -> tuple[int, dict[str, Any]] | None:
        # Offsets are committed about every second after the writes: wait for both groups.
        code, report = status(stack, metrics_worker, sink, gone)
        lags = {g["group"]: g["lag"] for g in report["groups"]}
        embedder, sink_group = f"t{stack.name}-embedder", f"t{stack.name}-sink"
        committed = lags.get(embedder) is not None and lags.get(sink_group) is not None
        return (code, report) if committed else None

    code, report = wait_for(settled, 60, "both groups to have committed", every_s=1)

    groups = {(g["group"], g["topic"]): g for g in report["groups"]}
    embedder_group = groups[(f"t{stack.name}-embedder", stack.input_topic)]
    sink_group = groups[(f"t{stack.name}-sink", stack.embeddings_topic)]
    # One entry per partition, summing to the total (the values themselves are not checked:
    # the development broker reports end offsets wrong).
    for group in (embedder_group, sink_group):
        assert group["partitions"] and all(p.isdigit() for p in group["partitions"])
        assert group["lag"] == sum(group["partitions"].values())
    # The generation's default groups are listed too; nobody used them here.
    model_groups = [g for g in report["groups"] if g["group"].startswith("catalens-")]
    assert len(model_groups) == 2 and all(g["lag"] is None for g in model_groups)

    [generation] = report["generations"]
    assert generation["rows"] == len(good)
    assert generation["serving"] is True

    assert report["dead_letters"]["by_reason"] == {"invalid_json": 2, "image_not_found": 1}
    assert report["dead_letters"]["unreadable"] == 0

    workers = {w["url"]: w for w in report["workers"]}
    assert workers[metrics_worker]["reachable"] is True
    assert workers[metrics_worker]["freshness_samples"] == 100
    assert workers[gone]["reachable"] is False and workers[gone]["error"]
    # The real sink's /metrics: one freshness sample for each row it wrote.
    assert workers[sink]["reachable"] is True
    assert workers[sink]["roles"] == ["sink"]
    assert workers[sink]["freshness_samples"] == len(good)
    assert report["freshness_seconds"]["samples"] == 100 + len(good)
    assert report["errors"] == {}
    assert code == 1  # a worker could not be read

    # The generations are the ones `catalens index status` shows.
    index = json.loads(stack.cli("index", "status", "--json").stdout)
    assert index == report["generations"]
    # The same report for people.
    text = stack.cli("status", "--worker", metrics_worker).stdout
    assert f"t{stack.name}-sink" in text and "invalid_json: 2" in text
    assert "p50 1.38 s  p99 1.99 s" in text


def test_status_with_milvus_and_no_workers_away_says_so_and_fails(stack: Stack) -> None:
    stack.extra_env["CATALENS_MILVUS_URI"] = f"http://127.0.0.1:{free_port()}"
    code, report = status(stack)
    assert code == 1
    assert "generations" in report["errors"]
    assert report["generations"] == []
    assert report["dead_letters"] is not None  # Kafka was there
    assert report["workers"] == []
    assert report["freshness_seconds"]["p50"] is None
