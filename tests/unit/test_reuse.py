"""Which re-published images get their vector back, and what the cache keeps."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from catalens.embedder.reuse import Fresh, ImageReuse, Known
from catalens.embedder.sources import Fetched, Validators
from catalens.schemas import ImageRef, ProductImageEvent


def event(pid: str, image: dict[str, str]) -> ProductImageEvent:
    return ProductImageEvent.model_validate(
        {
            "event_id": f"e-{pid}",
            "op": "upsert",
            "product_id": pid,
            "version": 1,
            "occurred_at": "2026-11-24T10:00:00Z",
            "image": image,
        }
    )


def read(reuse: ImageReuse, evt: ProductImageEvent, fetch: Any, image: int = 0) -> Known | Fresh:
    """What ``reuse`` knows of ``evt``'s image ``image`` (its only one, by default)."""
    return reuse.read(evt.product_id, evt.product_images()[image], fetch)


def inline(data: bytes) -> dict[str, str]:
    return {"data": base64.b64encode(data).decode()}


class Server:
    """Stands in for ``ImageSource.fetch``: answers 304 when the validators it is sent are
    the current ones, and records what it was asked."""

    def __init__(self, body: bytes, etag: str | None = '"v1"') -> None:
        self.body = body
        self.etag = etag
        self.asked: list[Validators | None] = []

    def __call__(self, ref: ImageRef, known: Validators | None) -> Fetched:
        self.asked.append(known)
        if ref.data is not None:
            return Fetched(base64.b64decode(ref.data))
        assert ref.url is not None
        if known is not None and self.etag is not None and known.etag == self.etag:
            return Fetched(None, known)
        return Fetched(self.body, Validators(ref.url, self.etag) if self.etag else None)


def embed(reuse: ImageReuse, evt: ProductImageEvent, fetch: Any, seed: int = 0) -> Known | Fresh:
    """Read ``evt`` through ``reuse``; a fresh image gets a made-up vector remembered."""
    found = read(reuse, evt, fetch)
    if isinstance(found, Fresh):
        vector = np.random.default_rng(seed).random(4, dtype=np.float32)
        reuse.remember(
            (evt.product_id, "0"),
            found.origin,
            vector,
            "thumb" if evt.image and evt.image.data else None,
        )
    return found


def test_the_same_bytes_for_the_same_product_give_back_the_vector_made_of_them() -> None:
    reuse = ImageReuse(10)
    first = embed(reuse, event("a", inline(b"one")), Server(b""), seed=1)
    again = read(reuse, event("a", inline(b"one")), Server(b""))
    assert isinstance(first, Fresh) and isinstance(again, Known)
    assert again.digest == first.origin.digest
    assert np.array_equal(again.vector, np.random.default_rng(1).random(4, dtype=np.float32))
    assert again.thumbnail == "thumb"


def test_changed_bytes_are_embedded_again() -> None:
    reuse = ImageReuse(10)
    embed(reuse, event("a", inline(b"one")), Server(b""))
    changed = read(reuse, event("a", inline(b"two")), Server(b""))
    assert isinstance(changed, Fresh) and changed.data == b"two"


def test_the_same_bytes_for_another_product_are_embedded_again() -> None:
    """Entries are per product (what a re-publish needs, and what bounds the cache by
    catalog size); a shared image is embedded once per product."""
    reuse = ImageReuse(10)
    embed(reuse, event("a", inline(b"one")), Server(b""))
    assert isinstance(read(reuse, event("b", inline(b"one")), Server(b"")), Fresh)


def test_a_url_is_fetched_conditionally_and_a_304_reuses_the_vector() -> None:
    reuse = ImageReuse(10)
    server = Server(b"jpeg")
    embed(reuse, event("a", {"url": "https://cdn/a.jpg"}), server)
    again = read(reuse, event("a", {"url": "https://cdn/a.jpg"}), server)
    assert server.asked == [None, Validators("https://cdn/a.jpg", '"v1"')]
    assert isinstance(again, Known)
    server.etag = '"v2"'  # the image changed behind the same URL
    server.body = b"new jpeg"
    assert isinstance(read(reuse, event("a", {"url": "https://cdn/a.jpg"}), server), Fresh)


