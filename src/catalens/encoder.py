"""The CLIP encoder: the only module that imports torch and transformers.

``CATALENS_MODEL`` is either a sentence-transformers CLIP name (``clip-ViT-B-32``, the
article's model, whose ``0_CLIPModel`` folder holds Hugging Face CLIP weights) or a local
directory holding a Hugging Face CLIP model (``CLIPModel`` weights + ``CLIPProcessor``
files) or a sentence-transformers CLIP folder. Both towers return L2-normalised float32.

Reduced precisions are checked when the model loads: the image tower's vectors for held-out
check images (:mod:`catalens.calibration`) must stay within cosine ``MIN_COSINE`` of the
fp32 tower's, or ``precision=auto`` falls back to the next safer choice.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from transformers import CLIPModel, CLIPTokenizer

from catalens import calibration, openvino_tower
from catalens.images import Pixels, PreprocessSpec

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
Device = Literal["auto", "cpu", "cuda"]
Tower = Literal["image", "text"]
Runtime = Literal["auto", "torch", "openvino"]
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
CALIBRATION_IMAGES = 64
CHECK_IMAGES = 32


def choose_precision(precision: Precision, device: str) -> str:
    """``auto``: fp16 on CUDA, int8 on CPUs (kept only if it passes the load-time cosine
    check, see :meth:`ClipEncoder._check`), else bf16 where the CPU has native bf16,
    else fp32."""
    if precision != "auto":
        return precision
    if device == "cuda":
        return "fp16"
    return "int8"


def choose_runtime(runtime: Runtime, device: str) -> str:
    """``auto``: OpenVINO for the image tower on CPUs when it is installed, else PyTorch."""
    if runtime == "openvino" and device != "cpu":
        raise ValueError("the openvino runtime runs on CPUs; use torch for CUDA")
    if runtime != "auto":
        return runtime
    return "openvino" if device == "cpu" and openvino_tower.available() else "torch"


def _cpu_fallback() -> str:
    return "bf16" if cpu_supports_bf16() else "fp32"


@dataclass(frozen=True)
class EncoderInfo:
    model: str
    dim: int
    device: str
    precision: str
    spec: PreprocessSpec
    runtime: str = "torch"
    # Min cosine to fp32 on the held-out check images (None: not checked, e.g. fp32).
    check_cosine: float | None = None


ImageFeatures = Callable[[npt.NDArray[np.uint8]], "torch.Tensor | npt.NDArray[np.float32]"]


class ClipEncoder:
    """Both CLIP towers, loaded once, inference only.

    The image tower runs on OpenVINO on CPUs (``runtime="auto"``, when installed) or on
    PyTorch; the text tower on PyTorch. Thread-safe: calls are serialised by a lock, so
    one encoder serves a whole process.
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
        self.device = choose_device(device)
        self.runtime = choose_runtime(runtime, self.device) if "image" in towers else "torch"
        self.precision = choose_precision(precision, self.device)
        threads = threads or os.cpu_count() or 1
        if self.device == "cpu":
            torch.set_num_threads(threads)
        clip = CLIPModel.from_pretrained(model_dir, dtype=torch.float32)
        clip.eval()
        self.spec = read_preprocess_spec(model_dir)
        self.dim = int(clip.config.projection_dim or 0)
        self.model = model
        self.check_cosine: float | None = None
        self._lock = threading.Lock()
        mean = torch.tensor(self.spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add on uint8 input.
        self._scale = (1.0 / (255.0 * std)).to(self.device)
        self._shift = (-mean / std).to(self.device)
        self._image: ImageFeatures | None = None
        self._text: torch.nn.Module | None = None
        self._tokenizer: CLIPTokenizer | None = None
        if "image" in towers:
            check = _check_crops(self.spec, calibration_images)
            reference = self._torch_features(clip, check)
            if self.runtime == "openvino":
                self._image = self._openvino_image(
                    clip,
                    model_dir,
                    requested=precision,
                    threads=threads,
                    cache_dir=cache_dir,
                    calibration_images=calibration_images,
                    check=(check, reference),
                )
            else:
                self._image = self._torch_image(clip, requested=precision, check=(check, reference))
        if "text" in towers:
            self._tokenizer = CLIPTokenizer.from_pretrained(model_dir)
            self._text = self._prepare(clip.text_model)
            self._text_projection = self._prepare(clip.text_projection)
        log.info(
            "loaded %s from %s: dim %d on %s, %s %s%s",
            model,
            model_dir,
            self.dim,
            self.device,
            self.runtime,
            self.precision,
            f", min cosine {self.check_cosine:.5f} to fp32" if self.check_cosine else "",
        )

    # -- image tower choices ---------------------------------------------------------------

    def _torch_features(
        self, clip: CLIPModel, crops: npt.NDArray[np.uint8]
    ) -> npt.NDArray[np.float32]:
        """The fp32 reference the reduced precisions are checked against."""
        with torch.inference_mode():
            x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float()
            out = clip.get_image_features(pixel_values=x * self._scale + self._shift)
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
        return _normalise(out)

    def _torch_image(
        self,
        clip: CLIPModel,
        *,
        requested: Precision,
        check: tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]],
    ) -> ImageFeatures:
        vision, projection = clip.vision_model, clip.visual_projection
        if self.precision == "int8":
            # Quantise a copy first: the fp32 tower stays available for the fallback.
            vision = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(vision), {torch.nn.Linear}, dtype=torch.qint8
            )[0]
        tower = _ImageModule(vision, projection).to(self.device)

        def features(crops: npt.NDArray[np.uint8]) -> torch.Tensor:
            batch = torch.from_numpy(crops).to(self.device, non_blocking=True)
            with torch.inference_mode(), self._autocast():
                x = batch.permute(0, 3, 1, 2).float() * self._scale + self._shift
                return tower(x)  # type: ignore[no-any-return]

        if self.precision == "fp32":
            return features
        if self._rejected(_min_cosine(features(check[0]), check[1]), requested):
            return self._torch_image(clip, requested=self.precision, check=check)  # type: ignore[arg-type]
        return features

    def _openvino_image(
        self,
        clip: CLIPModel,
        model_dir: Path,
        *,
        requested: Precision,
        threads: int,
        cache_dir: Path | None,
        calibration_images: Path | None,
        check: tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]],
    ) -> ImageFeatures:
        if self.precision not in ("fp32", "bf16", "int8"):
            raise ValueError(f"the openvino runtime has no {self.precision} (fp32, bf16, int8)")
        if self.precision == "bf16" and not cpu_supports_bf16():
            log.warning("this CPU has no native bf16; OpenVINO will compute in fp32")
        tower = openvino_tower.load_image_tower(
            _ImageModule(clip.vision_model, clip.visual_projection),
            size=self.spec.crop,
            mean=self.spec.mean,
            std=self.spec.std,
            precision=self.precision,  # type: ignore[arg-type]
            calibration=lambda: _calibration_crops(self.spec, calibration_images),
            cache_dir=cache_dir,
            cache_key=_cache_key(model_dir, self.spec, calibration_images),
            threads=threads,
        )
        if self.precision == "fp32":
            return tower
        if self._rejected(_min_cosine(tower(check[0]), check[1]), requested):
            return self._openvino_image(
                clip,
                model_dir,
                requested=self.precision,  # type: ignore[arg-type]
                threads=threads,
                cache_dir=cache_dir,
                calibration_images=calibration_images,
                check=check,
            )
        return tower

    def _rejected(self, cosine: float, requested: Precision) -> bool:
        """Record the check's result; under ``auto`` an int8 tower below the bound is
        rejected and ``self.precision`` becomes the CPU's safer choice."""
        self.check_cosine = cosine
        if cosine >= MIN_COSINE:
            return False
        if requested == "auto" and self.precision == "int8":
            log.warning(
                "int8 gave min cosine %.5f (< %.3f) on the check images; using %s",
                cosine,
                MIN_COSINE,
                _cpu_fallback(),
            )
            self.precision = _cpu_fallback()
            return True
        log.warning(
            "%s gives min cosine %.5f to fp32 on the check images (bound %.3f)",
            self.precision,
            cosine,
            MIN_COSINE,
        )
        return False

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
        if self._image is None:
            raise RuntimeError("this encoder was loaded without the image tower")
        if not len(pixels):
            return np.zeros((0, self.dim), dtype=np.float32)
        crops = np.stack(pixels)
        with self._lock:
            features = self._image(crops)
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


