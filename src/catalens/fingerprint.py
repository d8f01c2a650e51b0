"""A fingerprint of a model's weights: what tells two checkpoints under one name apart."""

from __future__ import annotations

import hashlib
from pathlib import Path

# Files that hold weights in a Hugging Face model directory; configs and tokenizers do
# not change what a vector means.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
_CHUNK = 1 << 20


def weights_fingerprint(model_dir: Path) -> str:
    """16 hex digits of SHA-256 over every weights file under ``model_dir`` (names and
    contents, in a fixed order). About a second per GB, once per process start."""
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
