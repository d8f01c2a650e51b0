"""Waiting in tests: on a condition, never for a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None],
    timeout_s: float = 30,
    what: str = "the condition",
    every_s: float = 0.3,
) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail naming
    ``what`` (and the last value) after ``timeout_s``. Polls quickly at first, then every
    ``every_s``, so a short wait ends soon after its condition holds and a long one
    (Milvus, a process starting) does not keep the machine busy asking."""
    deadline = time.monotonic() + timeout_s
    pause = min(0.01, every_s)
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what} (last: {last!r})"
            )
        time.sleep(pause)
        pause = min(every_s, pause * 2)
