"""The CLIP encoder: the only module that imports torch and transformers.

``CATALENS_MODEL`` is either a sentence-transformers CLIP name (``clip-ViT-B-32``, the
article's model, whose ``0_CLIPModel`` folder holds Hugging Face CLIP weights) or a local
directory holding a Hugging Face CLIP model (``CLIPModel`` weights + ``CLIPProcessor``
files) or a sentence-transformers CLIP folder. Both towers return L2-normalised float32.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import CLIPModel, CLIPTokenizer

from catalens.images import Pixels, PreprocessSpec

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
Device = Literal["auto", "cpu", "cuda"]
Tower = Literal["image", "text"]
MAX_TOKENS = 77


class ModelNotFound(Exception):
    """``CATALENS_MODEL`` names nothing that can be loaded here."""


def resolve_model_dir(model: str) -> Path:
    """The local directory with Hugging Face CLIP files for ``model`` (downloading a
    named model through the Hugging Face cache when it is not local)."""
    path = Path(model).expanduser()
    if not path.exists():
        repo = model if "/" in model else f"sentence-transformers/{model}"
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(repo))
        except Exception as exc:
            raise ModelNotFound(
                f"model {model!r} is neither a local directory nor downloadable ({exc})"
            ) from exc
    if (path / "config.json").exists() and _model_type(path / "config.json") == "clip":
        return path
    modules = path / "modules.json"
    if modules.exists():
        for module in json.loads(modules.read_text()):
            if module.get("type", "").endswith("CLIPModel"):
                return path / module["path"] if module["path"] else path
    raise ModelNotFound(f"{path} holds no Hugging Face CLIP model")


def _model_type(config: Path) -> str | None:
    value = json.loads(config.read_text()).get("model_type")
    return value if isinstance(value, str) else None


def read_preprocess_spec(model_dir: Path) -> PreprocessSpec:
    """The image preprocessing the model was trained with (preprocessor_config.json)."""
    # Older checkpoints keep it in preprocessor_config.json, newer ones nest it in
    # processor_config.json under "image_processor".
    config: dict[str, Any] = {}
    if (model_dir / "preprocessor_config.json").exists():
        config = json.loads((model_dir / "preprocessor_config.json").read_text())
    elif (model_dir / "processor_config.json").exists():
        config = json.loads((model_dir / "processor_config.json").read_text())
        config = config.get("image_processor", {})
    size = config.get("size", 224)
    crop = config.get("crop_size", size)
    as_int = lambda v, key: int(v[key] if isinstance(v, dict) else v)  # noqa: E731
    defaults = PreprocessSpec()
    return PreprocessSpec(
        size=as_int(size, "shortest_edge"),
        crop=as_int(crop, "height"),
        mean=tuple(config.get("image_mean", defaults.mean)),  # type: ignore[arg-type]
        std=tuple(config.get("image_std", defaults.std)),  # type: ignore[arg-type]
    )


def cpu_supports_bf16() -> bool:
    """Native bf16 matrix math (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_device(device: Device) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


MIN_COSINE = 0.999


def choose_precision(precision: Precision, device: str) -> str:
    """``auto``: fp16 on CUDA, int8 on CPUs (kept only if it passes the load-time cosine
    check, see :meth:`ClipEncoder._check_int8`), else bf16 where the CPU has native bf16,
    else fp32."""
    if precision != "auto":
        return precision
    if device == "cuda":
        return "fp16"
    return "int8"


def _cpu_fallback() -> str:
    return "bf16" if cpu_supports_bf16() else "fp32"


@dataclass(frozen=True)
class EncoderInfo:
    model: str
    dim: int
    device: str
    precision: str
    spec: PreprocessSpec


class ClipEncoder:
    """Both CLIP towers, loaded once, inference only (``torch.inference_mode``).

    Thread-safe: calls are serialised by a lock, so one encoder serves a whole process.
    """

    def __init__(
        self,
        model: str,
        *,
        towers: Sequence[Tower] = ("image", "text"),
        device: Device = "auto",
        precision: Precision = "auto",
        threads: int = 0,
    ) -> None:
        model_dir = resolve_model_dir(model)
        self.device = choose_device(device)
        self.precision = choose_precision(precision, self.device)
        if self.device == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        clip = CLIPModel.from_pretrained(model_dir, dtype=torch.float32)
        clip.eval()
        if precision == "auto" and self.precision == "int8" and not self._check_int8(clip):
            self.precision = _cpu_fallback()
        self.spec = read_preprocess_spec(model_dir)
        self.dim = int(clip.config.projection_dim or 0)
        self.model = model
        self._lock = threading.Lock()
        self._vision: torch.nn.Module | None = None
        self._text: torch.nn.Module | None = None
        self._tokenizer: CLIPTokenizer | None = None
        if "image" in towers:
            self._vision = self._prepare(clip.vision_model)
            self._visual_projection = self._prepare(clip.visual_projection)
        if "text" in towers:
            self._tokenizer = CLIPTokenizer.from_pretrained(model_dir)
            self._text = self._prepare(clip.text_model)
            self._text_projection = self._prepare(clip.text_projection)
        mean = torch.tensor(self.spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add on uint8 input.
        self._scale = (1.0 / (255.0 * std)).to(self.device)
        self._shift = (-mean / std).to(self.device)
        log.info(
            "loaded %s from %s: dim %d on %s, %s",
            model,
            model_dir,
            self.dim,
            self.device,
            self.precision,
        )

    @staticmethod
    def _check_int8(clip: CLIPModel) -> bool:
        """Whether int8 dynamic quantisation keeps this model's image vectors within
        cosine ``MIN_COSINE`` of fp32, on a fixed batch of smooth random images."""
        generator = torch.Generator().manual_seed(0)
        size = int(getattr(clip.config.vision_config, "image_size", 224))
        coarse = torch.rand(8, 3, 8, 8, generator=generator) * 4 - 2
        pixels = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
        pixels = pixels + 0.3 * torch.randn(pixels.shape, generator=generator)
        with torch.inference_mode():
            exact = clip.get_image_features(pixel_values=pixels)
            quantised = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(clip.vision_model), {torch.nn.Linear}, dtype=torch.qint8
            )[0]
            approx = clip.visual_projection(quantised(pixel_values=pixels).pooler_output)
        exact = exact if isinstance(exact, torch.Tensor) else exact.pooler_output
        cosine = float(torch.nn.functional.cosine_similarity(exact, approx).min())
        log.info("int8 check: min cosine %.5f to fp32 (needs %.3f)", cosine, MIN_COSINE)
        return cosine >= MIN_COSINE

    @property
    def info(self) -> EncoderInfo:
        return EncoderInfo(self.model, self.dim, self.device, self.precision, self.spec)

    def _prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(self.device)
        if self.precision == "int8":
            module = torch.ao.quantization.quantize_dynamic(
                module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
            )
        return module

    def _autocast(self) -> torch.autocast:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.device, dtype=dtype or torch.float32, enabled=dtype is not None)

    def encode_images(self, pixels: Sequence[Pixels]) -> np.ndarray:
        """L2-normalised image vectors for preprocessed ``uint8`` crops (N×H×W×3)."""
        if self._vision is None:
            raise RuntimeError("this encoder was loaded without the image tower")
        if not len(pixels):
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = torch.from_numpy(np.stack(pixels)).to(self.device, non_blocking=True)
        with self._lock, torch.inference_mode(), self._autocast():
            x = batch.permute(0, 3, 1, 2).float() * self._scale + self._shift
            pooled = self._vision(pixel_values=x).pooler_output
            features = self._visual_projection(pooled)
        return _normalise(features)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text vectors. Queries are padded to the longest in the batch, not
        to 77 tokens: CLIP's causal mask makes the result identical and the work smaller."""
        if self._text is None or self._tokenizer is None:
            raise RuntimeError("this encoder was loaded without the text tower")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        with self._lock, torch.inference_mode(), self._autocast():
            out = self._text(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device),
            )
            features = self._text_projection(out.pooler_output)
        return _normalise(features)


def _normalise(features: torch.Tensor) -> np.ndarray:
    vectors = torch.nn.functional.normalize(features.float(), dim=-1)
    return vectors.cpu().numpy().astype(np.float32, copy=False)
