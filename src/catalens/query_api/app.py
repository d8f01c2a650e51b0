"""The FastAPI application. Expensive objects (the CLIP text tower, the Milvus client)
are built once in the lifespan, never at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from catalens import __version__
from catalens.encoder import ClipEncoder
from catalens.query_api import errors
from catalens.query_api.deps import Services
from catalens.query_api.routes import health, search
from catalens.query_api.search import TextVectors
from catalens.retry import TransientError
from catalens.settings import ApiSettings
from catalens.store import VectorStore

log = logging.getLogger(__name__)


def build_services(settings: ApiSettings) -> Services:
    encoder = ClipEncoder(
        settings.model, towers=("text",), device=settings.device, precision=settings.precision
    )
    store = VectorStore(
        settings.milvus_uri,
        settings.milvus_token.get_secret_value() if settings.milvus_token else None,
        alias=settings.collection,
    )
    store.use()
    return Services(
        settings=settings,
        encoder=encoder,
        store=store,
        texts=TextVectors(encoder.encode_texts, settings.text_cache_size),
    )


def create_app(
    settings: ApiSettings, build: Callable[[ApiSettings], Services] = build_services
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        while True:
            try:
                app.state.services = build(settings)
                break
            except TransientError as exc:  # Milvus not up yet: wait, as every service does
                log.warning("%s; retrying", exc)
                import asyncio

                await asyncio.sleep(1)
        log.info("query API ready (model %s, collection %s)", settings.model, settings.collection)
        yield
        app.state.services.store.close()

    app = FastAPI(
        title="Catalens",
        version=__version__,
        lifespan=lifespan,
        description="Text-to-image product search over a continuously fresh index.",
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(search.router)
    return app
