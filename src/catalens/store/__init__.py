"""The vector index seam: what the sink writes through and the query API reads through.

The sink is typed against :class:`IndexWriter`, the query API against
:class:`IndexReader`. ``catalens.store.writer`` / ``reader`` implement them over Milvus
(``client`` wraps pymilvus, ``admin`` owns the layout) and ``catalens.store.memory`` in
memory; one contract suite (``tests/contract/test_store.py``) runs against both, the
sink's property tests included. This module imports no client library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from catalens.schemas.embedding import Vector
from catalens.store.values import Hit, ModelIdentity, Plan, Row, Stored

__all__ = ["IndexReader", "IndexWriter"]


class IndexWriter(Protocol):
    """One generation of the index, as the sink sees it.

    Every call either succeeds, raises ``TransientError`` (retry later; nothing is lost,
    since applying the same plan again is idempotent), or raises a bug.
    """

    def open(self) -> ModelIdentity | None:
        """Reach the store, prepare what exists, and return the identity of the model the
        generation holds (None while it has no vectors yet). Idempotent, and cheap once
        the generation exists: call it again to learn of one another replica created."""

    def create(self, identity: ModelIdentity) -> None:
        """Make the generation for ``identity`` (idempotent). Raises ``OperatorError``
        when it exists for another identity."""

    def stored(self, product_ids: Sequence[str]) -> Mapping[str, Stored]:
        """What the index holds for each product: live version, the input position of the
        live row, and the delete floor. Sees every write that :meth:`apply` returned
        from, so a batch is planned against its predecessor's effect."""

    def apply(self, plan: Plan) -> None:
        """Write floors, then deletes, then upserts (upserts need :meth:`create` first).
        A crash between the steps leaves a state that applying the plan again completes."""


class IndexReader(Protocol):
    """The generation the alias serves, as the query API sees it."""

    def search(
        self, vectors: Sequence[Vector], *, k: int, offset: int = 0, expr: str = "", ef: int = 64
    ) -> list[list[Hit]]: ...

    def get(self, product_ids: Sequence[str], *, with_vector: bool = False) -> list[Row]: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...
