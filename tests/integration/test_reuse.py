"""Re-publishing products whose images did not change, through the real broker and Milvus:
no model runs, and the index gets the new attributes with the vectors it had."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.conftest import jpeg_bytes
from tests.integration.conftest import ImageServer
from tests.integration.stack import Stack, event

pytestmark = pytest.mark.integration


def test_an_attribute_only_republish_reuses_the_vectors_and_updates_the_attributes(
    stack: Stack, image_server: ImageServer
) -> None:
    """The URL is fetched conditionally (the image server answers If-Modified-Since with
    304); the inline image is recognised by its bytes. The embedder's closing count says
    the model ran for the first two events only."""
    (image_server.root / "a.jpg").write_bytes(jpeg_bytes(seed=1))
    images = {
        "p-url": {"url": image_server.url("a.jpg")},
        "p-data": {"data": base64.b64encode(jpeg_bytes(seed=2)).decode()},
    }
    stack.start("embedder", "sink", "api")
    stack.publish(*(event(pid, 1, image=image, price=10.0) for pid, image in images.items()))
    stack.wait_indexed({"p-url": 1, "p-data": 1})
    before = {p.product_id: p for p in stack.products(list(images), with_vectors=True)}

    stack.publish(*(event(pid, 2, image=image, price=8.5) for pid, image in images.items()))
    stack.wait_indexed({"p-url": 2, "p-data": 2})
    after = {p.product_id: p for p in stack.products(list(images), with_vectors=True)}
    for pid in images:
        assert after[pid].attributes == {"price": 8.5}
        (old,), (new,) = before[pid].images, after[pid].images
        assert old.vector is not None and new.vector is not None
        assert np.array_equal(new.vector, old.vector)
        assert new.image == old.image

    assert stack.terminate("embedder") == 0
    assert "embedder stopped: embedded 2, reused 2, dead-lettered 0" in stack.log("embedder")
