"""Decoding and CLIP preprocessing of untrusted image bytes (pure: no network, no torch).

Shared by the embedder and the query API's image search so both apply the same limits.
The output is the CLIP input crop as ``uint8`` HWC; normalisation happens on the model's
device, in the encoder, where it is one fused multiply-add per batch.
"""

from __future__ import annotations

import base64
import io
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from catalens.errors import BadInput, Reason

Pixels = npt.NDArray[np.uint8]

_PILLOW_LIMIT = threading.Lock()


@dataclass(frozen=True, slots=True)
class PreprocessSpec:
    """CLIP's preprocessing: shortest side to ``size`` (bicubic), centre crop ``crop``,
    then ``(x / 255 - mean) / std`` per channel."""

    size: int = 224
    crop: int = 224
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    @property
    def pixel_bytes(self) -> int:
        """The bytes of one preprocessed image (:data:`Pixels`, ``crop``x``crop``x3 uint8)."""
        return self.crop * self.crop * 3


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000


def open_checked(data: bytes, limits: ImageLimits) -> Image.Image:
    """Open (lazily) and check size limits before a single pixel is decoded."""
    if len(data) > limits.max_bytes:
        raise BadInput(
            Reason.IMAGE_TOO_LARGE, f"image has {len(data)} bytes, limit is {limits.max_bytes}"
        )
    if not data:
        raise BadInput(Reason.NOT_AN_IMAGE, "image is empty")
    try:
        with _own_pixel_limit():
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadInput(Reason.NOT_AN_IMAGE, "bytes are not a recognised image format") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadInput(Reason.CORRUPT_IMAGE, f"unreadable image header: {exc}") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise BadInput(Reason.CORRUPT_IMAGE, f"image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise BadInput(
            Reason.TOO_MANY_PIXELS,
            f"image is {width}x{height} = {width * height} pixels, limit is {limits.max_pixels}",
        )
    return image


@contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """Pillow's global pixel limit off while a header is read, and restored after.

    ``Image.open`` reads only the header, and :func:`open_checked` checks the pixels it
    declares against the caller's limit right after, with a reason and the dimensions.
    Pillow's limit (a module global) would otherwise cap every configured limit at its
    own ~89 M pixels (a warning above it, an error above twice it). Held under a lock for
    those microseconds, so concurrent decodes always restore the value that was there
    before; everywhere else, for every other Pillow user of the process, Pillow's own
    limit stays in force.
    """
    with _PILLOW_LIMIT:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def preprocess(data: bytes, spec: PreprocessSpec, limits: ImageLimits) -> Pixels:
    """Decode ``data`` into the ``crop``x``crop``x3 uint8 CLIP input.

    JPEGs are decoded in draft mode: libjpeg scales by 1/2, 1/4 or 1/8 inside the DCT,
    never below what the bicubic resize needs, which skips most of the decoding work and
    keeps the result within cosine 0.9999 of full decoding.
    """
    return _preprocess(data, spec, limits)[0]


def preprocess_with_thumbnail(
    data: bytes, spec: PreprocessSpec, limits: ImageLimits, side: int = 160
) -> tuple[Pixels, str]:
    """Like :func:`preprocess`, plus a JPEG thumbnail (longest side ``side``) as a data URI,
    made from the already decoded (draft-sized) image, not decoded again."""
    pixels, decoded, stored = _preprocess(data, spec, limits, header=True)
    if (own := _as_thumbnail(data, decoded, stored, side)) is not None:
        return pixels, own
    # In place (the decoded image is not needed any more). reducing_gap=1: a cheap
    # integer box reduction first, then bilinear to the size.
    decoded.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=1.0)
    buffer = io.BytesIO()
    decoded.save(buffer, format="JPEG", quality=75)
    return pixels, "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


# Inline images up to this many bytes that already fit the thumbnail are shown as they
# are: re-encoding them cost more CPU than everything else an inline event needs but the
# model. The bound is about what a re-encoded thumbnail weighs, because every byte of it
# is written with the product's row, and Milvus' upserts slow down with the bytes of a
# row (docs/ingest-speed.md): a larger original is re-encoded as before.
OWN_THUMBNAIL_BYTES = 4 * 1024
_ORIENTATION = 0x0112  # the EXIF tag
_BROWSER_FORMATS = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG": "image/png"}


