"""The CLIP encoder on a tiny random model, against Hugging Face's own forward pass."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from catalens import openvino_tower
from catalens.encoder import (
    MIN_COSINE,
    ClipEncoder,
    ModelNotFound,
    _ImageModule,
    cpu_supports_bf16,
    resolve_model_dir,
)
from catalens.images import ImageLimits, PreprocessSpec, preprocess
from tests.conftest import jpeg_bytes


@pytest.fixture(scope="module")
def reference(tiny_model: Path) -> tuple[CLIPModel, CLIPProcessor]:
    return CLIPModel.from_pretrained(tiny_model).eval(), CLIPProcessor.from_pretrained(tiny_model)


def features(output: object) -> torch.Tensor:
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output  # type: ignore[attr-defined]
    return torch.nn.functional.normalize(tensor, dim=-1)


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


def test_the_last_block_runs_for_the_class_token_only_and_gives_the_same_vector(
    reference: tuple[CLIPModel, CLIPProcessor],
) -> None:
    model, _ = reference
    tower = _ImageModule(model.vision_model, model.visual_projection)
    size = model.config.vision_config.image_size
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    tokens: list[int] = []  # how many tokens each layer's MLP saw
    hooks = [
        layer.mlp.register_forward_hook(lambda _m, args, _out: tokens.append(args[0].shape[1]))
        for layer in model.vision_model.encoder.layers
    ]
    try:
        with torch.no_grad():
            ours = tower(pixels)
            tokens_ours = tokens[:]
            tokens.clear()
            theirs = model.get_image_features(pixel_values=pixels)
    finally:
        for hook in hooks:
            hook.remove()
    theirs = theirs if isinstance(theirs, torch.Tensor) else theirs.pooler_output
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    patches = (size // model.config.vision_config.patch_size) ** 2
    assert tokens == [patches + 1] * len(tokens_ours)
    assert tokens_ours == [patches + 1] * (len(tokens) - 1) + [1]


def crops(seeds: range) -> list[np.ndarray]:
    return [preprocess(jpeg_bytes(seed=s), PreprocessSpec(), ImageLimits()) for s in seeds]


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
    tiny_model: Path, runtime: str, precision: str
) -> None:
    pixels = crops(range(6))
    exact = ClipEncoder(str(tiny_model), towers=("image",), precision="fp32", runtime="torch")
    fast = ClipEncoder(
        str(tiny_model),
        towers=("image",),
        precision=precision,  # type: ignore[arg-type]
        runtime=runtime,  # type: ignore[arg-type]
    )
    assert (fast.info.runtime, fast.info.precision) == (runtime, precision)
    cosines = (exact.encode_images(pixels) * fast.encode_images(pixels)).sum(axis=1)
    assert cosines.min() > (0.99999 if precision == "fp32" else 0.999)
    if precision != "fp32":  # the load-time check measured it on its own images
        assert fast.info.check_cosine is not None and fast.info.check_cosine > 0.99


def test_auto_on_a_cpu_is_openvino_int8_within_the_cosine_bound(tiny_model: Path) -> None:
    encoder = ClipEncoder(str(tiny_model), towers=("image",))
    assert (encoder.info.runtime, encoder.info.precision) == ("openvino", "int8")
    assert encoder.info.check_cosine is not None and encoder.info.check_cosine >= MIN_COSINE


def test_int8_kernels_without_vnni_are_told_from_the_cpu_flags() -> None:
    assert openvino_tower.cpu_has_vnni("flags : fpu sse2 avx2 avx512f avx512_vnni")
    assert openvino_tower.cpu_has_vnni("flags : fpu sse2 avx2 avx_vnni")
    assert not openvino_tower.cpu_has_vnni("flags : fpu sse2 avx2 fma avx512f avx512bw")
    # Only CPUs that saturate get a different recipe, so VNNI machines keep their caches.
    assert openvino_tower.int8_recipe(vnni=True) == "smoothquant-0.5"
    assert openvino_tower.int8_recipe(vnni=False) != openvino_tower.int8_recipe(vnni=True)


def test_full_range_int8_weights_are_kept_only_when_they_pass_the_check(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full-range weights on any CPU. On one without VNNI their int16 pair sums saturate
    (the tiny model measured a min cosine of 0.956 on an AVX2 CPU) and the check must
    reject them; with VNNI they pass. Either way, int8 is served only above the bound."""
    monkeypatch.setattr(openvino_tower, "cpu_has_vnni", lambda cpuinfo=None: True)
    encoder = ClipEncoder(str(tiny_model), towers=("image",), runtime="openvino")
    assert encoder.info.check_cosine is not None
    kept = encoder.info.precision == "int8"
    assert kept == (encoder.info.check_cosine >= MIN_COSINE)


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_auto_falls_back_when_int8_fails_the_check(
    tiny_model: Path, runtime: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("catalens.encoder.MIN_COSINE", 1.0001)  # no int8 model can pass
    encoder = ClipEncoder(str(tiny_model), towers=("image",), runtime=runtime)  # type: ignore[arg-type]
    assert encoder.info.precision == ("bf16" if cpu_supports_bf16() else "fp32")
    exact = ClipEncoder(str(tiny_model), towers=("image",), precision="fp32", runtime="torch")
    pixels = crops(range(3))
    assert (exact.encode_images(pixels) * encoder.encode_images(pixels)).sum(axis=1).min() > 0.999


def test_the_quantised_model_is_cached_and_not_quantised_again(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ClipEncoder(str(tiny_model), towers=("image",), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("openvino/*/image-int8.xml"))) == 1
    pixels = crops(range(4))
    expected = first.encode_images(pixels)

    def no_calibration(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("calibrated again although the model was cached")

    monkeypatch.setattr("catalens.encoder._calibration_crops", no_calibration)
    second = ClipEncoder(str(tiny_model), towers=("image",), cache_dir=tmp_path)
    np.testing.assert_allclose(second.encode_images(pixels), expected, atol=1e-6)


def test_openvino_refuses_cuda_and_fp16(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="CPUs"):
        ClipEncoder(str(tiny_model), towers=("image",), device="cuda", runtime="openvino")
    with pytest.raises(ValueError, match="fp16"):
        ClipEncoder(str(tiny_model), towers=("image",), precision="fp16", runtime="openvino")


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


def test_a_sentence_transformers_folder_resolves_to_its_clip_module(
    tmp_path: Path, tiny_model: Path
) -> None:
    import json
    import shutil

    shutil.copytree(tiny_model, tmp_path / "st" / "0_CLIPModel")
    (tmp_path / "st" / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "0_CLIPModel",
                    "type": "sentence_transformers.models.CLIPModel",
                }
            ]
        )
    )
    assert resolve_model_dir(str(tmp_path / "st")) == tmp_path / "st" / "0_CLIPModel"


def test_a_missing_model_is_reported_clearly(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound):
        resolve_model_dir(str(tmp_path / "empty"))
