"""Products of one to four images through the real broker and Milvus: every image is
searchable, results are products (each at most once, with the image that matched), an
upsert with fewer images takes the others out, and a delete or a tombstone every image."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.conftest import jpeg_bytes
from tests.integration.stack import Stack, event, product_event
from tests.waits import wait_for

pytestmark = pytest.mark.integration

VIEWS = ("front", "back", "detail", "flat")


def picture(product: int, view: int) -> bytes:
    return jpeg_bytes(seed=100 * product + view)


def images(product: int, views: tuple[str, ...]) -> list[dict[str, str]]:
    return [
        {"id": view, "data": base64.b64encode(picture(product, VIEWS.index(view))).decode()}
        for view in views
    ]


def by_image(stack: Stack, data: bytes, k: int = 10, **params: Any) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{stack.api}/search/image",
        params={"k": k, **params},
        files={"image": ("q.jpg", data, "image/jpeg")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def product(stack: Stack, product_id: str) -> httpx.Response:
    return httpx.get(f"{stack.api}/products/{product_id}", timeout=30)


def test_products_of_several_images_are_found_by_any_image_each_once(stack: Stack) -> None:
    stack.start("embedder", "sink", "api")
    stack.publish(
        # A version 1 event beside version 2 ones: one image, "0".
        event("p1", 1, image={"data": images(1, ("front",))[0]["data"]}, category="Top"),
        product_event("p2", 1, images(2, VIEWS[:2]), name="Two views", category="Dress"),
        product_event("p3", 1, images(3, VIEWS[:3]), name="Three views", category="Dress"),
        product_event("p4", 1, images(4, VIEWS), name="Four views", category="Skirt"),
    )
    stack.wait_indexed({"p1": 1, "p2": 1, "p3": 1, "p4": 1})

    # The third image of p4 finds p4, through that image.
    found = by_image(stack, picture(4, 2))
    assert (found[0]["product_id"], found[0]["matched_image"]) == ("p4", "detail")
    assert found[0]["score"] > 0.999 and found[0]["images"] == 4
    assert found[0]["name"] == "Four views"
    # Every search: each product at most once, k counts products, pages never repeat one.
    for results in (
        found,
        stack.search("dress", k=10),
        stack.search("top", k=10, category="Dress"),
    ):
        ids = [r["product_id"] for r in results]
        assert len(ids) == len(set(ids))
    assert len(stack.search("dress", k=3)) == 3
    pages = [stack.search("dress", k=1, offset=offset)[0]["product_id"] for offset in range(4)]
    assert pages == [r["product_id"] for r in stack.search("dress", k=4)]
    assert sorted(pages) == ["p1", "p2", "p3", "p4"]
    similar = httpx.get(f"{stack.api}/products/p4/similar", params={"k": 10}, timeout=30)
    assert sorted(r["product_id"] for r in similar.json()["results"]) == ["p1", "p2", "p3"]

    shown = product(stack, "p4").json()
    assert [i["id"] for i in shown["images"]] == list(VIEWS)
    assert shown["name"] == "Four views"
    assert [i["id"] for i in product(stack, "p1").json()["images"]] == ["0"]
    detail = httpx.get(f"{stack.api}/products/p4/image", params={"id": "detail"}, timeout=30)
    assert detail.status_code == 200 and detail.headers["content-type"] == "image/jpeg"
    front = httpx.get(f"{stack.api}/products/p4/image", timeout=30)
    assert front.status_code == 200 and front.content != detail.content
    missing = httpx.get(f"{stack.api}/products/p4/image", params={"id": "side"}, timeout=30)
    assert missing.status_code == 404

    # Fewer images: the dropped ones leave the index with the upsert.
    stack.publish(product_event("p4", 2, images(4, ("front", "flat")), name="Four views"))
    stack.wait_indexed({"p1": 1, "p2": 1, "p3": 1, "p4": 2})
    wait_for(
        lambda: [i.id for p in stack.products(["p4"]) for i in p.images] == ["front", "flat"],
        60,
        "p4 to hold its two images",
    )
    for result in by_image(stack, picture(4, 2)):
        assert (result["product_id"], result["matched_image"]) != ("p4", "detail")
    assert [i["id"] for i in product(stack, "p4").json()["images"]] == ["front", "flat"]

    # A delete and a tombstone take every image of their products.
    stack.publish(event("p3", 2, op="delete"))
    stack.produce([(b"p2", None)])  # a tombstone
    stack.wait_indexed({"p1": 1, "p4": 2})
    wait_for(lambda: stack.products(["p2", "p3"]) == [], 60, "every image of p2 and p3 gone")
    assert product(stack, "p3").status_code == 404
    for view in range(3):
        assert "p3" not in [r["product_id"] for r in by_image(stack, picture(3, view))]
