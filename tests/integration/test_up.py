"""`catalens up` (the README's run command), pointed at the session's broker through the
CATALENS_* variables, with the tiny model; it starts its own Milvus Lite, as `make up`
does, and so shows keyword and hybrid search on the sample catalog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from catalens.dev.localstack import descendants, free_port
from tests.waits import wait_for

pytestmark = pytest.mark.integration


def test_up_serves_the_sample_catalog_and_stops_everything_on_ctrl_c(
    broker: str, tiny_model: Path, tmp_path: Path
) -> None:
    port = free_port()
    topic = f"up{uuid.uuid4().hex[:8]}.product-images"
    env = os.environ | {
        "CATALENS_KAFKA_BOOTSTRAP": broker,
        "CATALENS_MODEL": str(tiny_model),
        "CATALENS_COLLECTION": f"up{uuid.uuid4().hex[:8]}",
        "CATALENS_API_PORT": str(port),
    }
    output = tmp_path / "up.out"
    with output.open("wb") as sink:
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "catalens",
                "up",
                "--data-dir",
                str(tmp_path / "state"),
                "--sample-size",
                "8",
                "--input-topic",
                topic,
                "--log-level",
                "DEBUG",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: "Catalens is up" in output.read_text() or up.poll() is not None,
            240,
            "catalens up to report the sample catalog searchable",
        )
        assert up.poll() is None, output.read_text()[-3000:]
        printed = output.read_text()
        assert f"Catalens is up: http://127.0.0.1:{port}/\n" in printed  # the page first
        assert f"http://127.0.0.1:{port}/search" in printed
        # The options reached the services: the sample went through the topic given.
        assert topic in AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10).topics
        api_log = (tmp_path / "state" / "logs" / "api.log").read_text()
        assert " DEBUG catalens.query_api.app: query API starting with " in api_log
        answer = httpx.get(
            f"http://127.0.0.1:{port}/search", params={"q": "black dress", "k": 20}, timeout=10
        ).json()
        results = answer["results"]
        assert answer["mode"] == "hybrid"  # Milvus Lite has full-text search
        assert len(results) == 8
        assert all(r["name"] for r in results)
        assert all(
            {"category", "colour", "price", "brand"} <= set(r["attributes"]) for r in results
        )
        assert sorted({r["images"] for r in results}) == [1, 2, 3, 4]
        brand = results[0]["attributes"]["brand"]
        words = httpx.get(
            f"http://127.0.0.1:{port}/search",
            params={"q": brand, "k": 20, "mode": "keyword"},
            timeout=10,
        ).json()["results"]
        assert {r["product_id"] for r in words} == {
            r["product_id"] for r in results if r["attributes"]["brand"] == brand
        }
        best = next(r for r in results if r["images"] > 1)
        image = httpx.get(
            f"http://127.0.0.1:{port}/products/{best['product_id']}/image",
            params={"id": best["matched_image"]},
            timeout=10,
        )
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        assert (tmp_path / "state" / "sample" / "judgments.jsonl").is_file()
        assert "catalens eval" in printed
        children = descendants(up.pid)
        assert len(children) >= 3  # embedder, sink, api

        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
        assert not [
            pid for pid in children if Path(f"/proc/{pid}").exists() and "(Z)" not in _state(pid)
        ]
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "(Z)"
    return "(Z)" if stat.rsplit(")", 1)[1].split()[0] == "Z" else "(R)"
