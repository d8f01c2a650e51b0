"""Which generation the API serves: the one the alias points at, followed as it moves.

A promotion (``catalens index promote``) moves the alias in one step. The API notices
within ``CATALENS_ALIAS_POLL_S``, loads the towers of the generation's model (checking its
dimension and weights against the generation's identity), and only then swaps the whole
:class:`~catalens.query_api.deps.Services` in. Until the swap, queries keep going to the
generation they were going to, by its collection name, with its model: there is no
moment at which a query is encoded by one model and compared with another's vectors. A
generation this API cannot load (its model is not available here, or its weights differ)
leaves the API unready (503 on ``/readyz``), still answering from what it served.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from catalens.encoder.files import resolve_model_dir, weights_digest
from catalens.errors import OperatorError, TransientError
from catalens.query_api.deps import Services
from catalens.settings import ApiSettings
from catalens.store.admin import IndexAdmin
from catalens.store.client import Milvus
from catalens.store.empty import EmptyIndex
from catalens.store.reader import MilvusReader
from catalens.store.values import ModelIdentity

log = logging.getLogger(__name__)

# Builds the services of a model: (settings, model name, collection searched) → Services.
Load = Callable[[str, str], Services]
# A retired Services is closed this long after the swap, so requests that took it finish.
RETIRE_AFTER_S = 120.0


class Serving:
    """Holds the current Services and swaps it when ``refresh`` says the alias moved."""

    def __init__(self, initial: Services, poll_s: float) -> None:
        self.current = initial
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if initial.refresh is not None:
            self._thread = threading.Thread(target=self._follow, name="alias", daemon=True)
            self._thread.start()

    def _follow(self) -> None:
        while not self._stop.wait(self._poll_s):
            self.refresh_once()

    def refresh_once(self) -> None:
        current = self.current
        if current.refresh is None:
            return
        try:
            following = current.refresh(current)
        except TransientError as exc:
            log.warning("cannot follow alias %s now: %s", current.settings.collection, exc)
            return
        if following is None:
            return
        self.current = following
        log.info("serving %s (model %s)", following.collection, following.model)
        if following.batcher is not current.batcher:
            retire = threading.Timer(RETIRE_AFTER_S, current.close)
            retire.daemon = True  # a stopping process does not wait to close it
            retire.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.current.close()


class AliasFollower:
    """The refresh of Services read from Milvus: what the alias serves, and its model."""

    def __init__(self, settings: ApiSettings, milvus: Milvus, load: Load) -> None:
        self._settings = settings
        self._milvus = milvus
        self._admin = IndexAdmin(milvus, settings.collection)
        self._load = load
        self._failed: str | None = None  # a target that could not be served: not retried

    def initial(self) -> Services:
        """What the alias serves now. Before any generation exists: the configured model
        over an explicitly empty index (every search, whatever its filters, finds nothing)
        — never over the alias itself, which the first sink to write may point at another
        model's generation — until the follower sees one."""
        target = self._milvus.alias_target(self._settings.collection)
        if target is None:
            services = self._load(self._settings.model, "")
            reader = MilvusReader(self._milvus, self._settings.collection)
            empty = EmptyIndex(reader.capabilities())
            return replace(services, store=empty, collection="", refresh=self.refresh)
        served = self._serve(target, None)
        assert served is not None  # with nothing served yet, a failure raises
        return served

    def refresh(self, current: Services) -> Services | None:
        target = self._milvus.alias_target(self._settings.collection)
        if target is None or target in (current.collection, self._failed):
            return None
        return self._serve(target, current)

    def _serve(self, target: str, current: Services | None) -> Services | None:
        identity = self._admin.identity(target)
        try:
            if identity is None:
                raise OperatorError(f"{target} records no model identity: rebuild it")
            if (
                current is not None
                and current.model == identity.name
                and current.fingerprint == identity.fingerprint
            ):  # the same model's generation: only the collection changes
                return replace(current, store=MilvusReader(self._milvus, target), collection=target)
            services = self._load(identity.name, target)
            self._check(services, identity)
        except (OperatorError, OSError) as exc:  # ModelNotFound is an OperatorError
            problem = f"the alias serves {target}, which this API cannot serve: {exc}"
            log.error(problem)
            if current is None:
                raise OperatorError(problem) from exc
            self._failed = target  # until the alias moves again (or a restart)
            return replace(current, problem=problem)
        return replace(services, fingerprint=identity.fingerprint, refresh=self.refresh)

    @staticmethod
    def _check(services: Services, identity: ModelIdentity) -> None:
        digest = weights_digest(resolve_model_dir(identity.name))
        loaded = ModelIdentity(identity.name, services.encoder.dim, digest)
        if (why := identity.differs(loaded)) is not None:
            services.close()
            raise OperatorError(f"the model loaded here does not match: {why}")
