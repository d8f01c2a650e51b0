"""The index an API serves before any generation exists: it holds nothing, so every search,
whatever its filters, finds nothing, and every product is unknown."""

from __future__ import annotations

from collections.abc import Sequence

from catalens.store.values import Capabilities, Hit, Product, Search


class EmptyIndex:
    """Implements :class:`catalens.store.IndexReader` for an index with no generation yet.
    ``capabilities`` are those of the server the first generation will be made on."""

    def __init__(self, capabilities: Capabilities | None = None) -> None:
        self._capabilities = capabilities or Capabilities()

    def capabilities(self) -> Capabilities:
        return self._capabilities

    def search(self, search: Search) -> list[Hit]:
        return []

    def products(self, product_ids: Sequence[str], *, with_vectors: bool = False) -> list[Product]:
        return []

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass
