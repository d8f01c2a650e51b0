"""Choosing where and how a tower (image or text) runs: the device, then an ordered list
of (runtime, precision) candidates, then the first candidate that passes the load-time
check (check images for the image tower, check queries for the text tower).

Pure: reads ``/proc/cpuinfo`` and asks torch about CUDA only when called, so the order and
the acceptance rule are tested without a model.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
Device = Literal["auto", "cpu", "cuda"]
Runtime = Literal["auto", "torch", "openvino"]
Tower = Literal["image", "text"]
ConcretePrecision = Literal["fp32", "bf16", "fp16", "int8"]
ConcreteRuntime = Literal["torch", "openvino"]
OpenVinoPrecision = Literal["fp32", "bf16", "int8"]

# The acceptance bound: a reduced precision is served only at this min cosine to fp32.
MIN_COSINE = 0.999


@dataclass(frozen=True)
class Candidate:
    """One way to run a tower."""

    runtime: ConcreteRuntime
    precision: ConcretePrecision

    def __str__(self) -> str:
        return f"{self.runtime} {self.precision}"


def cpu_supports_bf16() -> bool:
    """Native bf16 matrix math (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_device(device: Device) -> Literal["cpu", "cuda"]:
    """``auto``: CUDA when torch sees a GPU, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def choose_runtime(runtime: Runtime, device: str, *, openvino: bool) -> ConcreteRuntime:
    """``auto``: OpenVINO on CPUs when it is installed (``openvino``), else PyTorch."""
    if runtime == "openvino" and device != "cpu":
        raise ValueError("the openvino runtime runs on CPUs; use torch for CUDA")
    if runtime != "auto":
        return runtime
    return "openvino" if device == "cpu" and openvino else "torch"


def openvino_precision(precision: Precision) -> OpenVinoPrecision:
    """``precision`` as OpenVINO computes it; a ValueError for what it has not (fp16)."""
    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"the openvino runtime has no {precision} (fp32, bf16, int8)")
    return precision


def candidates(
    runtime: ConcreteRuntime,
    precision: Precision,
    device: str,
    *,
    bf16: bool,
    int8: bool = True,
) -> list[Candidate]:
    """A tower's candidates, fastest first, fp32 last.

    An explicit ``precision`` is the only candidate: it is served even when it fails the
    check (with a warning), because the operator asked for it. ``auto`` tries fp16 then
    fp32 on CUDA; int8 (unless ``int8`` is False: not faster there), then bf16 where the
    CPU computes it natively (``bf16``), then fp32 on CPUs."""
    if runtime == "openvino" and precision != "auto":
        openvino_precision(precision)
    if precision != "auto":
        return [Candidate(runtime, precision)]
    if device == "cuda":
        return [Candidate(runtime, "fp16"), Candidate(runtime, "fp32")]
    safer: list[Literal["bf16", "fp32"]] = ["bf16", "fp32"] if bf16 else ["fp32"]
    first = [Candidate(runtime, "int8")] if int8 else []
    return [*first, *(Candidate(runtime, p) for p in safer)]


class Checked(Protocol):
    """A built candidate with its load-time check result (None: fp32, nothing to check)."""

    @property
    def check_cosine(self) -> float | None: ...


T = TypeVar("T", bound=Checked)


@dataclass(frozen=True)
class Choice(Generic[T]):
    """The tower chosen and what was tried before it, in order, with each min cosine."""

    tower: T
    candidate: Candidate
    rejected: tuple[tuple[Candidate, float], ...] = ()


def passes(check_cosine: float | None) -> bool:
    """The one acceptance rule: fp32 (unchecked) passes; anything else needs a min cosine
    to fp32 of at least :data:`MIN_COSINE` on the held-out check images or queries."""
    return check_cosine is None or check_cosine >= MIN_COSINE


def choose(ordered: Sequence[Candidate], build: Callable[[Candidate], T]) -> Choice[T]:
    """Build the candidates in order and keep the first that :func:`passes`. The last is
    kept whatever its check says, with a warning: nothing safer is left to try (under
    ``auto`` it is fp32, which passes; an explicit precision is the only candidate)."""
    if not ordered:
        raise ValueError("no candidate to build")
    rejected: list[tuple[Candidate, float]] = []
    for candidate, following in itertools.pairwise(ordered):
        tower = build(candidate)
        cosine = tower.check_cosine
        if cosine is None or passes(cosine):
            return Choice(tower, candidate, tuple(rejected))
        log.warning(
            "%s gave min cosine %.5f (< %.3f) on the check inputs; trying %s",
            candidate,
            cosine,
            MIN_COSINE,
            following,
        )
        rejected.append((candidate, cosine))
    last = ordered[-1]
    tower = build(last)
    if not passes(tower.check_cosine):
        log.warning(
            "%s gives min cosine %.5f to fp32 on the check inputs (bound %.3f); kept, as "
            "nothing safer is left to try",
            last,
            tower.check_cosine,
            MIN_COSINE,
        )
    return Choice(tower, last, tuple(rejected))
