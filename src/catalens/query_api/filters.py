"""Search filters → a Milvus boolean expression (pure).

User input only ever enters the expression as a JSON-quoted string literal or as a
parsed number, and attribute names are checked against a strict pattern, so no query
can inject into the expression.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from catalens.errors import CatalensError
from catalens.store.expressions import literal

ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VALUES = 100


class FilterError(CatalensError):
    """A filter the caller got wrong (400)."""


@dataclass(frozen=True)
class Filters:
    categories: Sequence[str] = ()
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    equals: dict[str, str] = field(default_factory=dict)

    def expression(self) -> str:
        clauses: list[str] = []
        if len(self.categories) > MAX_VALUES:
            raise FilterError(f"at most {MAX_VALUES} categories")
        if self.categories:
            clauses.append(f"category in [{', '.join(literal(c) for c in self.categories)}]")
        for name, (low, high) in sorted(self.ranges.items()):
            path = _attribute(name)
            for bound, op in ((low, ">="), (high, "<=")):
                if bound is None:
                    continue
                if not math.isfinite(bound):
                    raise FilterError(f"{name} bound must be a finite number")
                clauses.append(f"{path} {op} {bound!r}")
            # A minimum above the maximum is an empty range: it matches nothing, as an
            # unknown category does. No 400: the OpenAPI document cannot say that two
            # parameters must be ordered, and a request it calls valid must be served.
        for name, value in sorted(self.equals.items()):
            clauses.append(f"{_attribute(name)} == {literal(value)}")
        return " and ".join(clauses)


def _attribute(name: str) -> str:
    if not ATTRIBUTE_NAME.match(name):
        raise FilterError(f"invalid attribute name {name!r}")
    return f'attributes["{name}"]'
