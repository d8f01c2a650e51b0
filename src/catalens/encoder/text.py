"""The CLIP text tower, for queries: one candidate (runtime, precision) built and checked.

A candidate other than the PyTorch fp32 reference is served only when its vectors for a
fixed set of catalog queries (:data:`CHECK_QUERIES`) stay within cosine
:data:`~catalens.encoder.policy.MIN_COSINE` of the reference's: the same acceptance rule,
and the same ordered choice (:func:`catalens.encoder.policy.choose`), as the image
tower's. Which candidates are tried, in which order, is :mod:`catalens.encoder.policy`'s
job.

The tower is memory-bound for one query: every pass reads all of its weights (≈150 MB in
fp32), so int8 weights (OpenVINO weight compression) cut a lone query's time the most.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import CLIPTokenizer

from catalens.encoder import check, openvino
from catalens.encoder.policy import Candidate, ConcretePrecision, openvino_precision
from catalens.encoder.torch_tower import autocast, quantise_linears, unit_vectors

MAX_TOKENS = 77

# What a catalog's shoppers type: short and ~10-word queries, colours, materials,
# numbers, a few non-ASCII characters. Fixed, so the check means the same on every start.
CHECK_QUERIES: tuple[str, ...] = (
    "floral top",
    "black dress",
    "a floral top with a round collar number 17",
    "red wool jacket with silver buttons for the winter",
    "slim fit dark blue denim jeans with a high waist",
    "white cotton t-shirt",
    "striped linen shirt with short sleeves for the summer",
    "knitted beige cardigan",
    "leather ankle boots with a block heel, size 39",
    "kids rain jacket yellow",
    "a black strap top for the summer",
    "running shoes",
    "oversized hoodie in washed grey with a kangaroo pocket",
    "silk scarf with a paisley print",
    "men's navy chinos 32/34",
    "wide leg trousers in pleated crepe",
    "sequin party dress knee length",
    "baby bodysuit 3-pack organic cotton",
    "ribbed tank top",
    "swimsuit with a low back and thin straps",
    "puffer vest",
    "brown suede loafers",
    "checked flannel shirt with two chest pockets",
    "cropped denim jacket with frayed hem",
    "lace bralette",
    "mom jeans light wash",
    "tulle skirt for a little girl, pink",
    "wool blend coat, double breasted, camel",
    "sports bra high support",
    "straw hat",
    "ü ß ✓ 🙂 café crème",
    "1990s vintage style windbreaker in neon green and purple colour blocks",
)

TextFeatures = Callable[[Sequence[str]], "torch.Tensor | npt.NDArray[np.float32]"]


class TextModule(torch.nn.Module):
    """Token ids and attention mask → projected, unnormalised text features: the forward
    pass both runtimes run (OpenVINO converts this module)."""

    def __init__(self, text_model: torch.nn.Module, projection: torch.nn.Module) -> None:
        super().__init__()
        self.text_model = text_model
        self.projection = projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.projection(out.pooler_output)  # type: ignore[no-any-return]


class Tokens:
    """Texts → (input ids, attention mask), padded to the longest text of the call, not to
    77 tokens: CLIP's causal mask makes the vectors identical and the work smaller."""

    def __init__(self, model_dir: Path) -> None:
        self._tokenizer = CLIPTokenizer.from_pretrained(model_dir)

    def __call__(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        tokens = self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np"
        )
        return tokens["input_ids"].astype(np.int64), tokens["attention_mask"].astype(np.int64)


@dataclass(frozen=True)
class TextSetup:
    """What every text candidate is built from and checked against: the fp32 weights, the
    tokenizer and the fp32 reference vectors of :data:`CHECK_QUERIES`."""

    clip: Any  # a CLIPModel in fp32, eval mode
    tokens: Tokens
    device: str
    threads: int  # OpenVINO's threads per compiled model
    reference: npt.NDArray[np.float32]

    @classmethod
    def from_clip(cls, clip: Any, model_dir: Path, *, device: str, threads: int) -> TextSetup:
        tokens = Tokens(model_dir)
        module = TextModule(clip.text_model, clip.text_projection).to(device)
        reference = _torch_features(module, tokens, device, "fp32")
        return cls(clip, tokens, device, threads, unit_vectors(reference(CHECK_QUERIES)))


@dataclass(frozen=True)
class TextTower:
    """A built candidate: ``encode`` maps texts to L2-normalised float32 vectors;
    ``check_cosine`` is its min cosine to the PyTorch fp32 tower on :data:`CHECK_QUERIES`
    (None for that reference itself). Not thread-safe: callers serialise calls (the
    encoder holds a lock)."""

    candidate: Candidate
    features: TextFeatures
    check_cosine: float | None

    def __call__(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return unit_vectors(self.features(texts))


def build(candidate: Candidate, setup: TextSetup) -> TextTower:
    """Build ``candidate`` from ``setup`` and, unless it is the PyTorch fp32 reference, run
    the check on it (OpenVINO fp32 too: another runtime computes differently)."""
    module = TextModule(setup.clip.text_model, setup.clip.text_projection)
    features: TextFeatures
    if candidate.runtime == "openvino":
        ids, mask = setup.tokens(CHECK_QUERIES[:2])
        compiled = openvino.load_text_tower(
            module,
            example=(ids, mask),
            precision=openvino_precision(candidate.precision),
            threads=setup.threads,
        )

        def features(texts: Sequence[str]) -> npt.NDArray[np.float32]:
            return compiled(*setup.tokens(texts))

    else:
        if candidate.precision == "int8":
            module = quantise_linears(module)
        features = _torch_features(
            module.to(setup.device), setup.tokens, setup.device, candidate.precision
        )
    if candidate == Candidate("torch", "fp32"):
        return TextTower(candidate, features, None)
    cosine = check.min_cosine(unit_vectors(features(CHECK_QUERIES)), setup.reference)
    return TextTower(candidate, features, cosine)


def _torch_features(
    module: torch.nn.Module, tokens: Tokens, device: str, precision: ConcretePrecision
) -> TextFeatures:
    def features(texts: Sequence[str]) -> torch.Tensor:
        ids, mask = tokens(texts)
        with torch.inference_mode(), autocast(device, precision):
            out = module(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        return out  # type: ignore[no-any-return]

    return features
