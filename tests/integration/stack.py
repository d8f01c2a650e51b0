"""A Catalens deployment for one test: the real services as separate processes, on
their own topics, consumer groups and Milvus alias, against the session's real broker
and real Milvus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer

from catalens.dev.localstack import Child, free_port
from catalens.schemas import DeadLetter
from catalens.store.client import Milvus
from catalens.store.reader import MilvusReader
from catalens.store.values import Product
from tests.waits import wait_for

Value = bytes | dict[str, Any] | None


def event(
    product_id: str,
    version: int,
    *,
    op: str = "upsert",
    image: dict[str, str] | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "op": op,
        "product_id": product_id,
        "version": version,
        "occurred_at": "2026-11-24T10:00:00Z",
        "attributes": attributes,
    }
    if image is not None:
        body["image"] = image
    return body


def product_event(
    product_id: str,
    version: int,
    images: list[dict[str, str]],
    *,
    name: str | None = None,
    description: str | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    """An upsert of schema version 2: the product's whole image set and its text."""
    body = event(product_id, version, **attributes) | {"schema_version": 2, "images": images}
    if name is not None:
        body["name"] = name
    if description is not None:
        body["description"] = description
    return body


@dataclass
class Stack:
    bootstrap: str
    milvus_uri: str
    model: Path
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    children: dict[str, Child] = field(default_factory=dict)
    # Each worker's /healthz, /readyz and /metrics port, kept across its restarts.
    health_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.api_port = free_port()
        self.images = self.workdir / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.input_topic = f"t{self.name}.product-images"
        self.embeddings_topic = f"t{self.name}.product-embeddings"
        self.dlq_topic = f"t{self.name}.product-images.dlq"
        self.collection = f"t{self.name}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "CATALENS_KAFKA_BOOTSTRAP": self.bootstrap,
            "CATALENS_MILVUS_URI": self.milvus_uri,
            "CATALENS_MODEL": str(self.model),
            # Quantised once per test session, beside the session's model.
            "CATALENS_CACHE_DIR": str(self.model.parent / "model-cache"),
            "CATALENS_COLLECTION": self.collection,
            "CATALENS_INPUT_TOPIC": self.input_topic,
            "CATALENS_EMBEDDINGS_TOPIC": self.embeddings_topic,
            "CATALENS_DLQ_TOPIC": self.dlq_topic,
            "CATALENS_EMBEDDER_GROUP": f"t{self.name}-embedder",
            "CATALENS_SINK_GROUP": f"t{self.name}-sink",
            "CATALENS_TOPIC_PARTITIONS": "3",
            "CATALENS_API_PORT": str(self.api_port),
            "CATALENS_IMAGE_ROOTS": str(self.images),
            "CATALENS_ALLOWED_NETWORKS": "127.0.0.1/32",
            "CATALENS_RETRY_MAX_S": "2",
            "CATALENS_LOG_LEVEL": "INFO",
        } | self.extra_env

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def cli(self, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        """``catalens ARGS`` against this deployment, as an operator runs it."""
        return subprocess.run(
            [sys.executable, "-m", "catalens", *args],
            env=self.full_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    # -- processes ----------------------------------------------------------------------

    def start(self, *roles: str) -> Stack:
        for role in roles:
            env = self.env
            if role in ("embedder", "sink"):
                port = self.health_ports.setdefault(role, free_port())
                env = env | {"CATALENS_HEALTH_PORT": str(port)}
            child = Child(
                role,
                [sys.executable, "-m", "catalens", role],
                self.workdir / "logs" / f"{role}.log",
                env=env,
            )
            self.children[role] = child.start()
        if "api" in roles:
            # Start-up converts and checks the text tower (OpenVINO): slow on a busy machine.
            wait_for(self._api_up, 180, "the query API to answer /healthz")
        return self

    def _api_up(self) -> bool:
        self.assert_running()
        try:
            return httpx.get(f"{self.api}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def metrics_url(self, role: str) -> str:
        """Where ``role`` (embedder, sink or api) serves its Prometheus metrics."""
        if role == "api":
            return f"{self.api}/metrics"
        return f"http://127.0.0.1:{self.health_ports[role]}/metrics"

    def kill(self, role: str) -> None:
        self.children[role].kill()

    def terminate(self, role: str) -> int | None:
        return self.children[role].stop(timeout_s=60)

    def assert_running(self) -> None:
        for role, child in self.children.items():
            if (
                not child.running
                and child.process is not None
                and child.process.returncode not in (-signal.SIGKILL, 0)
            ):
                raise AssertionError(f"{role} died:\n{self.log(role)[-4000:]}")

    def log(self, role: str) -> str:
        path = self.workdir / "logs" / f"{role}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for child in self.children.values():
            child.stop(timeout_s=30)

    # -- Kafka --------------------------------------------------------------------------

    def produce(self, records: Iterable[tuple[bytes | None, Value]]) -> None:
        """Produce (key, value) pairs to the input topic; dict values become JSON."""
        failures: list[Any] = []
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True}
        )
        for key, value in records:
            raw = json.dumps(value).encode() if isinstance(value, dict) else value
            producer.produce(
                self.input_topic,
                key=key,
                value=raw,
                on_delivery=lambda e, _m: failures.append(e) if e else None,
            )
            producer.poll(0)
        assert producer.flush(30) == 0
        assert not failures, failures

    def publish(self, *events: dict[str, Any]) -> None:
        self.produce((e["product_id"].encode(), e) for e in events)

    def dead_letters(self, expected: int, timeout_s: float = 60) -> list[DeadLetter]:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": uuid.uuid4().hex,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
            }
        )
        consumer.subscribe([self.dlq_topic])
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + timeout_s
        try:
            while len(letters) < expected and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None or message.error() is not None:
                    continue
                value = message.value()
                assert value is not None, "a dead letter always has a value"
                letters.append(DeadLetter.model_validate_json(value))
        finally:
            consumer.close()
        return letters

    # -- the index ------------------------------------------------------------------------

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def search(self, q: str = "product", k: int = 1000, **params: Any) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.api}/search", params={"q": q, "k": k, **params}, timeout=30)
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def indexed(self) -> dict[str, int]:
        """product id → version, as the query API sees the whole index."""
        return {r["product_id"]: r["version"] for r in self.search(k=1000)}

    def products(self, product_ids: list[str], *, with_vectors: bool = False) -> list[Product]:
        """The products as the index holds them, with every image."""
        store = MilvusReader(Milvus(self.milvus_uri), self.collection)
        try:
            return store.products(product_ids, with_vectors=with_vectors)
        finally:
            store.close()

    def wait_indexed(self, expected: dict[str, int], timeout_s: float = 90) -> None:
        def matches() -> bool:
            self.assert_running()
            try:
                return self.indexed() == expected
            except AssertionError:  # 503 while Milvus is away: keep waiting
                return False

        try:
            wait_for(matches, timeout_s, "the index to match")
        except AssertionError:
            got = self.indexed()
            missing = {p: v for p, v in expected.items() if got.get(p) != v}
            extra = {p: v for p, v in got.items() if p not in expected}
            some_missing = dict(list(missing.items())[:10])
            some_extra = dict(list(extra.items())[:10])
            raise AssertionError(
                f"index differs: wrong or missing {some_missing} ({len(missing)}), "
                f"unexpected {some_extra} ({len(extra)})"
            ) from None
