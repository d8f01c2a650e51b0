"""A tiny HTTP health endpoint for the workers (embedder, sink).

``GET /healthz``: 200 while the service loop has turned within ``stale_after_s``
(liveness: a stuck loop turns it 503 and the supervisor restarts the process).
``GET /readyz``: 200 while the service reports its dependencies usable (readiness).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


def serve_health(
    port: int,
    *,
    last_turn: Callable[[], float],
    ready: Callable[[], bool],
    stale_after_s: float = 60.0,
    host: str = "0.0.0.0",
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            age = time.monotonic() - last_turn()
            if self.path == "/healthz":
                ok = age < stale_after_s
            elif self.path == "/readyz":
                ok = ready()
            else:
                self.send_error(404)
                return
            body = json.dumps({"ok": ok, "loop_age_s": round(age, 3)}).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("health endpoint on %s:%d", host, port)
    return server
