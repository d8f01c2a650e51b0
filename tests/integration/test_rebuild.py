"""Another index for the served model, without the model: a sink alone builds an IVF_SQ8
generation from the embedding topic beside the served HNSW one while events keep
arriving, and promote switches the API to it without a failed query."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from catalens.dev.localstack import Child
from catalens.settings import generation_name
from catalens.store.client import Milvus
from catalens.store.indexes import IndexSpec
from catalens.store.writer import MilvusWriter
from tests.integration.stack import Stack, event
from tests.integration.test_guarantees import SMALL, expected_state, produce_stream
from tests.integration.test_migration import SearchWatcher, Stream, traffic
from tests.waits import wait_for

pytestmark = pytest.mark.integration

IVF = IndexSpec.of("IVF_SQ8", {"nlist": 16})


def live(stack: Stack, model: Path, products: list[str], name: str, index: IndexSpec) -> object:
    milvus = Milvus(stack.milvus_uri)
    try:
        writer = MilvusWriter(
            milvus, alias=stack.collection, model=str(model), generation=name, index=index
        )
        return {p: s.live for p, s in writer.stored(products).items() if s.live is not None}
    finally:
        milvus.close()


def test_a_sink_alone_builds_another_index_of_the_served_model_and_promote_switches_to_it(
    stack: Stack, tiny_model: Path
) -> None:
    products = [f"r{i:03d}" for i in range(150)]
    stream: Stream = [(p, event(p, 1, image=SMALL, category="Top")) for p in products]
    stack.start("embedder", "sink", "api")
    produce_stream(stack, stream)
    stack.wait_indexed(expected_state(stream), timeout_s=180)
    served = generation_name(str(tiny_model))
    rebuilt = generation_name(str(tiny_model), index="IVF_SQ8")
    assert rebuilt == f"{served}__ivf_sq8"

    watcher = SearchWatcher(stack.api)
    watcher.start()
    # A sink and nothing else, with another index: its generation and its consumer group
    # follow from the index, and it reads the embedding topic from its start.
    env = {k: v for k, v in stack.env.items() if k != "CATALENS_SINK_GROUP"} | {
        "CATALENS_INDEX": "IVF_SQ8",
        "CATALENS_INDEX_PARAMS": json.dumps(dict(IVF.params)),
        "CATALENS_MILVUS_SHARDS": "2",  # its own shard count, made with it
    }
    child = Child(
        "sink-ivf",
        [sys.executable, "-m", "catalens", "sink"],
        stack.workdir / "logs" / "sink-ivf.log",
        env=env,
    )
    stack.children["sink-ivf"] = child.start()
    for round_ in range(3):  # the live stream flows while the IVF_SQ8 generation is built
        more = traffic(products, seed=10 + round_, count=40)
        produce_stream(stack, more)
        stream += more
        time.sleep(2)
    expected = expected_state(stream)
    stack.wait_indexed(expected, timeout_s=180)
    wait_for(
        lambda: live(stack, tiny_model, products, rebuilt, IVF) == expected,
        240,
        "the IVF_SQ8 generation to hold every product's latest version",
    )

    status = json.loads(stack.cli("index", "status", "--json").stdout)
    by_name = {g["name"]: g for g in status}
    assert set(by_name) == {served, rebuilt}
    assert (by_name[served]["index"]["type"], by_name[rebuilt]["index"]["type"]) == (
        "HNSW",
        "IVF_SQ8",
    )
    assert by_name[rebuilt]["index"]["params"]["nlist"] == 16
    assert (by_name[served]["shards"], by_name[rebuilt]["shards"]) == (1, 2)
    assert by_name[served]["serving"] and not by_name[rebuilt]["serving"]
    assert by_name[served]["rows"] == by_name[rebuilt]["rows"] == len(expected)
    # An index of 1-byte dimensions takes a quarter of one of 4-byte floats and links.
    assert by_name[rebuilt]["memory_bytes"] < by_name[served]["memory_bytes"] / 4

    promoted = stack.cli("index", "promote", rebuilt)
    assert promoted.returncode == 0, promoted.stderr
    wait_for(
        lambda: (
            httpx.get(f"{stack.api}/info", timeout=10).json()["collection"]
            == f"{stack.collection}__{rebuilt}"
        ),
        60,
        "the API to search the IVF_SQ8 generation",
    )
    assert stack.indexed() == expected
    time.sleep(1)
    watcher.done.set()
    watcher.join(30)
    assert {code for code, _ in watcher.seen} == {200}, "a search failed during the switch"
    assert watcher.models() == [str(tiny_model)]  # one model throughout: nothing re-encoded

    # No model was loaded for the rebuild: only a sink ran, and it never loads one.
    sink_log = stack.log("sink-ivf")
    assert "catalens.encoder" not in sink_log and "Loading weights" not in sink_log
    assert "IVF_SQ8" in sink_log  # it made the generation with its index
