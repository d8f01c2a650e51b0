"""Wiring of the sink: settings in, clients built once, service run."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from catalens.kafka import Partition, RecordSource
from catalens.kafka.client import Publisher, Source, prefetch_config
from catalens.retry import Backoff
from catalens.settings import SinkSettings
from catalens.sink.service import SinkConfig, SinkService
from catalens.store.client import Milvus
from catalens.store.indexes import IndexSpec
from catalens.store.writer import MilvusWriter
from catalens.worker.metrics import SinkMetrics
from catalens.worker.run import run_worker


@contextmanager
def build_service(
    settings: SinkSettings, stop: threading.Event, metrics: SinkMetrics
) -> Iterator[SinkService]:
    """The sink service over Kafka and Milvus; its Milvus connection is closed when the
    context is left."""
    store = MilvusWriter(
        Milvus.from_settings(settings),
        alias=settings.collection,
        model=settings.model,
        generation=settings.generation,
        index=IndexSpec.of(settings.index, settings.index_build_params(), settings.search_params),
        read_concurrency=settings.sink_read_concurrency,
        shards=settings.milvus_shards,
    )

    def make_source(on_revoke: Callable[[list[Partition]], None]) -> RecordSource:
        return Source(
            settings,
            group_id=settings.sink_group,
            topics=[settings.embeddings_topic],
            on_revoke=on_revoke,
            # A batch's worth fetched ahead: the next batch is there when a write returns.
            extra=prefetch_config(settings.sink_batch_bytes),
        )

    try:
        yield SinkService(
            SinkConfig(
                model=settings.model,
                dlq_topic=settings.dlq_topic,
                batch_size=settings.sink_batch_size,
                batch_bytes=settings.sink_batch_bytes,
                batch_wait_s=settings.sink_batch_wait_ms / 1000,
                backoff=Backoff(settings.retry_initial_s, settings.retry_max_s),
            ),
            make_source=make_source,
            publisher=Publisher(settings),
            store=store,
            stop=stop,
            metrics=metrics,
        )
    finally:
        store.close()


def run(settings: SinkSettings, stop: threading.Event) -> None:
    metrics = SinkMetrics()
    run_worker(
        settings,
        lambda: build_service(settings, stop, metrics),
        metrics=metrics,
        topics=[settings.embeddings_topic, settings.dlq_topic],
        group=settings.sink_group,
        consumes=settings.embeddings_topic,
        stop=stop,
    )
