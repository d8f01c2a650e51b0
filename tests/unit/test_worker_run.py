"""The start-up both workers share (catalens.worker.run): the broker is waited for, the
health endpoint serves while the service runs, and everything is shut however it ends.
Kafka itself is outside the thing under test: creating topics and reading lag are
stood in for at the module's seam."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

import httpx
import pytest

from catalens.errors import Stopped, TransientError
from catalens.settings import CatalensSettings
from catalens.worker import run as worker_run
from catalens.worker.metrics import SinkMetrics
from catalens.worker.run import run_worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """A service whose run() looks at its own health endpoint, then fails."""

    def __init__(self, port: int) -> None:
        self.ready = threading.Event()
        self.healthy_at = time.monotonic()
        self.port = port
        self.seen: dict[str, int] = {}

    def run(self) -> None:
        self.ready.set()
        for path in ("/healthz", "/readyz", "/metrics"):
            self.seen[path] = httpx.get(f"http://127.0.0.1:{self.port}{path}").status_code
        raise RuntimeError("a bug in the service")


def test_a_worker_serves_its_health_while_it_runs_and_shuts_everything_when_it_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created: list[Sequence[str]] = []
    monkeypatch.setattr(worker_run, "ensure_topics", lambda _s, topics: created.append(topics))
    monkeypatch.setattr(worker_run, "partition_lag", lambda _s, _g, _t: {0: 2})
    port = free_port()
    service = Service(port)
    closed: list[bool] = []

    @contextmanager
    def build() -> Iterator[Service]:
        assert created, "the service is built once its topics exist"
        try:
            yield service
        finally:
            closed.append(True)

    stop = threading.Event()
    with pytest.raises(RuntimeError, match="a bug in the service"):
        run_worker(
            CatalensSettings(health_port=port),
            build,
            metrics=SinkMetrics(),
            topics=["in", "out"],
            group="g",
            consumes="in",
            stop=stop,
        )
    stop.set()
    assert created == [["in", "out"]]
    assert service.seen == {"/healthz": 200, "/readyz": 200, "/metrics": 200}
    assert closed == [True]
    with pytest.raises(httpx.ConnectError):  # the endpoint is shut
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_a_worker_waits_for_the_broker_until_it_is_asked_to_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tries: list[int] = []
    stop = threading.Event()

    def unreachable(_settings: CatalensSettings, _topics: Sequence[str]) -> None:
        tries.append(1)
        if len(tries) == 3:
            stop.set()
        raise TransientError("cannot reach Kafka")

    monkeypatch.setattr(worker_run, "ensure_topics", unreachable)

    def build() -> AbstractContextManager[Service]:
        raise AssertionError("nothing is built before the broker answers")

    with pytest.raises(Stopped):
        run_worker(
            CatalensSettings(retry_initial_s=0.01, retry_max_s=0.01),
            build,
            metrics=SinkMetrics(),
            topics=["in"],
            group="g",
            consumes="in",
            stop=stop,
        )
    assert len(tries) == 3
