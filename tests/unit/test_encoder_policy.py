"""The order of image tower candidates and the one acceptance rule, without a model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from catalens.encoder import policy
from catalens.encoder.policy import MIN_COSINE, Candidate


@dataclass(frozen=True)
class Built:
    candidate: Candidate
    check_cosine: float | None


def builder(
    cosines: dict[str, float | None],
) -> tuple[list[Candidate], Callable[[Candidate], Built]]:
    """A fake build step: records what was built, reports the given check result."""
    built: list[Candidate] = []

    def build(candidate: Candidate) -> Built:
        built.append(candidate)
        return Built(candidate, cosines[candidate.precision])

    return built, build


def test_auto_on_a_cpu_tries_int8_then_native_bf16_then_fp32() -> None:
    assert policy.candidates("openvino", "auto", "cpu", bf16=True) == [
        Candidate("openvino", "int8"),
        Candidate("openvino", "bf16"),
        Candidate("openvino", "fp32"),
    ]
    # Emulated bf16 is slower than fp32, so a CPU without it goes from int8 to fp32.
    assert policy.candidates("torch", "auto", "cpu", bf16=False) == [
        Candidate("torch", "int8"),
        Candidate("torch", "fp32"),
    ]


def test_auto_on_cuda_tries_fp16_then_fp32() -> None:
    assert policy.candidates("torch", "auto", "cuda", bf16=False) == [
        Candidate("torch", "fp16"),
        Candidate("torch", "fp32"),
    ]


def test_an_explicit_precision_is_the_only_candidate() -> None:
    assert policy.candidates("torch", "int8", "cpu", bf16=True) == [Candidate("torch", "int8")]


def test_openvino_refuses_cuda_and_fp16() -> None:
    with pytest.raises(ValueError, match="CPUs"):
        policy.choose_runtime("openvino", "cuda", openvino=True)
    with pytest.raises(ValueError, match="fp16"):
        policy.candidates("openvino", "fp16", "cpu", bf16=False)


def test_auto_runtime_is_openvino_on_a_cpu_only_where_it_is_installed() -> None:
    assert policy.choose_runtime("auto", "cpu", openvino=True) == "openvino"
    assert policy.choose_runtime("auto", "cpu", openvino=False) == "torch"
    assert policy.choose_runtime("auto", "cuda", openvino=True) == "torch"


def test_the_first_candidate_that_passes_the_check_is_kept_and_later_ones_are_not_built() -> None:
    built, build = builder({"int8": 0.9995, "bf16": 1.0, "fp32": None})
    ordered = policy.candidates("openvino", "auto", "cpu", bf16=True)
    choice = policy.choose(ordered, build)
    assert choice.candidate == Candidate("openvino", "int8")
    assert built == ordered[:1]
    assert choice.rejected == ()


def test_a_candidate_below_the_bound_is_rejected_for_the_next_in_order() -> None:
    built, build = builder({"int8": 0.956, "bf16": 0.9985, "fp32": None})
    ordered = policy.candidates("openvino", "auto", "cpu", bf16=True)
    choice = policy.choose(ordered, build)
    assert built == ordered
    assert choice.candidate == Candidate("openvino", "fp32")
    assert choice.tower.check_cosine is None
    assert choice.rejected == (
        (Candidate("openvino", "int8"), 0.956),
        (Candidate("openvino", "bf16"), 0.9985),
    )


def test_the_bound_itself_passes_and_fp32_needs_no_check() -> None:
    assert policy.passes(MIN_COSINE)
    assert not policy.passes(MIN_COSINE - 1e-6)
    assert policy.passes(None)


def test_the_last_candidate_is_kept_even_below_the_bound(caplog: pytest.LogCaptureFixture) -> None:
    _built, build = builder({"int8": 0.9})
    choice = policy.choose([Candidate("torch", "int8")], build)
    assert choice.candidate == Candidate("torch", "int8")
    assert "nothing safer" in caplog.text
