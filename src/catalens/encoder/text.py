"""The CLIP text tower on PyTorch: tokenizer, transformer and projection, for queries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import CLIPTokenizer

from catalens.encoder.policy import ConcretePrecision
from catalens.encoder.torch_tower import autocast, quantise_linears, unit_vectors

MAX_TOKENS = 77


class TextTower:
    """Texts → L2-normalised float32 vectors. Not thread-safe: callers serialise calls
    (the encoder holds a lock).

    int8 here is dynamic quantisation of the Linear layers, unchecked: the load-time check
    covers the image tower only, and the query API asks for bf16 or fp32 on CPUs."""

    def __init__(
        self, clip: Any, model_dir: Path, *, device: str, precision: ConcretePrecision
    ) -> None:
        self._tokenizer = CLIPTokenizer.from_pretrained(model_dir)
        self._device = device
        self._precision = precision
        self._model = self._prepare(clip.text_model)
        self._projection = self._prepare(clip.text_projection)

    def _prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(self._device)
        if self._precision == "int8":
            module = quantise_linears(module, inplace=True)
        return module

    def __call__(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Queries are padded to the longest in the batch, not to 77 tokens: CLIP's causal
        mask makes the result identical and the work smaller."""
        tokens = self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        with torch.inference_mode(), autocast(self._device, self._precision):
            out = self._model(
                input_ids=tokens["input_ids"].to(self._device),
                attention_mask=tokens["attention_mask"].to(self._device),
            )
            features = self._projection(out.pooler_output)
        return unit_vectors(features)
