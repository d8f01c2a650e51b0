"""Plain values of the index seam: the rows of a product's images, what the index knows of
a product, the writes a plan makes, a search and its hits, filters, and the identity of a
generation. No client library.

The index holds one row per image. A product is the set of rows that share its id, its
version and the input position of the event they were made from; every row also says how
many images the product has, so a set that a crash left half-written is recognisable
(:attr:`Stored.complete`) and is written again by the redelivery.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from catalens.errors import CatalensError
from catalens.schemas.embedding import Vector
from catalens.schemas.event import AttributeValue

# The input position of a record that does not carry one (written by an older embedder).
UNKNOWN_OFFSET = -1

# (product id, image id): what identifies a row.
RowKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Row:
    """One image of a live product."""

    product_id: str
    image_id: str
    version: int
    vector: Vector
    image: str | None = None  # a URL, a path, or a thumbnail data URI: what shows it
    position: int = 0  # its place in the product's list; 0 is the product's main image
    images: int = 1  # how many images the product has at this version
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    name: str = ""
    description: str = ""
    updated_at_ms: int = 0
    # Position in the input topic of the event the row was made from (UNKNOWN_OFFSET when
    # not known). All events of a product share one input partition, so this orders them,
    # and it stays the same however often the embedder re-emits the event or the sink
    # re-reads it: a tombstone removes only rows made from events before it.
    input_offset: int = UNKNOWN_OFFSET

    @property
    def key(self) -> RowKey:
        return (self.product_id, self.image_id)


@dataclass(frozen=True, slots=True)
class ProductImage:
    """One image of an indexed product, as the query side shows it."""

    id: str
    position: int
    image: str | None
    vector: Vector | None = None  # only when asked for


@dataclass(frozen=True, slots=True)
class Product:
    """An indexed product with all its images, main image first."""

    product_id: str
    version: int
    images: tuple[ProductImage, ...]
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    name: str = ""
    description: str = ""
    updated_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class Hit:
    """One product in a search's results: its best-matching image and that image's score."""

    product_id: str
    score: float
    version: int
    attributes: dict[str, AttributeValue]
    image: str | None  # the matched image's reference
    matched_image: str = "0"
    images: int = 1
    name: str = ""
    # Words of the product's text that the query matched, where the server reports them
    # (keyword and hybrid search on Milvus ≥ 2.6).
    matched_words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One row as the sink's plan needs to know it."""

    image_id: str
    version: int
    input_offset: int
    images: int  # the image count its product had when the row was written


@dataclass(frozen=True, slots=True)
class Stored:
    """What the index knows of a product: its rows (ordered by image id) and what its
    deletes left behind."""

    rows: tuple[StoredImage, ...] = ()
    deleted_upto: int | None = None
    # Input position of the last tombstone applied: rows made from events before it are
    # gone, and an upsert from before it, however late it arrives, stays out.
    wiped_upto: int = UNKNOWN_OFFSET

    @staticmethod
    def of(
        rows: Sequence[StoredImage],
        deleted_upto: int | None = None,
        wiped_upto: int = UNKNOWN_OFFSET,
    ) -> Stored:
        return Stored(tuple(sorted(rows, key=lambda r: r.image_id)), deleted_upto, wiped_upto)

    def _newest(self) -> StoredImage | None:
        return max(self.rows, key=lambda r: (r.version, r.input_offset), default=None)

    @property
    def live(self) -> int | None:
        """The product's live version: that of its newest row (None: no rows)."""
        newest = self._newest()
        return None if newest is None else newest.version

    @property
    def input_offset(self) -> int:
        """The input position of the event the newest row was made from."""
        newest = self._newest()
        return UNKNOWN_OFFSET if newest is None else newest.input_offset

    @property
    def complete(self) -> bool:
        """Every row of one event, and as many as the product has images: what a write
        that returned leaves. False after a crash in the middle of one."""
        if not self.rows:
            return True
        first = self.rows[0]
        return len(self.rows) == first.images and all(
            (r.version, r.input_offset) == (first.version, first.input_offset) for r in self.rows
        )

    @property
    def image_ids(self) -> tuple[str, ...]:
        return tuple(r.image_id for r in self.rows)


@dataclass(frozen=True, slots=True)
class Floor:
    """What a product's deletes leave behind: the highest version deleted (None: none) and
    the input position of the last tombstone (UNKNOWN_OFFSET: none)."""

    product_id: str
    deleted_upto: int | None
    wiped_upto: int = UNKNOWN_OFFSET


