"""Finding the model's files: a local directory, or a named model through the Hugging Face
cache (downloaded when missing), and the preprocessing the model was trained with.

``CATALENS_MODEL`` is either a sentence-transformers CLIP name (``clip-ViT-B-32``, whose
``0_CLIPModel`` folder holds Hugging Face CLIP weights) or a local directory holding a
Hugging Face CLIP model (``CLIPModel`` weights + ``CLIPProcessor`` files) or a
sentence-transformers CLIP folder. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from catalens.errors import OperatorError
from catalens.images import PreprocessSpec

# Written beside the weights of a model built with random weights (catalens.dev.modelkit).
RANDOM_WEIGHTS_MARKER = "catalens-random-weights.json"


class ModelNotFound(OperatorError):
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
        mean=tuple(config.get("image_mean", defaults.mean)),
        std=tuple(config.get("image_std", defaults.std)),
    )


def weights_fingerprint(model_dir: Path) -> list[str]:
    """Name, size and modification time of every file in ``model_dir``, for cache keys:
    replaced weights change it without reading gigabytes to hash them."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file())
    return [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]


# Files that hold weights in a Hugging Face model directory; configs and tokenizers do
# not change what a vector means.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
_CHUNK = 1 << 20


def weights_digest(model_dir: Path) -> str:
    """The weights' identity across machines: 16 hex digits of SHA-256 over every weights
    file under ``model_dir`` (names and contents, in a fixed order), so two checkpoints
    under one name never mix in one index generation. About a second per GB, once per
    process start (unlike :func:`weights_fingerprint`, which only names files)."""
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no weights files under {model_dir}")
    for path in files:
        digest.update(path.relative_to(model_dir).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def has_random_weights(model: str | Path) -> bool:
    """Whether ``model`` (a ``CATALENS_MODEL`` value) is a directory holding a model built
    with random weights (a demo or test model). Named models are pretrained; this never
    downloads."""
    return (Path(model).expanduser() / RANDOM_WEIGHTS_MARKER).is_file()
