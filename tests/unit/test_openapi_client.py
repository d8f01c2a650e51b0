"""A client generated from ``/openapi.json``, as the apps that query Catalens make theirs,
reads the API's answers as the types the document gives them: a 404 and a 400 are typed
errors whose body is the document's ``ErrorBody``, a search is a ``SearchResponse``.

The client is datamodel-code-generator's HTTPX2 client (a package with a method per
operation and an exception class per status, decoding each error body with the schema
the operation declares for that status); it talks to the app in process, over a stand-in
index.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from catalens.query_api.app import create_app
from catalens.settings import ApiSettings
from tests.unit.test_openapi import searchable
from tests.unit.test_query_api import index_of

PACKAGE = "catalens_generated_client"
MODELS = "catalens_generated_models"


def generate(document: bytes, where: Path) -> None:
    """Generate the client package and its models from ``document`` into ``where``."""
    (where / "openapi.json").write_bytes(document)
    # The generator's own command line, as a consumer runs it.
    command = [
        sys.executable,
        "-m",
        "datamodel_code_generator",
        "--input",
        str(where / "openapi.json"),
        "--input-file-type",
        "openapi",
        "--output",
        str(where / f"{MODELS}.py"),
        "--output-model-type",
        "pydantic_v2.BaseModel",
        "--use-bytes-for-content-media-type",
        "--formatters",
        "builtin",
        "--openapi-scopes",
        "schemas",
        "api",
        "--target-python-version",
        "3.11",
        "--generate-client",
        "httpx2",
        "--client-output",
        str(where / PACKAGE),
        "--client-package",
        PACKAGE,
        "--client-model-package",
        MODELS,
        "--client-default-base-url",
        "http://testserver",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]


def bridge(app: TestClient) -> httpx2.MockTransport:
    """An HTTPX2 transport that hands each request to the app in process."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        answer = app.request(
            request.method,
            str(request.url),
            content=request.read(),
            headers=list(request.headers.multi_items()),
        )
        return httpx2.Response(
            answer.status_code, headers=list(answer.headers.multi_items()), content=answer.content
        )

    return httpx2.MockTransport(handle)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    where = tmp_path_factory.mktemp("client")
    app = create_app(ApiSettings(), build=searchable(index_of(["plain"])))
    with TestClient(app) as served:
        document = served.get("/openapi.json").content
    generate(document, where)
    sys.path.insert(0, str(where))
    try:
        yield SimpleNamespace(
            client=importlib.import_module(PACKAGE),
            errors=importlib.import_module(f"{PACKAGE}.errors"),
            bodies=importlib.import_module(f"{PACKAGE}.bodies"),
            models=importlib.import_module(MODELS),
        )
    finally:
        sys.path.remove(str(where))
        for name in [n for n in sys.modules if n.split(".")[0] in (PACKAGE, MODELS)]:
            del sys.modules[name]


@pytest.fixture
def client(generated: SimpleNamespace) -> Iterator[Any]:
    app = create_app(ApiSettings(), build=searchable(index_of(["plain"])))
    with (
        TestClient(app) as served,
        httpx2.Client(transport=bridge(served)) as http,
        generated.client.Client(base_url="http://testserver", http_client=http) as client,
    ):
        yield client


def test_a_404_is_a_typed_not_found_error_carrying_the_error_body(
    generated: SimpleNamespace, client: Any
) -> None:
    with pytest.raises(generated.errors.NotFoundError) as raised:
        client.products.product_products__product_id__get(product_id="nope")
    body = raised.value.body
    assert isinstance(body, generated.models.ErrorBody)
    assert body.error == "not_found" and "nope" in body.message


def test_a_400_is_a_typed_bad_request_error_carrying_the_error_body(
    generated: SimpleNamespace, client: Any
) -> None:
    upload = generated.bodies.MultipartBody(
        (generated.bodies.FilePart("image", b"not an image", "q.jpg", "image/jpeg"),)
    )
    with pytest.raises(generated.errors.BadRequestError) as raised:
        client.search.search_by_image_search_image_post(body=upload)
    body = raised.value.body
    assert isinstance(body, generated.models.ErrorBody)
    assert body.error == "bad_request" and body.message.startswith("not_an_image")


def test_a_schema_violation_is_a_typed_unprocessable_error_and_a_search_a_typed_result(
    generated: SimpleNamespace, client: Any
) -> None:
    with pytest.raises(generated.errors.UnprocessableEntityError) as raised:
        client.search.search_search_get(q="dress", k=5000)
    assert isinstance(raised.value.body, generated.models.ErrorBody)
    found = client.search.search_search_get(q="dress", k=3)
    assert isinstance(found, generated.models.SearchResponse)
    assert [r.product_id for r in found.results] == ["plain"]
