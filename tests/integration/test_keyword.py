"""Keyword and hybrid search through the real broker and Milvus Lite (the API of Milvus
≥ 2.5, where full-text search lives), and the 400 that Milvus 2.3.5 answers for them."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.conftest import jpeg_bytes
from tests.integration.stack import Stack, product_event
from tests.integration.test_query_api import server_timing

pytestmark = pytest.mark.integration


def picture(seed: int) -> dict[str, str]:
    return {"data": base64.b64encode(jpeg_bytes(seed=seed)).decode()}


CATALOG = [
    product_event(
        "levis-501",
        1,
        [picture(1), picture(2)],
        name="501 Original Fit Jeans",
        description="Straight-leg jeans in rigid denim.",
        brand="Levi's",
        category="Trousers",
    ),
    product_event(
        "slim",
        1,
        [picture(3)],
        name="Slim jeans",
        description="Stretch denim with a hidden quillwork pocket.",
        brand="Northwind",
        category="Trousers",
    ),
    product_event(
        "top",
        1,
        [picture(4), picture(5), picture(6)],
        name="Strap top",
        description="Jersey top with narrow shoulder straps.",
        brand="Northwind",
        category="Vest top",
    ),
    product_event("dress", 1, [picture(7)], name="Wrap dress", brand="Solvang", category="Dress"),
]


def search(stack: Stack, q: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.api}/search", params={"q": q, "k": 10, **params}, timeout=30)


def found(stack: Stack, q: str, **params: Any) -> list[str]:
    response = search(stack, q, **params)
    assert response.status_code == 200, response.text
    ids = [r["product_id"] for r in response.json()["results"]]
    assert len(ids) == len(set(ids)), f"a product twice: {ids}"
    return ids


def test_words_find_products_in_keyword_and_hybrid_mode_with_filters(lite_stack: Stack) -> None:
    stack = lite_stack
    stack.start("embedder", "sink", "api")
    stack.publish(*CATALOG)
    stack.wait_indexed({"levis-501": 1, "slim": 1, "top": 1, "dress": 1})

    # Hybrid is the default where the server has full-text search, and the answer says so.
    default = search(stack, "levi's")
    assert default.status_code == 200 and default.json()["mode"] == "hybrid"
    info = httpx.get(f"{stack.api}/info", timeout=30).json()
    assert (info["modes"], info["default_mode"]) == (["vector", "keyword", "hybrid"], "hybrid")

    # A brand word (an attribute) and a model name, word for word.
    assert found(stack, "Levi's", mode="keyword") == ["levis-501"]
    assert found(stack, "levi's 501", mode="hybrid")[0] == "levis-501"
    # A word only one product's description holds.
    assert found(stack, "quillwork", mode="keyword") == ["slim"]
    assert found(stack, "quillwork", mode="hybrid")[0] == "slim"
    # Products, each once, in every mode; k counts products.
    for mode in ("vector", "keyword", "hybrid"):
        assert len(found(stack, "jeans denim top", mode=mode, k=2)) <= 2
    assert sorted(found(stack, "jeans", mode="keyword")) == ["levis-501", "slim"]
    # Filters apply in every mode.
    for mode in ("vector", "keyword", "hybrid"):
        assert set(found(stack, "jeans top", mode=mode, category="Vest top")) <= {"top"}
        northwind = found(stack, "jeans top", mode=mode, **{"attr.brand": "Northwind"})
        assert set(northwind) <= {"slim", "top"}
    assert found(stack, "jeans", mode="keyword", **{"attr.brand": "Northwind"}) == ["slim"]
    # The words matched are reported only where the server reports them (Milvus 2.6).
    first = search(stack, "quillwork", mode="keyword").json()["results"][0]
    assert first["matched_words"] == [] and first["matched_image"] == "0"
    # Each mode says how long it waited on Milvus: hybrid's two calls at once count once.
    for mode in ("vector", "keyword", "hybrid"):
        timing = server_timing(search(stack, "denim", mode=mode))
        assert 0 < timing["milvus"] <= timing["total"], (mode, timing)


def test_keyword_and_hybrid_on_milvus_2_3_are_a_400_naming_the_version_needed(
    stack: Stack,
) -> None:
    stack.start("embedder", "sink", "api")
    stack.publish(CATALOG[0])
    stack.wait_indexed({"levis-501": 1})
    for mode in ("keyword", "hybrid"):
        refused = search(stack, "levi's", mode=mode)
        assert refused.status_code == 400
        body = refused.json()
        assert body["error"] == "mode_unavailable" and "Milvus 2.5" in body["message"]
    vector = search(stack, "levi's")
    assert vector.status_code == 200 and vector.json()["mode"] == "vector"
    info = httpx.get(f"{stack.api}/info", timeout=30).json()
    assert (info["modes"], info["default_mode"]) == (["vector"], "vector")


@pytest.mark.browser
def test_the_page_offers_the_modes_and_shows_a_card_per_product_with_its_images(
    lite_stack: Stack,
) -> None:
    """In a real headless Chromium, on Milvus Lite: the mode switch offers the three
    modes with hybrid chosen; a search by a description's word in words mode finds that
    one product; every card shows the product's name, and how many images it has when
    it has several. Leaves artifacts/web-modes.png."""
    from playwright.sync_api import expect

    from tests.integration.test_query_api import ARTIFACTS, chromium

    stack = lite_stack
    stack.start("embedder", "sink", "api")
    stack.publish(*CATALOG)
    stack.wait_indexed({"levis-501": 1, "slim": 1, "top": 1, "dress": 1})
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{stack.api}/")
        modes = page.locator("#modes")
        expect(modes).to_be_visible()
        expect(page.locator('input[name="mode"][value="hybrid"]')).to_be_checked()
        for mode in ("vector", "keyword", "hybrid"):
            expect(page.locator(f'input[name="mode"][value="{mode}"]')).to_be_visible()

        page.fill("#q", "jeans top dress")
        page.click("#search button[type=submit]")
        cards = page.locator("#grid .card")
        expect(cards).to_have_count(4)
        names = sorted(cards.locator(".name").all_inner_texts())
        assert names == ["501 Original Fit Jeans", "Slim jeans", "Strap top", "Wrap dress"]
        top = page.locator('#grid .card[data-product-id="top"]')
        expect(top.locator(".images")).to_have_text("3 images")
        expect(page.locator('#grid .card[data-product-id="dress"] .images')).to_be_hidden()
        page.wait_for_function(
            "[...document.querySelectorAll('#grid img')]"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        page.screenshot(path=str(ARTIFACTS / "web-modes.png"), full_page=True)

        page.fill("#q", "quillwork")
        page.check('input[name="mode"][value="keyword"]')  # searches again at once
        page.click("#search button[type=submit]")
        expect(cards).to_have_count(1)
        expect(cards.first.locator(".name")).to_have_text("Slim jeans")
        assert "mode=keyword" in page.url
        page.check('input[name="mode"][value="vector"]')  # looks: every product is near
        expect(cards).to_have_count(4)
