from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, UploadFile
from pydantic import BaseModel, Field

from catalens.errors import BadInput
from catalens.images import ImageLimits, preprocess
from catalens.query_api.deps import Services, ServicesDep
from catalens.query_api.encoding import MAX_QUERY_CHARS
from catalens.query_api.errors import BadRequest
from catalens.query_api.filters import Filters
from catalens.query_api.responses import IMAGE_SEARCH, TEXT_SEARCH, Responses, product_links
from catalens.schemas.embedding import Vector
from catalens.schemas.event import AttributeValue
from catalens.store.values import Hit

router = APIRouter(tags=["search"])

MAX_K = 1000
MAX_OFFSET = 10_000
# A character that is not white space as str.strip() sees it, in regex syntax that
# JSON Schema (ECMA-262), Python and Rust read alike (each one's \s differs from strip()).
NON_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class Result(BaseModel):
    product_id: str
    score: float = Field(description="cosine similarity, higher is closer")
    version: int
    attributes: dict[str, AttributeValue]
    image: str | None = Field(default=None, description="URL, path or data URI of the image")


class SearchResponse(BaseModel):
    results: list[Result]
    took_ms: float
    model: str = Field(
        description="the model that encoded the query and the results' vectors (one model "
        "per response, also while a new model's generation is being promoted)"
    )


K = Annotated[int, Query(ge=1, le=MAX_K, description="how many results (1-1000)")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="results to skip (paging)")]
# Absent means any category: a plain array in the document (a query string has no null).
Category = Annotated[
    list[str], Query(default_factory=list, max_length=100, description="only these categories")
]
Price = Annotated[
    float | None,
    Query(
        allow_inf_nan=False,
        description="only products whose price attribute is at least (price_min) or at most "
        "(price_max) this; a minimum above the maximum matches nothing",
    ),
]


@dataclass(frozen=True)
class SearchOptions:
    """Paging and filters shared by every search route."""

    k: int
    offset: int
    expr: str


async def search_options(
    category: Category,
    k: K = 10,
    offset: Offset = 0,
    price_min: Price = None,
    price_max: Price = None,
) -> SearchOptions:
    # async, as it never blocks: a plain def would cost a thread-pool hop per request.
    ranges = {"price": (price_min, price_max)} if (price_min, price_max) != (None, None) else {}
    expr = Filters(categories=category or (), ranges=ranges).expression()
    return SearchOptions(k=k, offset=offset, expr=expr)


Options = Annotated[SearchOptions, Depends(search_options)]


def results(hits: list[Hit]) -> list[Result]:
    return [
        Result(
            product_id=h.product_id,
            score=h.score,
            version=h.version,
            attributes=h.attributes,
            image=h.image,
        )
        for h in hits
    ]


def run_search(
    services: Services,
    vector: Vector,
    options: SearchOptions,
    *,
    started: float,
    also: str = "",
) -> SearchResponse:
    """Search with ``options`` (and the extra condition ``also``), timed for metrics."""
    expr = " and ".join(f"({e})" for e in (also, options.expr) if e)
    search_started = time.perf_counter()
    hits = services.store.search(
        [vector], k=options.k, offset=options.offset, expr=expr, ef=services.settings.search_ef
    )[0]
    services.metrics.search.observe(time.perf_counter() - search_started)
    return SearchResponse(
        results=results(hits),
        took_ms=round((time.perf_counter() - started) * 1000, 3),
        model=services.model,
    )


# The first result's product, for clients that follow links.
FOUND: Responses = {200: {"links": product_links("/results/0/product_id")}}


@router.get("/search", response_model=SearchResponse, responses={**FOUND, **TEXT_SEARCH})
def search(
    services: ServicesDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_QUERY_CHARS,
            description="the text to search for, with at least one character that is not "
            "white space (400 otherwise)",
            json_schema_extra={"pattern": NON_BLANK},
            examples=["floral top"],
        ),
    ],
    options: Options,
) -> SearchResponse:
    """Products whose image best matches the text, by descending cosine similarity."""
    started = time.perf_counter()
    if not q.strip():
        raise BadRequest("q must contain a non-blank word")
    vector, cached = services.texts(q)
    services.metrics.cache.labels("hit" if cached else "miss").inc()
    if not cached:
        services.metrics.encode.labels("text").observe(time.perf_counter() - started)
    return run_search(services, vector, options, started=started)


@router.post("/search/image", response_model=SearchResponse, responses={**FOUND, **IMAGE_SEARCH})
def search_by_image(
    services: ServicesDep,
    image: Annotated[UploadFile, File(description="a JPEG, PNG, WebP, ... image")],
    options: Options,
) -> SearchResponse:
    """Products that look like the uploaded image (same limits as the embedder)."""
    started = time.perf_counter()
    limits = ImageLimits(services.settings.max_upload_bytes, services.settings.max_image_pixels)
    data = image.file.read(limits.max_bytes + 1)
    try:
        pixels = preprocess(data, services.encoder.spec, limits)
    except BadInput as exc:
        raise BadRequest(f"{exc.reason.value}: {exc.message}") from None
    vector = services.encoder.encode_images([pixels])[0]
    services.metrics.encode.labels("image").observe(time.perf_counter() - started)
    return run_search(services, vector, options, started=started)
