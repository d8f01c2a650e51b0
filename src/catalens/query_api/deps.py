"""Named dependencies: what the routes get from the app's lifespan state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from catalens.encoder import ClipEncoder
from catalens.query_api.encoding import TextBatcher, TextVectors
from catalens.query_api.metrics import Metrics
from catalens.settings import ApiSettings
from catalens.store import IndexReader


@dataclass
class Services:
    """One generation as the API serves it: the index it searches and the towers of the
    model that made that index. A request takes one Services for its whole life, so a
    query vector and the stored vectors it is compared with always come from one model;
    when the alias moves, the app swaps in a whole new Services (catalens.query_api.serving).
    """

    settings: ApiSettings
    encoder: ClipEncoder
    store: IndexReader
    texts: TextVectors
    batcher: TextBatcher
    metrics: Metrics
    # The model's weights are random (a demo or test model): scores carry no meaning.
    random_weights: bool = False
    model: str = ""  # the model queries are encoded with (default: settings.model)
    collection: str = ""  # what is searched: a generation, or the alias before there is one
    fingerprint: str | None = None  # of the model's weights, when a generation is served
    problem: str | None = None  # why this API is not ready, when it is not
    # The next Services when the alias has moved (None: unchanged); None: never moves.
    refresh: Callable[[Services], Services | None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.model = self.model or self.settings.model
        self.collection = self.collection or self.settings.collection

    def close(self) -> None:
        self.batcher.close()


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain def dependency in its thread pool, a thread hop (a
    # wake-up and a wait for the GIL) per request for what is one attribute read.
    services: Services = request.app.state.serving.current
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