def test_validators_are_sent_only_for_the_url_they_came_from() -> None:
    reuse = ImageReuse(10)
    server = Server(b"jpeg")
    embed(reuse, event("a", {"url": "https://cdn/a.jpg"}), server)
    moved = read(reuse, event("a", {"url": "https://cdn/b.jpg"}), server)
    assert server.asked[-1] is None
    # The same bytes from the new URL still reuse the vector, and the new URL's
    # validators are the ones asked with next time.
    assert isinstance(moved, Known) and moved.url == "https://cdn/b.jpg"
    read(reuse, event("a", {"url": "https://cdn/b.jpg"}), server)
    assert server.asked[-1] == Validators("https://cdn/b.jpg", '"v1"')


def test_an_inline_image_is_not_given_a_vector_made_for_a_url_without_a_thumbnail() -> None:
    """Inline images are shown by their thumbnail: reusing a URL's entry would lose it."""
    reuse = ImageReuse(10)
    embed(reuse, event("a", {"url": "https://cdn/a.jpg"}), Server(b"jpeg"))
    assert isinstance(read(reuse, event("a", inline(b"jpeg")), Server(b"")), Fresh)


def test_the_cache_holds_at_most_its_capacity_least_recently_used_out_first() -> None:
    reuse = ImageReuse(2)
    for pid in ("a", "b"):
        embed(reuse, event(pid, inline(pid.encode())), Server(b""))
    read(reuse, event("a", inline(b"a")), Server(b""))  # a is now the most recent
    embed(reuse, event("c", inline(b"c")), Server(b""))
    assert len(reuse) == 2
    assert isinstance(read(reuse, event("a", inline(b"a")), Server(b"")), Known)
    assert isinstance(read(reuse, event("b", inline(b"b")), Server(b"")), Fresh)


def test_a_cache_of_size_zero_keeps_nothing() -> None:
    reuse = ImageReuse(0)
    embed(reuse, event("a", inline(b"one")), Server(b""))
    assert len(reuse) == 0
    assert isinstance(read(reuse, event("a", inline(b"one")), Server(b"")), Fresh)


def test_a_kept_vector_is_a_copy_the_batch_it_came_from_cannot_change() -> None:
    reuse = ImageReuse(10)
    found = read(reuse, event("a", inline(b"one")), Server(b""))
    assert isinstance(found, Fresh)
    batch = np.ones((3, 4), dtype=np.float32)
    reuse.remember(("a", "0"), found.origin, batch[1], "thumb")
    batch[1] = 0
    known = read(reuse, event("a", inline(b"one")), Server(b""))
    assert isinstance(known, Known)
    assert known.vector.tolist() == [1.0] * 4 and known.vector.base is None


def test_entries_are_per_image_so_a_new_image_runs_the_model_alone() -> None:
    """Version 2 adds a back view: the front view's vector is reused, the back is new."""
    images = [{"id": "front", **inline(b"front")}, {"id": "back", **inline(b"back")}]
    first = ProductImageEvent.model_validate(
        {
            "schema_version": 2,
            "event_id": "e1",
            "op": "upsert",
            "product_id": "a",
            "version": 1,
            "occurred_at": "2026-11-24T10:00:00Z",
            "images": images[:1],
        }
    )
    second = first.model_copy(update={"version": 2})
    second = ProductImageEvent.model_validate(
        second.model_dump(exclude_none=True) | {"images": images}
    )
    reuse = ImageReuse(10)
    found = read(reuse, first, Server(b""))
    assert isinstance(found, Fresh)
    reuse.remember(("a", "front"), found.origin, np.ones(4, dtype=np.float32), "thumb")
    assert isinstance(read(reuse, second, Server(b""), 0), Known)
    assert isinstance(read(reuse, second, Server(b""), 1), Fresh)
