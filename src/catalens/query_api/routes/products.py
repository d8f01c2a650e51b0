from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response

from catalens.query_api.deps import Services, ServicesDep
from catalens.query_api.errors import NotFound
from catalens.query_api.paths import DecodedParams
from catalens.query_api.responses import PRODUCT, PRODUCT_IMAGE
from catalens.query_api.routes.search import Options, Result, SearchResponse, run_search
from catalens.store.expressions import literal
from catalens.store.values import Row

# Ids may hold '/': the app routes this prefix on the encoded path (query_api.paths).
router = APIRouter(prefix="/products", tags=["products"], route_class=DecodedParams)

ProductId = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=256,
        description="any product id, percent-encoded as one path segment (ABC/1 → ABC%2F1)",
        examples=["0108775015"],
    ),
]


def _row(services: Services, product_id: str, *, with_vector: bool = False) -> Row:
    rows = services.store.get([product_id], with_vector=with_vector)
    if not rows:
        raise NotFound(f"no product {product_id!r} in the index")
    return rows[0]


@router.get("/{product_id}", response_model=Result, responses=PRODUCT)
def product(services: ServicesDep, product_id: ProductId) -> Result:
    """One indexed product (score 1.0: it is itself)."""
    row = _row(services, product_id)
    return Result(
        product_id=row.product_id,
        score=1.0,
        version=row.version,
        attributes=row.attributes,
        image=row.image,
    )


@router.get("/{product_id}/similar", response_model=SearchResponse, responses=PRODUCT)
def similar(services: ServicesDep, product_id: ProductId, options: Options) -> SearchResponse:
    """Products closest to this one's stored vector (nothing is re-encoded)."""
    started = time.perf_counter()
    row = _row(services, product_id, with_vector=True)
    return run_search(
        services, row.vector, options, started=started, also=f"product_id != {literal(product_id)}"
    )


@router.get(
    "/{product_id}/image",
    response_model=None,
    response_class=Response,  # no JSON on success: the image, or a redirect to it
    responses={
        200: {
            "description": "The image (a file or a stored thumbnail).",
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        307: {
            "description": "The image is at a URL.",
            "headers": {
                "Location": {"description": "the image's URL", "schema": {"type": "string"}}
            },
        },
        **PRODUCT_IMAGE,
    },
)
def image(services: ServicesDep, product_id: ProductId) -> Response:
    """The product's image: URLs redirect, files under the image roots are served,
    inline images come from the stored thumbnail."""
    ref = _row(services, product_id).image
    if not ref:
        raise NotFound(f"product {product_id!r} has no image to show")
    if ref.startswith(("http://", "https://")):
        return RedirectResponse(ref, status_code=307)
    if ref.startswith("data:"):
        header, _, payload = ref.partition(",")
        media = header[len("data:") :].split(";")[0] or "image/jpeg"
        return Response(
            base64.b64decode(payload), media_type=media, headers={"Cache-Control": "max-age=3600"}
        )
    path = Path(ref).resolve()
    roots = [root.resolve() for root in services.settings.image_roots]
    if not any(path.is_relative_to(root) for root in roots) or not path.is_file():
        raise NotFound(f"the image of {product_id!r} is not under the API's image roots")
    return FileResponse(path, headers={"Cache-Control": "max-age=3600"})
