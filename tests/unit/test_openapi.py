"""The OpenAPI document says what the query API answers: every status of every route,
with the one error body, and parameter schemas that are what the API enforces. Checked
over a stand-in index; tests/integration/test_openapi.py runs schemathesis' checks
against the real API."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import numpy as np
import pytest
from fastapi.testclient import TestClient

from catalens.images import PreprocessSpec
from catalens.query_api.app import create_app
from catalens.query_api.deps import Services
from catalens.query_api.errors import ErrorBody
from catalens.query_api.metrics import Metrics
from catalens.retry import TransientError
from catalens.settings import ApiSettings
from catalens.store.memory import MemoryIndex
from catalens.store.values import Hit, Product, Search
from tests.conftest import jpeg_bytes
from tests.unit.test_query_api import index_of, services

Document = dict[str, Any]


class AwayStore(MemoryIndex):
    """Milvus cannot be reached."""

    def products(self, product_ids: Sequence[str], *, with_vectors: bool = False) -> list[Product]:
        raise TransientError("Milvus query failed: server unavailable")

    def search(self, search: Search) -> list[Hit]:
        raise TransientError("Milvus search failed: server unavailable")

    def ping(self) -> None:
        raise TransientError("Milvus ping failed: server unavailable")


def searchable(store: MemoryIndex) -> Any:
    """Services over ``store`` whose towers turn any text or image into one vector."""

    def build(settings: ApiSettings, metrics: Metrics) -> Services:
        fake = services(settings, metrics, store)
        encoder = SimpleNamespace(
            spec=PreprocessSpec(size=32, crop=32),
            encode_images=lambda images: [np.ones(4, dtype=np.float32) for _ in images],
        )
        return replace(
            fake,
            encoder=encoder,  # type: ignore[arg-type]
            texts=lambda q: (np.ones(4, dtype=np.float32), True),  # type: ignore[arg-type]
        )

    return build


@pytest.fixture(scope="module")
def document() -> Document:
    document: Document = create_app(ApiSettings()).openapi()
    return document


@pytest.fixture
def client() -> Iterator[TestClient]:
    store = index_of(["plain", "ABC/123", "bare"])
    store.rows[("bare", "0")] = replace(store.rows[("bare", "0")], image=None)
    with TestClient(create_app(ApiSettings(), build=searchable(store))) as c:
        yield c


@pytest.fixture
def away() -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings(), build=searchable(AwayStore()))) as c:
        yield c


def documented_schema(document: Document, path: str, method: str, status: int) -> Any:
    """The schema the document gives the JSON body of ``status``, resolvable on its own."""
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not document {status}"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def image_upload(data: bytes) -> dict[str, Any]:
    return {"files": {"image": ("q.jpg", data, "image/jpeg")}}


ERRORS: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    # (method, URL, route path, request arguments, status, error code)
    ("get", "/products/nope", "/products/{product_id}", {}, 404, "not_found"),
    ("get", "/products/nope/similar", "/products/{product_id}/similar", {}, 404, "not_found"),
    ("get", "/products/nope/image", "/products/{product_id}/image", {}, 404, "not_found"),
    ("get", "/products/bare/image", "/products/{product_id}/image", {}, 404, "not_found"),
    ("get", f"/products/{quote('é' * 257)}", "/products/{product_id}", {}, 422, "invalid_request"),
    (
        "get",
        "/products/plain/similar?k=0",
        "/products/{product_id}/similar",
        {},
        422,
        "invalid_request",
    ),
    ("get", "/search?q=%20%E2%80%83", "/search", {}, 400, "bad_request"),
    ("get", "/search?q=dress&attr.bad%20name=1", "/search", {}, 400, "invalid_filter"),
    (
        "get",
        "/products/plain/similar?attr.colour=" + "x" * 2049,
        "/products/{product_id}/similar",
        {},
        400,
        "invalid_filter",
    ),
    (
        "post",
        "/search/image?attr.9=1",
        "/search/image",
        image_upload(jpeg_bytes(32, 32)),
        400,
        "invalid_filter",
    ),
    ("get", "/search?q=dress&catgory=Dress", "/search", {}, 422, "invalid_request"),
    ("get", "/search?q=dress&k=1001", "/search", {}, 422, "invalid_request"),
    ("get", "/search?q=dress&k=5&k=6", "/search", {}, 422, "invalid_request"),
    ("get", "/search?q=dress&price_min=nan", "/search", {}, 422, "invalid_request"),
    ("post", "/search/image", "/search/image", image_upload(b"no image"), 400, "bad_request"),
    (
        "post",
        "/search/image",
        "/search/image",
        {
            "content": b"--x\r\nnot a part",
            "headers": {"content-type": "multipart/form-data; boundary=x"},
        },
        400,
        "bad_request",
    ),
    ("post", "/search/image", "/search/image", {"data": {"other": "x"}}, 422, "invalid_request"),
]


@pytest.mark.parametrize(("method", "url", "path", "arguments", "status", "code"), ERRORS)
def test_every_error_a_route_answers_is_documented_with_the_one_error_body(
    client: TestClient,
    document: Document,
    method: str,
    url: str,
    path: str,
    arguments: dict[str, Any],
    status: int,
    code: str,
) -> None:
    response = client.request(method, url, **arguments)
    assert response.status_code == status, response.text
    schema = documented_schema(document, path, method, status)
    jsonschema_rs.validate(schema, response.json())
    assert ErrorBody.model_validate(response.json()).error == code


@pytest.mark.parametrize(
    ("method", "url", "path", "arguments"),
    [
        ("get", "/search?q=dress", "/search", {}),
        ("post", "/search/image", "/search/image", image_upload(jpeg_bytes(seed=1))),
        ("get", "/products/plain", "/products/{product_id}", {}),
        ("get", "/products/plain/similar", "/products/{product_id}/similar", {}),
        ("get", "/products/plain/image", "/products/{product_id}/image", {}),
        ("get", "/readyz", "/readyz", {}),
    ],
)
def test_while_milvus_is_away_every_route_that_reads_the_index_answers_a_documented_503(
    away: TestClient,
    document: Document,
    method: str,
    url: str,
    path: str,
    arguments: dict[str, Any],
) -> None:
    response = away.request(method, url, **arguments)
    assert response.status_code == 503, response.text
    jsonschema_rs.validate(documented_schema(document, path, method, 503), response.json())
    assert ErrorBody.model_validate(response.json()).error == "unavailable"


def test_the_document_lists_exactly_the_statuses_each_route_answers(document: Document) -> None:
    """No route claims 405 (no listed method answers it), 413 (oversized uploads are a
    400) or 429 (no rate limits)."""
    listed = {
        (method.upper(), path): sorted(operation["responses"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert listed == {
        ("GET", "/healthz"): ["200"],
        ("GET", "/readyz"): ["200", "503"],
        ("GET", "/info"): ["200"],
        ("GET", "/search"): ["200", "400", "422", "503"],
        ("POST", "/search/image"): ["200", "400", "422", "503"],
        ("GET", "/products/{product_id}"): ["200", "404", "422", "503"],
        ("GET", "/products/{product_id}/similar"): ["200", "400", "404", "422", "503"],
        ("GET", "/products/{product_id}/image"): ["200", "307", "404", "422", "503"],
    }


def test_every_documented_error_has_the_error_body_and_examples_that_fit_it(
    document: Document,
) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                media = response["content"]["application/json"]
                assert media["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, path
                assert media["examples"], (method, path, status)
                for example in media["examples"].values():
                    ErrorBody.model_validate(example["value"])


def test_search_results_link_to_the_routes_of_their_first_product(document: Document) -> None:
    for path, method in (("/search", "get"), ("/search/image", "post")):
        links = document["paths"][path][method]["responses"]["200"]["links"]
        assert len(links) == 3
        for link in links.values():
            pointer = link["operationRef"].removeprefix("#/paths/")
            target, _, target_method = pointer.rpartition("/")
            target_path = target.replace("~1", "/")
            assert target_method in document["paths"][target_path], link
            assert link["parameters"] == {"product_id": "$response.body#/results/0/product_id"}


def test_the_query_pattern_refuses_exactly_the_texts_the_api_finds_blank(
    document: Document,
) -> None:
    """The document's pattern read as JSON Schema reads it (ECMA-262, by jsonschema_rs)
    and the API's check (``str.strip()``) agree on every character."""
    (q,) = [p for p in document["paths"]["/search"]["get"]["parameters"] if p["name"] == "q"]
    validator = jsonschema_rs.validator_for(q["schema"])
    disagree = [
        hex(code)
        for code in range(0x110000)
        if not 0xD800 <= code <= 0xDFFF and validator.is_valid(chr(code)) != bool(chr(code).strip())
    ]
    assert disagree == []


