"""Every error answers JSON :class:`ErrorBody` ``{"error": code, "message": text}`` with the
right status: the handlers here, the method checks (query_api.methods) and ``/readyz``
all build it with :func:`error_response`, and the OpenAPI document describes it with the
same model (query_api.responses)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from catalens.errors import TransientError
from catalens.store.values import FilterError, ModeUnavailable


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer of the query API."""

    error: str = Field(
        description="what went wrong, as a code for programs: bad_request, invalid_filter "
        "(400), not_found (404), method_not_allowed (405), invalid_request (422), "
        "unavailable (503); codes may be added, so treat an unknown one by its status",
        examples=["not_found"],
    )
    message: str = Field(
        description="what went wrong, for people", examples=["no product 'nope' in the index"]
    )


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# The codes of the errors Starlette and FastAPI raise themselves (unknown paths, other
# methods, multipart bodies they cannot parse), by status.
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


def error_response(
    status: int, error: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=error, message=message)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("query", "body"))
            parts.append(f"{where or 'request'}: {item.get('msg')}")
        return error_response(422, "invalid_request", "; ".join(parts))

    @app.exception_handler(BadRequest)
    async def bad(_request: Request, exc: BadRequest) -> JSONResponse:
        return error_response(400, "bad_request", exc.message)

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, "not_found", exc.message)

    @app.exception_handler(FilterError)
    async def bad_filter(_request: Request, exc: FilterError) -> JSONResponse:
        return error_response(400, "invalid_filter", str(exc))

    @app.exception_handler(ModeUnavailable)
    async def unavailable_mode(_request: Request, exc: ModeUnavailable) -> JSONResponse:
        return error_response(400, "mode_unavailable", str(exc))

    @app.exception_handler(TransientError)
    async def unavailable(_request: Request, exc: TransientError) -> JSONResponse:
        return error_response(503, "unavailable", str(exc))

    @app.exception_handler(HTTPException)
    async def http(_request: Request, exc: HTTPException) -> JSONResponse:
        # Keep the exception's headers: a 405 carries Allow (RFC 9110).
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)
