"""Building one image tower candidate (runtime, precision) and measuring it with the
load-time check: its vectors for the held-out check images against the fp32 reference's.

Which candidates are tried, in which order, and which is kept is
:mod:`catalens.encoder.policy`'s job; this module builds any one of them on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from transformers import CLIPModel

from catalens.encoder import check, openvino, torch_tower
from catalens.encoder.files import read_preprocess_spec, resolve_model_dir
from catalens.encoder.policy import Candidate, cpu_supports_bf16, openvino_precision
from catalens.encoder.torch_tower import ImageFeatures, unit_vectors
from catalens.encoder.vit import ImageModule
from catalens.images import PreprocessSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSetup:
    """What every candidate is built from and checked against: the fp32 weights, the
    held-out check images and their fp32 reference vectors."""

    clip: Any  # a CLIPModel in fp32, eval mode
    model_dir: Path
    spec: PreprocessSpec
    device: str
    threads: int  # OpenVINO's threads per compiled model
    cache_dir: Path | None  # where quantised OpenVINO models are kept between starts
    calibration_images: Path | None  # the operator's images (CATALENS_CALIBRATION_IMAGES)
    check: npt.NDArray[np.uint8]
    reference: npt.NDArray[np.float32]

    @classmethod
    def load(
        cls,
        model: str,
        *,
        device: str = "cpu",
        threads: int = 1,
        cache_dir: Path | None = None,
        calibration_images: Path | None = None,
    ) -> ImageSetup:
        """Load ``model``'s fp32 weights and compute the check's reference vectors."""
        model_dir = resolve_model_dir(model)
        clip = CLIPModel.from_pretrained(model_dir, dtype=torch.float32).eval()
        return cls.from_clip(
            clip,
            model_dir,
            device=device,
            threads=threads,
            cache_dir=cache_dir,
            calibration_images=calibration_images,
        )

    @classmethod
    def from_clip(
        cls,
        clip: Any,
        model_dir: Path,
        *,
        device: str,
        threads: int,
        cache_dir: Path | None,
        calibration_images: Path | None,
    ) -> ImageSetup:
        spec = read_preprocess_spec(model_dir)
        crops = check.check_crops(spec, calibration_images)
        return cls(
            clip=clip,
            model_dir=model_dir,
            spec=spec,
            device=device,
            threads=threads,
            cache_dir=cache_dir,
            calibration_images=calibration_images,
            check=crops,
            reference=torch_tower.reference_features(clip, spec, device, crops),
        )


@dataclass(frozen=True)
class ImageTower:
    """A built candidate: ``features`` maps ``uint8`` NHWC crops to unnormalised features;
    ``check_cosine`` is its min cosine to fp32 on the check images (None for fp32, the
    reference itself)."""

    candidate: Candidate
    features: ImageFeatures
    check_cosine: float | None


def build(candidate: Candidate, setup: ImageSetup) -> ImageTower:
    """Build ``candidate`` from ``setup`` and, unless it is fp32, run the check on it."""
    if candidate.runtime == "openvino":
        features = _openvino(candidate, setup)
    else:
        features = torch_tower.image_tower(
            setup.clip.vision_model,
            setup.clip.visual_projection,
            spec=setup.spec,
            device=setup.device,
            precision=candidate.precision,
        )
    if candidate.precision == "fp32":
        return ImageTower(candidate, features, None)
    cosine = check.min_cosine(unit_vectors(features(setup.check)), setup.reference)
    return ImageTower(candidate, features, cosine)


def _openvino(candidate: Candidate, setup: ImageSetup) -> ImageFeatures:
    precision = openvino_precision(candidate.precision)
    if precision == "bf16" and not cpu_supports_bf16():
        log.warning("this CPU has no native bf16; OpenVINO will compute in fp32")
    return openvino.load_image_tower(
        ImageModule(setup.clip.vision_model, setup.clip.visual_projection),
        size=setup.spec.crop,
        mean=setup.spec.mean,
        std=setup.spec.std,
        precision=precision,
        # Deferred: generating and preprocessing them is needed only without a cached model.
        calibration=lambda: check.calibration_crops(setup.spec, setup.calibration_images),
        cache_dir=setup.cache_dir,
        cache_key=openvino.cache_key(setup.model_dir, setup.spec, setup.calibration_images),
        threads=setup.threads,
    )
