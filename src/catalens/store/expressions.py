"""Milvus boolean expressions built from values (pure). User input only ever enters as a
double-quoted string literal or a number Python printed, and attribute names are checked
against a strict pattern (:class:`~catalens.store.values.Filters`), so no input can break
out of an expression."""

from __future__ import annotations

from collections.abc import Sequence

from catalens.schemas.event import AttributeValue
from catalens.store.values import Filters

# The escapes every Milvus parses (Milvus Lite knows no others: not \uXXXX, \b or \f).
# Any other character, control characters included, stands in a literal as itself.
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def literal(text: str) -> str:
    """A Milvus expression string literal for ``text``."""
    return f'"{text.translate(_ESCAPES)}"'


def value(item: AttributeValue) -> str:
    """A Milvus literal for an attribute value: a string, a number or a boolean."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int | float):
        return repr(item)
    return literal(item)


def one_of(field: str, texts: Sequence[str]) -> str:
    """``field`` equals any of ``texts``."""
    return f"{field} in [{', '.join(literal(t) for t in texts)}]"


def filter_expression(filters: Filters) -> str:
    """The expression that keeps what ``filters`` keeps (the same rule as
    :meth:`Filters.matches`); empty when it keeps everything."""
    clauses: list[str] = []
    if filters.excluded:
        clauses.append(f"not ({one_of('product_id', filters.excluded)})")
    if filters.categories:
        clauses.append(one_of("category", filters.categories))
    for name, (low, high) in sorted(filters.ranges.items()):
        for bound, op in ((low, ">="), (high, "<=")):
            if bound is not None:
                clauses.append(f'attributes["{name}"] {op} {bound!r}')
    for name, options in sorted(filters.equals.items()):
        alternatives = [f'attributes["{name}"] == {value(option)}' for option in options]
        clauses.append(
            alternatives[0] if len(alternatives) == 1 else f"({' or '.join(alternatives)})"
        )
    return " and ".join(clauses)
