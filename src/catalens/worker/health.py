"""A tiny HTTP health endpoint for the workers (embedder, sink).

``GET /healthz``: 200 while the service loop has turned within ``stale_after_s``
(liveness: a stuck loop turns it 503 and the supervisor restarts the process).
``GET /readyz``: 200 while the service reports its dependencies usable (readiness).
``GET /metrics``: the worker's Prometheus metrics, when it has them (catalens.worker.metrics).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from catalens.worker.lag import watch_lag
from catalens.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


def serve_health(
    port: int,
    *,
    last_turn: Callable[[], float],
    ready: Callable[[], bool],
    stale_after_s: float = 60.0,
    host: str = "0.0.0.0",
    metrics: Callable[[], bytes] | None = None,
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics" and metrics is not None:
                self._send(200, CONTENT_TYPE_LATEST, metrics())
                return
            age = time.monotonic() - last_turn()
            if self.path == "/healthz":
                ok = age < stale_after_s
            elif self.path == "/readyz":
                ok = ready()
            else:
                self.send_error(404)
                return
            body = json.dumps({"ok": ok, "loop_age_s": round(age, 3)}).encode()
            self._send(200 if ok else 503, "application/json", body)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("health endpoint on %s:%d", host, port)
    return server


def serve_worker(
    port: int,
    *,
    last_turn: Callable[[], float],
    ready: Callable[[], bool],
    metrics: WorkerMetrics,
    lag: Callable[[], Mapping[int, int] | None],
    group: str,
    topic: str,
    stop: threading.Event,
) -> ThreadingHTTPServer:
    """:func:`serve_health` with the worker's metrics at ``/metrics``, and its group's lag
    on ``topic`` refreshed from ``lag`` (partition → records behind; None: nothing
    committed yet) until ``stop``."""
    watch_lag(metrics, lambda: lag() or {}, group=group, topic=topic, stop=stop)
    return serve_health(port, last_turn=last_turn, ready=ready, metrics=metrics.render)
