"""The CLIP encoder on a tiny random model, against Hugging Face's own forward pass."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from catalens.encoder import ClipEncoder, ModelNotFound, resolve_model_dir
from catalens.images import ImageLimits, preprocess
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


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precisions_stay_close_to_fp32(tiny_model: Path, precision: str) -> None:
    pixels = [
        preprocess(
            jpeg_bytes(seed=s), __import__("catalens.images").images.PreprocessSpec(), ImageLimits()
        )
        for s in range(3)
    ]
    exact = ClipEncoder(str(tiny_model), towers=("image",), precision="fp32").encode_images(pixels)
    fast = ClipEncoder(str(tiny_model), towers=("image",), precision=precision)  # type: ignore[arg-type]
    assert (exact * fast.encode_images(pixels)).sum(axis=1).min() > 0.99


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
