"""The methods HTTP gives every resource, for every route of the app (RFC 9110 §9.3).

Routes declare only what they do (``GET /search``). Where the router refuses a method
(405), :class:`HttpMethods` answers as HTTP says instead:

* ``HEAD``, where the resource has ``GET``: the ``GET`` answer's status and headers
  (``Content-Length`` included), without the body;
* ``OPTIONS``: 204 with ``Allow``;
* any other method: 405 with ``Allow`` and the JSON error body. Starlette's router answers
  405 too, but its ``Allow`` names the methods of the first route of the path only, and
  FastAPI's error handlers drop it.

``Allow`` lists every method of the path, over all its routes, with ``HEAD`` (where
there is ``GET``) and ``OPTIONS``. New routes get all of this without a line of their
own; requests the router does not refuse pass untouched (a copy of the scope is all
they pay). A mounted app other than the static files (``GET``, ``HEAD``) keeps its own
405: its methods are unknown.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalens.query_api.errors import error_response

# The methods a route may declare (RFC 9110, PATCH, and the QUERY method of the HTTP
# working group), each asked of the router to learn what a path has.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY")


def declared_methods(routes: Sequence[BaseRoute], scope: Scope) -> set[str] | None:
    """The methods that routes declare for the request's path (empty where no route has
    the path), or None where a mounted app of unknown methods takes the path."""
    declared: set[str] = set()
    for method in METHODS:
        probe = {**scope, "method": method}
        for route in routes:
            match, _ = route.matches(probe)
            if match is not Match.FULL:
                continue
            if isinstance(route, Mount):  # a mount matches every method
                if not isinstance(route.app, StaticFiles):
                    return None
                return {"GET", "HEAD"}
            declared.add(method)
            break
    return declared


def allow_header(declared: set[str]) -> str:
    allowed = declared | {"OPTIONS"} | ({"HEAD"} if "GET" in declared else set())
    return ", ".join(sorted(allowed))


class HttpMethods:
    """ASGI middleware: ``HEAD``, ``OPTIONS`` and 405 with ``Allow`` for every route.

    It sits inside the request metrics, so they count these answers under the route the
    router matched and the method the client sent.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # the app's own list: routes added later count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asked = dict(scope)  # as it came: the router changes the scope as it routes
        refused: list[Message] = []  # a 405 answer, held back until it is decided

        async def watch(message: Message) -> None:
            if refused or (message["type"] == "http.response.start" and message["status"] == 405):
                refused.append(message)
            else:
                await send(message)

        await self.app(scope, receive, watch)
        if not refused:
            return
        method = scope["method"]
        declared = declared_methods(self.routes, asked)
        if declared is None or not declared or method in declared:
            for held in refused:  # a 405 that is not the router's: as it was
                await send(held)
            return
        allow = {"Allow": allow_header(declared)}
        if method == "OPTIONS":
            await _no_content(allow, send)
        elif method == "HEAD" and "GET" in declared:
            await self.app({**asked, "method": "GET"}, receive, _without_body(send))
        else:
            why = f"{method} is not allowed here; allowed: {allow['Allow']}"
            await error_response(405, "method_not_allowed", why, allow)(scope, receive, send)


async def _no_content(headers: dict[str, str], send: Send) -> None:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": 204, "headers": raw})
    await send({"type": "http.response.body", "body": b""})


def _without_body(send: Send) -> Send:
    """``send`` for the GET run of a HEAD request: its status and headers, no body."""

    async def headers_only(message: Message) -> None:
        if message["type"] != "http.response.body":
            await send(message)
        elif not message.get("more_body", False):
            await send({"type": "http.response.body", "body": b""})

    return headers_only
