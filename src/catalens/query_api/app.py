"""The FastAPI application. Expensive objects (the CLIP towers, the Milvus client) are
built once in the lifespan, never at import time."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from catalens import __version__
from catalens.encoder import ClipEncoder, choose_device, cpu_supports_bf16
from catalens.encoder.files import has_random_weights
from catalens.query_api import errors, parameters
from catalens.query_api.deps import Services
from catalens.query_api.document import serving_document
from catalens.query_api.encoding import TextBatcher, TextVectors
from catalens.query_api.methods import HttpMethods
from catalens.query_api.metrics import Metrics
from catalens.query_api.parameters import declared_query
from catalens.query_api.paths import EncodedPaths
from catalens.query_api.routes import health, info, products, search
from catalens.query_api.serving import AliasFollower, Serving
from catalens.retry import Backoff, retry_transient
from catalens.settings import ApiSettings
from catalens.store import IndexReader
from catalens.store.client import Milvus
from catalens.store.reader import MilvusReader
from catalens.store.values import Mode

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
DESCRIPTION = """Text-to-image product search over a continuously fresh index.

Every error, whatever its status, is JSON `{"error": code, "message": text}`
(`ErrorBody`); each operation lists the statuses it answers. Every path also answers
`HEAD` where it has `GET` (the `GET` answer's status and headers, no body) and `OPTIONS`
(204 with `Allow`); any other method not listed for it answers 405 with `Allow` and the
error body. A request that fits this document is served, except that an uploaded image
must also be a readable image within the limits (400 otherwise)."""


def build_services(settings: ApiSettings, metrics: Metrics) -> Services:
    """The services of the generation the alias serves, following it as it moves."""
    milvus = Milvus.from_settings(settings)

    def load(model: str, collection: str) -> Services:
        return model_services(settings, metrics, model, MilvusReader(milvus, collection))

    return AliasFollower(settings, milvus, load).initial()


def model_services(
    settings: ApiSettings, metrics: Metrics, model: str, store: IndexReader
) -> Services:
    """The towers of ``model`` over ``store``."""
    # Image queries are few: the image tower skips int8 (no calibration at start-up).
    image_precision = settings.precision
    if image_precision == "auto" and choose_device(settings.device) == "cpu":
        image_precision = "bf16" if cpu_supports_bf16() else "fp32"
    encoder = ClipEncoder(
        model,
        towers=("text", "image"),
        device=settings.device,
        precision=image_precision,
        runtime="torch",
        # Every new query text runs the text tower: it takes its own fastest candidate
        # that passes the check on catalog queries (OpenVINO int8 weights on CPUs).
        text_precision=settings.precision,
        text_runtime="auto",
    )
    batcher = TextBatcher(encoder.encode_texts)
    return Services(
        settings=settings,
        encoder=encoder,
        store=store,
        texts=TextVectors(batcher, settings.text_cache_size),
        batcher=batcher,
        metrics=metrics,
        random_weights=has_random_weights(model),
        model=model,
        collection=getattr(store, "collection", settings.collection),
    )


def create_app(
    settings: ApiSettings,
    build: Callable[[ApiSettings, Metrics], Services] = build_services,
) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # What it runs with, for whoever turned DEBUG on to find out (secrets masked).
        log.debug("query API starting with %r", settings)
        # Milvus not up yet: wait, as every service does. Shut down before that, the
        # server cancels this start-up, and the waiting thread must not outlive it.
        stop = threading.Event()
        try:
            services = await asyncio.to_thread(
                retry_transient,
                lambda: build(settings, metrics),
                what="starting the query API",
                backoff=Backoff(settings.retry_initial_s, settings.retry_max_s),
                stop=stop,
            )
        finally:
            stop.set()
        log.info("query API ready (model %s, searching %s)", services.model, services.collection)
        if services.random_weights:
            log.warning(
                "model %s has random weights: search results carry no meaning", services.model
            )
        app.state.serving = Serving(services, settings.alias_poll_s)
        yield
        app.state.serving.close()

    app = FastAPI(
        title="Catalens",
        version=__version__,
        lifespan=lifespan,
        description=DESCRIPTION,
        # ?k=5&k=500 is not an integer, ?catgory=Dress not a filter: 422, not the last
        # value or every category (query_api.parameters).
        dependencies=[Depends(declared_query)],
    )
    errors.install(app)
    # Inside the metrics (added before them), which then count its answers by route.
    app.add_middleware(HttpMethods, routes=app.router.routes)
    metrics.install(app)
    app.include_router(health.router)
    app.include_router(info.router)
    app.include_router(search.router)
    app.include_router(products.router)
    # Added last, so outermost: the metrics middleware inside it sees the matched route.
    app.add_middleware(EncodedPaths, prefixes=[products.router.prefix + "/"])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    built = app.openapi  # FastAPI's, built once and kept

    def served_modes() -> tuple[Mode, ...]:
        serving: Serving | None = getattr(app.state, "serving", None)
        if serving is None:
            return ("vector", "keyword", "hybrid")
        return serving.current.store.capabilities().modes

    app.openapi = lambda: serving_document(built, served_modes)  # type: ignore[method-assign]
    parameters.install(app, serving_document(built, lambda: ("vector",)))
    return app
