"""The whole pipeline, black box: events into Kafka, results out of the query API."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import jpeg_bytes
from tests.integration.conftest import ImageServer
from tests.integration.stack import Stack, event
from tests.waits import wait_for

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
    bad_queries: list[dict[str, str | int | list[int]]] = [
        {"q": "x", "k": 0},
        {"q": "x", "k": 1001},
        {"k": 5},
        {"q": ""},
        {"q": "   "},
        {"q": "x", "k": "ten"},
        {"q": "x", "price_min": "nan"},
        {"q": "x", "k": [5, 500]},  # one value only
    ]
    for params in bad_queries:
        response = httpx.get(f"{stack.api}/search", params=params, timeout=10)
        assert 400 <= response.status_code < 500, (params, response.status_code)
        assert response.json()["message"], params
    assert httpx.get(f"{stack.api}/healthz", timeout=5).status_code == 200
    wait_for(
        lambda: httpx.get(f"{stack.api}/readyz", timeout=5).status_code == 200, 30, "readiness"
    )


def test_services_configured_only_by_the_design_variables_index_events_from_another_client(
    broker: str, milvus: str, tiny_model: Path, tmp_path: Path
) -> None:
    """Black box: the three services with only the CATALENS_* variables of DESIGN.md, fed
    by kafka-python (a pure-Python client, independent of librdkafka), seen only through
    the query API."""
    from kafka import KafkaProducer

    from catalens.dev.localstack import Child, free_port
    from catalens.store.admin import IndexAdmin
    from catalens.store.client import Milvus

    port = free_port()
    env = {
        "CATALENS_KAFKA_BOOTSTRAP": broker,
        "CATALENS_MILVUS_URI": milvus,
        "CATALENS_MODEL": str(tiny_model),
        "CATALENS_API_PORT": str(port),
    }
    # Defaults everywhere else: the default topics and the default collection alias.
    leftover = Milvus(milvus)
    IndexAdmin(leftover, "catalens_products").drop_all()
    leftover.close()
    children = [
        Child(
            role, [sys.executable, "-m", "catalens", role], tmp_path / f"{role}.log", env=env
        ).start()
        for role in ("embedder", "sink", "api")
    ]
    try:
        producer = KafkaProducer(bootstrap_servers=broker, acks="all")
        for index in range(5):
            body = event(
                f"bb-{index}",
                1 + index,
                category="Dress",
                image={"data": base64.b64encode(jpeg_bytes(seed=60 + index)).decode()},
            )
            producer.send(
                "catalens.product-images",
                key=f"bb-{index}".encode(),
                value=json.dumps(body).encode(),
            ).get(timeout=60)
        producer.send("catalens.product-images", key=b"bb-0", value=None).get(timeout=60)
        producer.flush()
        producer.close()

        def searchable() -> list[dict[str, Any]] | None:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/search", params={"q": "dress", "k": 10}, timeout=10
                )
            except httpx.HTTPError:
                return None
            results = response.json().get("results", []) if response.status_code == 200 else []
            return (
                results
                if {r["product_id"] for r in results} == {f"bb-{i}" for i in range(1, 5)}
                else None
            )

        results = wait_for(searchable, 120, "kafka-python's events to be searchable")
        assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
        assert all(r["attributes"] == {"category": "Dress"} for r in results)
        assert {r["product_id"]: r["version"] for r in results} == {
            f"bb-{i}": 1 + i for i in range(1, 5)
        }
    finally:
        for child in children:
            child.stop()
