"""Build randomly initialised CLIP models in the Hugging Face format ``CATALENS_MODEL`` loads.

Used by the tests (a tiny model), by the benchmarks (the real ViT-B/32 architecture:
speed does not depend on the weights) and by ``catalens up`` when no pretrained weights
can be fetched. Vectors from random weights carry no meaning: search results are then
ordered by score but not by relevance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

from catalens.encoder.files import RANDOM_WEIGHTS_MARKER

Size = Literal["tiny", "vit-b-32"]

# Written beside the weights, so whoever serves the model can tell people its results
# carry no meaning (the query API shows it on the search page).

_ARCHITECTURES: dict[str, dict[str, Any]] = {
    # ViT-B/32 as released by OpenAI (openai/clip-vit-base-patch32).
    "vit-b-32": {
        "text": {
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_attention_heads": 8,
            "num_hidden_layers": 12,
        },
        "vision": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "patch_size": 32,
            "image_size": 224,
        },
        "projection_dim": 512,
    },
    "tiny": {
        "text": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
        },
        "vision": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "patch_size": 32,
            "image_size": 224,
        },
        "projection_dim": 16,
    },
}


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2 / CLIP byte-level alphabet: every byte maps to one printable character.
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def write_tokenizer_files(directory: Path, words: Sequence[str] = ()) -> None:
    """A byte-level CLIP BPE vocabulary: every character is a token, and so is each of
    ``words`` (BPE merges learnt from them, CLIP's ``</w>`` ending included). It
    tokenises any text the way CLIP's tokenizer does; without ``words``, into one piece
    per character, with them, into about one per known word, as CLIP's own vocabulary
    does for common English (what a query costs the text tower depends on it)."""
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet]
    merges = _merges(words) if words else []
    known = set(tokens)
    for left, right in merges:
        if left + right not in known:
            known.add(left + right)
            tokens.append(left + right)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    lines = "".join(f"{left} {right}\n" for left, right in merges)
    (directory / "merges.txt").write_text("#version: 0.2\n" + lines)


def _merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """BPE merges that make each of ``words`` one token, learnt as CLIP's were (so that
    no merge of one word breaks another's)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    if not all(word.isascii() and word.isalnum() for word in words):
        raise ValueError("words must be ASCII letters and digits")
    tokenizer = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=1_000_000, end_of_word_suffix="</w>", show_progress=False
    )
    tokenizer.train_from_iterator(words, trainer)
    learnt = json.loads(tokenizer.to_str())["model"]["merges"]
    return [(left, right) for left, right in learnt]


def build_random_clip(
    directory: Path,
    size: Size = "tiny",
    seed: int = 0,
    projection_dim: int | None = None,
    image_size: int | None = None,
    words: Sequence[str] = (),
) -> Path:
    """Write a random CLIP (weights, config, tokenizer, image processor) to ``directory``,
    marked as such (:func:`catalens.encoder.files.has_random_weights`);
    ``projection_dim`` changes the vectors' dimension (two models that cannot mix);
    ``image_size`` (a multiple of the patch size, 32) the side of the image tower's input,
    for a model that costs next to nothing beside the work of the pipeline around it;
    ``words`` the tokenizer's whole-word tokens (:func:`write_tokenizer_files`)."""
    directory.mkdir(parents=True, exist_ok=True)
    arch = _ARCHITECTURES[size]
    write_tokenizer_files(directory, words)
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    config = CLIPConfig(
        text_config=arch["text"]
        | {
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config=arch["vision"] | ({"image_size": image_size} if image_size else {}),
        projection_dim=projection_dim or arch["projection_dim"],
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    model.save_pretrained(directory)
    side = image_size or arch["vision"]["image_size"]
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        ),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(directory)
    marker = {"random_weights": True, "size": size, "seed": seed}
    (directory / RANDOM_WEIGHTS_MARKER).write_text(json.dumps(marker) + "\n")
    return directory
