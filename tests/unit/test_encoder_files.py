"""Finding a CLIP model's files, locally or in a sentence-transformers folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from catalens.encoder.files import (
    ModelNotFound,
    read_preprocess_spec,
    resolve_model_dir,
    weights_digest,
)


def test_a_sentence_transformers_folder_resolves_to_its_clip_module(
    tmp_path: Path, tiny_model: Path
) -> None:
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


def test_the_preprocessing_is_read_from_the_model_folder(tiny_model: Path) -> None:
    spec = read_preprocess_spec(tiny_model)
    assert (spec.size, spec.crop) == (224, 224)


def test_the_weights_digest_follows_the_weights_bytes_not_the_configs(tmp_path: Path) -> None:
    model, copy = tmp_path / "model", tmp_path / "copy"
    for folder in (model, copy):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights-1")
    (model / "config.json").write_text("{}")
    first = weights_digest(model)
    (model / "config.json").write_text('{"changed": true}')
    assert weights_digest(model) == first
    assert weights_digest(copy) == first  # the same bytes anywhere, whatever their mtime
    (model / "model.safetensors").write_bytes(b"weights-2")
    assert weights_digest(model) != first
