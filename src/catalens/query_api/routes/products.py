from __future__ import annotations

import base64
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from catalens.query_api.deps import Services, ServicesDep
from catalens.query_api.errors import NotFound
from catalens.query_api.paths import DecodedParams
from catalens.query_api.responses import PRODUCT, PRODUCT_IMAGE, SIMILAR
from catalens.query_api.routes.search import Options, SearchResponse, run_search
from catalens.schemas.event import MAX_IMAGE_ID, AttributeValue
from catalens.store.values import Product

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


class ProductImageOut(BaseModel):
    id: str = Field(description="the image's id within the product")
    image: str | None = Field(
        description="URL, path or data URI of the image (GET /products/{id}/image?id=... "
        "serves any of them)"
    )


class ProductOut(BaseModel):
    """One indexed product with all its images, main image first."""

    product_id: str
    score: float = Field(default=1.0, description="1.0: the product is itself")
    version: int
    attributes: dict[str, AttributeValue]
    image: str | None = Field(default=None, description="its main image (the first)")
    name: str | None = None
    description: str | None = None
    images: list[ProductImageOut]


def _product(services: Services, product_id: str, *, with_vectors: bool = False) -> Product:
    found = services.store.products([product_id], with_vectors=with_vectors)
    if not found:
        raise NotFound(f"no product {product_id!r} in the index")
    return found[0]


@router.get("/{product_id}", response_model=ProductOut, responses=PRODUCT)
def product(services: ServicesDep, product_id: ProductId) -> ProductOut:
    """One indexed product, with its images."""
    found = _product(services, product_id)
    return ProductOut(
        product_id=found.product_id,
        version=found.version,
        attributes=found.attributes,
        image=found.images[0].image,
        name=found.name or None,
        description=found.description or None,
        images=[ProductImageOut(id=i.id, image=i.image) for i in found.images],
    )


@router.get("/{product_id}/similar", response_model=SearchResponse, responses=SIMILAR)
def similar(
    services: ServicesDep, response: Response, product_id: ProductId, options: Options
) -> SearchResponse:
    """Other products closest to any of this one's images (its stored vectors: nothing is
    re-encoded), each once."""
    started = time.perf_counter()
    found = _product(services, product_id, with_vectors=True)
    vectors = [i.vector for i in found.images if i.vector is not None]
    filters = replace(options.filters, excluded=(*options.filters.excluded, product_id))
    search = replace(options.search(vectors, services), filters=filters)
    return run_search(services, search, started=started, response=response)


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
def image(
    services: ServicesDep,
    product_id: ProductId,
    id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_IMAGE_ID,
            description="which of the product's images (its id); default: its main image",
        ),
    ] = None,
) -> Response:
    """One of the product's images: URLs redirect, files under the image roots are served,
    inline images come from the stored thumbnail."""
    found = _product(services, product_id)
    chosen = found.images[0] if id is None else next((i for i in found.images if i.id == id), None)
    if chosen is None:
        raise NotFound(f"product {product_id!r} has no image {id!r}")
    ref = chosen.image
    if not ref:
        raise NotFound(f"image {chosen.id!r} of product {product_id!r} has nothing to show")
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
