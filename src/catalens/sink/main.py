"""Wiring of the sink: settings in, clients built once, service run."""

from __future__ import annotations

import threading

from catalens.kafka.client import Publisher, Source, ensure_topics, partition_lag
from catalens.retry import Backoff, retry_transient
from catalens.settings import SinkSettings
from catalens.sink.service import SinkConfig, SinkService
from catalens.store.client import Milvus
from catalens.store.writer import MilvusWriter
from catalens.worker.health import serve_worker
from catalens.worker.metrics import SinkMetrics


def run(settings: SinkSettings, stop: threading.Event) -> None:
    backoff = Backoff(settings.retry_initial_s, settings.retry_max_s)
    topics = [settings.embeddings_topic, settings.dlq_topic]
    retry_transient(
        lambda: ensure_topics(settings, topics), what="create topics", backoff=backoff, stop=stop
    )
    store = MilvusWriter(
        Milvus.from_settings(settings),
        alias=settings.collection,
        model=settings.model,
        hnsw_m=settings.hnsw_m,
        ef_construction=settings.hnsw_ef_construction,
        read_concurrency=settings.sink_read_concurrency,
    )
    revoked: list[SinkService] = []  # the service, once built: the source tells it of losses
    source = Source(
        settings,
        group_id=settings.sink_group,
        topics=[settings.embeddings_topic],
        on_revoke=lambda partitions: revoked[0].revoked(partitions),
    )
    service = SinkService(
        SinkConfig(
            model=settings.model,
            dlq_topic=settings.dlq_topic,
            batch_size=settings.sink_batch_size,
            batch_wait_s=settings.sink_batch_wait_ms / 1000,
            backoff=backoff,
        ),
        source=source,
        publisher=Publisher(settings),
        store=store,
        stop=stop,
        metrics=SinkMetrics(),
    )
    revoked.append(service)
    health = None
    if settings.health_port:
        health = serve_worker(
            settings.health_port,
            last_turn=lambda: service.healthy_at,
            ready=service.ready.is_set,
            metrics=service.metrics,
            lag=lambda: partition_lag(settings, settings.sink_group, settings.embeddings_topic),
            group=settings.sink_group,
            topic=settings.embeddings_topic,
            stop=stop,
        )
    try:
        service.run()
    finally:
        store.close()
        if health is not None:
            health.shutdown()
