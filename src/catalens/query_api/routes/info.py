from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from catalens import __version__
from catalens.query_api.deps import ServicesDep
from catalens.store.values import Mode

router = APIRouter(tags=["info"])


class Info(BaseModel):
    version: str = Field(description="Catalens version")
    model: str = Field(description="the CLIP model queries are encoded with")
    random_weights: bool = Field(
        description="the model has random weights (a demo or test model): results come "
        "back in score order, but the scores say nothing about relevance"
    )
    collection: str = Field(
        description="the collection searched: the generation the alias serves (or the alias "
        "itself while nothing is indexed)"
    )
    modes: list[Mode] = Field(description="the search modes /search answers here")
    default_mode: Mode = Field(description="the mode of a /search that names none")


@router.get("/info", response_model=Info)
def info(services: ServicesDep) -> Info:
    """What this API serves: its model, and whether that model's results mean anything."""
    offered = services.store.capabilities()
    configured = services.settings.search_mode
    return Info(
        version=__version__,
        model=services.model,
        random_weights=services.random_weights,
        collection=services.collection,
        modes=list(offered.modes),
        default_mode=offered.default_mode if configured == "auto" else configured,
    )