@dataclass(slots=True)
class Plan:
    """The writes that bring a set of products to their newest known state. A store
    applies them in this order: floors, then removals, then upserts (see catalens.store).
    A product's upserts are its whole image set; its rows not in that set are removed."""

    upserts: list[Row] = field(default_factory=list)
    removals: list[RowKey] = field(default_factory=list)
    floors: list[Floor] = field(default_factory=list)
    stale: int = 0  # upserts dropped as older than what the index holds

    def deleted(self) -> list[str]:
        """Products the plan removes entirely: rows removed, none written."""
        written = {row.product_id for row in self.upserts}
        return list(dict.fromkeys(p for p, _image in self.removals if p not in written))

    def written(self) -> list[str]:
        """Products the plan writes (each with its whole image set)."""
        return list(dict.fromkeys(row.product_id for row in self.upserts))


# -- searching ------------------------------------------------------------------------------

# Matched whole (fullmatch): with match, "$" would also let a trailing newline through.
ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_FILTER_VALUES = 100
Mode = Literal["vector", "keyword", "hybrid"]


class FilterError(CatalensError):
    """A filter that cannot be applied as given (the API answers 400)."""


class ModeUnavailable(CatalensError):
    """A search mode the served index cannot answer (the API answers 400, saying why)."""

    def __init__(self, mode: str, why: str) -> None:
        super().__init__(f"mode={mode} is not available here: {why}")
        self.mode = mode


