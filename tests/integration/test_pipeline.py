"""The whole pipeline, black box: events into Kafka, results out of the query API."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.conftest import jpeg_bytes
from tests.integration.conftest import ImageServer
from tests.integration.stack import Stack, event, wait_for

pytestmark = pytest.mark.integration


def test_events_from_every_image_source_become_searchable_with_their_attributes(
    stack: Stack, image_server: ImageServer
) -> None:
    (image_server.root / "a.jpg").write_bytes(jpeg_bytes(seed=1))
    (stack.images / "b.jpg").write_bytes(jpeg_bytes(seed=2))
    stack.start("embedder", "sink", "api")
    stack.publish(
        event(
            "p-url",
            3,
            image={"url": image_server.url("a.jpg")},
            name="Strap top",
            category="Vest top",
            colour="Black",
            price=12.99,
        ),
        event(
            "p-path", 1, image={"path": str(stack.images / "b.jpg")}, category="Dress", price=30.0
        ),
        event(
            "p-data",
            7,
            image={"data": base64.b64encode(jpeg_bytes(seed=3)).decode()},
            category="Dress",
            price=50.0,
        ),
    )
    stack.wait_indexed({"p-url": 3, "p-path": 1, "p-data": 7})

    results = stack.search("black strap top", k=10)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0001 <= s <= 1.0001 for s in scores)
    by_id = {r["product_id"]: r for r in results}
    assert by_id["p-url"]["attributes"] == {
        "name": "Strap top",
        "category": "Vest top",
        "colour": "Black",
        "price": 12.99,
    }
    assert by_id["p-url"]["version"] == 3

    dresses = stack.search("dress", k=10, category="Dress")
    assert {r["product_id"] for r in dresses} == {"p-path", "p-data"}
    cheap = stack.search("dress", k=10, price_max=40)
    assert {r["product_id"] for r in cheap} == {"p-url", "p-path"}
    assert [r["product_id"] for r in stack.search("black strap top", k=1)] == [
        results[0]["product_id"]
    ]
    # Filter values are quoted: an attempt to widen the expression matches nothing.
    assert stack.search("dress", k=10, category='Dress" or product_id != "') == []
    assert stack.search("dress", k=10, category="Dress\\") == []


def test_deletes_and_tombstones_remove_products(stack: Stack) -> None:
    data = {"data": base64.b64encode(jpeg_bytes(seed=4)).decode()}
    stack.start("embedder", "sink", "api")
    stack.publish(
        event("keep", 1, image=data), event("del", 1, image=data), event("tomb", 5, image=data)
    )
    stack.wait_indexed({"keep": 1, "del": 1, "tomb": 5})

    stack.publish(event("del", 2, op="delete"))
    stack.produce([(b"tomb", None)])
    stack.wait_indexed({"keep": 1})


def test_query_api_rejects_bad_queries_with_json_errors(stack: Stack) -> None:
    stack.start("api")
    for params in (
        {"q": "x", "k": 0},
        {"q": "x", "k": 1001},
        {"k": 5},
        {"q": ""},
        {"q": "   "},
        {"q": "x", "k": "ten"},
        {"q": "x", "price_min": "nan"},
        {"q": "x", "price_min": 5, "price_max": 1},
    ):
        response = httpx.get(f"{stack.api}/search", params=params, timeout=10)
        assert 400 <= response.status_code < 500, (params, response.status_code)
        assert response.json()["message"], params
    assert httpx.get(f"{stack.api}/healthz", timeout=5).status_code == 200
    wait_for(
        lambda: httpx.get(f"{stack.api}/readyz", timeout=5).status_code == 200, 30, "readiness"
    )
