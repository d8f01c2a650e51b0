"""Random-weights models say what they are."""

from __future__ import annotations

from pathlib import Path

from catalens.modelkit import has_random_weights


def test_a_model_built_with_random_weights_is_known_as_such(tiny_model: Path) -> None:
    assert has_random_weights(tiny_model)
    assert has_random_weights(str(tiny_model))


def test_other_models_are_taken_as_pretrained_without_looking_them_up(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert not has_random_weights(tmp_path)  # a local model without the marker
    assert not has_random_weights("clip-ViT-B-32")  # a name: never downloaded to check
