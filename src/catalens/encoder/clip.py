"""The CLIP encoder callers use: both towers loaded once, behind one lock.

The image tower is the first of the policy's candidates (:mod:`catalens.encoder.policy`)
that passes the load-time check: a reduced precision is served only when its vectors for
held-out check images (:mod:`catalens.encoder.check`) stay within cosine
:data:`~catalens.encoder.policy.MIN_COSINE` of the fp32 tower's. Both towers return
L2-normalised float32.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPModel

from catalens.encoder import image, openvino, policy
from catalens.encoder.files import read_preprocess_spec, resolve_model_dir
from catalens.encoder.policy import Device, Precision, Runtime, Tower
from catalens.encoder.text import TextTower
from catalens.encoder.torch_tower import unit_vectors
from catalens.images import Pixels, PreprocessSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderInfo:
    model: str
    dim: int
    device: str
    precision: str
    spec: PreprocessSpec
    runtime: str = "torch"
    # The served image tower's min cosine to fp32 on the held-out check images (None:
    # not checked, i.e. fp32 or no image tower).
    check_cosine: float | None = None


class ClipEncoder:
    """Both CLIP towers, loaded once, inference only.

    The image tower runs on OpenVINO on CPUs (``runtime="auto"``, when installed) or on
    PyTorch; the text tower on PyTorch, at the precision the image tower settled on (or
    the first candidate's, without an image tower). Thread-safe: calls are serialised by a
    lock, so one encoder serves a whole process.

    ``threads`` sizes the OpenVINO tower only (0: every core). PyTorch's thread pool is
    process-wide and left as the caller set it (:func:`catalens.encoder.set_torch_threads`,
    called from an entry point).
    """

    def __init__(
        self,
        model: str,
        *,
        towers: Sequence[Tower] = ("image", "text"),
        device: Device = "auto",
        precision: Precision = "auto",
        threads: int = 0,
        runtime: Runtime = "auto",
        cache_dir: Path | None = None,
        calibration_images: Path | None = None,
    ) -> None:
        model_dir = resolve_model_dir(model)
        self.device = policy.choose_device(device)
        chosen_runtime = policy.choose_runtime(runtime, self.device, openvino=openvino.available())
        ordered = policy.candidates(
            chosen_runtime if "image" in towers else "torch",
            precision,
            self.device,
            bf16=policy.cpu_supports_bf16(),
        )
        clip = CLIPModel.from_pretrained(model_dir, dtype=torch.float32)
        clip.eval()
        self.model = model
        self.spec = read_preprocess_spec(model_dir)
        self.dim = int(clip.config.projection_dim or 0)
        self._lock = threading.Lock()
        self._image: image.ImageTower | None = None
        self._text: TextTower | None = None
        served = ordered[0]
        if "image" in towers:
            setup = image.ImageSetup.from_clip(
                clip,
                model_dir,
                device=self.device,
                threads=threads or os.cpu_count() or 1,
                cache_dir=cache_dir,
                calibration_images=calibration_images,
            )
            choice = policy.choose(ordered, lambda c: image.build(c, setup))
            self._image, served = choice.tower, choice.candidate
        self.runtime = served.runtime
        self.precision = served.precision
        self.check_cosine = self._image.check_cosine if self._image else None
        if "text" in towers:
            self._text = TextTower(clip, model_dir, device=self.device, precision=self.precision)
        log.info(
            "loaded %s from %s: dim %d on %s, %s%s",
            model,
            model_dir,
            self.dim,
            self.device,
            served,
            f", min cosine {self.check_cosine:.5f} to fp32" if self.check_cosine else "",
        )

    @property
    def info(self) -> EncoderInfo:
        return EncoderInfo(
            self.model,
            self.dim,
            self.device,
            self.precision,
            self.spec,
            self.runtime,
            self.check_cosine,
        )

    def encode_images(self, pixels: Sequence[Pixels]) -> np.ndarray:
        """L2-normalised image vectors for preprocessed ``uint8`` crops (N×H×W×3)."""
        if self._image is None:
            raise RuntimeError("this encoder was loaded without the image tower")
        if not len(pixels):
            return np.zeros((0, self.dim), dtype=np.float32)
        crops = np.stack(pixels)
        with self._lock:
            features = self._image.features(crops)
        return unit_vectors(features)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text vectors, padded to the longest query in the batch."""
        if self._text is None:
            raise RuntimeError("this encoder was loaded without the text tower")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return self._text(texts)
