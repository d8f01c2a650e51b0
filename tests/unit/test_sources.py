"""Image source guards: SSRF, image roots, inline data, HTTP limits."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from catalens.embedder.sources import (
    ImageSource,
    Resolver,
    SourcePolicy,
    Validators,
    parse_networks,
)
from catalens.errors import BadInput
from catalens.schemas import ImageRef, Reason
from tests.conftest import http_server


def resolver_to(*addresses: str) -> Resolver:
    return lambda _host, _port: list(addresses)


def refused(source: ImageSource, ref: ImageRef) -> Reason:
    with pytest.raises(BadInput) as caught:
        source.read(ref)
    return caught.value.reason


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.5",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fd00::1",
        "224.0.0.1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "100.64.0.1",
    ],
)
def test_urls_resolving_to_non_public_addresses_are_forbidden(address: str) -> None:
    source = ImageSource(SourcePolicy(), resolver=resolver_to(address))
    assert refused(source, ImageRef(url="http://cdn.example.com/a.jpg")) is Reason.FORBIDDEN_SOURCE


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    source = ImageSource(SourcePolicy(), resolver=resolver_to("93.184.216.34", "10.0.0.1"))
    assert refused(source, ImageRef(url="https://cdn.example.com/a.jpg")) is Reason.FORBIDDEN_SOURCE


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "gopher://x/",
        "http://user:pw@example.com/a.jpg",
    ],
)
def test_other_schemes_and_credentials_are_forbidden(url: str) -> None:
    source = ImageSource(SourcePolicy(), resolver=resolver_to("93.184.216.34"))
    assert refused(source, ImageRef(url=url)) is Reason.FORBIDDEN_SOURCE


def test_allowlisted_networks_pass_the_address_check() -> None:
    policy = SourcePolicy(allowed_networks=parse_networks(["10.0.0.0/8"]))
    assert policy.address_allowed(__import__("ipaddress").ip_address("10.2.3.4"))
    assert not policy.address_allowed(__import__("ipaddress").ip_address("192.168.0.1"))


def test_paths_only_under_the_image_roots(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"img")
    (tmp_path / "secret.txt").write_bytes(b"secret")
    (root / "escape.jpg").symlink_to(tmp_path / "secret.txt")
    source = ImageSource(SourcePolicy(image_roots=(root,)))
    assert source.read(ImageRef(path=str(root / "a.jpg"))) == b"img"
    assert (
        refused(source, ImageRef(path=str(root / ".." / "secret.txt"))) is Reason.FORBIDDEN_SOURCE
    )
    assert refused(source, ImageRef(path=str(root / "escape.jpg"))) is Reason.FORBIDDEN_SOURCE
    assert refused(source, ImageRef(path=str(root / "missing.jpg"))) is Reason.IMAGE_NOT_FOUND
    assert refused(source, ImageRef(path="relative.jpg")) is Reason.FORBIDDEN_SOURCE
    assert (
        refused(ImageSource(SourcePolicy()), ImageRef(path=str(root / "a.jpg")))
        is Reason.FORBIDDEN_SOURCE
    )


def test_inline_data_is_decoded_and_capped() -> None:
    source = ImageSource(SourcePolicy(max_bytes=100))
    assert source.read(ImageRef(data=base64.b64encode(b"x" * 50).decode())) == b"x" * 50
    assert (
        refused(source, ImageRef(data=base64.b64encode(b"x" * 200).decode()))
        is Reason.IMAGE_TOO_LARGE
    )
    assert refused(source, ImageRef(data="not base64!")) is Reason.SCHEMA_VIOLATION


LAST_MODIFIED = "Tue, 24 Nov 2026 10:00:00 GMT"


class Handler(BaseHTTPRequestHandler):
    # (path, If-None-Match, If-Modified-Since) of every request, for the conditional tests.
    asked: ClassVar[list[tuple[str, str | None, str | None]]] = []

    def do_GET(self) -> None:
        etag, modified = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
        Handler.asked.append((self.path, etag, modified))
        if self.path == "/tagged.jpg":
            if etag == '"v1"' or (etag is None and modified == LAST_MODIFIED):
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("ETag", '"v1"')
            self.send_header("Last-Modified", LAST_MODIFIED)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"t" * 100)
            return
        if self.path == "/latin-1-etag.jpg":  # a header value that is not ASCII
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self._headers_buffer.append(b'ETag: "caf\xe9"\r\n')  # type: ignore[attr-defined]
            self.end_headers()
            self.wfile.write(b"e" * 100)
            return
        routes = {
            "/weak-etag.jpg": (200, b"w" * 100, {"ETag": 'W/"v1"'}),
            "/long-etag.jpg": (200, b"l" * 100, {"ETag": '"' + "v" * 300 + '"'}),
            "/ok.jpg": (200, b"x" * 100, {}),
            "/big.jpg": (200, b"x" * 5000, {}),
            "/missing.jpg": (404, b"", {}),
            "/broken.jpg": (500, b"", {}),
            "/hop": (302, b"", {"Location": "/ok.jpg"}),
            "/to-tagged": (302, b"", {"Location": "/tagged.jpg"}),
            "/unasked-304": (304, b"", {}),
            "/loop": (302, b"", {"Location": "/loop"}),
            "/to-metadata": (302, b"", {"Location": "http://169.254.169.254/latest/"}),
        }
        status, body, headers = routes.get(self.path, (404, b"", {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.path != "/big.jpg":  # streamed without a length: the cap applies mid-body
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with http_server(Handler) as url:
        yield url


@pytest.fixture
def local() -> ImageSource:
    policy = SourcePolicy(
        max_bytes=1000,
        retries=0,
        max_redirects=2,
        allowed_networks=parse_networks(["127.0.0.1/32"]),
    )
    return ImageSource(policy)


def test_http_bodies_redirects_and_limits(server: str, local: ImageSource) -> None:
    assert local.read(ImageRef(url=f"{server}/ok.jpg")) == b"x" * 100
    assert local.read(ImageRef(url=f"{server}/hop")) == b"x" * 100
    assert refused(local, ImageRef(url=f"{server}/big.jpg")) is Reason.IMAGE_TOO_LARGE
    assert refused(local, ImageRef(url=f"{server}/missing.jpg")) is Reason.IMAGE_NOT_FOUND
    assert refused(local, ImageRef(url=f"{server}/broken.jpg")) is Reason.FETCH_FAILED
    assert refused(local, ImageRef(url=f"{server}/loop")) is Reason.FETCH_FAILED


def test_a_redirect_to_a_forbidden_address_is_refused(server: str, local: ImageSource) -> None:
    assert refused(local, ImageRef(url=f"{server}/to-metadata")) is Reason.FORBIDDEN_SOURCE


def test_loopback_is_refused_unless_allowlisted(server: str) -> None:
    assert (
        refused(ImageSource(SourcePolicy()), ImageRef(url=f"{server}/ok.jpg"))
        is Reason.FORBIDDEN_SOURCE
    )


def test_a_fetch_returns_the_validators_the_server_answered_with(
    server: str, local: ImageSource
) -> None:
    fetched = local.fetch(ImageRef(url=f"{server}/tagged.jpg"))
    assert fetched.data == b"t" * 100
    assert fetched.validators == Validators(f"{server}/tagged.jpg", '"v1"', LAST_MODIFIED)
    assert local.fetch(ImageRef(url=f"{server}/ok.jpg")).validators is None


def test_validators_that_could_not_be_sent_back_are_not_kept(
    server: str, local: ImageSource
) -> None:
    """A non-ASCII ETag cannot go into an If-None-Match header: the next fetch is plain."""
    ref = ImageRef(url=f"{server}/latin-1-etag.jpg")
    fetched = local.fetch(ref)
    assert fetched.data == b"e" * 100 and fetched.validators is None
    assert local.fetch(ref, fetched.validators).data == b"e" * 100


def test_a_weak_etag_is_not_kept(server: str, local: ImageSource) -> None:
    """A weak ETag vouches for an equivalent body, not the same bytes: no 304 is asked
    for on it, so a recompressed image is fetched and embedded again."""
    fetched = local.fetch(ImageRef(url=f"{server}/weak-etag.jpg"))
    assert fetched.data == b"w" * 100 and fetched.validators is None


def test_an_overlong_etag_is_not_kept(server: str, local: ImageSource) -> None:
    """The reuse cache keeps validators per product: their size stays bounded."""
    fetched = local.fetch(ImageRef(url=f"{server}/long-etag.jpg"))
    assert fetched.data == b"l" * 100 and fetched.validators is None


def test_a_conditional_fetch_answered_304_comes_back_without_bytes(
    server: str, local: ImageSource
) -> None:
    url = f"{server}/tagged.jpg"
    for known in (Validators(url, '"v1"'), Validators(url, last_modified=LAST_MODIFIED)):
        fetched = local.fetch(ImageRef(url=url), known)
        assert fetched.data is None and fetched.validators == known
    # Validators the server no longer holds: the bytes come, with the current ones.
    fetched = local.fetch(ImageRef(url=url), Validators(url, '"v0"'))
    assert fetched.data == b"t" * 100 and fetched.validators is not None
    assert fetched.validators.etag == '"v1"'


def test_conditions_go_only_to_the_hop_they_were_answered_for(
    server: str, local: ImageSource
) -> None:
    """Through a redirect, the redirecting URL is asked unconditionally and the target
    with its own validators; validators of another URL are never sent."""
    target = f"{server}/tagged.jpg"
    Handler.asked.clear()
    fetched = local.fetch(ImageRef(url=f"{server}/to-tagged"), Validators(target, '"v1"'))
    assert fetched.data is None
    assert Handler.asked == [("/to-tagged", None, None), ("/tagged.jpg", '"v1"', None)]
    Handler.asked.clear()
    fetched = local.fetch(ImageRef(url=target), Validators(f"{server}/other.jpg", '"v1"'))
    assert fetched.data == b"t" * 100
    assert Handler.asked == [("/tagged.jpg", None, None)]


def test_a_304_that_was_not_asked_for_is_a_failed_fetch(server: str, local: ImageSource) -> None:
    """Without validators sent, a 304 carries no image: the event is dead-lettered."""
    assert refused(local, ImageRef(url=f"{server}/unasked-304")) is Reason.FETCH_FAILED
