"""Configuration: one pydantic-settings model per service over a shared base.

Every field is read from an environment variable ``CATALENS_<FIELD>`` (for example
``CATALENS_KAFKA_BOOTSTRAP``); command-line options of the same name override it.
Settings objects are frozen: build them once at the entry point and pass them down.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL = "clip-ViT-B-32"
MiB = 1024 * 1024


def model_key(model: str) -> str:
    """A name-safe key for a model id or path: readable, and unique through a digest.
    It names the model's generation and, by default, its consumer groups."""
    tail = model.rstrip("/").split("/")[-1]
    readable = re.sub(r"[^A-Za-z0-9_]", "_", tail).strip("_")[:80] or "model"
    return f"{readable}_{hashlib.sha1(model.encode()).hexdigest()[:8]}"


def default_embedder_group(model: str) -> str:
    """The embedder's consumer group for ``model`` when none is configured: the embedder
    of a new model reads the input topic from its start, beside the live model's."""
    return f"catalens-embedder.{model_key(model)}"


def generation_name(model: str, name: str = "", index: str = "HNSW") -> str:
    """A generation's name: as configured, or the model's key followed by the index type
    where that is not the default HNSW (``clip_ViT_B_32_1a2b3c4d__ivf_sq8``)."""
    suffix = "" if index.upper() == "HNSW" else f"__{index.lower()}"
    return name or model_key(model) + suffix


def default_sink_group(model: str, generation: str = "") -> str:
    """The sink's consumer group for a generation of ``model`` when none is configured:
    one group per generation, so that a generation built beside another reads the
    embedding topic from its start."""
    return f"catalens-sink.{generation or model_key(model)}"


CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    """Accept ``a,b,c`` from the environment as well as a real list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def to_env(settings: BaseSettings, fields: Iterable[str]) -> dict[str, str]:
    """The ``CATALENS_*`` variables that give a child process these values of ``fields``
    (unset ones, i.e. ``None``, are left out): how ``catalens up`` passes its settings,
    options included, on to the services it starts."""
    env: dict[str, str] = {}
    for name in fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        env[f"CATALENS_{name.upper()}"] = str(value)
    return env


def default(settings: type[BaseSettings], name: str) -> Any:
    """A setting's default, for the services' own config classes: one place says it."""
    return settings.model_fields[name].default


class CatalensSettings(BaseSettings):
    """What every Catalens process needs: where Kafka and Milvus are, and the topic names."""

    model_config = SettingsConfigDict(
        env_prefix="CATALENS_", frozen=True, extra="ignore", env_file=None
    )

    kafka_bootstrap: str = "localhost:9092"
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # Tansu (the development broker) only starts delivering to a new group member after
    # about session.timeout.ms / 2, so the default is the smallest value real Kafka accepts.
    kafka_session_timeout_ms: int = Field(default=6000, ge=1000)
    kafka_max_poll_interval_ms: int = Field(default=60000, ge=1000)
    input_topic: str = "catalens.product-images"
    embeddings_topic: str = "catalens.product-embeddings"
    dlq_topic: str = "catalens.product-images.dlq"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication: int = Field(default=1, ge=1)

    milvus_uri: str = "http://localhost:19530"
    milvus_token: SecretStr | None = None
    # In-memory replicas a generation is loaded with (Milvus distributed: each on query
    # nodes of its own, multiplying the searches per second; standalone has one).
    milvus_replicas: int = Field(default=1, ge=1)
    collection: str = Field(default="catalens_products", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    model: str = DEFAULT_MODEL
    # Transient faults (broker or Milvus away) are retried with capped exponential backoff.
    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)
    # How long a command that talks to Kafka or Milvus once (publish, dlq, index, status,
    # up's sample) keeps trying to reach them before it gives up with exit status 1.
    # Services (embedder, sink, api) wait as long as it takes.
    connect_timeout_s: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"
    # json: one JSON object per line, for log shippers (catalens.logs).
    log_format: Literal["text", "json"] = "text"
    # Workers serve /healthz, /readyz and /metrics on this port (0: no endpoint).
    health_port: int = Field(default=0, ge=0, le=65535)


class EmbedderSettings(CatalensSettings):
    """The embedder: image fetching limits, batching and inference choices."""

    # Empty: catalens-embedder.<model key>, so that the embedder of a new model reads the
    # input topic from its start in a group of its own, beside the live model's.
    embedder_group: str = ""
    batch_size: int = Field(default=32, ge=1, le=4096)
    # How long a partial batch may wait for more images: small batches under light
    # traffic (latency), full batches under load (throughput).
    batch_wait_ms: int = Field(default=25, ge=0)
    fetch_concurrency: int = Field(default=16, ge=1, le=512)
    decode_workers: int = Field(default=0, ge=0, description="0 = chosen from the core count")
    # Records fetched but not yet committed. Each holds its event (an inline image too);
    # decoded pixels are bounded apart (four batches queued, one per prepare thread).
    # A resumed consumer needs a fetch round trip before records flow again: fewer than
    # this starved the pipeline between pauses (docs/ingest-speed.md).
    max_in_flight: int = Field(default=1024, ge=1)
    # What the embedder holds for its records in flight, in bytes (catalens.embedder.
    # holdings says what counts): past it the partitions are paused, like past
    # MAX_IN_FLIGHT records. A fixed value, not a share of the machine's memory: a
    # container's limit is not what the kernel reports as the machine's, and a fixed
    # budget gives a formula an operator can size the container by (README, "Memory").
    # 256 MiB keeps a default embedder (ViT-B/32, ~0.55 GB) under 1 GiB with the Kafka
    # client's prefetch, and lets small events fill MAX_IN_FLIGHT (1,024 events of 1 MB
    # inline images would need 2 GiB: those are the events this bounds).
    max_in_flight_bytes: int = Field(default=256 * MiB, ge=1)
    # A larger event is a dead letter (event_too_large) without being parsed: the largest
    # event a Kafka broker is usually set to take (message.max.bytes of 1-10 MB) with room
    # to spare, and what the embedder's producer can write (its dead letters are bounded
    # by it too). An event between the budget and this is embedded alone.
    max_event_bytes: int = Field(default=16 * MiB, ge=1)
    # The dead-letter storm guard (catalens.embedder.storm, docs/metrics.md): the embedder
    # stops, unready and committing nothing more, once at least RATIO of the last WINDOW
    # records (and at least MIN of them) became dead letters. RATIO 0 turns it off.
    dead_letter_storm_ratio: float = Field(default=0.5, ge=0, le=1)
    dead_letter_storm_window: int = Field(default=200, ge=1)
    dead_letter_storm_min: int = Field(default=50, ge=1)
    # Products whose last embedded image (digest, vector, validators) is kept, so that a
    # re-publish with the same image runs no model: ~2.6 KiB each at 512-d (0: no reuse).
    reuse_cache_size: int = Field(default=100_000, ge=0)

    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    fetch_timeout_s: float = Field(default=10.0, gt=0)
    max_redirects: int = Field(default=3, ge=0)
    fetch_retries: int = Field(default=2, ge=0)
    image_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    allow_private_networks: bool = False
    allowed_networks: CommaList = Field(default_factory=list)

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"
    # auto: OpenVINO for the image tower on CPUs (when installed), PyTorch on CUDA.
    runtime: Literal["auto", "torch", "openvino"] = "auto"
    inference_threads: int = Field(default=0, ge=0, description="0 = all cores")
    # Where quantised models are kept between restarts.
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "catalens")
    # A folder of the catalog's own images to calibrate int8 on (default: generated ones).
    calibration_images: Path | None = None

    @field_validator("image_roots", "allowed_networks", mode="before")
    @classmethod
    def _lists_from_env(cls, value: Any) -> Any:
        return _split_commas(value)

    @model_validator(mode="after")
    def _group_follows_model(self) -> EmbedderSettings:
        if not self.embedder_group:
            # Frozen settings: this is the last step of building them.
            object.__setattr__(self, "embedder_group", default_embedder_group(self.model))
        return self


class SinkSettings(CatalensSettings):
    """The sink: how many records it collapses into one Milvus write."""

    # Empty: catalens-sink.<model key> (see embedder_group).
    sink_group: str = ""
    # At most this many records per write. A batch waits for its Strong reads of stored
    # versions, about one Milvus time tick per round of SINK_READ_CONCURRENCY queries of
    # 500 products, however few its records: 4000 against 1000 gave 11-16 % more events/s
    # at full load (docs/ingest-speed.md). The sink takes what has arrived, so light
    # traffic still goes out at once, in small batches.
    sink_batch_size: int = Field(default=4000, ge=1)
    # ... and at most this many bytes of records (a single larger record is a batch of
    # its own). 4,000 records of one image are 13-40 MB (3.2 KB with an image URL, up to
    # 10 KB with an inline image's thumbnail), so the record bound is the one that binds
    # for them; records of 16 images are 16 times larger, and 32 MiB makes batches of
    # ~700 such products (~11,000 rows) instead of 4,000 (64,000 rows, 180-600 MB).
    sink_batch_bytes: int = Field(default=32 * MiB, ge=1)
    # After a record arrives, how long to wait for more to write with it. 0: write what
    # has arrived; under load records queue up during each write, so batches grow anyway.
    sink_batch_wait_ms: int = Field(default=0, ge=0)
    # Strong reads of stored versions in flight at once: each waits about one Milvus time
    # tick, so a batch's reads together cost one tick instead of one per query (1: serial).
    sink_read_concurrency: int = Field(default=8, ge=1, le=64)
    # The generation this sink writes: its name (empty: the model's key, then the index
    # type where that is not HNSW) and its vector index (catalens.store.indexes): the type,
    # its build parameters over the type's defaults (JSON), and the search parameters the
    # generation records for its searches (JSON; the API's CATALENS_SEARCH_PARAMS win).
    generation: str = Field(default="", pattern=r"^[A-Za-z0-9_]*$")
    index: Literal["HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN"] = "HNSW"
    index_params: dict[str, Any] = Field(default_factory=dict)
    search_params: dict[str, Any] = Field(default_factory=dict)
    # The shards of a generation this sink makes (fixed when it is made): each is one
    # channel of writes into Milvus, with its own data node. 0: the server's default (1
    # since Milvus 2.3). More shards spread a heavy write load on Milvus distributed;
    # searches do not need them (docs/scale.md, the plan).
    milvus_shards: int = Field(default=0, ge=0)
    # HNSW's M and efConstruction where CATALENS_INDEX_PARAMS does not set them.
    hnsw_m: int = Field(default=16, ge=4, le=64)
    hnsw_ef_construction: int = Field(default=200, ge=8)

    @model_validator(mode="after")
    def _group_follows_model(self) -> SinkSettings:
        named = generation_name(self.model, self.generation, self.index)
        object.__setattr__(self, "generation", named)  # frozen: the last step of building
        if not self.sink_group:
            object.__setattr__(self, "sink_group", default_sink_group(self.model, named))
        return self

    def index_build_params(self) -> dict[str, Any]:
        """CATALENS_INDEX_PARAMS, over HNSW_M and HNSW_EF_CONSTRUCTION for HNSW."""
        hnsw = {"M": self.hnsw_m, "efConstruction": self.hnsw_ef_construction}
        return (hnsw if self.index.startswith("HNSW") else {}) | self.index_params


class ApiSettings(CatalensSettings):
    """The query API."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # uvicorn's event loop and HTTP parser; "auto" takes uvloop and httptools (C, both
    # dependencies), which answer a request in less CPU than asyncio's loop and h11.
    api_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    api_http: Literal["auto", "h11", "httptools"] = "auto"
    # Search parameters over those the served generation records (JSON, e.g. {"ef": 128}
    # for HNSW, {"nprobe": 32} for IVF): a lever on recall against latency.
    search_params: dict[str, Any] = Field(default_factory=dict)
    # The mode of a /search that names none: auto is hybrid where the served index can
    # (Milvus >= 2.5 and a generation with the text fields), vector elsewhere.
    search_mode: Literal["auto", "vector", "keyword", "hybrid"] = "auto"
    # How hybrid search fuses its vector and keyword rankings (catalens.store.values.Fusion):
    # rrf, reciprocal rank fusion with HYBRID_RRF_K; or weighted, HYBRID_WEIGHT x cosine +
    # (1 - HYBRID_WEIGHT) x BM25 squashed into [0, 1).
    hybrid_fusion: Literal["rrf", "weighted"] = "rrf"
    hybrid_rrf_k: int = Field(default=60, ge=1)
    hybrid_weight: float = Field(default=0.5, ge=0, le=1)
    hybrid_depth: int = Field(default=100, ge=1, le=16_384)
    text_cache_size: int = Field(default=4096, ge=0)
    # How often the API looks where the alias points, to follow a promotion.
    alias_poll_s: float = Field(default=2.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    # `path` images are shown only from under these folders (the embedder's roots).
    image_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    @field_validator("image_roots", mode="before")
    @classmethod
    def _roots_from_env(cls, value: Any) -> Any:
        return _split_commas(value)


class StatusSettings(CatalensSettings):
    """``catalens status``: which workers to ask for their metrics, and which consumer
    groups to show beside the ones each generation's model implies."""

    # Base URLs of the workers' health ports (``http://sink:8082``); their ``/metrics``
    # is read for freshness. Repeatable ``--worker`` options add to these.
    status_workers: CommaList = Field(default_factory=list)
    # Groups set explicitly on the workers (CATALENS_EMBEDDER_GROUP, CATALENS_SINK_GROUP).
    embedder_group: str = ""
    sink_group: str = ""

    @field_validator("status_workers", mode="before")
    @classmethod
    def _workers_from_env(cls, value: Any) -> Any:
        return _split_commas(value)
