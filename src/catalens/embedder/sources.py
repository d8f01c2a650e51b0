"""Obtaining image bytes from an event's ``image`` reference, with the security guards.

* ``url``: http(s) only; every address the host resolves to must be public unless it is
  allowlisted (loopback, private, link-local incl. 169.254.169.254, multicast and reserved
  ranges are refused), checked for each redirect hop; the connection goes to the vetted
  address itself, so a second DNS answer cannot swap it (DNS rebinding); bounded
  redirects, connect/read timeouts, a byte cap enforced while streaming.
* ``path``: only under the configured image roots, after resolving ``..`` and symlinks.
* ``data``: base64, size-capped before decoding.

A fetch may be conditional: given the :class:`Validators` a URL answered with before
(ETag, Last-Modified), the request carries If-None-Match / If-Modified-Since, and a 304
Not Modified answer comes back as a :class:`Fetched` without bytes, so that the caller can
reuse what it made of them (docs/image-reuse.md).

Every refusal is an :class:`BadInput` with a reason, i.e. a dead letter. So is a URL
that still times out or answers 5xx/429 after ``retries`` more tries: unlike a broker or
Milvus outage, one bad CDN URL must not stall a partition that holds everyone else's
products (README, "Transient faults wait").
"""

from __future__ import annotations

import binascii
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import pybase64

from catalens.errors import BadInput, TransientError
from catalens.retry import Backoff, retry_transient
from catalens.schemas import ImageRef, Reason

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class SourcePolicy:
    """Where images may come from, and how much of them may be read."""

    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3
    retries: int = 2
    image_roots: Sequence[Path] = ()
    allow_private: bool = False
    allowed_networks: Sequence[Network] = field(default_factory=tuple)

    def address_allowed(self, address: Address) -> bool:
        if any(address in net for net in self.allowed_networks):
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return self.address_allowed(address.ipv4_mapped)
        if address.is_multicast or address.is_unspecified or address.is_reserved:
            return False
        if self.allow_private:
            return True
        return address.is_global


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


@dataclass(frozen=True, slots=True)
class Validators:
    """What a server said identifies the body it sent for ``url`` (the last redirect hop):
    sent back on a later fetch of that same URL, it lets the server answer 304."""

    url: str
    etag: str | None = None
    last_modified: str | None = None

    def conditions(self) -> dict[str, str]:
        conditions = {}
        if self.etag is not None:
            conditions["If-None-Match"] = self.etag
        if self.last_modified is not None:
            conditions["If-Modified-Since"] = self.last_modified
        return conditions


@dataclass(frozen=True, slots=True)
class Fetched:
    """The bytes of an image, or ``None`` when the server answered 304 Not Modified to the
    validators it was sent; ``validators`` (URLs only) are those to send next time."""

    data: bytes | None
    validators: Validators | None = None


# Waits between tries of one URL: 0.2-0.4 s, then 0.4-0.8 s, at most 2 s.
FETCH_BACKOFF = Backoff(initial_s=0.4, max_s=2.0)


