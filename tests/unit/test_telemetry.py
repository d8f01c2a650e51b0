"""The workers' metrics: the agreed names, served over HTTP beside the health checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from catalens.errors import TransientError
from catalens.worker.health import serve_health, serve_worker
from catalens.worker.lag import watch_lag
from catalens.worker.metrics import EmbedderMetrics, SinkMetrics, WorkerMetrics
from tests.metrics_scrape import exported_names, scrape, value
from tests.waits import wait_for

# The names docs/metrics.md promises (the dashboards and alert rules rely on them).
COMMON = {
    "catalens_records_total",
    "catalens_dead_letters_total",
    "catalens_consumer_lag",
    "catalens_in_flight_records",
    "catalens_in_flight_bytes",
    "catalens_paused",
    "catalens_ready",
}
EMBEDDER_ONLY = {
    "catalens_dead_letter_storm",
    "catalens_embedder_fetch_seconds_bucket",
    "catalens_embedder_decode_seconds_bucket",
    "catalens_embedder_inference_seconds_bucket",
    "catalens_embedder_batch_size_bucket",
}
SINK_ONLY = {
    "catalens_freshness_seconds_bucket",
    "catalens_pipeline_latency_seconds_bucket",
    "catalens_sink_read_seconds_bucket",
    "catalens_sink_write_seconds_bucket",
    "catalens_sink_batch_size_bucket",
}


@contextmanager
def serving(
    metrics: WorkerMetrics, ready: threading.Event, lag: dict[int, int] | None = None
) -> Iterator[str]:
    """The worker endpoint on a free port, for the ``with`` block: its base URL."""
    stop = threading.Event()
    server = serve_worker(
        0,
        last_turn=time.monotonic,
        ready=ready.is_set,
        metrics=metrics,
        lag=lambda: lag,
        group="g",
        topic="t",
        stop=stop,
    )
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()


@pytest.mark.parametrize(
    ("role", "own", "other"),
    [(EmbedderMetrics, EMBEDDER_ONLY, SINK_ONLY), (SinkMetrics, SINK_ONLY, EMBEDDER_ONLY)],
)
def test_each_worker_serves_its_agreed_metric_names_beside_the_health_checks(
    role: type[WorkerMetrics], own: set[str], other: set[str]
) -> None:
    metrics = role()
    metrics.dead_lettered("image_not_found")  # a labelled series exists once used
    with serving(metrics, threading.Event(), lag={0: 3}) as url:
        wait_for(
            lambda: "catalens_consumer_lag" in exported_names(f"{url}/metrics"),
            what="the lag to be read",
        )
        names = exported_names(f"{url}/metrics")
        assert COMMON | own <= names
        assert not names & other
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/readyz").status_code == 503


def test_counts_readiness_and_lag_read_back_as_they_were_set() -> None:
    metrics = SinkMetrics()
    metrics.count("written", 5)
    metrics.count("stale", 0)
    metrics.dead_lettered("schema_violation")
    metrics.freshness.observe(0.3)
    ready = threading.Event()
    metrics.follow(ready=ready.is_set, paused=lambda: True)
    ready.set()
    with serving(metrics, ready, lag={0: 7, 1: 0}) as url:
        # The first lag look runs beside the server's start.
        wait_for(
            lambda: "catalens_consumer_lag" in exported_names(f"{url}/metrics"),
            what="the lag to be read",
        )
        families = scrape(f"{url}/metrics")
    sink = {"role": "sink"}
    assert value(families, "catalens_records_total", sink | {"outcome": "written"}) == 5
    # Every outcome is there from the start, at 0, so rates over it exist.
    assert value(families, "catalens_records_total", sink | {"outcome": "stale"}) == 0
    assert {
        s.labels["outcome"]
        for s in families["catalens_records"].samples
        if s.name.endswith("total")
    } == {"written", "deleted", "stale", "skipped", "dead_lettered"}
    assert value(families, "catalens_records_total", sink | {"outcome": "dead_lettered"}) == 1
    assert value(families, "catalens_dead_letters_total", {"reason": "schema_violation"}) == 1
    assert value(families, "catalens_freshness_seconds_count") == 1
    assert value(families, "catalens_ready", sink) == 1
    assert value(families, "catalens_paused", sink) == 1
    lag = {"group": "g", "topic": "t"}
    assert value(families, "catalens_consumer_lag", lag | {"partition": "0"}) == 7
    assert value(families, "catalens_consumer_lag", lag | {"partition": "1"}) == 0


def test_a_failed_lag_look_keeps_the_last_figures_and_tries_again() -> None:
    metrics = EmbedderMetrics()
    looks: list[int] = []

    def read() -> dict[int, int]:
        looks.append(1)
        if len(looks) > 1:
            raise TransientError("broker away")
        return {0: 4}

    stop = threading.Event()
    watcher = watch_lag(metrics, read, group="g", topic="t", stop=stop, every_s=0.01)
    try:
        wait_for(lambda: len(looks) >= 3, what="looks after a failed one")
        assert watcher.is_alive()
    finally:
        stop.set()
    lag = metrics.render().decode()
    assert 'catalens_consumer_lag{group="g",partition="0",topic="t"} 4.0' in lag


def test_the_lag_watcher_outlives_an_unexpected_error() -> None:
    """A bug in one look is logged; the gauge keeps being refreshed (a frozen gauge would
    silence the growing-lag alert)."""
    metrics = SinkMetrics()
    looks: list[int] = []

    def read() -> dict[int, int]:
        looks.append(1)
        if len(looks) == 1:
            raise RuntimeError("unexpected")
        return {0: 5}

    stop = threading.Event()
    thread = watch_lag(metrics, read, group="g", topic="t", stop=stop, every_s=0.02)
    wait_for(lambda: len(looks) >= 3, what="looks after an unexpected error")
    stop.set()
    thread.join(5)
    assert len(looks) >= 3
    lag = metrics.render().decode()
    assert 'catalens_consumer_lag{group="g",partition="0",topic="t"} 5.0' in lag


def test_every_error_of_a_worker_endpoint_is_json_with_a_code_and_a_message() -> None:
    """The query API's shape: a 503 of either check, an unknown path, a method the
    endpoint does not serve."""
    server = serve_health(
        0, last_turn=lambda: time.monotonic() - 120, ready=lambda: False, host="127.0.0.1"
    )
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        answers = {
            "stale": httpx.get(f"{url}/healthz"),
            "unready": httpx.get(f"{url}/readyz"),
            "unknown": httpx.get(f"{url}/nothing-here"),
            "no metrics": httpx.get(f"{url}/metrics"),
            "post": httpx.post(f"{url}/healthz"),
        }
    finally:
        server.shutdown()
    expected = {
        "stale": (503, "unavailable"),
        "unready": (503, "unavailable"),
        "unknown": (404, "not_found"),
        "no metrics": (404, "not_found"),
        "post": (501, "not_implemented"),
    }
    for case, response in answers.items():
        assert response.headers["content-type"] == "application/json", case
        body = response.json()
        assert (response.status_code, body["error"]) == expected[case], case
        assert set(body) == {"error", "message"} and body["message"], case
    assert "120" in answers["stale"].json()["message"]
    assert "/nothing-here" in answers["unknown"].json()["message"]


def test_a_healthy_ready_worker_answers_its_checks_with_200_and_the_loop_age() -> None:
    server = serve_health(0, last_turn=time.monotonic, ready=lambda: True, host="127.0.0.1")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for path in ("/healthz", "/readyz"):
            response = httpx.get(url + path)
            assert response.status_code == 200
            assert response.json()["ok"] is True
            assert 0 <= response.json()["loop_age_s"] < 60
    finally:
        server.shutdown()