@dataclass(frozen=True)
class Filters:
    """Which products a search may return: in any of ``categories``, attributes within
    ``ranges`` (name → (min, max), either may be None), attributes equal to any of their
    ``equals`` values, and none of the ``excluded`` product ids. Constructing one checks
    it (:class:`FilterError`), so a store only ever sees filters it can apply."""

    categories: tuple[str, ...] = ()
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    equals: Mapping[str, tuple[AttributeValue, ...]] = field(default_factory=dict)
    excluded: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Each attribute value a request gives may read as two (its text and its number
        # or boolean: catalens.query_api.filters), so the options may be twice as many.
        values = sum(len(v) for v in self.equals.values())
        if len(self.categories) > MAX_FILTER_VALUES or values > 2 * MAX_FILTER_VALUES:
            raise FilterError(
                f"at most {MAX_FILTER_VALUES} categories and {MAX_FILTER_VALUES} attribute values"
            )
        for name in (*self.ranges, *self.equals):
            if not ATTRIBUTE_NAME.fullmatch(name):
                raise FilterError(f"invalid attribute name {name!r}")
        for name, (low, high) in self.ranges.items():
            for bound in (low, high):
                if bound is not None and not math.isfinite(bound):
                    raise FilterError(f"{name} bound must be a finite number")
            # A minimum above the maximum is an empty range: it matches nothing, as an
            # unknown category does. No 400: the OpenAPI document cannot say that two
            # parameters must be ordered, and a request it calls valid must be served.
        for name, options in self.equals.items():
            if not options:
                raise FilterError(f"attribute {name!r} needs a value")

    def __bool__(self) -> bool:
        return bool(self.categories or self.ranges or self.equals or self.excluded)

    def matches(
        self, product_id: str, category: str | None, attributes: Mapping[str, AttributeValue]
    ) -> bool:
        """Whether a product passes: the rule every store applies (the in-memory one in
        Python, Milvus through :func:`catalens.store.expressions.filter_expression`)."""
        if product_id in self.excluded:
            return False
        if self.categories and category not in self.categories:
            return False
        for name, (low, high) in self.ranges.items():
            value = attributes.get(name)
            if not _is_number(value):
                return False
            assert isinstance(value, int | float)
            if (low is not None and value < low) or (high is not None and value > high):
                return False
        for name, options in self.equals.items():
            if name not in attributes or not any(
                _same(attributes[name], option) for option in options
            ):
                return False
        return True


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(value: AttributeValue, option: AttributeValue) -> bool:
    """JSON equality: a boolean equals only a boolean, numbers compare by value."""
    if isinstance(value, bool) or isinstance(option, bool):
        return isinstance(value, bool) and isinstance(option, bool) and value == option
    if _is_number(value) and _is_number(option):
        return value == option
    return type(value) is type(option) and value == option


@dataclass(frozen=True)
class Fusion:
    """How hybrid search fuses its two rankings of products (vector and keyword).

    ``rrf``: reciprocal rank fusion, each ranking adding 1 / (``k`` + rank) to a product:
    it needs no calibration of scores that mean different things (a cosine and a BM25
    score), which is why it is the default. ``weighted``: ``weight`` × cosine +
    (1 − ``weight``) × BM25 squashed into [0, 1) by 2/π·arctan, as Milvus' WeightedRanker
    does: for catalogs where one side should count more."""

    kind: Literal["rrf", "weighted"] = "rrf"
    k: int = 60
    weight: float = 0.5
    # Each side's best this many products are fused, whatever the page asked for, so all
    # pages of a query slice one ranking: results end after the fused list (depth to
    # twice depth products).
    depth: int = 100


@dataclass(frozen=True)
class Search:
    """One search: query vectors (a product's images are several; a product's score is
    its best image's), a query text (keyword and hybrid), the mode, the page and filters.
    ``k`` and ``offset`` count products."""

    vectors: Sequence[Vector] = ()
    text: str = ""
    mode: Mode = "vector"
    k: int = 10
    offset: int = 0
    filters: Filters = field(default_factory=Filters)
    # Search parameters over those the generation records for its index (ef, nprobe...).
    params: Mapping[str, Any] = field(default_factory=dict)
    fusion: Fusion = field(default_factory=Fusion)


# -- generations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """What makes two vectors comparable: the model's name, its output dimension and a
    fingerprint of its weights, so that two checkpoints under one name never mix."""

    name: str
    dim: int
    fingerprint: str

    def to_json(self) -> str:
        return json.dumps({"model": self.name, "dim": self.dim, "fingerprint": self.fingerprint})

    @classmethod
    def from_json(cls, text: str) -> ModelIdentity:
        raw = json.loads(text)
        return cls(str(raw["model"]), int(raw["dim"]), str(raw["fingerprint"]))

    def differs(self, other: ModelIdentity) -> str | None:
        """Why vectors of ``other`` cannot join this model's (None: they can)."""
        for what, mine, theirs in (
            ("model", self.name, other.name),
            ("dimension", self.dim, other.dim),
            ("weights fingerprint", self.fingerprint, other.fingerprint),
        ):
            if mine != theirs:
                return f"{what} {theirs!r} differs from the generation's {mine!r}"
        return None


def category_of(attributes: Mapping[str, AttributeValue]) -> str:
    """The category a product is filtered by: its ``category`` attribute as text."""
    category = attributes.get("category")
    return "" if category is None else str(category)


@dataclass(frozen=True)
class Capabilities:
    """What the served index can answer: its search modes (keyword and hybrid need a
    Milvus with full-text search and a generation made with the text fields), and whether
    the server groups a search's rows by product or the reader does."""

    modes: tuple[Mode, ...] = ("vector",)
    server_grouping: bool = False
    # Why the other modes are not offered, for the 400 that asks for one.
    missing: str = ""

    @property
    def default_mode(self) -> Mode:
        """Hybrid where the index can, vector elsewhere (DESIGN.md)."""
        return "hybrid" if "hybrid" in self.modes else "vector"


@dataclass(frozen=True)
class ServerFeatures:
    """What a Milvus server can do, read from its version: grouping a search by a field
    (Milvus 2.4), hybrid search (2.4) and full-text search with BM25 (2.5). Milvus Lite 3
    speaks the API of Milvus ≥ 2.5."""

    version: str
    grouping: bool
    hybrid: bool
    full_text: bool
    # Which words of a text matched a BM25 search (Milvus 2.6; Milvus Lite ignores it).
    highlight: bool = False

    @classmethod
    def from_version(cls, version: str) -> ServerFeatures:
        text = version.strip().lower()
        if text.startswith("milvus_lite-"):
            major = _numbers(text.removeprefix("milvus_lite-"))[:1] or [0]
            modern = major[0] >= 3
            return cls(version, modern, modern, modern)
        release = _release(version)
        return cls(
            version, release >= (2, 4), release >= (2, 4), release >= (2, 5), release >= (2, 6)
        )

    @property
    def release(self) -> tuple[int, int]:
        """The Milvus release (major, minor) whose API the server speaks: Milvus Lite 3
        speaks 2.5's."""
        if self.version.strip().lower().startswith("milvus_lite-"):
            return (2, 5) if self.full_text else (2, 0)
        return _release(self.version)


def _release(version: str) -> tuple[int, int]:
    numbers = [*_numbers(version.strip().lower().removeprefix("v")), 0, 0]
    return (numbers[0], numbers[1])


def _numbers(text: str) -> list[int]:
    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    return [int(g) for g in match.groups() if g is not None] if match else []
