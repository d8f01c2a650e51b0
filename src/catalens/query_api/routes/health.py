from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from catalens.errors import TransientError
from catalens.query_api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (liveness)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(services: ServicesDep) -> dict[str, str] | JSONResponse:
    """Milvus answers, and the model of the generation the alias serves is loaded
    (readiness)."""
    if services.problem is not None:
        return JSONResponse({"status": "unavailable", "message": services.problem}, 503)
    try:
        services.store.ping()
    except TransientError as exc:
        return JSONResponse({"status": "unavailable", "message": str(exc)}, status_code=503)
    return {"status": "ready", "model": services.model}
