"""Search quality as numbers, through the real broker and Milvus Lite: `catalens eval` on
the sample catalog's shipped judgments, and `catalens index promote --eval` refusing a
generation that searches worse.

The model is a tiny CLIP with random weights, so vector search ranks by noise here; what
the judgments can measure is how well words are matched, which is real: keyword search on
names, descriptions and attributes, and what hybrid search keeps of it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from catalens.encoder.files import resolve_model_dir, weights_digest
from catalens.producer.sample import write_sample_catalog
from catalens.settings import generation_name
from catalens.store.client import Milvus
from catalens.store.reader import MilvusReader
from catalens.store.values import ModelIdentity, Plan, Row
from catalens.store.writer import MilvusWriter
from tests.integration.stack import Stack
from tests.waits import wait_for

pytestmark = pytest.mark.integration


def figures(stack: Stack, judgments: Path, *extra: str) -> dict[str, Any]:
    done = stack.cli("eval", str(judgments), "--json", *extra, timeout_s=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_eval_measures_each_mode_and_promote_refuses_a_generation_that_searches_worse(
    lite_stack: Stack, tiny_model: Path
) -> None:
    stack = lite_stack
    sample = stack.workdir / "sample"
    csv = write_sample_catalog(sample, count=40)
    judgments = sample / "judgments.jsonl"
    stack.extra_env["CATALENS_IMAGE_ROOTS"] = str(sample / "images")
    stack.start("embedder", "sink")
    published = stack.cli("publish", str(csv), "--quiet")
    assert published.returncode == 0, published.stderr[-3000:]
    ids = [json.loads(line) for line in judgments.read_text().splitlines()]
    every = sorted({p for judgment in ids for p in judgment["relevant"]})
    stack.start("api")
    wait_for(lambda: len(stack.indexed()) == 40, 240, "the sample catalog in the index")

    measured = figures(stack, judgments)
    modes = measured["modes"]
    assert set(modes) == {"vector", "keyword", "hybrid"}
    for quality in modes.values():
        assert quality["queries"] == len(ids) and quality["k"] == 10
    print(json.dumps(measured, indent=2))
    keyword, hybrid, vector = (modes[m]["ndcg@10"] for m in ("keyword", "hybrid", "vector"))
    # Words are matched: the judgments' queries are the catalog's own words.
    assert keyword >= 0.85
    assert modes["keyword"]["mrr"] >= 0.9
    # A random model's vectors rank by noise; fused with the words, hybrid keeps most of
    # what keyword search finds and stays well above vector search alone.
    assert vector < 0.5
    assert vector + 0.2 < hybrid <= keyword + 0.05
    one = figures(stack, judgments, "--mode", "keyword", "--k", "5")
    assert set(one["modes"]) == {"keyword"} and one["modes"]["keyword"]["k"] == 5

    # A candidate with the same products and vectors, and the products' words mixed up.
    served = generation_name(str(tiny_model))
    worse = f"{served}_mixed"
    milvus = Milvus(stack.milvus_uri)
    try:
        products = MilvusReader(milvus, stack.collection).products(every, with_vectors=True)
        assert len(products) == len(every)
        texts = [(p.name, p.description, p.attributes) for p in products]
        random.Random(3).shuffle(texts)
        identity = ModelIdentity(
            str(tiny_model), 16, weights_digest(resolve_model_dir(str(tiny_model)))
        )
        writer = MilvusWriter(
            milvus, alias=stack.collection, model=str(tiny_model), generation=worse
        )
        writer.create(identity)
        rows = [
            Row(
                product.product_id,
                image.id,
                product.version,
                image.vector,
                image.image,
                image.position,
                len(product.images),
                attributes,
                name,
                description,
                product.updated_at_ms,
                n,
            )
            for n, (product, (name, description, attributes)) in enumerate(
                zip(products, texts, strict=True)
            )
            for image in product.images
            if image.vector is not None
        ]
        writer.apply(Plan(upserts=rows))
    finally:
        milvus.close()
    mixed = figures(stack, judgments, "--generation", worse, "--mode", "hybrid")
    assert mixed["modes"]["hybrid"]["ndcg@10"] < hybrid - 0.2

    refused = stack.cli("index", "promote", worse, "--eval", str(judgments))
    assert refused.returncode == 1, refused.stdout
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("catalens index promote: not promoted: nDCG@10 (hybrid)"), line
    status = json.loads(stack.cli("index", "status", "--json").stdout)
    assert [g["name"] for g in status if g["serving"]] == [served]
    # Without the quality check the same products pass the promotion check.
    forced = stack.cli("index", "promote", worse)
    assert forced.returncode == 0, forced.stderr[-2000:]