def test_a_repeated_one_value_parameter_is_refused_and_a_repeated_list_is_served(
    client: TestClient,
) -> None:
    repeated = client.get("/search?q=dress&offset=1&offset=2&k=3")
    assert repeated.status_code == 422
    assert "offset: given more than once" in repeated.json()["message"]
    assert client.get("/search?q=dress&category=Dress&category=Top").status_code == 200


def test_an_inverted_price_range_is_served_not_refused(
    client: TestClient,
) -> None:
    """The document cannot say that price_min must not exceed price_max; a request it
    calls valid is served."""
    response = client.get("/search", params={"q": "dress", "price_min": 5, "price_max": 1})
    assert response.status_code == 200


def attr_object(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The ``attr`` object a client sends as ``pairs`` (form, exploded; a name repeated
    becomes a list, as schemathesis sends a list)."""
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    return {name: given[0] if len(given) == 1 else given for name, given in values.items()}


ATTRIBUTE_QUERIES: list[list[tuple[str, str]]] = [
    [("attr.colour", "Black")],
    [("attr.colour", "Black"), ("attr.colour", "White")],
    [("attr.size", "42"), ("attr.in_stock", "true")],
    [("attr._x9", "v" * 2048)],
    [("attr.colour", "v" * 2049)],
    [("attr.colour\n", "Black")],
    [("attr.bad name", "1")],
    [("attr.9lives", "1")],
    [("attr.", "1")],
    [(f"attr.a{i}", "1") for i in range(100)],
    [(f"attr.a{i}", "1") for i in range(101)],
    [("attr.a", str(v)) for v in range(100)],
    [("attr.a", str(v)) for v in range(101)],
    [("attr.a", str(v)) for v in range(100)] + [("attr.b", str(v)) for v in range(100)],
]


@pytest.mark.parametrize(
    ("url", "path", "base"),
    [
        ("/search", "/search", [("q", "dress")]),
        ("/products/plain/similar", "/products/{product_id}/similar", []),
    ],
)
@pytest.mark.parametrize("pairs", ATTRIBUTE_QUERIES, ids=lambda p: f"{p[0][0]}x{len(p)}")
def test_the_attr_schema_calls_valid_exactly_the_filters_the_api_serves(
    client: TestClient,
    document: Document,
    url: str,
    path: str,
    base: list[tuple[str, str]],
    pairs: list[tuple[str, str]],
) -> None:
    """Valid: served; invalid: refused, with one exception said in the document's words:
    a name repeated ("any of", shared/DESIGN.md) is a list in the exploded object, and
    OpenAPI gives such an object scalar members only (a client generator skips the
    operation otherwise), so the schema calls it invalid and the API serves it."""
    (attr,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "attr"]
    sent = attr_object(pairs)
    valid = jsonschema_rs.validator_for(attr["schema"]).is_valid(sent)
    counts = Counter(name for name, _ in pairs)
    repeated = max(counts.values()) > 1
    within_limits = len(pairs) <= 100
    served = valid or (repeated and within_limits and all(len(v) <= 2048 for _, v in pairs))
    assert "repeatable" in attr["description"]
    response = client.get(url, params=[*base, *pairs])
    assert response.status_code == (200 if served else 400), response.text


def test_every_operation_with_search_filters_documents_the_attr_object(
    document: Document,
) -> None:
    filtered = sorted(
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if any(p["name"] == "attr" for p in operation.get("parameters", ()))
    )
    assert filtered == ["GET /products/{product_id}/similar", "GET /search", "POST /search/image"]


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("/search?q=dress&catgory=Dress", "catgory: "),
        ("/search?q=dress&%C2%AA=1&%C2%AA=2", "\u00aa: "),
        ("/search?q=dress&attr=Black", "attr: "),
        ("/products/plain?k=5", "k: "),
        ("/products/plain/similar?q=dress", "q: "),
        ("/search?q=dress&=Black", '"": '),
    ],
)
def test_a_query_name_the_operation_does_not_declare_is_a_422_naming_it(
    client: TestClient, url: str, named: str
) -> None:
    """Not ignored: ``?catgory=Dress`` served as a search of every category would be a
    wrong answer that looks right. An empty name is named as one."""
    response = client.get(url)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.json()["message"].startswith(named + "not a parameter of this operation")
    assert client.head(url).status_code == 422


def test_the_web_page_keeps_its_own_query_string(client: TestClient) -> None:
    """The page is outside the document: its URL holds a search to share (?q=, ?mode=)."""
    assert client.get("/?q=dress&mode=hybrid&similar=plain").status_code == 200


def test_probes_answer_whatever_their_query_string(client: TestClient) -> None:
    """Operations that take no parameters document no 422, and a probe or a load
    balancer may add a query string: they answer as without it."""
    for url in ("/healthz?probe=1", "/readyz?probe=1", "/info?x=1"):
        assert client.get(url).status_code == 200, url


class ModesAway(MemoryIndex):
    """Milvus cannot be reached to say which search modes it offers."""

    def capabilities(self) -> Any:
        raise TransientError("Milvus describe failed: server unavailable")


def test_a_query_string_is_checked_without_asking_milvus() -> None:
    with TestClient(create_app(ApiSettings(), build=searchable(ModesAway()))) as away:
        assert away.get("/healthz").status_code == 200
        unknown = away.get("/search?q=dress&catgory=Dress")
        assert unknown.status_code == 422, unknown.text
        assert "catgory" in unknown.json()["message"]
