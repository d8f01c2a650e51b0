"""The CLIP encoder on a tiny random model, against Hugging Face's own forward pass."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from catalens.encoder import MIN_COSINE, ClipEncoder, image, openvino, policy
from catalens.encoder.image import ImageSetup
from catalens.encoder.policy import Candidate, ConcretePrecision, ConcreteRuntime
from catalens.images import ImageLimits, PreprocessSpec, preprocess
from tests.conftest import jpeg_bytes


@pytest.fixture(scope="module")
def reference(tiny_model: Path) -> tuple[CLIPModel, CLIPProcessor]:
    return CLIPModel.from_pretrained(tiny_model).eval(), CLIPProcessor.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def setup(tiny_model: Path) -> ImageSetup:
    return ImageSetup.load(str(tiny_model), threads=2)


def features(output: object) -> torch.Tensor:
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output  # type: ignore[attr-defined]
    return torch.nn.functional.normalize(tensor, dim=-1)


def crops(seeds: range) -> list[np.ndarray]:
    return [preprocess(jpeg_bytes(seed=s), PreprocessSpec(), ImageLimits()) for s in seeds]


@pytest.mark.slow
def test_image_vectors_match_the_hugging_face_pipeline(
    tiny_model: Path, reference: tuple[CLIPModel, CLIPProcessor]
) -> None:
    model, processor = reference
    encoder = ClipEncoder(str(tiny_model), towers=("image",), precision="fp32")
    images = [jpeg_bytes(600, 900, seed=s) for s in range(4)]
    ours = encoder.encode_images([preprocess(d, encoder.spec, ImageLimits()) for d in images])
    inputs = processor(
        images=[Image.open(io.BytesIO(d)).convert("RGB") for d in images], return_tensors="pt"
    )
    with torch.no_grad():
        theirs = features(model.get_image_features(**inputs)).numpy()
    assert ours.shape == theirs.shape == (4, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
    assert (ours * theirs).sum(axis=1).min() > 0.999


@pytest.mark.slow
@pytest.mark.parametrize(
    ("runtime", "precision"),
    [
        ("torch", "bf16"),
        ("torch", "int8"),
        ("openvino", "fp32"),
        ("openvino", "bf16"),
        ("openvino", "int8"),
    ],
)
def test_every_runtime_and_precision_stays_close_to_fp32(
    tiny_model: Path, runtime: ConcreteRuntime, precision: ConcretePrecision
) -> None:
    pixels = crops(range(6))
    exact = ClipEncoder(str(tiny_model), towers=("image",), precision="fp32", runtime="torch")
    fast = ClipEncoder(
        str(tiny_model),
        towers=("image",),
        precision=precision,
        runtime=runtime,
    )
    assert (fast.info.runtime, fast.info.precision) == (runtime, precision)
    cosines = (exact.encode_images(pixels) * fast.encode_images(pixels)).sum(axis=1)
    assert cosines.min() > (0.99999 if precision == "fp32" else 0.999)
    if precision != "fp32":  # the load-time check measured it on its own images
        assert fast.info.check_cosine is not None and fast.info.check_cosine > 0.99


@pytest.mark.slow
def test_auto_on_a_cpu_is_openvino_int8_within_the_cosine_bound(tiny_model: Path) -> None:
    encoder = ClipEncoder(str(tiny_model), towers=("image",))
    assert (encoder.info.runtime, encoder.info.precision) == ("openvino", "int8")
    assert encoder.info.check_cosine is not None and encoder.info.check_cosine >= MIN_COSINE


@pytest.mark.slow
@pytest.mark.parametrize(
    "candidate", [Candidate("torch", "int8"), Candidate("openvino", "int8")], ids=str
)
def test_one_candidate_is_built_and_checked_on_its_own(
    setup: ImageSetup, candidate: Candidate
) -> None:
    tower = image.build(candidate, setup)
    exact = image.build(Candidate("torch", "fp32"), setup)
    assert exact.check_cosine is None  # fp32 is the reference: nothing to check
    assert tower.check_cosine is not None and tower.check_cosine >= MIN_COSINE
    pixels = np.stack(crops(range(4)))  # images the check did not see
    ours = torch.nn.functional.normalize(torch.as_tensor(tower.features(pixels)).float(), dim=-1)
    theirs = torch.nn.functional.normalize(torch.as_tensor(exact.features(pixels)).float(), dim=-1)
    assert (ours * theirs).sum(dim=1).min() > 0.999


@pytest.mark.slow
@pytest.mark.skipif(
    openvino.cpu_has_vnni(), reason="with VNNI, int8 products add up in int32: nothing saturates"
)
def test_without_vnni_full_range_int8_weights_fail_the_check_and_half_range_ones_pass(
    setup: ImageSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why int8 weights use half the range on such CPUs: their int8 kernels add pairs of
    u8×s8 products into saturating int16 lanes (the tiny model measured 0.956 on an AVX2
    CPU with full-range weights). If this starts failing because full-range weights pass,
    the OpenVINO release no longer saturates and the half range may be dropped."""
    int8 = Candidate("openvino", "int8")
    half = image.build(int8, setup).check_cosine
    monkeypatch.setattr(openvino, "cpu_has_vnni", lambda cpuinfo=None: True)
    full = image.build(int8, setup).check_cosine
    assert half is not None and full is not None
    assert half >= MIN_COSINE > full


