"""The CLIP encoder callers use: both towers loaded once, behind one lock.

Each tower is the first of the policy's candidates (:mod:`catalens.encoder.policy`) that
passes its load-time check: a reduced precision (or another runtime) is served only when
its vectors stay within cosine :data:`~catalens.encoder.policy.MIN_COSINE` of the PyTorch
fp32 tower's, for held-out check images (:mod:`catalens.encoder.check`) and for a fixed
set of catalog queries (:data:`catalens.encoder.text.CHECK_QUERIES`). Both towers return
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

from catalens.encoder import image, openvino, policy, text
from catalens.encoder.files import read_preprocess_spec, resolve_model_dir
from catalens.encoder.policy import Device, Precision, Runtime, Tower
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
    # The text tower's own choice ("" without a text tower), and its min cosine to the
    # PyTorch fp32 tower on the check queries (None: that reference itself).
    text_runtime: str = ""
    text_precision: str = ""
    text_check_cosine: float | None = None


class ClipEncoder:
    """Both CLIP towers, loaded once, inference only.

    Each tower runs on OpenVINO on CPUs (``runtime="auto"``, when installed) or on
    PyTorch, and is chosen from its own candidates and checked on its own;
    ``text_runtime`` and ``text_precision`` default to ``runtime`` and ``precision``.
    Thread-safe: calls are serialised by a lock, so one encoder serves a whole process.

    ``threads`` sizes the OpenVINO towers only (0: every core). PyTorch's thread pool is
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
        text_runtime: Runtime | None = None,
        text_precision: Precision | None = None,
    ) -> None:
        model_dir = resolve_model_dir(model)
        self.device = policy.choose_device(device)
        threads = threads or os.cpu_count() or 1

        def ordered(
            wanted: Runtime, wanted_precision: Precision, int8: bool = True
        ) -> list[policy.Candidate]:
            chosen = policy.choose_runtime(wanted, self.device, openvino=openvino.available())
            return policy.candidates(
                chosen, wanted_precision, self.device, bf16=policy.cpu_supports_bf16(), int8=int8
            )

        clip = CLIPModel.from_pretrained(model_dir, dtype=torch.float32)
        clip.eval()
        self.model = model
        self.spec = read_preprocess_spec(model_dir)
        self.dim = int(clip.config.projection_dim or 0)
        self._lock = threading.Lock()
        self._image: image.ImageTower | None = None
        self._text: text.TextTower | None = None
        served = ordered(runtime, precision)[0]
        if "image" in towers:
            setup = image.ImageSetup.from_clip(
                clip,
                model_dir,
                device=self.device,
                threads=threads,
                cache_dir=cache_dir,
                calibration_images=calibration_images,
            )
            choice = policy.choose(ordered(runtime, precision), lambda c: image.build(c, setup))
            self._image, served = choice.tower, choice.candidate
        self.runtime = served.runtime
        self.precision = served.precision
        self.check_cosine = self._image.check_cosine if self._image else None
        if "text" in towers:
            text_setup = text.TextSetup.from_clip(
                clip, model_dir, device=self.device, threads=threads
            )
            # The text tower's int8 is weights only, decompressed on every pass: without
            # VNNI/AMX that cost more than the bytes it saves (docs/query-latency.md).
            wanted_runtime, wanted_text = text_runtime or runtime, text_precision or precision
            text_candidates = ordered(wanted_runtime, wanted_text, int8=openvino.cpu_has_vnni())
            exact = policy.Candidate("torch", "fp32")
            everything_auto = (wanted_runtime, wanted_text) == ("auto", "auto")
            if everything_auto and self.device == "cpu" and exact not in text_candidates:
                # The last candidate is served even if it fails its check: under auto that
                # must be the reference itself, never another runtime's unchecked fp32.
                text_candidates.append(exact)
            text_choice = policy.choose(text_candidates, lambda c: text.build(c, text_setup))
            self._text = text_choice.tower
        log.info(
            "loaded %s from %s: dim %d on %s, image %s%s, text %s%s",
            model,
            model_dir,
            self.dim,
            self.device,
            served if self._image else "-",
            _cosine(self.check_cosine),
            self._text.candidate if self._text else "-",
            _cosine(self._text.check_cosine if self._text else None),
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
            str(self._text.candidate.runtime) if self._text else "",
            str(self._text.candidate.precision) if self._text else "",
            self._text.check_cosine if self._text else None,
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


def _cosine(value: float | None) -> str:
    return f" (min cosine {value:.5f} to fp32)" if value is not None else ""
