"""Model migration without downtime: a second model's generation is built beside the live
one by replaying the input topic, checked, promoted, and the first one dropped — while
updates, deletes and tombstones keep arriving and searches keep being answered."""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalens.dev.localstack import Child
from catalens.dev.modelkit import build_random_clip
from catalens.store.client import Milvus
from catalens.store.writer import MilvusWriter
from tests.integration.stack import Stack, event
from tests.integration.test_guarantees import SMALL, expected_state, produce_stream
from tests.waits import wait_for

pytestmark = pytest.mark.integration

Stream = list[tuple[str, dict[str, Any] | None]]


class SearchWatcher(threading.Thread):
    """Searches all the time and keeps (status, model answering) of every response."""

    def __init__(self, api: str) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.seen: list[tuple[int, str | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.done.is_set():
                response = client.get(f"{self.api}/search", params={"q": "a top", "k": 5})
                model = response.json().get("model") if response.status_code == 200 else None
                self.seen.append((response.status_code, model))
                time.sleep(0.05)

    def models(self) -> list[str | None]:
        """The models that answered, in order, each run collapsed to one entry."""
        runs: list[str | None] = []
        for status, model in self.seen:
            if status == 200 and (not runs or runs[-1] != model):
                runs.append(model)
        return runs


def traffic(products: list[str], seed: int, count: int) -> Stream:
    """Updates with newer and older versions, deletes and tombstones."""
    rng = random.Random(seed)
    stream: Stream = []
    for _ in range(count):
        pid = rng.choice(products)
        roll = rng.random()
        if roll < 0.1:
            stream.append((pid, None))
        elif roll < 0.25:
            stream.append((pid, event(pid, rng.randrange(2, 12), op="delete")))
        else:
            stream.append((pid, event(pid, rng.randrange(2, 12), image=SMALL)))
    return stream


def live_versions(stack: Stack, model: Path, products: list[str]) -> dict[str, int]:
    milvus = Milvus(stack.milvus_uri)
    try:
        writer = MilvusWriter(milvus, alias=stack.collection, model=str(model))
        return {p: s.live for p, s in writer.stored(products).items() if s.live is not None}
    finally:
        milvus.close()


def test_a_new_model_is_built_beside_the_live_one_and_promoted_without_downtime(
    stack: Stack, tiny_model: Path, tmp_path: Path
) -> None:
    model_a = tiny_model
    model_b = build_random_clip(tmp_path / "tiny-b", seed=1, projection_dim=24)
    products = [f"m{i:03d}" for i in range(200)]
    stream: Stream = [(p, event(p, 1, image=SMALL, category="Top")) for p in products]
    stack.start("embedder", "sink", "api")
    produce_stream(stack, stream)
    stack.wait_indexed(expected_state(stream), timeout_s=180)

    watcher = SearchWatcher(stack.api)
    watcher.start()
    # Model B: the same deployment, another model, and no other setting.
    env_b = {
        k: v
        for k, v in stack.env.items()
        if k not in ("CATALENS_EMBEDDER_GROUP", "CATALENS_SINK_GROUP", "CATALENS_API_PORT")
    } | {"CATALENS_MODEL": str(model_b)}
    building = time.monotonic()
    for role in ("embedder", "sink"):
        child = Child(
            f"{role}-b",
            [sys.executable, "-m", "catalens", role],
            stack.workdir / "logs" / f"{role}-b.log",
            env=env_b,
        )
        stack.children[f"{role}-b"] = child.start()

    early = stack.cli("index", "promote", str(model_b))
    assert early.returncode == 1, early.stdout  # nothing (or not all) of B is built yet
    assert early.stderr.splitlines()[-1].startswith("catalens index promote: "), early.stderr

    for round_ in range(4):  # the live stream flows while B is built
        more = traffic(products, seed=round_, count=40)
        produce_stream(stack, more)
        stream += more
        time.sleep(2)
    expected = expected_state(stream)
    assert 0 < len(expected) < len(products)
    stack.wait_indexed(expected, timeout_s=180)
    wait_for(lambda: live_versions(stack, model_b, products) == expected, 240, "B to be built")
    print(f"generation of {len(products)} products built in {time.monotonic() - building:.1f}s")

    status = json.loads(stack.cli("index", "status", "--json").stdout)
    by_model = {g["model"]: g for g in status}
    assert by_model[str(model_a)]["serving"] and not by_model[str(model_b)]["serving"]
    assert by_model[str(model_a)]["rows"] == by_model[str(model_b)]["rows"] == len(expected)
    assert (by_model[str(model_a)]["dim"], by_model[str(model_b)]["dim"]) == (16, 24)

    promoted = stack.cli("index", "promote", str(model_b))
    assert promoted.returncode == 0, promoted.stderr
    wait_for(lambda: watcher.models()[-1:] == [str(model_b)], 60, "searches answered by B")
    assert stack.indexed() == expected

    dropped = stack.cli("index", "drop", str(model_a))
    assert dropped.returncode == 0, dropped.stderr
    time.sleep(2)  # searches keep being answered after A is gone
    watcher.done.set()
    watcher.join(30)
    status = json.loads(stack.cli("index", "status", "--json").stdout)
    assert [(g["model"], g["serving"], g["rows"]) for g in status] == [
        (str(model_b), True, len(expected))
    ]

    statuses = {code for code, _ in watcher.seen}
    assert statuses <= {200, 503}, statuses
    print(f"{len(watcher.seen)} searches during the migration: {sorted(statuses)}")
    assert watcher.models() == [str(model_a), str(model_b)]  # one switch, never a mix
    stack.assert_running()
