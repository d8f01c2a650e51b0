from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from catalens.errors import TransientError
from catalens.query_api.deps import ServicesDep
from catalens.query_api.errors import error_response
from catalens.query_api.responses import READINESS

router = APIRouter(tags=["health"])


class Alive(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    model: str = Field(description="the model of the generation served")


@router.get("/healthz", response_model=Alive)
def healthz() -> dict[str, str]:
    """The process is up (liveness)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None, responses={200: {"model": Ready}, **READINESS})
def readyz(services: ServicesDep) -> dict[str, str] | JSONResponse:
    """Milvus answers, and the model of the generation the alias serves is loaded
    (readiness)."""
    if services.problem is not None:
        return error_response(503, "unavailable", services.problem)
    try:
        services.store.ping()
    except TransientError as exc:
        return error_response(503, "unavailable", str(exc))
    return {"status": "ready", "model": services.model}
