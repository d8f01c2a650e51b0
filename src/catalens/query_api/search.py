"""Text → vector with an LRU cache, and the search call itself (no HTTP here)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from catalens.schemas.embedding import Vector
from catalens.store import Hit, VectorStore

MAX_QUERY_CHARS = 1000


class TextVectors:
    """Query text → normalised vector, memoised (LRU) on the whitespace-normalised text."""

    def __init__(self, encode: Callable[[Sequence[str]], np.ndarray], capacity: int) -> None:
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
        vector = self._encode([key])[0]
        with self._lock:
            self.misses += 1
            if self._capacity:
                self._cache[key] = vector
                if len(self._cache) > self._capacity:
                    self._cache.popitem(last=False)
        return vector, False


@dataclass(frozen=True)
class Timed:
    hits: list[Hit]
    encode_ms: float
    search_ms: float


def timed_search(
    store: VectorStore, vector: Vector, *, k: int, offset: int, expr: str, ef: int
) -> tuple[list[Hit], float]:
    started = time.perf_counter()
    hits = store.search([vector], k=k, offset=offset, expr=expr, ef=ef)[0]
    return hits, (time.perf_counter() - started) * 1000
