"""Text → vector (micro-batched, LRU-cached) and the timed search call (no HTTP here)."""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from catalens.schemas.embedding import Vector

MAX_QUERY_CHARS = 1000


class TextBatcher:
    """Encodes concurrent queries together.

    The text tower is memory-bound: one forward pass over 8 queries costs about what one
    costs, because the weights are read once either way. A worker thread takes the first
    waiting query, collects whatever else arrived meanwhile (up to ``max_batch``), encodes
    them in one call and hands each caller its vector. A lone query waits for nobody.
    """

    def __init__(self, encode: Callable[[Sequence[str]], np.ndarray], max_batch: int = 16):
        self._encode = encode
        self._max_batch = max_batch
        self._queue: queue.Queue[tuple[str, Future[Vector]] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="text-batcher", daemon=True)
        self._worker.start()
        self.batches = 0
        self.queries = 0

    def __call__(self, text: str) -> Vector:
        future: Future[Vector] = Future()
        self._queue.put((text, future))
        return future.result()

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            texts = list(dict.fromkeys(text for text, _ in batch))
            try:
                vectors = dict(zip(texts, self._encode(texts), strict=True))
            except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error
                for _, future in batch:
                    future.set_exception(exc)
                continue
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
