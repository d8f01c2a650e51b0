"""The query API's text side: concurrent queries encoded together (TextBatcher) and
query vectors memoised (TextVectors). No model here: encoders are plain functions."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest

from catalens.query_api.encoding import TextBatcher, TextVectors
from catalens.schemas.embedding import Vector
from tests.waits import wait_for


def vector_of(text: str) -> Vector:
    """A vector that differs for every text, so each caller can tell its own."""
    return np.array([zlib.crc32(text.encode()), len(text)], dtype=np.float32)


class GatedEncoder:
    """Records every batch it is given; each call waits at ``gate`` so that queries
    queue up behind it, until the test opens it."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.fail_on = fail_on
        self.thread: threading.Thread | None = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.thread = threading.current_thread()
        self.batches.append(list(texts))
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        if self.fail_on in texts:
            raise RuntimeError(f"cannot encode {self.fail_on!r}")
        return np.stack([vector_of(text) for text in texts])


def queued(batcher: TextBatcher, count: int) -> None:
    """Wait until ``count`` queries wait in the batcher's queue behind the running batch."""
    wait_for(lambda: batcher.waiting >= count, 10, "the queries to reach the queue")


def ask_while_busy(
    batcher: TextBatcher, encoder: GatedEncoder, pool: ThreadPoolExecutor, texts: list[str]
) -> list[Future[Vector]]:
    """Ask ``texts[0]``, and the rest while the encoder holds it; then let everything run."""
    first = pool.submit(batcher, texts[0])
    assert encoder.entered.wait(10)
    rest = [pool.submit(batcher, text) for text in texts[1:]]
    queued(batcher, len(rest))
    encoder.gate.set()
    return [first, *rest]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


def test_a_lone_query_is_encoded_at_once_on_its_own() -> None:
    encoder = GatedEncoder()
    encoder.gate.set()
    batcher = TextBatcher(encoder)
    try:
        assert np.array_equal(batcher("red dress"), vector_of("red dress"))
        assert encoder.batches == [["red dress"]]
        assert (batcher.batches, batcher.queries) == (1, 1)
    finally:
        batcher.close()


def test_queries_arriving_during_an_encoding_are_encoded_together_in_the_next_batch(
    pool: ThreadPoolExecutor,
) -> None:
    encoder = GatedEncoder()
    batcher = TextBatcher(encoder)
    try:
        texts = ["first", "red dress", "blue jeans", "green hat"]
        futures = ask_while_busy(batcher, encoder, pool, texts)
        for text, future in zip(texts, futures, strict=True):
            assert np.array_equal(future.result(10), vector_of(text))  # each its own vector
        assert encoder.batches[0] == ["first"]
        assert sorted(encoder.batches[1]) == sorted(texts[1:])
        assert (batcher.batches, batcher.queries) == (2, 4)
    finally:
        batcher.close()


def test_a_batch_holds_at_most_max_batch_queries(pool: ThreadPoolExecutor) -> None:
    encoder = GatedEncoder()
    batcher = TextBatcher(encoder, max_batch=2)
    try:
        texts = ["first", "a", "b", "c", "d", "e"]
        for future in ask_while_busy(batcher, encoder, pool, texts):
            future.result(10)
        assert [len(batch) for batch in encoder.batches] == [1, 2, 2, 1]
    finally:
        batcher.close()


def test_a_text_asked_twice_in_one_batch_is_encoded_once_and_both_callers_get_it(
    pool: ThreadPoolExecutor,
) -> None:
    encoder = GatedEncoder()
    batcher = TextBatcher(encoder)
    try:
        futures = ask_while_busy(batcher, encoder, pool, ["first", "dress", "dress"])
        assert np.array_equal(futures[1].result(10), vector_of("dress"))
        assert np.array_equal(futures[2].result(10), vector_of("dress"))
        assert encoder.batches[1] == ["dress"]
        assert batcher.queries == 3
    finally:
        batcher.close()


def test_an_encoding_error_reaches_every_caller_of_that_batch_and_later_queries_work(
    pool: ThreadPoolExecutor,
) -> None:
    encoder = GatedEncoder(fail_on="boom")
    batcher = TextBatcher(encoder)
    try:
        futures = ask_while_busy(batcher, encoder, pool, ["first", "boom", "dress"])
        assert np.array_equal(futures[0].result(10), vector_of("first"))
        for future in futures[1:]:  # "dress" was in the failing batch too
            with pytest.raises(RuntimeError, match="cannot encode 'boom'"):
                future.result(10)
        assert np.array_equal(batcher("dress"), vector_of("dress"))
        assert batcher.batches == 2  # the failed batch is not counted
    finally:
        batcher.close()


