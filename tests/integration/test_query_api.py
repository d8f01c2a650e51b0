"""The query API beyond text search: products, similar products, image search, metrics
and the web page (its OpenAPI document is held to by tests/integration/test_openapi.py)."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import jpeg_bytes
from tests.integration.conftest import ImageServer
from tests.integration.stack import Stack, event

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.integration


@pytest.fixture
def catalog(stack: Stack) -> Stack:
    (stack.images / "file.jpg").write_bytes(jpeg_bytes(seed=21))
    stack.extra_env["CATALENS_IMAGE_ROOTS"] = str(stack.images)
    stack.start("embedder", "sink", "api")
    inline = {"data": base64.b64encode(jpeg_bytes(seed=22)).decode()}
    stack.publish(
        event("inline", 1, image=inline, name="Inline dress", category="Dress", price=10.0),
        event(
            "file",
            2,
            image={"path": str(stack.images / "file.jpg")},
            name="File top",
            category="Top",
            price=20.0,
        ),
        *[
            event(
                f"p{i}",
                1,
                image={"data": base64.b64encode(jpeg_bytes(seed=30 + i)).decode()},
                category="Dress" if i % 2 else "Top",
                price=float(i),
            )
            for i in range(8)
        ],
    )
    stack.wait_indexed({"inline": 1, "file": 2} | {f"p{i}": 1 for i in range(8)})
    return stack


def test_products_similar_and_their_images(catalog: Stack) -> None:
    api = catalog.api
    product = httpx.get(f"{api}/products/file", timeout=10).json()
    assert product["version"] == 2 and product["attributes"]["name"] == "File top"
    assert httpx.get(f"{api}/products/nope", timeout=10).status_code == 404

    similar = httpx.get(f"{api}/products/inline/similar", params={"k": 5}, timeout=10).json()
    ids = [r["product_id"] for r in similar["results"]]
    assert len(ids) == 5 and "inline" not in ids
    scores = [r["score"] for r in similar["results"]]
    assert scores == sorted(scores, reverse=True)
    dresses = httpx.get(
        f"{api}/products/inline/similar", timeout=10, params={"k": 20, "category": "Dress"}
    ).json()["results"]
    assert {r["attributes"]["category"] for r in dresses} == {"Dress"}

    inline_image = httpx.get(f"{api}/products/inline/image", timeout=10)
    assert inline_image.status_code == 200 and inline_image.content[:2] == b"\xff\xd8"
    file_image = httpx.get(f"{api}/products/file/image", timeout=10)
    assert file_image.content == (catalog.images / "file.jpg").read_bytes()


def test_image_search_finds_the_product_of_the_same_image(catalog: Stack) -> None:
    response = httpx.post(
        f"{catalog.api}/search/image",
        params={"k": 3},
        timeout=30,
        files={"image": ("q.jpg", jpeg_bytes(seed=21), "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    best = response.json()["results"][0]
    assert best["product_id"] == "file" and best["score"] > 0.999

    bad = httpx.post(
        f"{catalog.api}/search/image",
        timeout=30,
        files={"image": ("q.jpg", b"not an image", "image/jpeg")},
    )
    assert bad.status_code == 400 and "not_an_image" in bad.json()["message"]


def test_paging_returns_the_next_results_in_order(catalog: Stack) -> None:
    first = catalog.search("dress", k=4)
    second = catalog.search("dress", k=4, offset=4)
    both = catalog.search("dress", k=8)
    assert [r["product_id"] for r in first + second] == [r["product_id"] for r in both]


def counter(text: str, name: str) -> float:
    line = next((ln for ln in text.splitlines() if ln.startswith(name + " ")), f"{name} 0")
    return float(line.split()[-1])


def test_metrics_count_requests_encodes_and_cache_hits(catalog: Stack) -> None:
    hits, misses = (
        'catalens_text_cache_total{result="hit"}',
        'catalens_text_cache_total{result="miss"}',
    )
    before = httpx.get(f"{catalog.api}/metrics", timeout=10).text
    for _ in range(3):
        catalog.search("a very particular query", k=1)
    after = httpx.get(f"{catalog.api}/metrics", timeout=10).text
    assert counter(after, hits) - counter(before, hits) == 2
    assert counter(after, misses) - counter(before, misses) == 1
    requests = 'catalens_request_seconds_count{method="GET",route="/search",status="200"}'
    assert counter(after, requests) - counter(before, requests) == 3
    assert "catalens_search_seconds_bucket" in after
    assert 'catalens_encode_seconds_count{kind="text"}' in after


def test_the_web_page_and_its_assets_are_served(catalog: Stack) -> None:
    page = httpx.get(f"{catalog.api}/", timeout=10)
    assert page.status_code == 200 and '<form id="search"' in page.text
    assert httpx.get(f"{catalog.api}/static/app.js", timeout=10).status_code == 200
    info = httpx.get(f"{catalog.api}/info", timeout=10).json()
    assert info["random_weights"] is True  # the tests' tiny model


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's headless Chromium (skipped where it is missing, unless required)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CATALENS_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.browser
def test_the_web_page_searches_shows_a_grid_and_finds_similar_products(catalog: Stack) -> None:
    """In a real headless Chromium: search, result grid with images, "more like this",
    the empty state. Leaves artifacts/web-grid.png."""
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{catalog.api}/")
        expect(page.locator("#status")).to_have_text("Type what you are looking for.")
        # The tests' model has random weights: the page says its results mean nothing.
        expect(page.locator("#notice")).to_be_visible()
        expect(page.locator("#notice")).to_contain_text("random weights")
        page.fill("#q", "striped summer dress")
        page.click("#search button[type=submit]")
        cards = page.locator("#grid .card")
        expect(cards).to_have_count(10)
        expect(page.locator("#status")).to_contain_text("10 results")
        page.wait_for_function(
            "[...document.querySelectorAll('#grid img')]"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        scores = [float(t.split()[-1]) for t in cards.locator(".score").all_inner_texts()]
        assert scores == sorted(scores, reverse=True)
        # Milvus 2.3 answers vector search only: the page offers no other mode.
        expect(page.locator("#modes")).to_be_hidden()
        page.screenshot(path=str(ARTIFACTS / "web-grid.png"), full_page=True)

        first = cards.first.get_attribute("data-product-id")
        cards.first.locator(".similar").click()
        expect(page.locator("#status")).to_contain_text("like")
        expect(cards).to_have_count(9)  # every other product
        assert first not in [c.get_attribute("data-product-id") for c in cards.all()]

        page.click("#filters summary")
        page.fill("#category", "No such category")
        page.fill("#q", "dress")
        page.click("#search button[type=submit]")
        expect(page.locator("#status")).to_contain_text("Nothing matches")
        expect(cards).to_have_count(0)


# Ids as catalogs have them: SKUs with '/', and every character a URL gives a meaning to.
ODD_IDS = [
    "ABC/123",
    "a/b/c/",
    "X/similar",
    "Y/image",
    "what?",
    "tag#1",
    "100%",
    "a%2Fb",
    'say "hi"',
    "it's",
    "back\\slash",
    "naïve café",
    "商品/42",
    "+ & =",
]


@pytest.fixture
def odd_catalog(stack: Stack, image_server: ImageServer) -> Stack:
    (stack.images / "odd.jpg").write_bytes(jpeg_bytes(seed=41))
    (image_server.root / "odd.jpg").write_bytes(jpeg_bytes(seed=42))
    stack.start("embedder", "sink", "api")
    events = [
        event(
            product_id,
            n + 1,
            image={"data": base64.b64encode(jpeg_bytes(seed=50 + n)).decode()},
            name=f"Odd {n}",
        )
        for n, product_id in enumerate(ODD_IDS)
    ]
    events += [
        event("file/ü?#%", 7, image={"path": str(stack.images / "odd.jpg")}, name="File"),
        event("url/ü?#%", 8, image={"url": image_server.url("odd.jpg")}, name="Url"),
    ]
    stack.publish(*events)
    stack.wait_indexed({e["product_id"]: e["version"] for e in events})
    return stack


def product_url(stack: Stack, product_id: str, tail: str = "") -> str:
    return f"{stack.api}/products/{quote(product_id, safe='')}{tail}"


def test_every_product_route_serves_ids_with_url_characters(odd_catalog: Stack) -> None:
    """``/``, ``?``, ``#``, ``%``, quotes, backslashes and non-ASCII in a product id:
    the product, its similar products and its image are each found by the id,
    percent-encoded as one path segment."""
    ids = [*ODD_IDS, "file/ü?#%", "url/ü?#%"]
    for product_id in ids:
        product = httpx.get(product_url(odd_catalog, product_id), timeout=10)
        assert product.status_code == 200, (product_id, product.text)
        assert product.json()["product_id"] == product_id

        similar = httpx.get(
            product_url(odd_catalog, product_id, "/similar"), params={"k": 100}, timeout=10
        )
        assert similar.status_code == 200, (product_id, similar.text)
        others = {r["product_id"] for r in similar.json()["results"]}
        assert others == set(ids) - {product_id}

        image = httpx.get(product_url(odd_catalog, product_id, "/image"), timeout=10)
        if product_id.startswith("url/"):
            assert image.status_code == 307 and image.headers["location"].endswith("/odd.jpg")
        elif product_id.startswith("file/"):
            assert image.content == (odd_catalog.images / "odd.jpg").read_bytes()
        else:
            assert image.status_code == 200, (product_id, image.text)
            assert image.content[:2] == b"\xff\xd8"

    # An id that ends in a route's name is that product, not the route of its prefix.
    assert httpx.get(product_url(odd_catalog, "X/similar"), timeout=10).status_code == 200
    missing = httpx.get(product_url(odd_catalog, "X"), timeout=10)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


@pytest.mark.browser
def test_the_web_page_shows_products_with_url_characters_in_their_ids(
    odd_catalog: Stack,
) -> None:
    """ "More like this" for a product whose id holds '/', '?' and '#', and the images of
    its similar products, through the page's own URLs."""
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{odd_catalog.api}/?similar={quote('file/ü?#%', safe='')}")
        expect(page.locator("#status")).to_contain_text("like")
        cards = page.locator("#grid .card")
        expect(cards).to_have_count(len(ODD_IDS) + 1)
        page.wait_for_function(
            "[...document.querySelectorAll('#grid img')]"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        shown = {c.get_attribute("data-product-id") for c in cards.all()}
        assert shown == {*ODD_IDS, "url/ü?#%"}
        page.locator('#grid .card[data-product-id="商品/42"] .similar').click()
        # The old grid has as many cards as the new one: wait for the clicked product to
        # leave it (a product is not among its own similar ones), then count.
        expect(page.locator('#grid .card[data-product-id="商品/42"]')).to_have_count(0)
        expect(cards).to_have_count(len(ODD_IDS) + 1)


def server_timing(response: httpx.Response) -> dict[str, float]:
    metrics = (part.strip().split(";dur=") for part in response.headers["Server-Timing"].split(","))
    return {name: float(duration) for name, duration in metrics}


def test_each_search_says_how_long_it_waited_on_milvus(catalog: Stack) -> None:
    text = httpx.get(f"{catalog.api}/search", params={"q": "dress", "k": 3}, timeout=30)
    similar = httpx.get(f"{catalog.api}/products/inline/similar", params={"k": 3}, timeout=30)
    image = httpx.post(
        f"{catalog.api}/search/image",
        files={"image": ("q.jpg", jpeg_bytes(seed=22), "image/jpeg")},
        timeout=30,
    )
    for response in (text, similar, image):
        assert response.status_code == 200, response.text
        timing = server_timing(response)
        assert 0 < timing["milvus"] <= timing["total"], timing
        assert timing["total"] == response.json()["took_ms"]
