"""A tiny HTTP health endpoint for the workers (embedder, sink).

``GET /healthz``: 200 while the service loop has turned within ``stale_after_s``
(liveness: a stuck loop turns it 503 and the supervisor restarts the process).
``GET /readyz``: 200 while the service reports its dependencies usable (readiness).
``GET /metrics``: the worker's Prometheus metrics, when it has them (catalens.worker.metrics).
Every error (a 503 of the checks, an unknown path, an unsupported method) answers JSON
``{"error": code, "message": text}``, the query API's shape.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from catalens.worker.lag import watch_lag
from catalens.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

NOT_READY = (
    "not ready: Kafka or Milvus cannot be used now, or the worker stopped consuming"
    " (its log says why)"
)
# The error codes the query API gives the same statuses (catalens.query_api.errors).
ERROR_CODES = {404: "not_found", 503: "unavailable"}


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
                if age >= stale_after_s:
                    self.send_error(
                        503,
                        f"the service loop last turned {age:.1f} s ago"
                        f" (limit {stale_after_s:g} s): it is stuck",
                    )
                    return
            elif self.path == "/readyz":
                if not ready():
                    self.send_error(503, NOT_READY)
                    return
            else:
                paths = "/healthz, /readyz" + (", /metrics" if metrics is not None else "")
                self.send_error(404, f"no such path: {self.path} (this worker serves {paths})")
                return
            body = json.dumps({"ok": True, "loop_age_s": round(age, 3)}).encode()
            self._send(200, "application/json", body)

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """Every error, the server's own included (an unsupported method, a malformed
            request), as JSON ``{"error": code, "message": text}``, as the query API answers."""
            status = HTTPStatus(code)
            error = ERROR_CODES.get(code, status.phrase.lower().replace(" ", "_").replace("-", "_"))
            body = json.dumps({"error": error, "message": message or status.phrase}).encode()
            if getattr(self, "command", None) == "HEAD":
                body = b""
            self.close_connection = True
            self._send(code, "application/json", body)

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
