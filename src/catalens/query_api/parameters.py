"""The query string holds what the OpenAPI document declares, each one-value name once.

* **Each one-value parameter once.** FastAPI serves ``?k=5&k=500`` with the last value,
  silently. The document says ``k`` is an integer, not a list, so that request is
  invalid, and a client that sent it meant something the API would not do: it answers
  422 like any other schema violation.
* **No undeclared names.** A name the operation does not declare is refused with 422
  naming it, not ignored: ``?catgory=Dress`` would otherwise answer every category, a
  wrong result that looks right. An exploded object parameter (``attr``, whose
  properties are the ``attr.``-prefixed names) declares every name with its prefix; its
  own checks say which of those are valid.

Both are read from the document itself (a parameter whose schema admits no array takes
one value), so a new parameter needs nothing here, and only where an operation documents
422: ``/healthz``, ``/readyz`` and ``/info`` take no parameters and answer a probe
whatever its query string. Routes outside the document (the web page, which keeps a
search in its own URL) are left alone. The table is built once, when the app is made,
from the document without the served index's modes: names do not depend on them, and a
request must not wait on Milvus to be checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError


@dataclass(frozen=True)
class QueryNames:
    """The query string one operation of the document accepts."""

    declared: frozenset[str]
    single: frozenset[str]  # of ``declared``, those that take one value
    prefixes: tuple[str, ...]  # "attr." for an exploded object parameter named attr

    def accepts(self, name: str) -> bool:
        return name in self.declared or name.startswith(self.prefixes)


# (route path, method) → what its query string may hold.
Operations = dict[tuple[str, str], QueryNames]


def _admits_array(schema: Mapping[str, Any]) -> bool:
    kinds = schema.get("type")
    if kinds == "array" or (isinstance(kinds, list) and "array" in kinds):
        return True
    return any(_admits_array(s) for key in ("anyOf", "oneOf") for s in schema.get(key, ()))


def _exploded_object(parameter: Mapping[str, Any]) -> bool:
    return parameter.get("schema", {}).get("type") == "object" and bool(
        parameter.get("explode", True)
    )


def query_names(document: Mapping[str, Any]) -> Operations:
    """What the query string of each operation of ``document`` that documents 422 may
    hold."""
    table: Operations = {}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "422" not in operation.get("responses", {}):
                continue
            query = [p for p in operation.get("parameters", ()) if p.get("in") == "query"]
            plain = [p for p in query if not _exploded_object(p)]
            table[(path, method.upper())] = QueryNames(
                declared=frozenset(p["name"] for p in plain),
                single=frozenset(
                    p["name"] for p in plain if not _admits_array(p.get("schema", {}))
                ),
                prefixes=tuple(f"{p['name']}." for p in query if _exploded_object(p)),
            )
    return table


def install(app: FastAPI, document: Mapping[str, Any]) -> None:
    """Check every request's query string against ``document`` (the app's own)."""
    app.state.query_names = query_names(document)


async def declared_query(request: Request) -> None:
    """An app-wide dependency: 422 where the query string holds a name the operation
    does not declare, or a one-value parameter more than once."""
    path = getattr(request.scope.get("route"), "path", None)
    method = "GET" if request.method == "HEAD" else request.method  # HEAD answers as GET
    table: Operations = getattr(request.app.state, "query_names", {})
    names = table.get((path or "", method))
    if names is None:
        return
    given = request.query_params
    errors = [
        {
            "type": "unknown_parameter",
            # An empty name (``?=x``) is named as one, not left out of the message.
            "loc": ("query", name or '""'),
            "msg": "not a parameter of this operation (see /openapi.json)",
            "input": given.getlist(name),
        }
        for name in sorted(set(given.keys()))
        if not names.accepts(name)
    ] + [
        {
            "type": "repeated_parameter",
            "loc": ("query", name),
            "msg": "given more than once; it takes one value",
            "input": given.getlist(name),
        }
        for name in sorted(names.single)
        if len(given.getlist(name)) > 1
    ]
    if errors:
        raise RequestValidationError(errors)
