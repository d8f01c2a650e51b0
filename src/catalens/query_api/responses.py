"""What each route can answer besides its success, for the OpenAPI document.

Every error carries the one body :class:`~catalens.query_api.errors.ErrorBody`. A route
declares its statuses by its kind (``responses=PRODUCT`` in its decorator); a new route
takes a kind, or :func:`error_responses` with its own statuses and examples. Only the
statuses the API does answer are listed (a client generator makes a type of each; the
unit tests pin the list and answer each status):

* 400: a request the API cannot serve (a blank query, an upload that is no image, a
  multipart body it cannot parse, an ``attr.*`` filter it cannot apply). Add it to a
  kind, with an example, when its routes learn a case;
* 404: no such product (product routes);
* 405, ``HEAD``, ``OPTIONS``: answered for every path (query_api.methods), described in
  the document's description; no documented method answers 405;
* 413, 429: never (oversized uploads are a 400 ``image_too_large``; no rate limits);
* 422: a parameter or body that breaks its schema;
* 503: Milvus away (every route that reads the index), or, on ``/readyz``, not ready.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from catalens.query_api.errors import ErrorBody

Responses = dict[int | str, dict[str, Any]]

DESCRIPTIONS = {
    400: "The API cannot serve the request as it is; the message says why.",
    404: "No such product in the index.",
    422: "A parameter or the body breaks its schema; the message names it.",
    503: "Milvus cannot be reached now; the API recovers by itself when it is back.",
}

# Examples of each status, by name: (error code, message). 400s have only their routes'.
EXAMPLES: dict[int, dict[str, tuple[str, str]]] = {
    404: {"no_product": ("not_found", "no product 'ABC/123' in the index")},
    422: {"out_of_range": ("invalid_request", "k: Input should be less than or equal to 1000")},
    503: {"milvus_away": ("unavailable", "Milvus search failed: server unavailable")},
}


def error_responses(
    *statuses: int,
    examples: Mapping[int, Mapping[str, tuple[str, str]]] | None = None,
    descriptions: Mapping[int, str] | None = None,
) -> Responses:
    """The ``responses`` of a route that answers ``statuses`` with the error body, each
    with its description (the route's own where given) and examples (the route's own,
    then the generic ones)."""
    own_examples, own_descriptions = examples or {}, descriptions or {}
    listed: Responses = {}
    for status in statuses:
        named = {**own_examples.get(status, {}), **EXAMPLES.get(status, {})}
        listed[status] = {
            "model": ErrorBody,
            "description": own_descriptions.get(status, DESCRIPTIONS[status]),
            "content": {
                "application/json": {
                    "examples": {
                        name: {"value": ErrorBody(error=code, message=message).model_dump()}
                        for name, (code, message) in named.items()
                    }
                }
            },
        }
    return listed


# The kinds of routes, each with the statuses it answers.
_LONG_ID = ("invalid_request", "product_id: String should have at most 256 characters")
# Every route that takes the search filters (routes.search.search_options).
_FILTER = {"invalid_filter": ("invalid_filter", "invalid attribute name 'bad name'")}
PRODUCT = error_responses(  # GET /products/{product_id}
    404, 422, 503, examples={422: {"long_id": _LONG_ID}}
)
SIMILAR = error_responses(  # GET /products/{product_id}/similar
    400, 404, 422, 503, examples={400: _FILTER, 422: {"long_id": _LONG_ID}}
)
PRODUCT_IMAGE = error_responses(  # GET /products/{product_id}/image
    404,
    422,
    503,
    descriptions={404: "No such product, or it has no image this API can show."},
    examples={
        404: {
            "not_under_roots": (
                "not_found",
                "the image of 'ABC/123' is not under the API's image roots",
            )
        },
        422: {"long_id": _LONG_ID},
    },
)
TEXT_SEARCH = error_responses(  # GET /search
    400,
    422,
    503,
    examples={400: {"blank_query": ("bad_request", "q must contain a non-blank word"), **_FILTER}},
)
IMAGE_SEARCH = error_responses(  # POST /search/image
    400,
    422,
    503,
    examples={
        400: {
            "not_an_image": (
                "bad_request",
                "not_an_image: bytes are not a recognised image format",
            ),
            "too_large": (
                "bad_request",
                "image_too_large: image has 20971521 bytes, limit is 20971520",
            ),
            "unparsable_body": ("bad_request", "There was an error parsing the body"),
            **_FILTER,
        },
        422: {"no_image": ("invalid_request", "image: Field required")},
    },
)
READINESS = error_responses(  # GET /readyz
    503,
    descriptions={
        503: "Not ready: Milvus cannot be reached, or the alias serves a generation this "
        "API cannot load (the message says which)."
    },
    examples={
        503: {
            "unservable": (
                "unavailable",
                "the alias serves shop__other_1a2b3c, which this API cannot serve: model "
                "other is not on this machine",
            )
        }
    },
)


def product_links(pointer: str) -> dict[str, Any]:
    """OpenAPI links from a response that names a product (at the JSON ``pointer`` of its
    body) to the routes of that product: a client, and schemathesis' stateful phase,
    follow them from search results to real products."""
    target = {"product_id": f"$response.body#{pointer}"}
    return {
        name: {
            "operationRef": f"#/paths/~1products~1{{product_id}}{tail}/get",
            "parameters": target,
        }
        for name, tail in (
            ("product", ""),
            ("similar", "~1similar"),
            ("image", "~1image"),
        )
    }
