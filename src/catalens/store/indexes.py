"""The vector index of a generation (pure): which types there are, what each needs to be
built and searched, which servers offer it, and what it costs in memory.

A generation records its index (type, build parameters, search parameters) when it is
made; the query side searches it with those search parameters unless the API is told
others (``CATALENS_SEARCH_PARAMS``). Another index for the same model is another
generation, built beside the served one by a sink alone from the embedding topic
(README, "Choosing the index").

The search parameters a type gets by default were chosen by measurement: the smallest
that reached recall@10 ≥ 0.95 on a million clustered 512-d vectors (docs/scale.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from catalens.errors import OperatorError
from catalens.store.values import ServerFeatures


@dataclass(frozen=True)
class IndexKind:
    """One index type: its build and search parameters by default, where it exists, and
    the memory a vector of ``dim`` floats takes in it (bytes; the query node's RAM)."""

    build: Mapping[str, Any]
    search: Mapping[str, Any]
    since: tuple[int, int]  # the Milvus release that has it
    lite: bool  # Milvus Lite 3 has it
    graph: bool = False  # searched with ef (HNSW*): ef must cover the page

    def vector_bytes(self, dim: int, params: Mapping[str, Any]) -> float:
        raise NotImplementedError


class _Hnsw(IndexKind):
    def vector_bytes(self, dim: int, params: Mapping[str, Any]) -> float:
        # The vector (float32) and ~2·M neighbour ids of 4 bytes on the bottom layer.
        return 4 * dim + 8 * int(params.get("M", 16))


class _HnswSq(IndexKind):
    def vector_bytes(self, dim: int, params: Mapping[str, Any]) -> float:
        return dim + 8 * int(params.get("M", 16))  # one byte a dimension


class _Flat(IndexKind):
    def vector_bytes(self, dim: int, params: Mapping[str, Any]) -> float:
        return 4 * dim


class _Sq8(IndexKind):
    def vector_bytes(self, dim: int, params: Mapping[str, Any]) -> float:
        return dim


class _Pq(IndexKind):
    def vector_bytes(self, dim: int, params: Mapping[str, Any]) -> float:
        return int(params.get("m", dim // 8)) * int(params.get("nbits", 8)) / 8


class _DiskAnn(IndexKind):
    def vector_bytes(self, dim: int, params: Mapping[str, Any]) -> float:
        # The graph and the full vectors stay on disk; memory holds PQ codes of the vectors
        # (about an eighth of them, by Milvus' default) to steer the walk.
        return dim / 2


KINDS: dict[str, IndexKind] = {
    "HNSW": _Hnsw({"M": 16, "efConstruction": 200}, {"ef": 64}, (2, 0), True, graph=True),
    "HNSW_SQ": _HnswSq(
        {"M": 16, "efConstruction": 200, "sq_type": "SQ8"}, {"ef": 64}, (2, 6), True, graph=True
    ),
    "IVF_FLAT": _Flat({"nlist": 1024}, {"nprobe": 16}, (2, 0), True),
    "IVF_SQ8": _Sq8({"nlist": 1024}, {"nprobe": 16}, (2, 0), True),
    "IVF_PQ": _Pq({"nlist": 1024, "m": 64, "nbits": 8}, {"nprobe": 16}, (2, 0), False),
    "DISKANN": _DiskAnn({}, {"search_list": 100}, (2, 2), False),
}
DEFAULT_INDEX = "HNSW"


def offered(features: ServerFeatures) -> tuple[str, ...]:
    """The index types the server offers, by its version (Milvus Lite: its own list)."""
    lite = features.version.lower().startswith("milvus_lite")
    release = features.release
    return tuple(
        name for name, kind in KINDS.items() if (kind.lite if lite else release >= kind.since)
    )


@dataclass(frozen=True)
class IndexSpec:
    """A generation's index: its type, its build parameters, its search parameters."""

    type: str = DEFAULT_INDEX
    params: Mapping[str, Any] = field(default_factory=dict)
    search: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        type: str = DEFAULT_INDEX,
        params: Mapping[str, Any] | None = None,
        search: Mapping[str, Any] | None = None,
    ) -> IndexSpec:
        """``type`` with its defaults under the parameters given (an OperatorError names
        the types there are for one that is not)."""
        kind = KINDS.get(type.upper())
        if kind is None:
            raise OperatorError(f"index {type!r} is not one Catalens builds: {', '.join(KINDS)}")
        return cls(
            type.upper(),
            {**kind.build, **(params or {})},
            {**kind.search, **(search or {})},
        )

    @property
    def kind(self) -> IndexKind:
        return KINDS[self.type]

    def check(self, features: ServerFeatures) -> None:
        """An :class:`OperatorError` when the server does not offer this index."""
        there = offered(features)
        if self.type not in there:
            raise OperatorError(
                f"index {self.type} is not offered by Milvus {features.version}; it offers "
                f"{', '.join(there)}"
            )

    def vector_bytes(self, dim: int) -> float:
        return self.kind.vector_bytes(dim, self.params)

    def search_params(
        self, limit: int, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The search parameters of a search for ``limit`` rows: the generation's, under
        ``overrides``, raised where the type needs them to cover the page (ef and
        search_list at least ``limit``)."""
        params = {**self.search, **dict(overrides or {})}
        for name in ("ef", "search_list"):
            if name in params:
                params[name] = max(int(params[name]), limit)
        return params

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "params": dict(self.params), "search": dict(self.search)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> IndexSpec:
        """What a generation recorded; a generation made before it recorded one has the
        HNSW Catalens made then (M 16, efConstruction 200)."""
        if not raw:
            return cls.of(DEFAULT_INDEX)
        return cls(str(raw["type"]), dict(raw.get("params", {})), dict(raw.get("search", {})))


def parse_params(text: str, what: str) -> dict[str, Any]:
    """A JSON object of parameters from a setting (``CATALENS_INDEX_PARAMS``)."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OperatorError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise OperatorError(f"{what} must be a JSON object, not {text!r}")
    return value
