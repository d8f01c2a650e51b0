"""Named dependencies: what the routes get from the app's lifespan state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from catalens.encoder import ClipEncoder
from catalens.query_api.metrics import Metrics
from catalens.query_api.search import TextBatcher, TextVectors
from catalens.settings import ApiSettings
from catalens.store import IndexReader


@dataclass
class Services:
    settings: ApiSettings
    encoder: ClipEncoder
    store: IndexReader
    texts: TextVectors
    batcher: TextBatcher
    metrics: Metrics
    # The model's weights are random (a demo or test model): scores carry no meaning.
    random_weights: bool = False

    def close(self) -> None:
        self.batcher.close()
        self.store.close()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
