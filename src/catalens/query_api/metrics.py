"""Prometheus metrics of the query API (``GET /metrics``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

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
        @app.middleware("http")
        async def timing(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            started = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.requests.labels(path, request.method, str(response.status_code)).observe(
                time.perf_counter() - started
            )
            return response

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
