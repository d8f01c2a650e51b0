"""HEAD, OPTIONS and 405 as RFC 9110 has them, on every route of the query API
(query_api.methods), over a stand-in index."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import quote

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from catalens.query_api.app import create_app
from catalens.query_api.deps import Services
from catalens.query_api.errors import ErrorBody
from catalens.query_api.methods import HttpMethods
from catalens.query_api.metrics import Metrics
from catalens.settings import ApiSettings
from tests.unit.test_query_api import index_of, services

# Searches answer their time (took_ms): their length varies from one run to the next.
TIMED = ["/search?q=dress", f"/products/{quote('ABC/123', safe='')}/similar"]
GET_PATHS = [
    *TIMED,
    "/healthz",
    "/readyz",
    "/info",
    "/products/plain",
    "/products/plain/image",
    "/",
    "/static/app.js",
    "/openapi.json",
]


def searchable(settings: ApiSettings, metrics: Metrics) -> Services:
    """Two products; every query text encodes to the same vector."""
    fake = services(settings, metrics, index_of(["plain", "ABC/123"]))
    return replace(fake, texts=lambda q: (np.ones(4, dtype=np.float32), True))  # type: ignore[arg-type]


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings(), build=searchable)) as c:
        yield c


@pytest.mark.parametrize("path", GET_PATHS)
def test_head_answers_the_status_and_headers_of_get_without_the_body(
    client: TestClient, path: str
) -> None:
    got = client.get(path)
    head = client.head(path)
    assert got.status_code == 200 and got.content
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path in TIMED:
        assert int(head.headers["content-length"]) > 0
    else:
        assert head.headers["content-length"] == str(len(got.content))


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/search", "GET, HEAD, OPTIONS"),
        ("/search/image", "OPTIONS, POST"),
        (f"/products/{quote('ABC/123', safe='')}", "GET, HEAD, OPTIONS"),
        ("/products/plain/image", "GET, HEAD, OPTIONS"),
        ("/static/app.js", "GET, HEAD, OPTIONS"),
    ],
)
def test_options_answers_204_with_the_methods_of_the_path(
    client: TestClient, path: str, allow: str
) -> None:
    response = client.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == allow
    assert response.content == b""


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/search", "GET, HEAD, OPTIONS"),
        ("QUERY", "/search", "GET, HEAD, OPTIONS"),
        ("GET", "/search/image", "OPTIONS, POST"),
        ("HEAD", "/search/image", "OPTIONS, POST"),
        ("DELETE", "/products/plain", "GET, HEAD, OPTIONS"),
        ("POST", f"/products/{quote('ABC/123', safe='')}/similar", "GET, HEAD, OPTIONS"),
        ("PUT", "/healthz", "GET, HEAD, OPTIONS"),
        ("POST", "/static/app.js", "GET, HEAD, OPTIONS"),
    ],
)
def test_a_method_the_path_lacks_gets_405_with_allow_and_the_error_body(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    if method != "HEAD":
        body = ErrorBody.model_validate(response.json())
        assert body.error == "method_not_allowed" and method in body.message


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_a_path_no_route_has_is_404_whatever_the_method(client: TestClient, method: str) -> None:
    response = client.request(method, "/nowhere")
    assert response.status_code == 404
    assert "allow" not in response.headers


def test_allow_names_the_methods_of_every_route_of_a_path() -> None:
    """Starlette's own 405 names the methods of the first route of the path only."""
    app = FastAPI()

    @app.get("/thing")
    def read() -> dict[str, str]:
        return {"read": "yes"}

    @app.delete("/thing")
    def remove() -> dict[str, str]:
        return {"removed": "yes"}

    app.add_middleware(HttpMethods, routes=app.router.routes)
    with TestClient(app) as client:
        assert client.options("/thing").headers["allow"] == "DELETE, GET, HEAD, OPTIONS"
        assert client.put("/thing").headers["allow"] == "DELETE, GET, HEAD, OPTIONS"
        assert client.head("/thing").status_code == 200
        assert client.delete("/thing").json() == {"removed": "yes"}


def test_a_405_a_handler_answers_itself_passes_unchanged() -> None:
    app = FastAPI()

    @app.get("/closed")
    def closed() -> None:
        from fastapi import HTTPException

        raise HTTPException(405, "closed today", headers={"Allow": "POST"})

    app.add_middleware(HttpMethods, routes=app.router.routes)
    with TestClient(app) as client:
        response = client.get("/closed")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {"detail": "closed today"}


def test_head_options_and_405_are_counted_under_the_route_and_the_method_sent(
    client: TestClient,
) -> None:
    client.head("/search", params={"q": "dress"})
    client.options("/products/plain")
    client.request("TRACE", "/products/plain/similar")
    metrics = client.get("/metrics").text
    assert 'method="HEAD",route="/search",status="200"' in metrics
    assert 'method="OPTIONS",route="/products/{product_id}",status="204"' in metrics
    assert 'method="TRACE",route="/products/{product_id}/similar",status="405"' in metrics
