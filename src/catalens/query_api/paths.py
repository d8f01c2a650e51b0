"""Path parameters that may hold any character, ``/`` included.

A product id is any string of 1 to 256 characters, and SKUs such as ``ABC/123`` are
common. A client sends it percent-encoded as one path segment (``/products/ABC%2F123``),
but ASGI servers hand the router a *decoded* path, in which that ``%2F`` has become a
separator, so no route matches (or, for ``X%2Fsimilar``, the wrong one does). As Express
and Rails do, routes under the given prefixes are matched on the path as the client
encoded it, and each parameter is decoded once, after matching:

* :class:`EncodedPaths` (middleware) gives the router the undecoded path under its
  prefixes and marks the request;
* :class:`DecodedParams` (route class) percent-decodes the path parameters of marked
  requests before validation, so limits and handlers see the real id.

Ordinary ids are unaffected: their encoded and decoded forms route alike.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

_MARK = "catalens.encoded_path"


def _encoded_route_path(scope: Scope) -> str | None:
    """The route path (the path below the root path) as the client encoded it, or None
    where the server passed no raw path (it is optional in ASGI)."""
    raw = scope.get("raw_path")
    if not raw:
        return None
    try:
        text = bytes(raw).split(b"?", 1)[0].decode("ascii")
    except UnicodeDecodeError:  # not a valid request target; leave it to the decoded path
        return None
    # uvicorn puts the root path in front of the raw path, as in front of the decoded one.
    root_path = quote(scope.get("root_path", ""), safe="/")
    if root_path and text.startswith(root_path):
        text = text[len(root_path) :]
    return text


class EncodedPaths:
    """ASGI middleware: under ``prefixes``, route on the undecoded path."""

    def __init__(self, app: ASGIApp, prefixes: Sequence[str]) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            encoded = _encoded_route_path(scope)
            if encoded is not None and encoded.startswith(self.prefixes):
                root_path = scope.get("root_path", "")
                scope = {**scope, "path": root_path + encoded, _MARK: True}
        await self.app(scope, receive, send)


class DecodedParams(APIRoute):
    """A route whose path parameters are percent-decoded when :class:`EncodedPaths`
    routed the request on its encoded path (and left alone otherwise: decoding twice
    would turn an id holding ``%41`` into one holding ``A``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def decoded(request: Request) -> Response:
            if request.scope.get(_MARK):
                request.scope["path_params"] = {
                    name: unquote(value) if isinstance(value, str) else value
                    for name, value in request.scope.get("path_params", {}).items()
                }
            return await handler(request)

        return decoded