class ImageSource:
    """Reads the bytes behind an :class:`ImageRef`. Thread-safe; share one per process.

    Once ``stop`` is set, a read waiting to retry a URL raises
    :class:`~catalens.retry.Stopped` instead of waiting, so shutdown is not held up by a
    failing CDN; the caller leaves that record uncommitted, for redelivery.
    """

    def __init__(
        self,
        policy: SourcePolicy,
        *,
        resolver: Resolver = system_resolver,
        stop: threading.Event | None = None,
    ) -> None:
        self.policy = policy
        self._roots = [root.resolve() for root in policy.image_roots]
        self._resolve = resolver
        self._stop = stop if stop is not None else threading.Event()
        timeout = httpx.Timeout(policy.timeout_s, connect=min(policy.timeout_s, 5.0))
        self._http = httpx.Client(
            timeout=timeout, follow_redirects=False, limits=httpx.Limits(max_connections=64)
        )

    def close(self) -> None:
        self._http.close()

    def read(self, ref: ImageRef) -> bytes:
        fetched = self.fetch(ref)
        assert fetched.data is not None  # nothing conditional was asked
        return fetched.data

    def fetch(self, ref: ImageRef, known: Validators | None = None) -> Fetched:
        """The image's bytes; for a URL, ``known`` (validators an earlier fetch returned)
        makes the request conditional, and a 304 answer a :class:`Fetched` without data.
        Conditions go only to the hop whose URL ``known`` is of, so a changed redirect
        never has another resource's validators vouch for it."""
        if ref.data is not None:
            return Fetched(self._read_data(ref.data))
        if ref.path is not None:
            return Fetched(self._read_path(ref.path))
        assert ref.url is not None
        return self._read_url(ref.url, known)

    # -- inline ---------------------------------------------------------------------------

    def _read_data(self, data: str) -> bytes:
        if len(data) * 3 // 4 > self.policy.max_bytes + 3:
            raise BadInput(
                Reason.IMAGE_TOO_LARGE, f"inline image exceeds {self.policy.max_bytes} bytes"
            )
        try:
            return pybase64.b64decode(data, validate=True)  # SIMD: 50x the stdlib
        except (binascii.Error, ValueError):
            raise BadInput(Reason.SCHEMA_VIOLATION, "image.data is not valid base64") from None

    # -- local files ----------------------------------------------------------------------

    def _read_path(self, raw: str) -> bytes:
        path = Path(raw)
        if not path.is_absolute():
            raise BadInput(Reason.FORBIDDEN_SOURCE, f"image path {raw!r} is not absolute")
        if not self._roots:
            raise BadInput(
                Reason.FORBIDDEN_SOURCE, "image paths are disabled: no image roots are configured"
            )
        try:
            real = path.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise BadInput(Reason.IMAGE_NOT_FOUND, f"no such file: {raw}") from None
        except (OSError, RuntimeError) as exc:
            raise BadInput(Reason.IMAGE_NOT_FOUND, f"cannot resolve {raw}: {exc}") from None
        if not any(real.is_relative_to(root) for root in self._roots):
            raise BadInput(
                Reason.FORBIDDEN_SOURCE, f"{raw} resolves outside the configured image roots"
            )
        if not real.is_file():
            raise BadInput(Reason.IMAGE_NOT_FOUND, f"{raw} is not a regular file")
        size = real.stat().st_size
        if size > self.policy.max_bytes:
            raise BadInput(
                Reason.IMAGE_TOO_LARGE, f"{raw} has {size} bytes, limit is {self.policy.max_bytes}"
            )
        with real.open("rb") as handle:
            return handle.read(self.policy.max_bytes + 1)

    # -- http(s) --------------------------------------------------------------------------

    def _vet(self, url: str) -> tuple[str, str, str]:
        """Check one hop; returns (url with the vetted address, Host header, TLS name)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BadInput(
                Reason.FORBIDDEN_SOURCE, f"scheme {parts.scheme or '(none)'!r} is not allowed"
            )
        host = parts.hostname
        if not host:
            raise BadInput(Reason.SCHEMA_VIOLATION, f"url {url!r} has no host")
        if parts.username or parts.password:
            raise BadInput(Reason.FORBIDDEN_SOURCE, "credentials in image URLs are refused")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in self._resolve(host, port)]
        except (socket.gaierror, UnicodeError, ValueError) as exc:
            raise BadInput(Reason.IMAGE_NOT_FOUND, f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise BadInput(Reason.IMAGE_NOT_FOUND, f"{host} has no address")
        refused = [a for a in addresses if not self.policy.address_allowed(a)]
        if refused:
            raise BadInput(
                Reason.FORBIDDEN_SOURCE, f"{host} resolves to non-public address {refused[0]}"
            )
        address = addresses[0]
        netloc = f"[{address}]" if address.version == 6 else str(address)
        if parts.port:
            netloc += f":{parts.port}"
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = host if not parts.port else f"{host}:{parts.port}"
        return pinned, host_header, host

    def _read_url(self, url: str, known: Validators | None) -> Fetched:
        try:
            return retry_transient(
                lambda: self._follow(url, known),
                what=f"fetching {url}",
                backoff=FETCH_BACKOFF,
                stop=self._stop,
                attempts=self.policy.retries + 1,
                log_level=logging.DEBUG,
            )
        except _Retryable as exc:
            raise BadInput(exc.reason, exc.message) from None

    def _follow(self, url: str, known: Validators | None) -> Fetched:
        for _hop in range(self.policy.max_redirects + 1):
            pinned, host_header, tls_name = self._vet(url)
            headers = {"Host": host_header, "Accept": "image/*"}
            conditional = known if known is not None and known.url == url else None
            if conditional is not None:
                headers |= conditional.conditions()
            try:
                with self._http.stream(
                    "GET", pinned, headers=headers, extensions={"sni_hostname": tls_name}
                ) as response:
                    # First: httpx counts 304 as a redirect (a 3xx), one without a Location.
                    if conditional is not None and response.status_code == 304:
                        return Fetched(None, conditional)
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise BadInput(Reason.FETCH_FAILED, f"redirect without Location: {url}")
                        url = urljoin(url, location)
                        continue
                    return Fetched(self._body(url, response), _validators(url, response))
            except httpx.TimeoutException:
                raise _Retryable(Reason.FETCH_TIMEOUT, f"timed out fetching {url}") from None
            except httpx.TransportError as exc:
                raise _Retryable(Reason.FETCH_FAILED, f"cannot fetch {url}: {exc}") from None
        raise BadInput(Reason.FETCH_FAILED, f"more than {self.policy.max_redirects} redirects")

    def _body(self, url: str, response: httpx.Response) -> bytes:
        status = response.status_code
        if status in (404, 410):
            raise BadInput(Reason.IMAGE_NOT_FOUND, f"{url} answered {status}")
        if status == 429 or status >= 500:
            raise _Retryable(Reason.FETCH_FAILED, f"{url} answered {status}")
        if status != 200:
            raise BadInput(Reason.FETCH_FAILED, f"{url} answered {status}")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.policy.max_bytes:
            raise BadInput(
                Reason.IMAGE_TOO_LARGE,
                f"{url} declares {declared} bytes, limit is {self.policy.max_bytes}",
            )
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > self.policy.max_bytes:
                raise BadInput(
                    Reason.IMAGE_TOO_LARGE, f"{url} sent more than {self.policy.max_bytes} bytes"
                )
        return bytes(body)


def _validators(url: str, response: httpx.Response) -> Validators | None:
    """What to send back next time. Not kept (the next fetch is then unconditional: only
    time lost): a value that is not ASCII (it could not be sent back as a header), one
    longer than :data:`MAX_VALIDATOR_CHARS`, and a weak ETag (``W/"..."``), which vouches
    for an equivalent body, not the same bytes (a recompressed image would keep the vector
    of the old one)."""
    etag = _ascii(response.headers.get("etag"))
    if etag is not None and etag.startswith("W/"):
        etag = None
    last_modified = _ascii(response.headers.get("last-modified"))
    if etag is None and last_modified is None:
        return None
    return Validators(url, etag, last_modified)


# Real ETags and Last-Modified dates are tens of bytes; one longer than this is not kept,
# so the reuse cache's entries stay bounded by the URLs they were answered for.
MAX_VALIDATOR_CHARS = 256


def _ascii(value: str | None) -> str | None:
    if value is None or not value.isascii() or len(value) > MAX_VALIDATOR_CHARS:
        return None
    return value


class _Retryable(TransientError):
    """A timeout, a connection failure or a 5xx/429 answer: worth a few more tries."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
