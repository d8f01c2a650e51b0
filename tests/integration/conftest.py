"""Session fixtures: the real Milvus standalone server (the real broker is in
tests/conftest.py, shared with the contract tests).

Set ``CATALENS_TEST_MILVUS_URI`` to run against an existing Milvus instead of starting it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from catalens.localstack import Child, free_port, start_milvus
from tests.integration.stack import Stack

pytestmark = pytest.mark.integration


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
    return os.environ.get("CATALENS_TEST_MILVUS_URI") or milvus_server.uri  # type: ignore[union-attr]


class ImageServer:
    """Serves ``root`` over HTTP on 127.0.0.1; ``/slow/...`` answers after ``delay_s``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.delay_s = 5.0
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/slow/"):
                    time.sleep(server.delay_s)
                    self.path = self.path[len("/slow") :]
                if self.path.startswith("/redirect/"):
                    self.send_response(302)
                    self.send_header("Location", self.path[len("/redirect") :])
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[ImageServer]:
    root = tmp_path / "www"
    root.mkdir()
    server = ImageServer(root)
    yield server
    server.httpd.shutdown()


@pytest.fixture
def stack(broker: str, milvus: str, tiny_model: Path, tmp_path: Path) -> Iterator[Stack]:
    deployment = Stack(broker, milvus, tiny_model, tmp_path)
    yield deployment
    deployment.stop()
