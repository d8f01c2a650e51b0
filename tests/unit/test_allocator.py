"""The embedder's allocator setting: freed ~1 MB buffers are reused, not faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from catalens.embedder.allocator import keep_freed_memory

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)

# A burst of 100 one-MB buffers, all freed, then a second burst: the page faults the
# second burst takes. Run in a child so this test process keeps its own allocator.
_BURSTS = """
import resource, sys
from catalens.embedder.allocator import give_back_freed_memory, keep_freed_memory
tuned = keep_freed_memory() if sys.argv[1] != "default" else False
def burst():
    held = [bytearray(1 << 20) for _ in range(100)]
    for block in held:
        block[::4096] = b"x" * len(block[::4096])
    del held
burst()
if sys.argv[1] == "tuned-then-trimmed":
    give_back_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
burst()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def second_burst_faults(mode: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run(
        [sys.executable, "-c", _BURSTS, mode], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


def test_freed_blocks_are_reused_by_the_next_burst() -> None:
    tuned, faults = second_burst_faults("tuned")
    assert tuned
    assert faults < 1000  # 100 MB reused: nothing new to fault in
    _, default_faults = second_burst_faults("default")
    assert default_faults > 10 * max(faults, 100)  # glibc's default: fresh pages again


def test_the_operators_own_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False


def test_freed_memory_can_be_handed_back_on_demand() -> None:
    """Benchmarks hand it back between phases: the next burst faults its pages in again."""
    tuned, faults = second_burst_faults("tuned-then-trimmed")
    assert tuned
    assert faults > 10_000
