"""An in-memory index: the sink's and the query API's store without Milvus.

It passes the same contract suite as the Milvus adapters (``tests/contract/test_store.py``),
so what the sink's property tests prove over it holds for Milvus too. Search is exact
(inner product over every row) and takes no filter expression: filters are Milvus
expressions, which only Milvus evaluates.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from catalens.errors import OperatorError
from catalens.schemas.embedding import Vector
from catalens.store.values import UNKNOWN_OFFSET, Floor, Hit, ModelIdentity, Plan, Row, Stored


class MemoryIndex:
    """Implements :class:`catalens.store.IndexWriter` and :class:`~catalens.store.IndexReader`."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.floors: dict[str, Floor] = {}
        self.identity: ModelIdentity | None = None
        self._lock = threading.Lock()

    def open(self) -> ModelIdentity | None:
        return self.identity

    def create(self, identity: ModelIdentity) -> None:
        with self._lock:
            if self.identity is None:
                self.identity = identity
            elif (why := self.identity.differs(identity)) is not None:
                raise OperatorError(f"generation of {self.identity.name}: {why}")

    def stored(self, product_ids: Sequence[str]) -> dict[str, Stored]:
        with self._lock:
            out: dict[str, Stored] = {}
            for p in product_ids:
                row, floor = self.rows.get(p), self.floors.get(p)
                out[p] = Stored(
                    live=None if row is None else row.version,
                    deleted_upto=None if floor is None else floor.deleted_upto,
                    input_offset=UNKNOWN_OFFSET if row is None else row.input_offset,
                    wiped_upto=UNKNOWN_OFFSET if floor is None else floor.wiped_upto,
                )
            return out

    def apply(self, plan: Plan) -> None:
        with self._lock:
            if plan.upserts and self.identity is None:
                raise RuntimeError("create() the generation before writing vectors")
            self.floors.update((f.product_id, f) for f in plan.floors)
            for p in plan.deletes:
                self.rows.pop(p, None)
            for row in plan.upserts:
                vector = np.asarray(row.vector, dtype=np.float32).copy()
                self.rows[row.product_id] = replace(row, vector=vector)

    def search(
        self, vectors: Sequence[Vector], *, k: int, offset: int = 0, expr: str = "", ef: int = 64
    ) -> list[list[Hit]]:
        if expr:
            raise ValueError("the in-memory index evaluates no Milvus filter expressions")
        with self._lock:
            rows = list(self.rows.values())
        if not rows:
            return [[] for _ in vectors]
        matrix = np.stack([row.vector for row in rows])
        results = []
        for vector in vectors:
            scores = matrix @ np.asarray(vector, dtype=np.float32)
            order = np.argsort(-scores, kind="stable")[offset : offset + k]
            results.append([_hit(rows[i], float(scores[i])) for i in order])
        return results

    def get(self, product_ids: Sequence[str], *, with_vector: bool = False) -> list[Row]:
        with self._lock:
            found = [self.rows[p] for p in dict.fromkeys(product_ids) if p in self.rows]
        empty = np.zeros(0, dtype=np.float32)
        return [r if with_vector else replace(r, vector=empty) for r in found]

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


def _hit(row: Row, score: float) -> Hit:
    return Hit(row.product_id, score, row.version, dict(row.attributes), row.image)
