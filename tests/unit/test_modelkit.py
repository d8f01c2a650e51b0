"""Random-weights models say what they are."""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPTokenizer

from catalens.dev.modelkit import write_tokenizer_files
from catalens.encoder.files import has_random_weights


def test_a_model_built_with_random_weights_is_known_as_such(tiny_model: Path) -> None:
    assert has_random_weights(tiny_model)
    assert has_random_weights(str(tiny_model))


def test_other_models_are_taken_as_pretrained_without_looking_them_up(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert not has_random_weights(tmp_path)  # a local model without the marker
    assert not has_random_weights("clip-ViT-B-32")  # a name: never downloaded to check


def test_the_tokenizer_makes_one_token_of_each_known_word_and_characters_of_the_rest(
    tmp_path: Path,
) -> None:
    write_tokenizer_files(tmp_path, ["floral", "collar", "round", "dress", "red", "a"])
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    pieces = tokenizer.tokenize("A floral dress, round collar red zq")
    assert pieces == [
        "a</w>",
        "floral</w>",
        "dress</w>",
        ",</w>",
        "round</w>",
        "collar</w>",
        "red</w>",
        "z",
        "q</w>",
    ]
    write_tokenizer_files(tmp_path)  # without words: a token per character
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert len(tokenizer.tokenize("red")) == 3
