"""Wiring of the embedder: settings in, clients built once, service run."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import nullcontext

from catalens.embedder.allocator import keep_freed_memory
from catalens.embedder.service import EmbedderConfig, EmbedderService
from catalens.embedder.sources import ImageSource, SourcePolicy, parse_networks
from catalens.embedder.steps import Topics
from catalens.embedder.storm import StormLimits
from catalens.encoder import ClipEncoder, set_torch_threads
from catalens.encoder.files import resolve_model_dir, weights_digest
from catalens.images import ImageLimits
from catalens.kafka import Partition, RecordPublisher, RecordSource
from catalens.kafka.client import Publisher, Source, prefetch_config
from catalens.settings import EmbedderSettings, MiB
from catalens.store.values import ModelIdentity
from catalens.worker.metrics import EmbedderMetrics
from catalens.worker.run import run_worker


def embedder_prefetch_bytes(settings: EmbedderSettings) -> int:
    """What the embedder's Kafka client may fetch ahead (``prefetch_config``: its queue and
    each fetch in flight): a sixteenth of the byte budget, from 1 MiB to 64 MiB
    (librdkafka's own default queue). The client's queue only has to bridge a fetch's
    round trip, which the records in flight, taken from it, cover many times over; a
    pause drops it anyway."""
    return min(64 * MiB, max(MiB, settings.max_in_flight_bytes // 16))


def build_service(
    settings: EmbedderSettings,
    stop: threading.Event,
    *,
    source: RecordSource | None = None,
    publisher: RecordPublisher | None = None,
    metrics: EmbedderMetrics | None = None,
) -> tuple[EmbedderService, ClipEncoder]:
    """The embedder service with its encoder and image source. ``source``/``publisher``
    default to Kafka; benchmarks pass in-memory ones to measure the pipeline alone.
    The process's allocator is left as it is: tuning it is :func:`run`'s job."""
    if settings.inference_threads:
        # PyTorch's pool is process-wide, so it is sized here at the wiring, not by the
        # encoder; the OpenVINO tower takes the same count per compiled model.
        set_torch_threads(settings.inference_threads)
    encoder = ClipEncoder(
        settings.model,
        towers=("image",),
        device=settings.device,
        precision=settings.precision,
        threads=settings.inference_threads,
        runtime=settings.runtime,
        cache_dir=settings.cache_dir,
        calibration_images=settings.calibration_images,
    )
    images = ImageSource(
        SourcePolicy(
            max_bytes=settings.max_image_bytes,
            timeout_s=settings.fetch_timeout_s,
            max_redirects=settings.max_redirects,
            retries=settings.fetch_retries,
            image_roots=tuple(settings.image_roots),
            allow_private=settings.allow_private_networks,
            allowed_networks=parse_networks(settings.allowed_networks),
        ),
        stop=stop,
    )
    config = EmbedderConfig(
        topics=Topics(settings.embeddings_topic, settings.dlq_topic),
        model=ModelIdentity(
            settings.model, encoder.dim, weights_digest(resolve_model_dir(settings.model))
        ),
        spec=encoder.spec,
        limits=ImageLimits(settings.max_image_bytes, settings.max_image_pixels),
        batch_size=settings.batch_size,
        batch_wait_s=settings.batch_wait_ms / 1000,
        fetch_concurrency=settings.fetch_concurrency,
        decode_workers=settings.decode_workers or 2 * (os.cpu_count() or 1),
        max_in_flight=settings.max_in_flight,
        max_in_flight_bytes=settings.max_in_flight_bytes,
        max_event_bytes=settings.max_event_bytes,
        storm=StormLimits(
            settings.dead_letter_storm_ratio,
            settings.dead_letter_storm_window,
            settings.dead_letter_storm_min,
        ),
        reuse_cache_size=settings.reuse_cache_size,
    )

    def make_source(on_revoke: Callable[[list[Partition]], None]) -> RecordSource:
        if source is not None:
            return source
        return Source(
            settings,
            group_id=settings.embedder_group,
            topics=[settings.input_topic],
            on_revoke=on_revoke,
            extra=prefetch_config(embedder_prefetch_bytes(settings)),
        )

    service = EmbedderService(
        config,
        make_source=make_source,
        publisher=publisher
        if publisher is not None
        else Publisher(
            settings,
            # The largest record it writes: a dead letter is at most the largest event.
            extra={"message.max.bytes": max(16 * MiB, settings.max_event_bytes + MiB)},
        ),
        images=images,
        encode=lambda pixels: list(encoder.encode_images(pixels)),
        stop=stop,
        metrics=metrics,
    )
    return service, encoder


def run(settings: EmbedderSettings, stop: threading.Event) -> None:
    # What only an operator can fix is found before the wait for the broker.
    resolve_model_dir(settings.model)
    keep_freed_memory()  # ~1 MB buffers per event reuse memory instead of faulting it in
    metrics = EmbedderMetrics()
    run_worker(
        settings,
        lambda: nullcontext(build_service(settings, stop, metrics=metrics)[0]),
        metrics=metrics,
        topics=[settings.input_topic, settings.embeddings_topic, settings.dlq_topic],
        group=settings.embedder_group,
        consumes=settings.input_topic,
        stop=stop,
    )
