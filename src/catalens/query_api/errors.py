"""Every error answers JSON ``{"error": code, "message": text}`` with the right status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from catalens.errors import TransientError
from catalens.store.values import FilterError, ModeUnavailable


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _body(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("query", "body"))
            parts.append(f"{where or 'request'}: {item.get('msg')}")
        return _body(422, "invalid_request", "; ".join(parts))

    @app.exception_handler(BadRequest)
    async def bad(_request: Request, exc: BadRequest) -> JSONResponse:
        return _body(400, "bad_request", exc.message)

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return _body(404, "not_found", exc.message)

    @app.exception_handler(FilterError)
    async def bad_filter(_request: Request, exc: FilterError) -> JSONResponse:
        return _body(400, "invalid_filter", str(exc))

    @app.exception_handler(ModeUnavailable)
    async def unavailable_mode(_request: Request, exc: ModeUnavailable) -> JSONResponse:
        return _body(400, "mode_unavailable", str(exc))

    @app.exception_handler(TransientError)
    async def unavailable(_request: Request, exc: TransientError) -> JSONResponse:
        return _body(503, "unavailable", str(exc))

    @app.exception_handler(HTTPException)
    async def http(_request: Request, exc: HTTPException) -> JSONResponse:
        return _body(exc.status_code, "http_error", str(exc.detail))
