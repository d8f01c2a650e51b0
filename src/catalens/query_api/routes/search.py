from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from pydantic import BaseModel, Field

from catalens.errors import BadInput
from catalens.images import ImageLimits, preprocess
from catalens.query_api.deps import Services, ServicesDep
from catalens.query_api.encoding import MAX_QUERY_CHARS
from catalens.query_api.errors import BadRequest
from catalens.query_api.filters import request_filters
from catalens.schemas.embedding import Vector
from catalens.schemas.event import AttributeValue
from catalens.store.values import Filters, Hit, Search

router = APIRouter(tags=["search"])

MAX_K = 1000
MAX_OFFSET = 10_000


class Result(BaseModel):
    """One product: each appears at most once in a response, with its best-matching image."""

    product_id: str
    score: float = Field(
        description="cosine similarity of the best-matching image, higher is closer"
    )
    version: int
    attributes: dict[str, AttributeValue]
    image: str | None = Field(
        default=None, description="URL, path or data URI of the best-matching image"
    )
    matched_image: str = Field(
        default="0", description="the id of that image among the product's images"
    )
    images: int = Field(default=1, description="how many images the product has")
    name: str | None = Field(default=None, description="the product's name, when it has one")


class SearchResponse(BaseModel):
    results: list[Result]
    took_ms: float
    model: str = Field(
        description="the model that encoded the query and the results' vectors (one model "
        "per response, also while a new model's generation is being promoted)"
    )


K = Annotated[int, Query(ge=1, le=MAX_K, description="how many products (1-1000)")]
Offset = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description="products to skip (paging; never repeats one)")
]
Category = Annotated[list[str] | None, Query(max_length=100, description="only these categories")]
Price = Annotated[float | None, Query(allow_inf_nan=False)]


@dataclass(frozen=True)
class SearchOptions:
    """Paging and filters shared by every search route."""

    k: int
    offset: int
    filters: Filters

    def search(self, vectors: Sequence[Vector], services: Services) -> Search:
        return Search(
            vectors=vectors,
            k=self.k,
            offset=self.offset,
            filters=self.filters,
            ef=services.settings.search_ef,
        )


async def search_options(
    request: Request,
    k: K = 10,
    offset: Offset = 0,
    category: Category = None,
    price_min: Price = None,
    price_max: Price = None,
) -> SearchOptions:
    # async, as it never blocks: a plain def would cost a thread-pool hop per request.
    # Any attribute filters by equality as attr.<name>=<value> (a name repeated: any of).
    filters = request_filters(
        category or (), price_min, price_max, request.query_params.multi_items()
    )
    return SearchOptions(k=k, offset=offset, filters=filters)


Options = Annotated[SearchOptions, Depends(search_options)]


def results(hits: list[Hit]) -> list[Result]:
    return [
        Result(
            product_id=h.product_id,
            score=h.score,
            version=h.version,
            attributes=h.attributes,
            image=h.image,
            matched_image=h.matched_image,
            images=h.images,
            name=h.name or None,
        )
        for h in hits
    ]


def run_search(services: Services, search: Search, *, started: float) -> SearchResponse:
    """Run ``search``, timed for metrics."""
    search_started = time.perf_counter()
    hits = services.store.search(search)
    services.metrics.search.observe(time.perf_counter() - search_started)
    return SearchResponse(
        results=results(hits),
        took_ms=round((time.perf_counter() - started) * 1000, 3),
        model=services.model,
    )


@router.get("/search", response_model=SearchResponse)
def search(
    services: ServicesDep,
    q: Annotated[
        str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="the text to search for")
    ],
    options: Options,
) -> SearchResponse:
    """Products whose images best match the text, each once, by descending cosine
    similarity of its best-matching image. Filters: ``category``, ``price_min``,
    ``price_max``, and ``attr.<name>=<value>`` for any attribute."""
    started = time.perf_counter()
    if not q.strip():
        raise BadRequest("q must contain a non-blank word")
    vector, cached = services.texts(q)
    services.metrics.cache.labels("hit" if cached else "miss").inc()
    if not cached:
        services.metrics.encode.labels("text").observe(time.perf_counter() - started)
    return run_search(services, options.search([vector], services), started=started)


@router.post("/search/image", response_model=SearchResponse)
def search_by_image(
    services: ServicesDep,
    image: Annotated[UploadFile, File(description="a JPEG, PNG, WebP, ... image")],
    options: Options,
) -> SearchResponse:
    """Products with an image that looks like the uploaded one (same limits as the
    embedder), each once, ranked by its closest image."""
    started = time.perf_counter()
    limits = ImageLimits(services.settings.max_upload_bytes, services.settings.max_image_pixels)
    data = image.file.read(limits.max_bytes + 1)
    try:
        pixels = preprocess(data, services.encoder.spec, limits)
    except BadInput as exc:
        raise BadRequest(f"{exc.reason.value}: {exc.message}") from None
    vector = services.encoder.encode_images([pixels])[0]
    services.metrics.encode.labels("image").observe(time.perf_counter() - started)
    return run_search(services, options.search([vector], services), started=started)
