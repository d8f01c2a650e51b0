"""Prometheus metrics of the query API (``GET /metrics``)."""

from __future__ import annotations

import time

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.0125,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Metrics:
    """One registry per app, so several apps (tests) never share counters."""

    def __init__(self) -> None:
        disable_created_metrics()  # only the documented series, as on the workers
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "catalens_request_seconds",
            "HTTP request latency",
            ["route", "method", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.encode = Histogram(
            "catalens_encode_seconds",
            "query encoding time",
            ["kind"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.search = Histogram(
            "catalens_search_seconds", "Milvus search time", buckets=BUCKETS, registry=self.registry
        )
        self.cache = Counter(
            "catalens_text_cache_total",
            "text embedding cache lookups",
            ["result"],
            registry=self.registry,
        )

    def install(self, app: FastAPI) -> None:
        app.add_middleware(RequestTiming, histogram=self.requests)

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class RequestTiming:
    """ASGI middleware: each HTTP request's latency, by route, method and status.

    A plain ASGI wrapper rather than ``@app.middleware("http")``: Starlette's
    ``BaseHTTPMiddleware`` runs the app in a task of its own and streams the response
    through a memory channel, on the event loop of every request, and never sees a
    request whose handler raised. Here the time is taken when the response has been sent,
    and a request whose handler raised is counted as the 500 the server's error handler
    outside answers.
    """

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            # The router records the matched route in the request's scope as it routes.
            path = getattr(scope.get("route"), "path", "unmatched")
            self.histogram.labels(path, scope["method"], str(status)).observe(
                time.perf_counter() - started
            )
