"""Text → vector (micro-batched, LRU-cached) and the timed search call (no HTTP here)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from catalens.schemas.embedding import Vector

MAX_QUERY_CHARS = 1000


class TextBatcher:
    """Encodes concurrent queries together, in the callers' own threads.

    The text tower is memory-bound: one forward pass over 8 queries costs about what one
    costs, because the weights are read once either way. The first caller to find the
    tower idle becomes the leader: it encodes, in its own thread, what waits (up to
    ``max_batch``, its own query included) and keeps encoding batches until its own
    query is done; then the lead passes to a caller still waiting. Callers that arrive
    while a batch runs wait for the next one. So a lone query is encoded at once, in the
    request's thread, with no hand-off to another thread and back (each hand-off is a
    thread wake-up and a wait for the GIL, on cores Milvus shares).

    Every caller gets its own text's vector or its batch's error; a caller is never
    left waiting once no batch runs.
    """

    def __init__(self, encode: Callable[[Sequence[str]], np.ndarray], max_batch: int = 16):
        self._encode = encode
        self._max_batch = max_batch
        self._pending: list[tuple[str, Future[Vector]]] = []
        self._changed = threading.Condition()
        self._leading = False
        self.batches = 0
        self.queries = 0

    @property
    def waiting(self) -> int:
        """Queries waiting for a batch (not counting a batch being encoded)."""
        with self._changed:
            return len(self._pending)

    def __call__(self, text: str) -> Vector:
        future: Future[Vector] = Future()
        with self._changed:
            self._pending.append((text, future))
            while self._leading and not future.done():
                self._changed.wait()
            if future.done():
                return future.result()
            self._leading = True
        try:
            while not future.done():
                with self._changed:
                    batch = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
                self._run(batch)
                with self._changed:
                    self._changed.notify_all()  # its callers, now answered
        finally:
            with self._changed:
                self._leading = False
                self._changed.notify_all()  # a waiting caller takes the lead
        return future.result()

    def close(self) -> None:
        """Nothing to stop: no thread of its own. Kept so a retired generation's
        services close alike, whatever they hold."""

    def _run(self, batch: list[tuple[str, Future[Vector]]]) -> None:
        texts = list(dict.fromkeys(text for text, _ in batch))
        try:
            vectors = dict(zip(texts, self._encode(texts), strict=True))
        except BaseException as exc:
            for _, future in batch:  # every caller of the batch gets the error
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise  # an interrupt goes on up, after the callers have their answer
            return
        self.batches += 1
        self.queries += len(batch)
        for text, future in batch:
            future.set_result(vectors[text])


class TextVectors:
    """Query text → normalised vector, memoised (LRU) on the whitespace-normalised text."""

    def __init__(self, encode: Callable[[str], Vector], capacity: int) -> None:
        self._encode = encode
        self._capacity = capacity
        self._cache: OrderedDict[str, Vector] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def normalise(text: str) -> str:
        return " ".join(text.split())

    def __call__(self, text: str) -> tuple[Vector, bool]:
        """The vector of ``text`` and whether it came from the cache."""
        key = self.normalise(text)
        with self._lock:
            vector = self._cache.get(key)
            if vector is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return vector, True
        vector = self._encode(key)
        with self._lock:
            self.misses += 1
            if self._capacity:
                self._cache[key] = vector
                if len(self._cache) > self._capacity:
                    self._cache.popitem(last=False)
        return vector, False
