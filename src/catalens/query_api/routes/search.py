from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field

from catalens.errors import BadInput
from catalens.images import ImageLimits, preprocess
from catalens.query_api.deps import Services, ServicesDep
from catalens.query_api.encoding import MAX_QUERY_CHARS
from catalens.query_api.errors import BadRequest
from catalens.query_api.filters import request_filters
from catalens.query_api.responses import IMAGE_SEARCH, TEXT_SEARCH, Responses, product_links
from catalens.schemas.embedding import Vector
from catalens.schemas.event import AttributeValue
from catalens.store.values import Filters, Fusion, Hit, Mode, ModeUnavailable, Search
from catalens.store.waiting import recording

router = APIRouter(tags=["search"])

MAX_K = 1000
MAX_OFFSET = 10_000
# A character that is not white space as str.strip() sees it, in regex syntax that
# JSON Schema (ECMA-262), Python and Rust read alike (each one's \s differs from strip()).
NON_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


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
    matched_words: list[str] = Field(
        default_factory=list,
        description="keyword and hybrid search: the words of the product's text that the "
        "query matched, where the Milvus server reports them (2.6 and later)",
    )


class SearchResponse(BaseModel):
    results: list[Result]
    took_ms: float
    model: str = Field(
        description="the model that encoded the query and the results' vectors (one model "
        "per response, also while a new model's generation is being promoted)"
    )
    mode: Mode = Field(default="vector", description="how the results were found")


K = Annotated[int, Query(ge=1, le=MAX_K, description="how many products (1-1000)")]
Offset = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description="products to skip (paging; never repeats one)")
]
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
    filters: Filters

    def search(
        self,
        vectors: Sequence[Vector],
        services: Services,
        *,
        text: str = "",
        mode: Mode = "vector",
    ) -> Search:
        settings = services.settings
        return Search(
            vectors=vectors,
            text=text,
            mode=mode,
            k=self.k,
            offset=self.offset,
            filters=self.filters,
            params=settings.search_params,
            fusion=Fusion(
                settings.hybrid_fusion,
                settings.hybrid_rrf_k,
                settings.hybrid_weight,
                settings.hybrid_depth,
            ),
        )


async def search_options(
    request: Request,
    category: Category,
    k: K = 10,
    offset: Offset = 0,
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
            matched_words=list(h.matched_words),
        )
        for h in hits
    ]


def run_search(
    services: Services, search: Search, *, started: float, response: Response
) -> SearchResponse:
    """Run ``search``, timed for metrics and for the client: the ``Server-Timing`` header
    says how long the request waited on Milvus (``milvus``, its calls at once counted
    once) and how long it took in all (``total``), so the time Catalens adds is their
    difference."""
    search_started = time.perf_counter()
    with recording() as waited:
        hits = services.store.search(search)
    services.metrics.search.observe(time.perf_counter() - search_started)
    found = SearchResponse(
        results=results(hits),
        took_ms=round((time.perf_counter() - started) * 1000, 3),
        model=services.model,
        mode=search.mode,
    )
    response.headers["Server-Timing"] = (
        f"milvus;dur={waited.seconds * 1000:.3f}, total;dur={found.took_ms:.3f}"
    )
    return found


# The first result's product, for clients that follow links.
FOUND: Responses = {200: {"links": product_links("/results/0/product_id")}}


@router.get("/search", response_model=SearchResponse, responses={**FOUND, **TEXT_SEARCH})
def search(
    services: ServicesDep,
    response: Response,
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
    mode: Annotated[
        Mode | None,
        Query(
            description="vector: CLIP, the text against every image; keyword: the words of "
            "the products' names, descriptions and text attributes (BM25); hybrid: both, "
            "fused. Default: hybrid where the server can (Milvus 2.5 or later), vector "
            "elsewhere; a mode the server cannot answer is a 400 saying what it needs."
        ),
    ] = None,
) -> SearchResponse:
    """Products matching the text, each once: by their best-matching image (vector), their
    words (keyword) or both (hybrid). Filters: ``category``, ``price_min``,
    ``price_max``, and ``attr.<name>=<value>`` for any attribute."""
    started = time.perf_counter()
    if not q.strip():
        raise BadRequest("q must contain a non-blank word")
    chosen = search_mode(services, mode)
    vectors: list[Vector] = []
    if chosen != "keyword":
        vector, cached = services.texts(q)
        services.metrics.cache.labels("hit" if cached else "miss").inc()
        if not cached:
            services.metrics.encode.labels("text").observe(time.perf_counter() - started)
        vectors = [vector]
    return run_search(
        services,
        options.search(vectors, services, text=q, mode=chosen),
        started=started,
        response=response,
    )


def search_mode(services: Services, asked: Mode | None) -> Mode:
    """The mode asked for, or the default; a 400 for one the index cannot answer."""
    offered = services.store.capabilities()
    configured = services.settings.search_mode
    mode: Mode = asked or (offered.default_mode if configured == "auto" else configured)
    if mode not in offered.modes:
        raise ModeUnavailable(mode, offered.missing)
    return mode


@router.post("/search/image", response_model=SearchResponse, responses={**FOUND, **IMAGE_SEARCH})
def search_by_image(
    services: ServicesDep,
    response: Response,
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
    search = options.search([vector], services)
    return run_search(services, search, started=started, response=response)