def test_int8_kernels_without_vnni_are_told_from_the_cpu_flags() -> None:
    assert openvino.cpu_has_vnni("flags : fpu sse2 avx2 avx512f avx512_vnni")
    assert openvino.cpu_has_vnni("flags : fpu sse2 avx2 avx_vnni")
    assert not openvino.cpu_has_vnni("flags : fpu sse2 avx2 fma avx512f avx512bw")
    # Only CPUs that saturate get a different recipe, so VNNI machines keep their caches.
    assert openvino.int8_recipe(vnni=True) == "smoothquant-0.5"
    assert openvino.int8_recipe(vnni=False) != openvino.int8_recipe(vnni=True)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_auto_falls_back_to_fp32_when_no_reduced_precision_passes_the_check(
    tiny_model: Path, runtime: ConcreteRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policy, "MIN_COSINE", 1.0001)  # no reduced precision can pass
    encoder = ClipEncoder(str(tiny_model), towers=("image",), runtime=runtime)
    assert (encoder.info.runtime, encoder.info.precision) == (runtime, "fp32")
    assert encoder.info.check_cosine is None  # the served tower is the reference itself
    exact = ClipEncoder(str(tiny_model), towers=("image",), precision="fp32", runtime="torch")
    pixels = crops(range(3))
    assert (exact.encode_images(pixels) * encoder.encode_images(pixels)).sum(axis=1).min() > 0.999


