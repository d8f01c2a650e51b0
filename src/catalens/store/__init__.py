"""The vector index seam: what the sink writes through and the query API reads through.

The sink is typed against :class:`IndexWriter`, the query API against
:class:`IndexReader`. ``catalens.store.writer`` / ``reader`` implement them over Milvus
(``client`` wraps pymilvus, ``admin`` owns the layout), ``catalens.store.memory`` in
memory, and ``catalens.store.empty`` is what the API serves before any generation exists.
One contract suite (``tests/contract/test_store.py``) runs against the in-memory index,
Milvus 2.3.5 and Milvus Lite, the sink's property tests included. This module imports no
client library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from catalens.store.values import (
    Capabilities,
    Hit,
    ModelIdentity,
    Plan,
    Product,
    Search,
    Stored,
)

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
        """What the index holds for each product: its rows (image, version, input position,
        image count) and its delete floor. Sees every write that :meth:`apply` returned
        from, so a batch is planned against its predecessor's effect."""

    def apply(self, plan: Plan) -> None:
        """Write floors, then remove rows, then upsert rows (upserts need :meth:`create`
        first). A crash between or inside the steps leaves a state that applying the plan
        again completes (:attr:`Stored.complete` tells a half-written product)."""


class IndexReader(Protocol):
    """The generation the alias serves, as the query API sees it. Every search answers
    products, each at most once, ranked by its best-matching image."""

    def capabilities(self) -> Capabilities: ...

    def search(self, search: Search) -> list[Hit]: ...

    def products(self, product_ids: Sequence[str], *, with_vectors: bool = False) -> list[Product]:
        """The products among ``product_ids`` that the index holds, with every image."""

    def ping(self) -> None: ...

    def close(self) -> None: ...
