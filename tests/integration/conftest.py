"""Fixtures of the integration tests: an image server and a whole deployment (the broker
and Milvus come from tests/conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.stack import Stack

pytestmark = pytest.mark.integration


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


@pytest.fixture
def lite_stack(broker: str, milvus_lite: str, tiny_model: Path, tmp_path: Path) -> Iterator[Stack]:
    """A deployment on Milvus Lite: the API of Milvus ≥ 2.5 (keyword, hybrid, grouping)."""
    deployment = Stack(broker, milvus_lite, tiny_model, tmp_path)
    yield deployment
    deployment.stop()
