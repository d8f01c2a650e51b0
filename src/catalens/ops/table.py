"""Tables for people, as ``catalens status`` and ``catalens index status`` print them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def render_table(header: Sequence[str], rows: Iterable[Sequence[str]], *, indent: str = "") -> str:
    """``header`` and ``rows`` as left-aligned columns two spaces apart, each as wide as
    its widest cell, every line after ``indent`` and without trailing blanks. Every row
    has as many cells as the header."""
    lines = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        indent + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
