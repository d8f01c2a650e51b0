"""Judging a generation's search quality: the queries of a judgments file run against one
generation (the served one, or a candidate before its promotion), in each mode it answers,
the way the query API runs them (the generation's own model encodes the text; the reader
searches, groups and fuses as for the API)."""

from __future__ import annotations

from collections.abc import Sequence

from catalens.encoder import ClipEncoder
from catalens.encoder.files import resolve_model_dir, weights_digest
from catalens.errors import OperatorError
from catalens.index.relevance import Judgment, Quality, evaluate
from catalens.schemas.embedding import Vector
from catalens.settings import ApiSettings
from catalens.store.admin import IndexAdmin
from catalens.store.client import Milvus
from catalens.store.reader import MilvusReader
from catalens.store.values import Fusion, Mode, ModelIdentity, Search


class GenerationSearch:
    """Searches one generation as the query API would, for judging it."""

    def __init__(self, milvus: Milvus, alias: str, collection: str, settings: ApiSettings):
        self.collection = collection
        self.identity = IndexAdmin(milvus, alias).identity(collection)
        self._reader = MilvusReader(milvus, collection)
        self._settings = settings
        self._encoder: ClipEncoder | None = None

    def modes(self) -> tuple[Mode, ...]:
        return self._reader.capabilities().modes

    def default_mode(self) -> Mode:
        return self._reader.capabilities().default_mode

    def ranked(self, query: str, mode: Mode, k: int) -> list[str]:
        """The product ids ``query`` finds in ``mode``, best first."""
        vectors: Sequence[Vector] = [] if mode == "keyword" else [self._encode(query)]
        settings = self._settings
        search = Search(
            vectors=vectors,
            text=query,
            mode=mode,
            k=k,
            params=settings.search_params,
            fusion=Fusion(settings.hybrid_fusion, settings.hybrid_rrf_k, settings.hybrid_weight),
        )
        return [hit.product_id for hit in self._reader.search(search)]

    def quality(self, judgments: Sequence[Judgment], mode: Mode, k: int) -> Quality:
        return evaluate(judgments, lambda query: self.ranked(query, mode, k), k)

    def _encode(self, text: str) -> Vector:
        if self._encoder is None:
            self._encoder = self._load()
        vector: Vector = self._encoder.encode_texts([text])[0]
        return vector

    def _load(self) -> ClipEncoder:
        """The text tower of the generation's own model, checked against its weights."""
        identity = self.identity
        if identity is None:
            raise OperatorError(f"{self.collection} records no model identity: rebuild it")
        digest = weights_digest(resolve_model_dir(identity.name))
        encoder = ClipEncoder(
            identity.name,
            towers=("text",),
            device=self._settings.device,
            text_precision=self._settings.precision,
            text_runtime="auto",
        )
        loaded = ModelIdentity(identity.name, encoder.dim, digest)
        if (why := identity.differs(loaded)) is not None:
            raise OperatorError(f"the model loaded here does not match {self.collection}: {why}")
        return encoder
