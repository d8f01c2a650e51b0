"""The images behind the load-time check of reduced precisions: held-out check images and,
disjoint from them, the calibration images static int8 is fitted to.

Check images are generated from another seed than the calibration images, plus the
operator's images (``CATALENS_CALIBRATION_IMAGES``) that calibration does not use: a
quantised tower is accepted (:func:`catalens.encoder.policy.passes`) only on images it
was not fitted to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from catalens.encoder import calibration
from catalens.images import Pixels, PreprocessSpec

CALIBRATION_IMAGES = 64
CHECK_IMAGES = 32


def _operator_images(
    spec: PreprocessSpec, folder: Path | None
) -> tuple[list[Pixels], list[Pixels]]:
    """The operator's images split into (to calibrate on, held out for the check)."""
    if folder is None:
        return [], []
    own = calibration.from_folder(folder, spec, CALIBRATION_IMAGES + CHECK_IMAGES)
    share = min(CALIBRATION_IMAGES, len(own) * 2 // 3)
    return own[:share], own[share:]


def check_crops(spec: PreprocessSpec, folder: Path | None) -> npt.NDArray[np.uint8]:
    """Held-out images: generated from another seed than the calibration images, plus the
    operator's images that calibration does not use."""
    held_out = _operator_images(spec, folder)[1]
    return np.stack(held_out + calibration.generated(CHECK_IMAGES, seed=2, spec=spec))


def calibration_crops(spec: PreprocessSpec, folder: Path | None) -> npt.NDArray[np.uint8]:
    """The images static int8 is fitted to; only called when no quantised model is cached."""
    fitted = _operator_images(spec, folder)[0]
    extra = calibration.generated(max(0, CALIBRATION_IMAGES - len(fitted)), seed=1, spec=spec)
    return np.stack(fitted + extra)


def min_cosine(vectors: npt.NDArray[np.float32], reference: npt.NDArray[np.float32]) -> float:
    """The smallest cosine between matching rows of two sets of unit vectors."""
    return float((vectors * reference).sum(axis=1).min())