def test_an_encoder_returning_the_wrong_number_of_vectors_fails_the_callers() -> None:
    batcher = TextBatcher(lambda texts: np.zeros((len(texts) + 1, 2), dtype=np.float32))
    try:
        with pytest.raises(ValueError):
            batcher("dress")
    finally:
        batcher.close()


def test_a_lone_query_is_encoded_in_the_callers_own_thread() -> None:
    encoder = GatedEncoder()
    encoder.gate.set()
    batcher = TextBatcher(encoder)
    batcher("red dress")
    assert encoder.thread is threading.current_thread()


def test_the_lead_passes_on_once_its_own_query_is_done(pool: ThreadPoolExecutor) -> None:
    """The first caller encodes its query; the callers that arrived meanwhile are
    encoded by one of them, not by the first, which returns as soon as it has its own."""
    encoder = GatedEncoder()
    batcher = TextBatcher(encoder)
    threads: dict[str, threading.Thread] = {}

    def ask(text: str) -> Vector:
        threads[text] = threading.current_thread()
        return batcher(text)

    first = pool.submit(ask, "first")
    assert encoder.entered.wait(10)
    first_thread = encoder.thread
    rest = [pool.submit(ask, text) for text in ("a", "b")]
    queued(batcher, 2)
    encoder.gate.set()
    assert np.array_equal(first.result(10), vector_of("first"))
    for text, future in zip(["a", "b"], rest, strict=True):
        assert np.array_equal(future.result(10), vector_of(text))
    assert encoder.batches == [["first"], ["a", "b"]]
    assert encoder.thread is not first_thread
    assert encoder.thread in (threads["a"], threads["b"])


def test_an_interrupt_during_encoding_still_answers_the_batch_and_frees_the_lead() -> None:
    calls: list[list[str]] = []

    def encode(texts: Sequence[str]) -> np.ndarray:
        calls.append(list(texts))
        if len(calls) == 1:
            raise KeyboardInterrupt
        return np.stack([vector_of(text) for text in texts])

    batcher = TextBatcher(encode)
    with pytest.raises(KeyboardInterrupt):
        batcher("dress")
    assert np.array_equal(batcher("dress"), vector_of("dress"))


class CountingEncoder:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, text: str) -> Vector:
        self.texts.append(text)
        return vector_of(text)


def test_a_repeated_query_is_served_from_the_cache() -> None:
    encoder = CountingEncoder()
    texts = TextVectors(encoder, capacity=8)
    vector, cached = texts("red dress")
    assert np.array_equal(vector, vector_of("red dress")) and not cached
    again, cached = texts("red dress")
    assert np.array_equal(again, vector) and cached
    assert encoder.texts == ["red dress"]
    assert (texts.hits, texts.misses) == (1, 1)


def test_queries_that_differ_only_in_whitespace_share_one_entry() -> None:
    encoder = CountingEncoder()
    texts = TextVectors(encoder, capacity=8)
    texts("  red \t dress\n")
    _, cached = texts("red dress")
    assert cached
    assert encoder.texts == ["red dress"]  # the encoder sees the normalised text


def test_the_cache_holds_at_most_capacity_texts_and_evicts_the_least_recently_used() -> None:
    encoder = CountingEncoder()
    texts = TextVectors(encoder, capacity=3)
    for text in ("a", "b", "c"):
        texts(text)
    assert texts("a")[1]  # a is now the most recently used
    texts("d")  # evicts b, the least recently used
    assert [texts(text)[1] for text in ("a", "c", "d")] == [True, True, True]
    assert texts("b")[1] is False
    for i in range(100):
        texts(f"q{i}")
    assert [texts(f"q{i}")[1] for i in (97, 98, 99)] == [True, True, True]
    assert texts("q96")[1] is False


def test_a_capacity_of_zero_caches_nothing() -> None:
    encoder = CountingEncoder()
    texts = TextVectors(encoder, capacity=0)
    assert [texts("dress")[1] for _ in range(3)] == [False, False, False]
    assert encoder.texts == ["dress"] * 3


def test_an_encoding_error_reaches_the_caller_and_nothing_is_cached() -> None:
    failures = [RuntimeError("encoder down")]

    def encode(text: str) -> Vector:
        if failures:
            raise failures.pop()
        return vector_of(text)

    texts = TextVectors(encode, capacity=8)
    with pytest.raises(RuntimeError, match="encoder down"):
        texts("dress")
    vector, cached = texts("dress")
    assert np.array_equal(vector, vector_of("dress")) and not cached
    assert (texts.hits, texts.misses) == (0, 1)
