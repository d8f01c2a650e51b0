"""The query API in process, over a stand-in index: start-up and which product a URL names.

The real index and model are exercised in tests/integration/test_query_api.py; here only
the wiring is at stake.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import replace
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient

from catalens.query_api.app import create_app
from catalens.query_api.deps import Services
from catalens.query_api.encoding import TextVectors
from catalens.query_api.metrics import Metrics
from catalens.retry import TransientError
from catalens.settings import ApiSettings
from catalens.store import IndexReader
from catalens.store.admin import GENERATION_PROPERTY, Layout
from catalens.store.empty import EmptyIndex
from catalens.store.memory import MemoryIndex
from catalens.store.values import ModelIdentity, Plan, Product, Row, Search

IDS = [
    "plain",
    "ABC/123",
    "a/b/c",
    "X/similar",
    "X/image",
    "what?",
    "tag#1",
    "100%",
    "a%41",
    "%2F",
    "it's",
    'say "hi"',
    "back\\slash",
    "naïve café",
    "商品/42",
    "with space",
    "+plus+",
    "…/",
    "/leading",
]


def _data_uri(product_id: str) -> str:
    """A stand-in "image" whose bytes are the product id, so a response shows whose it is."""
    return "data:image/png;base64," + base64.b64encode(product_id.encode()).decode()


def index_of(ids: Sequence[str]) -> MemoryIndex:
    """An index holding each id as a product of one image, whose "image" is its id."""
    index = MemoryIndex()
    index.create(ModelIdentity("fake", 4, "f"))
    index.apply(
        Plan(
            upserts=[
                Row(i, "0", n + 1, np.ones(4, dtype=np.float32), _data_uri(i), name=i)
                for n, i in enumerate(ids)
            ]
        )
    )
    return index


def services(
    settings: ApiSettings,
    metrics: Metrics,
    store: IndexReader,
    *,
    random_weights: bool = False,
    model: str = "fake",
) -> Services:
    return Services(
        settings=settings,
        encoder=SimpleNamespace(model="fake"),  # type: ignore[arg-type]
        store=store,
        texts=None,  # type: ignore[arg-type]
        batcher=SimpleNamespace(close=lambda: None),  # type: ignore[arg-type]
        metrics=metrics,
        random_weights=random_weights,
        model=model,
    )


@pytest.fixture
def api() -> Iterator[tuple[TestClient, MemoryIndex]]:
    store = index_of(IDS)
    app = create_app(ApiSettings(), build=lambda s, m: services(s, m, store))
    with TestClient(app) as client:
        yield client, store


def test_start_up_waits_for_milvus_and_serves_once_it_answers() -> None:
    attempts: list[int] = []

    def build(settings: ApiSettings, metrics: Metrics) -> Services:
        attempts.append(1)
        if len(attempts) < 3:
            raise TransientError("Milvus is not up yet")
        return services(settings, metrics, index_of(["plain"]))

    settings = ApiSettings(retry_initial_s=0.01, retry_max_s=0.02)
    with TestClient(create_app(settings, build=build)) as client:
        assert client.get("/readyz").json() == {"status": "ready", "model": "fake"}
    assert len(attempts) == 3


def test_a_failure_that_is_not_transient_stops_start_up() -> None:
    def build(settings: ApiSettings, metrics: Metrics) -> Services:
        raise ValueError("no such model")

    with (
        pytest.raises(ValueError, match="no such model"),
        TestClient(create_app(ApiSettings(), build=build)),
    ):
        pass


def path(product_id: str, tail: str = "") -> str:
    return f"/products/{quote(product_id, safe='')}{tail}"


@pytest.mark.parametrize("product_id", IDS)
def test_every_product_route_reads_the_product_its_encoded_id_names(
    api: tuple[TestClient, MemoryIndex], product_id: str
) -> None:
    client, _ = api
    product = client.get(path(product_id))
    assert product.status_code == 200, product.text
    assert product.json()["product_id"] == product_id

    similar = client.get(path(product_id, "/similar"), params={"k": 3})
    assert similar.status_code == 200, similar.text
    found = [r["product_id"] for r in similar.json()["results"]]
    assert len(found) == 3 and product_id not in found  # every other product is as close

    image = client.get(path(product_id, "/image"))
    assert image.status_code == 200, image.text
    assert image.content == product_id.encode()
    assert client.get(path(product_id, "/image"), params={"id": "0"}).content == image.content


def test_an_id_ending_in_a_route_name_is_not_taken_for_that_route(
    api: tuple[TestClient, MemoryIndex],
) -> None:
    client, _ = api
    # X%2Fsimilar is the product "X/similar", not the products similar to "X".
    assert client.get(path("X/similar")).json()["product_id"] == "X/similar"
    assert "results" in client.get(path("plain", "/similar")).json()


def test_unknown_and_over_long_ids_are_client_errors(api: tuple[TestClient, MemoryIndex]) -> None:
    client, _ = api
    missing = client.get(path("nope/nope"))
    assert missing.status_code == 404 and "nope/nope" in missing.json()["message"]
    # The 256-character limit counts characters of the id, not of its encoding.
    assert client.get(path("é" * 256)).status_code == 404
    assert client.get(path("é" * 257)).status_code == 422


def test_product_requests_are_measured_under_their_route_template(
    api: tuple[TestClient, MemoryIndex],
) -> None:
    client, _ = api
    client.get(path("ABC/123"))
    metrics = client.get("/metrics").text
    assert 'route="/products/{product_id}"' in metrics


def test_every_request_is_counted_once_by_route_and_status() -> None:
    """Answers of every kind, and a handler that raised (the server answers 500)."""

    class BrokenStore(MemoryIndex):
        def products(
            self, product_ids: Sequence[str], *, with_vectors: bool = False
        ) -> list[Product]:
            raise RuntimeError("a bug")

    app = create_app(ApiSettings(), build=lambda s, m: services(s, m, BrokenStore()))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/nowhere").status_code == 404
        assert client.get("/search", params={"q": ""}).status_code == 422
        assert client.get(path("plain")).status_code == 500
        metrics = client.get("/metrics").text
    name = "catalens_request_seconds_count"
    counted = {
        line.split(" ")[0].removeprefix(name): float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith(name)
    }
    assert counted == {
        '{method="GET",route="/healthz",status="200"}': 2.0,
        '{method="GET",route="unmatched",status="404"}': 1.0,
        '{method="GET",route="/search",status="422"}': 1.0,
        '{method="GET",route="/products/{product_id}",status="500"}': 1.0,
    }


@pytest.mark.parametrize("random_weights", [True, False])
def test_info_says_whether_the_model_has_random_weights(random_weights: bool) -> None:
    def build(settings: ApiSettings, metrics: Metrics) -> Services:
        return services(
            settings,
            metrics,
            index_of([]),
            random_weights=random_weights,
            model="/models/some-clip",
        )

    settings = ApiSettings(collection="shop")
    with TestClient(create_app(settings, build=build)) as client:
        info = client.get("/info").json()
    assert info["random_weights"] is random_weights
    assert (info["model"], info["collection"]) == ("/models/some-clip", "shop")


def test_the_page_has_a_notice_for_random_weights_that_its_script_reveals() -> None:
    """The notice is hidden unless /info says the weights are random (the browser test
    in tests/integration/test_query_api.py sees it shown)."""
    with TestClient(
        create_app(ApiSettings(), build=lambda s, m: services(s, m, index_of([])))
    ) as client:
        page = client.get("/").text
        script = client.get("/static/app.js").text
    assert '<p id="notice" role="note" hidden>' in page and "random weights" in page
    assert 'fetch("/info")' in script and "info.random_weights" in script


def test_a_moved_alias_swaps_the_whole_services_and_a_failed_look_keeps_them() -> None:
    """Every response names the one model that made it; the swap happens between requests."""
    looks: list[str] = []

    def refresh(current: Services) -> Services | None:
        looks.append(current.model)
        if len(looks) == 1:
            raise TransientError("Milvus is away")
        if current.model == "model-a":
            following = services(current.settings, current.metrics, store, model="model-b")
            return replace(following, refresh=refresh)
        return None

    store = index_of(["plain"])
    settings = ApiSettings(alias_poll_s=3600)  # this test moves the clock by hand

    def build(s: ApiSettings, m: Metrics) -> Services:
        return replace(services(s, m, store, model="model-a"), refresh=refresh)

    with TestClient(create_app(settings, build=build)) as client:
        serving = client.app.state.serving  # type: ignore[attr-defined]
        served = lambda: client.get("/products/plain/similar").json()["model"]  # noqa: E731
        assert served() == "model-a"
        serving.refresh_once()  # Milvus away: keep serving what was served
        assert served() == "model-a"
        serving.refresh_once()
        assert served() == "model-b"
        assert client.get("/readyz").json() == {"status": "ready", "model": "model-b"}
        serving.refresh_once()
        assert looks == ["model-a", "model-a", "model-b"]


class FakeMilvus:
    """Where the alias points and what each collection records, as the follower asks."""

    def __init__(self) -> None:
        self.target: str | None = None
        self.layouts: dict[str, Layout] = {}

    def alias_target(self, alias: str) -> str | None:
        return self.target

    def list_collections(self) -> list[str]:
        return list(self.layouts)

    def alias_names(self) -> list[str]:
        return []

    def server_version(self) -> str:
        return "v2.3.5"

    def describe_collection(self, name: str) -> dict[str, Any]:
        return {
            "fields": [{"name": "input_offset"}, {"name": "row_key"}],
            "properties": {GENERATION_PROPERTY: self.layouts[name].to_json()},
        }


def test_before_any_generation_the_api_searches_nothing_and_an_unloadable_one_stays_unserved() -> (
    None
):
    from catalens.encoder.files import ModelNotFound
    from catalens.query_api.serving import AliasFollower

    milvus = FakeMilvus()
    loads: list[str] = []
    settings = ApiSettings(model="mine")

    def load(model: str, collection: str) -> Services:
        loads.append(model)
        if model != "mine":
            raise ModelNotFound(f"{model} is not on this machine")
        return services(settings, Metrics(), index_of(["plain"]), model=model)

    follower = AliasFollower(settings, milvus, load)  # type: ignore[arg-type]
    first = follower.initial()
    anything = Search(vectors=[np.ones(4, dtype=np.float32)], k=5)
    assert first.model == "mine" and first.store.search(anything) == []
    assert isinstance(first.store, EmptyIndex)
    milvus.target = "shop__other_1234"  # another model's sink made the first generation
    milvus.layouts[milvus.target] = Layout(ModelIdentity("other", 4, "f"))
    unserved = follower.refresh(first)
    assert unserved is not None and unserved.problem and "other" in unserved.problem
    assert unserved.store.search(anything) == []  # still nothing of "other"
    assert follower.refresh(unserved) is None and loads == ["mine", "other"]  # not retried


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"category": "Dress"},
        {"category": ["Dress", "Vest top"]},
        {"price_min": "5", "price_max": "20"},
        {"attr.colour": "Black"},
        {"attr.in_stock": "true", "attr.size": ["42", "44"]},
        {"category": "Dress", "price_max": "9.5", "attr.brand": "H&M", "k": "50", "offset": "10"},
    ],
)
def test_before_the_first_generation_every_filtered_search_answers_200_with_nothing(
    params: dict[str, Any],
) -> None:
    """A fresh deployment serves an explicitly empty index: no filter makes it fail."""

    def build(settings: ApiSettings, metrics: Metrics) -> Services:
        empty = replace(services(settings, metrics, EmptyIndex()), collection="")
        return replace(empty, texts=TextVectors(lambda text: np.ones(4, dtype=np.float32), 8))

    with TestClient(create_app(ApiSettings(), build=build)) as client:
        answer = client.get("/search", params={"q": "black dress", **params})
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"] == []
        assert client.get("/products/anything").status_code == 404
        assert client.get("/products/anything/similar").status_code == 404


def test_a_malformed_attribute_filter_is_a_400_naming_it() -> None:
    def build(settings: ApiSettings, metrics: Metrics) -> Services:
        empty = services(settings, metrics, EmptyIndex())
        return replace(empty, texts=TextVectors(lambda text: np.ones(4, dtype=np.float32), 8))

    with TestClient(create_app(ApiSettings(), build=build)) as client:
        answer = client.get("/search", params={"q": "x", "attr.bad name": "1"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_filter" and "bad name" in answer.json()["message"]
