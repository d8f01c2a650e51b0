"""A query parameter that the OpenAPI document gives one value is given at most once.

FastAPI serves ``?k=5&k=500`` with the last value, silently. The document says ``k`` is
an integer, not a list, so that request is invalid, and a client that sent it meant
something the API would not do: it answers 422 like any other schema violation. Which
parameters take one value is read from the document itself (a parameter whose schema
admits no array), so a new parameter needs nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

# (route path, method) → names of its query parameters that take one value.
Singles = dict[tuple[str, str], frozenset[str]]


def _admits_array(schema: Mapping[str, Any]) -> bool:
    kinds = schema.get("type")
    if kinds == "array" or (isinstance(kinds, list) and "array" in kinds):
        return True
    return any(_admits_array(s) for key in ("anyOf", "oneOf") for s in schema.get(key, ()))


def single_valued(document: Mapping[str, Any]) -> Singles:
    """The query parameters of each operation of ``document`` that take one value."""
    return {
        (path, method.upper()): frozenset(
            p["name"]
            for p in operation.get("parameters", ())
            if p.get("in") == "query" and not _admits_array(p.get("schema", {}))
        )
        for path, item in document.get("paths", {}).items()
        for method, operation in item.items()
        if isinstance(operation, dict)
    }


def _singles(app: FastAPI) -> Singles:
    singles: Singles | None = getattr(app.state, "single_valued", None)
    if singles is None:  # once per app (two requests racing compute the same table)
        singles = single_valued(app.openapi())
        app.state.single_valued = singles
    return singles


async def one_value_each(request: Request) -> None:
    """An app-wide dependency: 422 where a one-value query parameter is repeated."""
    path = getattr(request.scope.get("route"), "path", None)
    names = _singles(request.app).get((path or "", request.method), frozenset())
    repeated = [name for name in sorted(names) if len(request.query_params.getlist(name)) > 1]
    if repeated:
        raise RequestValidationError(
            [
                {
                    "type": "repeated_parameter",
                    "loc": ("query", name),
                    "msg": "given more than once; it takes one value",
                    "input": request.query_params.getlist(name),
                }
                for name in repeated
            ]
        )
