"""The pure parts of ``catalens status``: quantiles from histogram buckets, dead letters
counted by reason, worker metrics read from Prometheus text, and the report."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from catalens.index.commands import GenerationStatus
from catalens.ops import cli
from catalens.ops import status as status_module
from catalens.ops.status import (
    DeadLetterCounts,
    GroupLag,
    Status,
    WorkerScrape,
    count_dead_letters,
    fetch_worker,
    histogram_buckets,
    histogram_quantile,
    merge_buckets,
    read_worker,
    render,
    render_generations,
)
from catalens.schemas import DeadLetter
from catalens.schemas.dead_letter import Reason
from catalens.store.admin import Generation, Layout
from catalens.store.indexes import IndexSpec
from catalens.store.values import ModelIdentity

INF = math.inf


def test_a_quantile_is_interpolated_inside_the_bucket_that_holds_its_rank() -> None:
    # 10 observations <= 1, 10 more in (1, 2], none above.
    buckets = [(1.0, 10.0), (2.0, 20.0), (INF, 20.0)]
    assert histogram_quantile(0.5, buckets) == 1.0
    assert histogram_quantile(0.75, buckets) == pytest.approx(1.5)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.5)  # first bucket from 0
    assert histogram_quantile(1.0, buckets) == 2.0


def test_a_quantile_in_the_inf_bucket_is_the_highest_finite_bound_like_prometheus() -> None:
    buckets = [(0.5, 1.0), (1.0, 2.0), (INF, 100.0)]
    assert histogram_quantile(0.99, buckets) == 1.0


def test_buckets_are_read_in_bound_order_whatever_order_they_come_in() -> None:
    assert histogram_quantile(0.75, [(INF, 20.0), (2.0, 20.0), (1.0, 10.0)]) == pytest.approx(1.5)


def test_an_empty_histogram_or_one_without_an_inf_bucket_has_no_quantile() -> None:
    assert histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(1.0, 3.0)]) is None


def test_a_quantile_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(1.5, [(1.0, 1.0), (INF, 1.0)])


def test_the_quantiles_agree_with_the_observations_of_a_real_prometheus_histogram() -> None:
    registry = CollectorRegistry()
    histogram = Histogram(
        "catalens_freshness_seconds", "f", buckets=(1, 2, 5, 10, 30, 60), registry=registry
    )
    for value in [0.5] * 50 + [4.0] * 40 + [20.0] * 9 + [100.0]:
        histogram.observe(value)
    buckets = histogram_buckets(generate_latest(registry).decode(), "catalens_freshness_seconds")
    assert buckets == [
        (1.0, 50.0),
        (2.0, 50.0),
        (5.0, 90.0),
        (10.0, 90.0),
        (30.0, 99.0),
        (60.0, 99.0),
        (INF, 100.0),
    ]
    assert histogram_quantile(0.5, buckets) == 1.0
    assert histogram_quantile(0.9, buckets) == 5.0
    assert histogram_quantile(0.99, buckets) == 30.0


def test_histograms_of_several_workers_or_label_sets_are_summed_by_bound() -> None:
    assert merge_buckets([[(1.0, 2.0), (INF, 3.0)], [(1.0, 1.0), (INF, 5.0)]]) == [
        (1.0, 3.0),
        (INF, 8.0),
    ]
    registry = CollectorRegistry()
    histogram = Histogram("h_seconds", "h", ["role"], buckets=(1,), registry=registry)
    histogram.labels("a").observe(0.5)
    histogram.labels("b").observe(3)
    text = generate_latest(registry).decode()
    assert histogram_buckets(text, "h_seconds") == [(1.0, 1.0), (INF, 2.0)]
    assert histogram_buckets(text, "catalens_freshness_seconds") is None


def _letter(reason: Reason, failed_at: datetime) -> bytes:
    letter = DeadLetter.of(
        reason=reason, message="m", topic="t", partition=0, offset=1, key=b"k", value=b"v"
    )
    return letter.model_copy(update={"failed_at": failed_at}).model_dump_json().encode()


def test_dead_letters_are_counted_by_reason_within_the_window_most_frequent_first() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    since = now - timedelta(hours=1)
    values: list[bytes | None] = [
        _letter(Reason.IMAGE_NOT_FOUND, now),
        _letter(Reason.INVALID_JSON, now - timedelta(minutes=5)),
        _letter(Reason.IMAGE_NOT_FOUND, now - timedelta(minutes=59)),
        _letter(Reason.CORRUPT_IMAGE, now - timedelta(hours=2)),  # before the window
        b"not a dead letter",
        None,
    ]
    counts = count_dead_letters(values, since)
    assert counts.by_reason == {"image_not_found": 2, "invalid_json": 1}
    assert list(counts.by_reason) == ["image_not_found", "invalid_json"]
    assert counts.unreadable == 2
    assert counts.to_json()["total"] == 3


def test_a_dead_letter_written_without_a_time_zone_counts_as_utc() -> None:
    since = datetime(2026, 12, 1, 11, tzinfo=UTC)
    naive = [_letter(Reason.INVALID_JSON, datetime(2026, 12, 1, 12)), None]
    naive.append(_letter(Reason.INVALID_JSON, datetime(2026, 12, 1, 10)))  # before it
    assert count_dead_letters(naive, since).by_reason == {"invalid_json": 1}


def test_the_status_command_runs_and_prints_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command's wiring (settings, logging, collect, output), its reading mocked."""
    monkeypatch.setattr(status_module, "collect", lambda *_a, **_k: Status())
    assert cli.main(["status", "--json"]) == 0
    assert "groups" in json.loads(capsys.readouterr().out)