@dataclass(frozen=True, slots=True)
class _Header:
    """What a browser would make of the image as stored, read from its header before the
    decode: ``decoded`` is the RGB conversion of any other mode, which has lost these."""

    mime: str  # image/jpeg or image/png
    frames: int
    orientation: int  # EXIF; 1: as stored
    mode: str
    transparency: bool

    @classmethod
    def of(cls, data: bytes, image: Image.Image) -> _Header | None:
        """Read only for a small JPEG or PNG, the images that may serve as their own
        thumbnail: their frame count is in the header (a GIF's or TIFF's is counted by
        walking the frames, which on truncated data fails or moves off the first one).
        None: not a candidate, or a header that cannot be read (re-encode, never fail)."""
        mime = next((m for magic, m in _BROWSER_FORMATS.items() if data.startswith(magic)), None)
        if len(data) > OWN_THUMBNAIL_BYTES or mime is None:
            return None
        try:
            return cls(
                mime=mime,
                frames=getattr(image, "n_frames", 1),
                orientation=int(image.getexif().get(_ORIENTATION, 1)),
                mode=image.mode,
                transparency="transparency" in image.info,
            )
        except Exception:  # noqa: BLE001 - an odd header: re-encode, the decode judges it
            return None


def _as_thumbnail(
    data: bytes, decoded: Image.Image, stored: _Header | None, side: int
) -> str | None:
    """``data`` as a data URI when it can serve as its own thumbnail: small, no larger
    than ``side`` either way (a drafted decode is always larger), a JPEG or PNG, and shown
    by a browser as the model saw it: one frame (an animated PNG plays other pictures), no
    EXIF orientation (browsers rotate by it; the model did not) and no transparency (the
    model saw the colours under it)."""
    if stored is None or max(decoded.size) > side:  # None: not a small JPEG or PNG
        return None
    if stored.frames != 1 or stored.orientation != 1:
        return None
    if stored.mode not in ("RGB", "L", "P") or stored.transparency:
        return None  # alpha: the browser shows the page through what the model saw
    return f"data:{stored.mime};base64," + base64.b64encode(data).decode()


def _preprocess(
    data: bytes, spec: PreprocessSpec, limits: ImageLimits, *, header: bool = False
) -> tuple[Pixels, Image.Image, _Header | None]:
    """The crop, the decoded RGB image it was taken from, and (``header``) what the
    stored image's header says, read before the decode changes it."""
    image = open_checked(data, limits)
    width, height = image.size
    scale = spec.size / min(width, height)
    stored = _Header.of(data, image) if header else None
    try:
        if image.format == "JPEG" and scale < 0.5:
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
        if image.mode != "RGB":
            image = image.convert("RGB")
        crop = _resized_crop(image, spec)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BadInput(Reason.CORRUPT_IMAGE, f"corrupt or truncated image: {exc}") from None
    return crop, image, stored


def _resized_crop(image: Image.Image, spec: PreprocessSpec) -> Pixels:
    """Resize the shortest side to ``spec.size`` (bicubic), then centre-crop ``spec.crop``.

    Only the part that survives the crop is resampled (Pillow's ``box``): the same
    filter at the same positions, up to rounding (at most 2 levels of 255), for about
    two thirds of the work on a portrait product photo."""
    width, height = image.size
    # The same output size rule as transformers' CLIP image processor.
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = spec.size, int(spec.size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    crop_w, crop_h = min(spec.crop, new_w), min(spec.crop, new_h)
    left, top = (new_w - crop_w) // 2, (new_h - crop_h) // 2
    if (new_w, new_h) == (width, height):
        resized = image.crop((left, top, left + crop_w, top + crop_h))
    else:
        sx, sy = width / new_w, height / new_h
        box = (left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy)
        resized = image.resize((crop_w, crop_h), Image.Resampling.BICUBIC, box=box)
    return _pad_to_square(np.asarray(resized, dtype=np.uint8), spec.crop)


def _pad_to_square(pixels: Pixels, side: int) -> Pixels:
    """Centre ``pixels`` (at most ``side`` each way) on a black ``side``x``side`` canvas,
    as CLIP's centre crop does when the resized image is smaller than the crop."""
    height, width = pixels.shape[:2]
    if (height, width) == (side, side):
        return np.ascontiguousarray(pixels)
    padded = np.zeros((side, side, 3), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    padded[top : top + height, left : left + width] = pixels
    return padded
