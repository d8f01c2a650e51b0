"""A request's filters as the store's :class:`~catalens.store.values.Filters` (pure).

``category`` (repeatable) and ``price_min``/``price_max`` as before, and any attribute by
equality, ``attr.<name>=<value>``: a name repeated means "any of" its values. A value is
text as given, and also what the text reads as in JSON: ``true``/``false`` a boolean, a
number a number, so ``attr.in_stock=true`` finds ``"in_stock": true`` and
``attr.size=42`` finds both ``"size": 42`` and ``"size": "42"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from catalens.schemas.event import INT64, AttributeValue
from catalens.store.values import MAX_FILTER_VALUES, FilterError, Filters

ATTRIBUTE_PREFIX = "attr."
MAX_VALUE_CHARS = 2048  # an attribute value's own limit (the input event contract)
INTEGER = re.compile(r"[+-]?[0-9]+")


def request_filters(
    categories: Sequence[str],
    price_min: float | None,
    price_max: float | None,
    query: Iterable[tuple[str, str]],
    excluded: Sequence[str] = (),
) -> Filters:
    """Filters from a request's parameters; ``query`` is every (name, value) of its query
    string, of which the ``attr.`` ones are read. Raises :class:`FilterError` (400)."""
    equals: dict[str, list[AttributeValue]] = {}
    given = 0
    for key, raw in query:
        if not key.startswith(ATTRIBUTE_PREFIX):
            continue
        # A request the OpenAPI document calls valid gives each name once, so at most
        # its 100 names: only repeated names (said in words there) can pass this limit.
        given += 1
        if given > MAX_FILTER_VALUES:
            raise FilterError(f"at most {MAX_FILTER_VALUES} attribute values")
        name = key[len(ATTRIBUTE_PREFIX) :]
        if len(raw) > MAX_VALUE_CHARS:
            raise FilterError(f"{key}: a value has at most {MAX_VALUE_CHARS} characters")
        options = equals.setdefault(name, [])
        options += [v for v in read_value(raw) if not any(_same(v, o) for o in options)]
    ranges = {"price": (price_min, price_max)} if (price_min, price_max) != (None, None) else {}
    return Filters(
        categories=tuple(categories),
        ranges=ranges,
        equals={name: tuple(options) for name, options in equals.items()},
        excluded=tuple(excluded),
    )


def read_value(raw: str) -> list[AttributeValue]:
    """What a query-string value may equal: the text, and the JSON boolean or number it
    reads as."""
    values: list[AttributeValue] = [raw]
    if raw in ("true", "false"):
        values.append(raw == "true")
        return values
    if INTEGER.fullmatch(raw) and INT64[0] <= (whole := int(raw)) <= INT64[1]:
        values.append(whole)  # read whole: through a float, 2**53 + 1 would be 2**53
        return values
    try:
        number = float(raw)
    except ValueError:
        return values
    if math.isfinite(number):
        values.append(number)
    return values


def _same(a: AttributeValue, b: AttributeValue) -> bool:
    return type(a) is type(b) and a == b
