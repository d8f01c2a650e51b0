from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from catalens.query_api.deps import ServicesDep
from catalens.query_api.errors import BadRequest
from catalens.query_api.filters import Filters
from catalens.query_api.search import MAX_QUERY_CHARS, timed_search
from catalens.schemas.event import AttributeValue
from catalens.store import Hit

router = APIRouter(tags=["search"])

MAX_K = 1000
MAX_OFFSET = 10_000


class Result(BaseModel):
    product_id: str
    score: float = Field(description="cosine similarity, higher is closer")
    version: int
    attributes: dict[str, AttributeValue]
    image: str | None = None


class SearchResponse(BaseModel):
    results: list[Result]
    took_ms: float


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


@router.get("/search", response_model=SearchResponse)
def search(
    services: ServicesDep,
    q: Annotated[
        str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="the text to search for")
    ],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many results")] = 10,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="results to skip")] = 0,
    category: Annotated[
        list[str] | None, Query(max_length=100, description="only these categories")
    ] = None,
    price_min: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    price_max: Annotated[float | None, Query(allow_inf_nan=False)] = None,
) -> SearchResponse:
    """Products whose image best matches the text, by descending cosine similarity."""
    started = time.perf_counter()
    if not q.strip():
        raise BadRequest("q must contain a non-blank word")
    expr = Filters(
        categories=category or (),
        ranges={"price": (price_min, price_max)} if (price_min, price_max) != (None, None) else {},
    ).expression()
    vector, _cached = services.texts(q)
    hits, _ = timed_search(
        services.store, vector, k=k, offset=offset, expr=expr, ef=services.settings.search_ef
    )
    return SearchResponse(
        results=results(hits), took_ms=round((time.perf_counter() - started) * 1000, 3)
    )
