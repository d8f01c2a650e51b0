"""``catalens up``: broker, Milvus, embedder, sink and API on one machine, plus a sample
catalog, until Ctrl-C. A Kafka bootstrap or Milvus URI given (``CATALENS_*`` or option) is
used as is instead of starting the local one; every other setting ``up`` was given reaches
the services it starts.

The local Milvus is Milvus Lite by default: it starts in about a second, needs no fixed
ports, and has what Milvus 2.5 and later have (full-text, hybrid and grouped search), so
the sample shows keyword and hybrid search; it is pure Python, which a sample catalog
does not notice. ``--milvus-server standalone`` runs Milvus 2.3.5 instead (vector search
only; its etcd binds the fixed ports 2379/2380). The integration tests of the guarantees
run on Milvus 2.3.5 either way (README, "Supported Milvus versions")."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import httpx

from catalens.dev.localstack import (
    Child,
    ServiceExited,
    free_port,
    start_broker,
    start_milvus,
    start_milvus_lite,
)
from catalens.errors import Stopped, TransientError
from catalens.ops.bounded import bounded, try_timeout
from catalens.retry import Backoff, retry_transient
from catalens.settings import DEFAULT_MODEL, ApiSettings, CatalensSettings, to_env

log = logging.getLogger(__name__)


def _model_for_demo(settings: ApiSettings, data_dir: Path) -> str:
    """The configured model, or — when the default cannot be downloaded here — a local
    random-weights ViT-B/32, so the pipeline still runs end to end (results then come back
    ordered by score, but the scores carry no meaning)."""
    from catalens.encoder import ModelNotFound, resolve_model_dir

    try:
        resolve_model_dir(settings.model)
        return settings.model
    except ModelNotFound as exc:
        if settings.model != DEFAULT_MODEL:
            raise
        fallback = data_dir / "models" / "random-vit-b-32"
        log.warning("%s", exc)
        log.warning(
            "USING RANDOM WEIGHTS (%s): search results will not be meaningful. "
            "Set CATALENS_MODEL to a local CLIP directory for real results.",
            fallback,
        )
        from catalens.dev.modelkit import build_random_clip
        from catalens.encoder.files import has_random_weights

        if not has_random_weights(fallback):  # also rebuilds one written before the marker
            build_random_clip(fallback, size="vit-b-32")
        return str(fallback)


def run_up(
    settings: ApiSettings,
    *,
    data_dir: Path,
    sample_size: int,
    stop: threading.Event,
    milvus_server: str = "lite",
) -> int:
    data_dir = data_dir.resolve()
    logs = data_dir / "logs"
    infra: list[Child] = []
    services: list[Child] = []
    try:
        if "kafka_bootstrap" not in settings.model_fields_set:
            port = free_port()
            infra.append(start_broker(port, logs / "broker.log", stop=stop))
            settings = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
            log.info("local broker at %s", settings.kafka_bootstrap)
        if "milvus_uri" not in settings.model_fields_set:
            port = 19530 if _port_free(19530) else free_port()
            if milvus_server == "lite":
                log.info("starting Milvus Lite (data in %s)", data_dir / "milvus-lite")
                milvus = start_milvus_lite(
                    data_dir / "milvus-lite", port, logs / "milvus-lite.log", stop=stop
                )
            else:
                log.info("starting Milvus standalone (data in %s)", data_dir / "milvus")
                milvus = start_milvus(data_dir / "milvus", port, logs / "milvus.log", stop=stop)
            infra.append(milvus)
            settings = settings.model_copy(update={"milvus_uri": f"http://127.0.0.1:{port}"})
        settings = settings.model_copy(update={"model": _model_for_demo(settings, data_dir)})

        from catalens.producer.sample import write_sample_catalog

        sample = data_dir / "sample"
        csv_path = write_sample_catalog(sample, count=sample_size)
        env = service_env(settings, sample / "images")
        for role in ("embedder", "sink", "api"):
            services.append(
                Child(
                    role, [sys.executable, "-m", "catalens", role], logs / f"{role}.log", env=env
                ).start()
            )
        published = _publish(csv_path, settings, stop)
        base = f"http://{settings.api_host}:{settings.api_port}"
        _wait_searchable(base, published, services, stop)
        print(
            f"\nCatalens is up: {base}/\n"
            f"  search API: {base}/search?q=black+dress&k=5  (docs: {base}/docs)\n"
            f"  relevance:  catalens eval {sample / 'judgments.jsonl'} "
            f"--milvus-uri {settings.milvus_uri}\n"
            f"logs in {logs}; Ctrl-C stops everything.",
            flush=True,
        )
        while not stop.wait(1.0):
            for child in services:
                if not child.running:  # a supervisor restarts crashed services
                    log.error(
                        "%s exited with %s; restarting (see %s)",
                        child.name,
                        child.process.returncode if child.process else None,
                        child.log_file,
                    )
                    child.start()
        return 0
    except Stopped:  # Ctrl-C while starting: stop what has started
        return 0
    finally:
        for child in reversed(services):
            child.stop()
        for child in reversed(infra):
            child.stop(timeout_s=10)
        log.info("stopped")


def service_env(settings: ApiSettings, image_roots: Path) -> dict[str, str]:
    """The ``CATALENS_*`` variables of the services ``up`` starts: every shared setting
    (and the API's address) as ``up`` has it, from its environment or its options, and
    the sample's image folder as the only image root."""
    fields = [*CatalensSettings.model_fields, "api_host", "api_port"]
    return to_env(settings, fields) | {"CATALENS_IMAGE_ROOTS": str(image_roots)}


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _publish(csv_path: Path, settings: CatalensSettings, stop: threading.Event) -> int:
    from catalens.kafka import DeliveryError
    from catalens.kafka.client import Publisher, ensure_topics
    from catalens.producer.catalog import read_csv
    from catalens.producer.publisher import EventPublisher
    from catalens.schemas import ProductImageEvent

    bounded(
        settings,
        lambda: ensure_topics(settings, [settings.input_topic], timeout_s=try_timeout(settings)),
        what="create topics",
        stop=stop,
    )
    events = [
        e
        for e in read_csv(csv_path, csv_path.parent / "images")
        if isinstance(e, ProductImageEvent)
    ]
    sent, failures = EventPublisher(Publisher(settings), settings.input_topic).publish_many(events)
    if failures:
        event_id, error = failures[0]
        raise DeliveryError(
            f"{len(failures)} sample events not delivered (first: {event_id}: {error})",
            fatal=any(error.fatal for _, error in failures),
        )
    log.info("published %d sample products", sent)
    return sent


def _wait_searchable(
    base: str, expected: int, services: list[Child], stop: threading.Event, timeout_s: float = 600
) -> None:
    """Wait until the whole sample catalog is searchable; a service that exits is an
    error, and after ``timeout_s`` the stack carries on with what is indexed."""
    found = -1

    def searchable() -> None:
        nonlocal found
        for child in services:
            if not child.running:
                raise ServiceExited(f"{child.name} exited; see {child.log_file}")
        try:
            response = httpx.get(f"{base}/search", params={"q": "product", "k": 1000}, timeout=10)
        except httpx.HTTPError as exc:
            raise TransientError(f"the query API does not answer yet ({exc})") from None
        if response.status_code != 200:
            raise TransientError(f"the query API answered {response.status_code}")
        count = len(response.json()["results"])
        if count != found:
            log.info("%d of %d sample products searchable", count, expected)
            found = count
        if count < expected:
            raise TransientError(f"{count} of {expected} sample products searchable")

    try:
        retry_transient(
            searchable,
            what="waiting for the sample catalog",
            backoff=Backoff(initial_s=1.0, max_s=1.0),
            stop=stop,
            timeout_s=timeout_s,
            log_level=logging.DEBUG,
        )
    except TransientError as exc:
        log.warning("after %.0fs: %s; carrying on", timeout_s, exc)
