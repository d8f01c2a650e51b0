"""Keep freed memory in the process for the next events (glibc only).

Each inline-image event passes through several buffers of about 1 MB: the fetched
record, its Python copy, the base64 text, the decoded bytes. By default glibc serves
blocks that large with fresh ``mmap`` regions, or hands the top of its heaps back to the
kernel as soon as it is free, so every event touches new pages: about 200 page faults
for parsing one 850 KB event alone. On the development VM that made parsing cost 0.8-2.2
ms of CPU per event under load instead of 0.6 ms, and the embedder 5 % slower
(docs/embedding-speed.md). With a fixed mmap threshold and a high trim threshold, freed
blocks are reused instead. Memory then stays at the largest burst's peak, which
``max_in_flight`` bounds.

An operator's own ``MALLOC_*`` or ``GLIBC_TUNABLES`` settings win: nothing is changed then.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest value glibc accepts on 64-bit
TRIM_THRESHOLD = 256 * 1024 * 1024
TOP_PAD = 16 * 1024 * 1024

_OPERATOR_VARIABLES = (
    "GLIBC_TUNABLES",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
)


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    path = ctypes.util.find_library("c")
    return ctypes.CDLL(path) if path else None


def keep_freed_memory() -> bool:
    """Tune glibc's allocator as described above. Returns whether it was changed."""
    if any(name in os.environ for name in _OPERATOR_VARIABLES):
        log.info("allocator: the operator's MALLOC_*/GLIBC_TUNABLES settings stay as they are")
        return False
    libc = _libc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_TOP_PAD, TOP_PAD),
    )
    applied = [mallopt(option, value) == 1 for option, value in settings]
    if not all(applied):
        log.warning("allocator: glibc refused some mallopt settings; its defaults stay there")
    return all(applied)


def give_back_freed_memory() -> None:
    """Return the free parts of the heaps to the kernel now (``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
