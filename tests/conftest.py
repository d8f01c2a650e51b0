"""Fixtures shared by every test: caches kept out of ``$HOME``, a tiny CLIP, and the real
broker (Tansu) and the real Milvus standalone server, started once per session when a
test asks for them.

Set ``CATALENS_TEST_KAFKA_BOOTSTRAP`` / ``CATALENS_TEST_MILVUS_URI`` /
``CATALENS_TEST_MILVUS_LITE_URI`` to run against an existing Kafka / Milvus / Milvus Lite
instead of starting them.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalens.dev.localstack import Child, free_port, start_broker, start_milvus, start_milvus_lite
from catalens.dev.modelkit import build_random_clip


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The embedder's int8 cache (``EmbedderSettings.cache_dir``, by default under
    ``~/.cache``) in a folder of the session's: tests write nothing to ``$HOME``. Child
    processes the tests start inherit it."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CATALENS_CACHE_DIR", str(cache / "catalens"))
        yield cache


@pytest.fixture(scope="session", autouse=True)
def openvino_telemetry_declined() -> Iterator[None]:
    """OpenVINO's telemetry (run by ``openvino.convert_model`` and NNCF) keeps a client id
    and a usage counter in ``~/intel``. Told there is no home folder to keep them in, it
    declines and writes nothing."""
    try:
        from openvino_telemetry.utils.opt_in_checker import OptInChecker
    except ImportError:  # not installed: nothing to decline
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OptInChecker, "consent_file_base_dir", staticmethod(lambda: None))
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny CLIP in the Hugging Face format (no downloads here)."""
    return build_random_clip(tmp_path_factory.mktemp("model") / "tiny-clip", size="tiny")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real broker's bootstrap address: Tansu started for the session, or
    ``CATALENS_TEST_KAFKA_BOOTSTRAP`` to use an existing Kafka instead."""
    if external := os.environ.get("CATALENS_TEST_KAFKA_BOOTSTRAP"):
        yield external
        return
    port = free_port()
    child = start_broker(port, tmp_path_factory.mktemp("broker") / "broker.log")
    yield f"127.0.0.1:{port}"
    child.kill()  # memory only: nothing to flush


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 in a thread; yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def jpeg_bytes(width: int = 320, height: int = 480, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG: smooth gradients plus noise, different for every seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1)
    base = base * rng.uniform(80, 200, size=3) + rng.uniform(0, 50, size=3)
    noisy = base + rng.normal(0, 12, size=base.shape)
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class MilvusServer:
    """The session's Milvus; tests may restart it (same data, same port)."""

    def __init__(self, data: Path, logs: Path) -> None:
        self.data = data
        self.logs = logs
        self.port = free_port()
        self.child: Child | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.child = start_milvus(self.data, self.port, self.logs / "milvus.log")

    def kill(self) -> None:
        assert self.child is not None
        self.child.kill()
        self.child.stop(timeout_s=5)  # reap the process group


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer | None]:
    if os.environ.get("CATALENS_TEST_MILVUS_URI"):
        yield None
        return
    base = tmp_path_factory.mktemp("milvus")
    server = MilvusServer(base / "data", base)
    server.start()
    yield server
    if server.child is not None:
        server.child.stop(timeout_s=10)


@pytest.fixture(scope="session")
def milvus(milvus_server: MilvusServer | None) -> str:
    if external := os.environ.get("CATALENS_TEST_MILVUS_URI"):
        return external
    assert milvus_server is not None
    return milvus_server.uri


@pytest.fixture(scope="session")
def milvus_lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Milvus Lite 3.2.2 (the API of Milvus >= 2.5: full-text search, hybrid search,
    grouping) as a gRPC server for the session, beside Milvus 2.3.5; or
    ``CATALENS_TEST_MILVUS_LITE_URI``."""
    if external := os.environ.get("CATALENS_TEST_MILVUS_LITE_URI"):
        yield external
        return
    base = tmp_path_factory.mktemp("milvus-lite")
    port = free_port()
    child = start_milvus_lite(base / "data", port, base / "milvus-lite.log")
    yield f"http://127.0.0.1:{port}"
    child.stop(timeout_s=10)