class _ImageModule(torch.nn.Module):
    """Normalised NCHW pixel values → projected image features.

    Hugging Face's CLIP vision forward, except that the last block computes the class
    token only. The image vector is the class token's final state, and nothing else of
    that block reaches it: its queries, output projection and MLP run for 1 token instead
    of 50 (keys and values still for all). For ViT-B/32 that skips about 7 % of the work
    for the same vector."""

    def __init__(self, vision: torch.nn.Module, projection: torch.nn.Module) -> None:
        super().__init__()
        self.vision = vision
        self.projection = projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        vision: Any = self.vision  # Hugging Face's attributes are not typed
        hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
        *blocks, last = vision.encoder.layers
        for block in blocks:
            hidden = _block(block, hidden)
        cls = _block(last, hidden, queries=1)[:, 0]
        return self.projection(vision.post_layernorm(cls))  # type: ignore[no-any-return]


def _block(layer: Any, hidden: torch.Tensor, *, queries: int | None = None) -> torch.Tensor:
    """One CLIP encoder layer (pre-norm attention, then pre-norm MLP) for the first
    ``queries`` tokens of ``hidden`` (default: all), attending over all of them. Layer
    norms and the MLP work token by token, so a prefix of tokens gives a prefix of the
    full layer's output."""
    attention = layer.self_attn
    split = (int(attention.num_heads), int(attention.head_dim))

    def heads(x: torch.Tensor) -> torch.Tensor:  # (B, T, H·D) → (B, H, T, D)
        split_heads: torch.Tensor = x.unflatten(-1, split)
        return split_heads.transpose(1, 2)

    normed = layer.layer_norm1(hidden)
    if queries is not None:
        hidden, asking = hidden[:, :queries], normed[:, :queries]
    else:
        asking = normed
    attended = torch.nn.functional.scaled_dot_product_attention(
        heads(attention.q_proj(asking)),
        heads(attention.k_proj(normed)),
        heads(attention.v_proj(normed)),
        scale=attention.scale,
    )
    out = hidden + attention.out_proj(attended.transpose(1, 2).flatten(2))
    return out + layer.mlp(layer.layer_norm2(out))  # type: ignore[no-any-return]