def _metrics_text() -> str:
    registry = CollectorRegistry()
    ready = Gauge("catalens_ready", "r", ["role"], registry=registry)
    ready.labels("sink").set(1)
    freshness = Histogram("catalens_freshness_seconds", "f", buckets=(1, 10), registry=registry)
    freshness.observe(0.5)
    freshness.observe(5)
    return generate_latest(registry).decode()


def test_a_workers_metrics_give_its_role_readiness_and_freshness() -> None:
    worker = read_worker("http://sink:8082", _metrics_text())
    assert worker.roles == ("sink",)
    assert worker.ready is True
    assert worker.freshness == [(1.0, 1.0), (10.0, 2.0), (INF, 2.0)]
    assert worker.to_json()["freshness_samples"] == 2


def test_a_worker_without_these_metrics_is_up_with_nothing_known() -> None:
    worker = read_worker("http://x", "# nothing here\n")
    assert (worker.roles, worker.ready, worker.freshness, worker.error) == ((), None, None, None)


class _Server:
    def __init__(self, status: int, body: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status if self.path == "/metrics" else 404)
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def metrics_server() -> Iterator[_Server]:
    server = _Server(200, _metrics_text())
    yield server
    server.httpd.shutdown()


def test_a_worker_is_read_at_metrics_below_its_base_url(metrics_server: _Server) -> None:
    for url in (metrics_server.url, metrics_server.url + "/", metrics_server.url + "/metrics"):
        worker = fetch_worker(url)
        assert worker.error is None, worker.error
        assert worker.roles == ("sink",)


def test_a_worker_that_answers_no_metrics_or_nothing_is_reported_unreachable_with_why() -> None:
    missing = _Server(404, "")
    try:
        assert "answered 404" in (fetch_worker(missing.url).error or "")
    finally:
        missing.httpd.shutdown()
    port = missing.httpd.server_address[1]  # closed now
    missing.httpd.server_close()
    gone = fetch_worker(f"http://127.0.0.1:{port}", timeout_s=2)
    assert gone.error is not None and "Connect" in gone.error
    assert gone.to_json()["reachable"] is False


def _status() -> Status:
    return Status(
        groups=[
            GroupLag("catalens-embedder.m", "in", {0: 3, 1: 0}),
            GroupLag("catalens-sink.m", "emb", None),
        ],
        generations=[
            GenerationStatus(
                Generation("products__m", Layout(None), 42, True), "products", 3, None
            ),
        ],
        dead_letters=DeadLetterCounts(
            datetime(2026, 12, 1, 11, tzinfo=UTC), {"image_not_found": 2}, 0
        ),
        workers=[
            read_worker("http://sink:8082", _metrics_text()),
            WorkerScrape("http://embedder:8081", error="ConnectError: refused"),
        ],
    )


def test_the_report_for_people_shows_every_part() -> None:
    text = render(_status())
    lines = [line.split() for line in text.splitlines()]
    assert ["catalens-embedder.m", "in", "3", "0:3", "1:0"] in lines
    assert ["catalens-sink.m", "emb", "no", "commits"] in lines
    assert ["m", "?", "HNSW", "?", "42", "?", "no", "yes", "3", "-"] in lines
    assert ["image_not_found:", "2"] in lines
    assert ["http://sink:8082", "ready", "sink", "2"] in lines
    assert "unreachable: ConnectError: refused" in text
    assert "p50 1 s  p99 9.82 s  (2 writes, 1 workers reporting)" in text


def test_the_index_status_table_aligns_one_generation_per_line_and_marks_the_unknown() -> None:
    clip = ModelIdentity("clip-ViT-B-32", 512, "f")
    rows = [
        GenerationStatus(Generation("products__m", Layout(None), 42, True), "products", 3, None),
        GenerationStatus(
            Generation("products__b32", Layout(clip, text=True), 1234567, False),
            "products",
            None,
            12,
        ),
        GenerationStatus(
            Generation(
                "products__b32__ivf_sq8", Layout(clip, index=IndexSpec.of("IVF_SQ8")), 100, False
            ),
            "products",
            None,
            None,
        ),
    ]
    assert render_generations(rows).splitlines() == [
        "name          model          index    dim  rows     memory    words  serving  "
        "embedder behind  sink behind",
        "m             ?              HNSW     ?    42       ?         no     yes      3"
        "                -",
        "b32           clip-ViT-B-32  HNSW     512  1234567  2.5 GiB   yes    no       -"
        "                12",
        "b32__ivf_sq8  clip-ViT-B-32  IVF_SQ8  512  100      50.0 KiB  no     no       -"
        "                -",
    ]
    assert render_generations(rows, indent="  ").splitlines()[1].startswith("  m    ")


def test_the_report_for_machines_is_json_with_every_part() -> None:
    status = _status()
    data = json.loads(json.dumps(status.to_json()))
    assert data["groups"][0] == {
        "group": "catalens-embedder.m",
        "topic": "in",
        "lag": 3,
        "partitions": {"0": 3, "1": 0},
    }
    assert data["groups"][1]["lag"] is None
    assert data["generations"][0]["rows"] == 42
    assert data["dead_letters"]["by_reason"] == {"image_not_found": 2}
    assert data["freshness_seconds"] == {
        "p50": 1.0,
        "p99": pytest.approx(9.82),
        "samples": 2,
        "workers": 1,
    }
    assert [w["reachable"] for w in data["workers"]] == [True, False]
    assert not status.complete


def test_parts_that_could_not_be_read_are_named_not_left_blank() -> None:
    status = Status(errors={"generations": "Milvus away", "dead letters": "Kafka away"})
    text = render(status)
    assert text.count("unknown (see below)") == 2
    assert "generations: Milvus away" in text
    assert "unknown: no worker reports catalens_freshness_seconds" in text
    assert not status.complete
    assert Status().complete
