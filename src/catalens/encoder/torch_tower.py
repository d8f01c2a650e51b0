"""The CLIP image tower on PyTorch (CPU or CUDA), and the PyTorch helpers both towers share:
precision contexts, int8 dynamic quantisation, unit vectors and the thread pool.

The tower takes the preprocessed crops as they come from
:func:`catalens.images.preprocess`, ``uint8`` NHWC, and returns projected, unnormalised
features. The fp32 tower is also the reference every reduced precision is checked
against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch

from catalens.encoder.policy import ConcretePrecision
from catalens.encoder.vit import ImageModule
from catalens.images import PreprocessSpec

ImageFeatures = Callable[[npt.NDArray[np.uint8]], "torch.Tensor | npt.NDArray[np.float32]"]
M = TypeVar("M", bound=torch.nn.Module)


def set_threads(threads: int) -> None:
    """Size PyTorch's intra-op thread pool, for the whole process: call it once, from an
    entry point. The encoder never calls it: a library that resized a process-wide pool
    behind its caller's back would slow every other user of torch in that process. (The
    OpenVINO tower takes its thread count per compiled model instead.)"""
    torch.set_num_threads(threads)


def autocast(device: str, precision: ConcretePrecision) -> torch.autocast:
    """The mixed-precision context for ``precision`` (a no-op for fp32 and int8)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None)


def quantise_linears(module: M, *, inplace: bool = False) -> M:
    """``module`` with every Linear layer dynamically quantised to int8: a copy unless
    ``inplace``, so the fp32 original stays usable (the image tower's reference and its
    fallback candidates use it)."""
    quantised = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(module), {torch.nn.Linear}, dtype=torch.qint8, inplace=inplace
    )[0]
    return quantised  # type: ignore[no-any-return]


def unit_vectors(features: torch.Tensor | np.ndarray) -> npt.NDArray[np.float32]:
    """L2-normalised float32 rows on the CPU."""
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(features)
    vectors = torch.nn.functional.normalize(features.float(), dim=-1)
    return vectors.cpu().numpy().astype(np.float32, copy=False)


class _Normalise:
    """``(x / 255 - mean) / std`` as one multiply-add on ``uint8`` NHWC input → NCHW."""

    def __init__(self, spec: PreprocessSpec, device: str) -> None:
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.device = device
        self._scale = (1.0 / (255.0 * std)).to(device)
        self._shift = (-mean / std).to(device)

    def __call__(self, crops: npt.NDArray[np.uint8]) -> torch.Tensor:
        batch = torch.from_numpy(crops).to(self.device, non_blocking=True)
        return batch.permute(0, 3, 1, 2).float() * self._scale + self._shift


def reference_features(
    clip: torch.nn.Module, spec: PreprocessSpec, device: str, crops: npt.NDArray[np.uint8]
) -> npt.NDArray[np.float32]:
    """Hugging Face's own fp32 forward (``get_image_features``), as unit vectors: the
    reference the reduced precisions are checked against."""
    normalise = _Normalise(spec, device)
    with torch.inference_mode():
        out = clip.get_image_features(pixel_values=normalise(crops))  # type: ignore[operator]
    out = out if isinstance(out, torch.Tensor) else out.pooler_output
    return unit_vectors(out)


def image_tower(
    vision: torch.nn.Module,
    projection: torch.nn.Module,
    *,
    spec: PreprocessSpec,
    device: str,
    precision: ConcretePrecision,
) -> ImageFeatures:
    """The image tower at ``precision``: fp32, bf16/fp16 autocast, or int8 dynamic
    quantisation of the Linear layers (CPU). Not thread-safe: callers serialise calls."""
    if precision == "int8":
        vision = quantise_linears(vision)
    tower = ImageModule(vision, projection).to(device)
    normalise = _Normalise(spec, device)

    def features(crops: npt.NDArray[np.uint8]) -> torch.Tensor:
        with torch.inference_mode(), autocast(device, precision):
            return tower(normalise(crops))  # type: ignore[no-any-return]

    return features