def _operator_images(
    spec: PreprocessSpec, folder: Path | None
) -> tuple[list[Pixels], list[Pixels]]:
    """The operator's images split into (to calibrate on, held out for the check)."""
    if folder is None:
        return [], []
    own = calibration.from_folder(folder, spec, CALIBRATION_IMAGES + CHECK_IMAGES)
    share = min(CALIBRATION_IMAGES, len(own) * 2 // 3)
    return own[:share], own[share:]


def _check_crops(spec: PreprocessSpec, folder: Path | None) -> npt.NDArray[np.uint8]:
    """Held-out images: generated from another seed than the calibration images, plus the
    operator's images that calibration does not use."""
    held_out = _operator_images(spec, folder)[1]
    return np.stack(held_out + calibration.generated(CHECK_IMAGES, seed=2, spec=spec))


def _calibration_crops(spec: PreprocessSpec, folder: Path | None) -> npt.NDArray[np.uint8]:
    """Only called when no quantised model is cached."""
    fitted = _operator_images(spec, folder)[0]
    extra = calibration.generated(max(0, CALIBRATION_IMAGES - len(fitted)), seed=1, spec=spec)
    return np.stack(fitted + extra)


def _cache_key(model_dir: Path, spec: PreprocessSpec, folder: Path | None) -> str:
    files = sorted(p for p in model_dir.iterdir() if p.is_file())
    weights = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return "\n".join(
        [
            f"image-tower-v2 class-token-last-block {openvino_tower.int8_recipe()}",
            str(model_dir.resolve()),
            *weights,
            repr(spec),
            calibration.fingerprint(folder),
            openvino_tower.versions(),
        ]
    )


def _min_cosine(features: torch.Tensor | np.ndarray, reference: np.ndarray) -> float:
    return float((_normalise(features) * reference).sum(axis=1).min())


def _normalise(features: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(features)
    vectors = torch.nn.functional.normalize(features.float(), dim=-1)
    return vectors.cpu().numpy().astype(np.float32, copy=False)
