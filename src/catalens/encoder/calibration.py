"""Images for calibrating and checking a quantised image tower (pure: numpy and Pillow).

Static int8 quantisation fixes each activation's range from sample inputs, so the samples
must look like what the embedder will see. Without the operator's own images
(``CATALENS_CALIBRATION_IMAGES``), photo-like images are generated in four styles seen in
product catalogs: an object on a plain studio background, smooth colour fields with
sensor noise, woven or printed textures, and dark scenes with highlights. Every image
goes through JPEG encoding and :func:`catalens.images.preprocess`, the embedder's own
path, so the model sees the same artefacts as in production.

Calibration and check sets come from different seeds (and, for the operator's images,
from different files): a quantised model is accepted only on images it was not fitted to.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from catalens.errors import BadInput
from catalens.images import ImageLimits, Pixels, PreprocessSpec, preprocess

log = logging.getLogger(__name__)

# Part of the quantisation cache key: change it when the generated images change.
GENERATOR_VERSION = "1"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
_SIZE = (320, 480)  # width, height: portrait, like catalog photos


def generated(count: int, seed: int, spec: PreprocessSpec) -> list[Pixels]:
    """``count`` preprocessed crops of generated photo-like images, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    styles = (product_shot, _colour_field, _texture, _dark_scene)
    crops = []
    for index in range(count):
        image = styles[index % len(styles)](rng)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(75, 96)))
        crops.append(preprocess(buffer.getvalue(), spec, ImageLimits()))
    return crops


def from_folder(folder: Path, spec: PreprocessSpec, limit: int) -> list[Pixels]:
    """Up to ``limit`` preprocessed crops of the images in ``folder`` (sorted by name,
    unreadable files skipped with a warning)."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    crops: list[Pixels] = []
    for path in paths:
        if len(crops) >= limit:
            break
        try:
            crops.append(preprocess(path.read_bytes(), spec, ImageLimits()))
        except (OSError, BadInput) as exc:
            log.warning("calibration image %s skipped: %s", path, exc)
    return crops


def fingerprint(folder: Path | None) -> str:
    """What the calibration images are, for cache keys: generator version plus the
    operator's files (names, sizes, modification times)."""
    parts = [f"generated-v{GENERATOR_VERSION}"]
    if folder is not None:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                stat = path.stat()
                parts.append(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}")
    return "\n".join(parts)


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    r, g, b = rng.integers(low, high, size=3)
    return int(r), int(g), int(b)


def _noise(image: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, sigma, size=(*image.size[::-1], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def product_shot(rng: np.random.Generator, size: tuple[int, int] = _SIZE) -> Image.Image:
    """A product on a plain light background with a soft shadow, ``size`` (width, height)."""
    width, height = size
    image = Image.new("RGB", size, _colour(rng, 215, 256))
    draw = ImageDraw.Draw(image)
    cx, cy = width * rng.uniform(0.4, 0.6), height * rng.uniform(0.4, 0.6)
    w, h = width * rng.uniform(0.3, 0.7), height * rng.uniform(0.3, 0.7)
    box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    shadow = (box[0] + 8, box[1] + 12, box[2] + 8, box[3] + 12)
    draw.ellipse(shadow, fill=_colour(rng, 150, 200))
    image = image.filter(ImageFilter.GaussianBlur(6))
    draw = ImageDraw.Draw(image)
    colour = _colour(rng)
    if rng.random() < 0.5:
        draw.rounded_rectangle(box, radius=int(min(w, h) * 0.2), fill=colour)
    else:
        points = [
            (cx + w / 2 * np.cos(a), cy + h / 2 * np.sin(a))
            for a in np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(3, 9))))
        ]
        draw.polygon(points, fill=colour)
    for _ in range(int(rng.integers(0, 4))):  # seams, buttons, prints
        x, y = cx + rng.uniform(-w, w) / 3, cy + rng.uniform(-h, h) / 3
        draw.line(
            (x, y, x + rng.uniform(-40, 40), y + rng.uniform(-60, 60)), fill=_colour(rng), width=3
        )
    return _noise(image, rng, 3)


def _colour_field(rng: np.random.Generator) -> Image.Image:
    """Smooth colour fields with sensor-like noise, like out-of-focus photographs."""
    width, height = _SIZE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b, c, phase = rng.uniform(0.5, 4, size=4)
    field = np.stack(
        [
            np.sin(x / width * a * 6 + phase),
            np.cos(y / height * b * 6),
            np.sin((x + y) / (width + height) * c * 6),
        ],
        axis=-1,
    )
    pixels = 128 + rng.uniform(40, 110) * field + rng.normal(0, rng.uniform(2, 14), field.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _texture(rng: np.random.Generator) -> Image.Image:
    """Stripes or checks in two colours (knits, prints, denim)."""
    width, height = _SIZE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(4, 40)
    angle = rng.uniform(0, np.pi)
    wave = np.sin((x * np.cos(angle) + y * np.sin(angle)) / period * 2 * np.pi)
    if rng.random() < 0.5:
        wave = wave * np.sin((x * -np.sin(angle) + y * np.cos(angle)) / period * 2 * np.pi)
    mix = (wave[..., None] + 1) / 2
    one, two = np.array(_colour(rng)), np.array(_colour(rng))
    pixels = one * mix + two * (1 - mix)
    return _noise(Image.fromarray(pixels.astype(np.uint8)), rng, 6)


def _dark_scene(rng: np.random.Generator) -> Image.Image:
    """A dim scene with a few bright highlights."""
    image = Image.new("RGB", _SIZE, _colour(rng, 0, 50))
    draw = ImageDraw.Draw(image)
    width, height = _SIZE
    for _ in range(int(rng.integers(2, 7))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(10, 80)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_colour(rng, 120, 256))
    return _noise(image.filter(ImageFilter.GaussianBlur(rng.uniform(2, 12))), rng, 5)