@pytest.mark.slow
def test_the_quantised_model_is_cached_and_not_quantised_again(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ClipEncoder(str(tiny_model), towers=("image",), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("openvino/*/image-int8.xml"))) == 1
    pixels = crops(range(4))
    expected = first.encode_images(pixels)

    def no_calibration(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("calibrated again although the model was cached")

    monkeypatch.setattr("catalens.encoder.check.calibration_crops", no_calibration)
    second = ClipEncoder(str(tiny_model), towers=("image",), cache_dir=tmp_path)
    np.testing.assert_allclose(second.encode_images(pixels), expected, atol=1e-6)


def test_openvino_refuses_cuda_and_fp16(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="CPUs"):
        ClipEncoder(str(tiny_model), towers=("image",), device="cuda", runtime="openvino")
    with pytest.raises(ValueError, match="fp16"):
        ClipEncoder(str(tiny_model), towers=("image",), precision="fp16", runtime="openvino")


def test_loading_an_encoder_leaves_the_torch_thread_pool_as_the_caller_set_it(
    tiny_model: Path,
) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ClipEncoder(str(tiny_model), precision="fp32", runtime="torch", threads=2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_text_vectors_equal_the_padded_to_77_reference(
    tiny_model: Path, reference: tuple[CLIPModel, CLIPProcessor]
) -> None:
    model, processor = reference
    encoder = ClipEncoder(str(tiny_model), towers=("text",), precision="fp32")
    texts = ["floral top", "a black strap top for the summer", "ü ß ✓ 🙂"]
    ours = encoder.encode_texts(texts)
    padded = processor(text=texts, return_tensors="pt", padding="max_length", max_length=77)
    with torch.no_grad():
        theirs = features(model.get_text_features(**padded)).numpy()
    assert (ours * theirs).sum(axis=1).min() > 0.99999
    one_by_one = np.concatenate([encoder.encode_texts([t]) for t in texts])
    np.testing.assert_allclose(ours, one_by_one, atol=1e-5)


def test_auto_text_tower_is_openvino_int8_within_the_bound_on_the_check_queries(
    tiny_model: Path,
    reference: tuple[CLIPModel, CLIPProcessor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The text tower takes its own candidates (the image tower here runs PyTorch fp32)
    and, on a CPU with VNNI, serves int8 weights only because they pass the check on the
    catalog queries; queries outside the check set stay as close to fp32."""
    monkeypatch.setattr(openvino, "cpu_has_vnni", lambda: True)
    encoder = ClipEncoder(
        str(tiny_model),
        precision="fp32",
        runtime="torch",
        text_precision="auto",
        text_runtime="auto",
    )
    info = encoder.info
    assert (info.runtime, info.precision) == ("torch", "fp32")
    assert (info.text_runtime, info.text_precision) == ("openvino", "int8")
    assert info.text_check_cosine is not None and info.text_check_cosine >= MIN_COSINE
    model, processor = reference
    texts = ["navy linen blazer with patch pockets", "red dress", "kids' wellies size 28"]
    inputs = processor(text=texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        exact = features(model.get_text_features(**inputs)).numpy()
    assert (encoder.encode_texts(texts) * exact).sum(axis=1).min() >= MIN_COSINE


@pytest.mark.parametrize("native_bf16", [False, True])
def test_without_vnni_the_auto_text_tower_is_not_int8(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, native_bf16: bool
) -> None:
    """Weight-only int8 is decompressed on every pass: without VNNI it is not tried, and
    the first candidate left is served (bf16 where the CPU computes it, else fp32)."""
    monkeypatch.setattr(openvino, "cpu_has_vnni", lambda: False)
    monkeypatch.setattr(policy, "cpu_supports_bf16", lambda: native_bf16)
    encoder = ClipEncoder(str(tiny_model), towers=("text",), runtime="openvino")
    expected = "bf16" if native_bf16 else "fp32"
    assert (encoder.info.text_runtime, encoder.info.text_precision) == ("openvino", expected)
    assert encoder.info.text_check_cosine is not None
    assert encoder.info.text_check_cosine >= MIN_COSINE


def test_under_auto_a_text_tower_failing_its_check_falls_back_to_the_reference(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every OpenVINO candidate is checked, and none is kept unchecked as a last resort:
    a conversion that changed the vectors leaves PyTorch fp32 serving."""
    real = openvino.load_text_tower

    def perturbed(*args: Any, **kwargs: Any) -> Any:
        compiled = real(*args, **kwargs)
        noise = np.random.default_rng(0)

        def call(ids: Any, mask: Any) -> Any:
            out = compiled(ids, mask)
            return out + noise.normal(0, 1.0, out.shape).astype(np.float32)

        return call

    monkeypatch.setattr(openvino, "load_text_tower", perturbed)
    encoder = ClipEncoder(str(tiny_model), towers=("text",))
    assert (encoder.info.text_runtime, encoder.info.text_precision) == ("torch", "fp32")


def test_a_text_candidate_below_the_bound_is_not_served(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a bound nothing reduced can meet, int8 is rejected for the next candidate."""
    monkeypatch.setattr(policy, "MIN_COSINE", 1.5)
    encoder = ClipEncoder(str(tiny_model), towers=("text",), runtime="openvino")
    assert (encoder.info.text_runtime, encoder.info.text_precision) == ("openvino", "fp32")
    assert encoder.info.text_check_cosine is not None


def test_an_explicit_text_precision_is_served_with_its_check_result(tiny_model: Path) -> None:
    encoder = ClipEncoder(str(tiny_model), towers=("text",), precision="int8", runtime="torch")
    assert (encoder.info.text_runtime, encoder.info.text_precision) == ("torch", "int8")
    assert encoder.info.text_check_cosine is not None
    assert encoder.info.precision == "int8"  # no image tower: the text tower's own
