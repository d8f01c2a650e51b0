"""Finding a CLIP model's files, locally or in a sentence-transformers folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from catalens.encoder.files import ModelNotFound, read_preprocess_spec, resolve_model_dir


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
