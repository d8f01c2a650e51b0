"""Decoding and preprocessing: CLIP-equivalent pixels from the fewest pixels, and limits."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from transformers import CLIPImageProcessorPil

from catalens.errors import BadInput
from catalens.images import (
    OWN_THUMBNAIL_BYTES,
    ImageLimits,
    PreprocessSpec,
    open_checked,
    preprocess,
    preprocess_with_thumbnail,
)
from catalens.schemas import Reason
from tests.conftest import jpeg_bytes

SPEC = PreprocessSpec()
LIMITS = ImageLimits()


def reference_pixels(data: bytes) -> np.ndarray:
    """CLIPProcessor's output, normalised, as HWC float."""
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )
    image = Image.open(io.BytesIO(data)).convert("RGB")
    tensor = processor(images=image, return_tensors="np")["pixel_values"][0]
    return np.transpose(tensor, (1, 2, 0))


def normalised(pixels: np.ndarray) -> np.ndarray:
    mean, std = np.array(SPEC.mean, dtype=np.float64), np.array(SPEC.std, dtype=np.float64)
    return (pixels.astype(np.float32) / 255 - mean) / std


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize(("width", "height"), [(1166, 1750), (640, 480), (224, 224), (300, 1000)])
def test_preprocessing_matches_clip_processor(width: int, height: int) -> None:
    data = jpeg_bytes(width, height, seed=width)
    ours = normalised(preprocess(data, SPEC, LIMITS))
    assert ours.shape == (224, 224, 3)
    assert cosine(ours, reference_pixels(data)) > 0.999


@pytest.mark.parametrize(
    ("width", "height", "spec"),
    [
        (300, 1000, SPEC),  # portrait: rows cropped
        (1000, 300, SPEC),  # landscape: columns cropped
        (224, 400, SPEC),  # already the right width: a plain crop
        (100, 150, SPEC),  # upscaled
        (640, 480, PreprocessSpec(size=200, crop=224)),  # crop larger than the resize: padded
    ],
)
def test_only_the_cropped_part_is_resampled_with_the_same_filter(
    width: int, height: int, spec: PreprocessSpec
) -> None:
    """The crop equals resizing the whole image and cropping it afterwards."""
    data = png_rgb(width, height, seed=width + height)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    scale = spec.size / min(width, height)
    new_w, new_h = (
        (spec.size, int(height * scale)) if width <= height else (int(width * scale), spec.size)
    )
    whole = np.asarray(image.resize((new_w, new_h), Image.Resampling.BICUBIC))
    if (new_w, new_h) == (width, height):
        whole = np.asarray(image)
    padded = np.zeros((max(new_h, spec.crop), max(new_w, spec.crop), 3), dtype=np.uint8)
    top, left = (padded.shape[0] - new_h) // 2, (padded.shape[1] - new_w) // 2
    padded[top : top + new_h, left : left + new_w] = whole
    top, left = (padded.shape[0] - spec.crop) // 2, (padded.shape[1] - spec.crop) // 2
    expected = padded[top : top + spec.crop, left : left + spec.crop]
    ours = preprocess(data, spec, LIMITS)
    assert ours.shape == expected.shape
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 2


def test_the_thumbnail_shows_the_whole_image_at_160_pixels() -> None:
    data = jpeg_bytes(1166, 1750, seed=3)
    pixels, uri = preprocess_with_thumbnail(data, SPEC, LIMITS)
    assert np.array_equal(pixels, preprocess(data, SPEC, LIMITS))
    prefix = "data:image/jpeg;base64,"
    assert uri.startswith(prefix)
    thumbnail = Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :])))
    assert thumbnail.format == "JPEG"
    assert thumbnail.size == (107, 160)  # the whole 1166x1750 frame, not the crop


def test_a_small_jpeg_or_png_is_its_own_thumbnail_byte_for_byte() -> None:
    for fmt, mime in (("JPEG", "image/jpeg"), ("PNG", "image/png")):
        buffer = io.BytesIO()
        Image.fromarray(np.full((96, 120, 3), 90, dtype=np.uint8)).save(buffer, format=fmt)
        data = buffer.getvalue()
        pixels, uri = preprocess_with_thumbnail(data, SPEC, LIMITS)
        assert np.array_equal(pixels, preprocess(data, SPEC, LIMITS))
        assert uri == f"data:{mime};base64," + base64.b64encode(data).decode()


def test_a_small_image_of_another_format_or_over_the_side_is_re_encoded() -> None:
    gif = io.BytesIO()
    Image.fromarray(np.full((96, 96, 3), 90, dtype=np.uint8)).save(gif, format="GIF")
    heavy = io.BytesIO()  # fits the side, but weighs more than a thumbnail should
    noise = np.random.default_rng(5).integers(0, 255, size=(150, 150, 3), dtype=np.uint8)
    Image.fromarray(noise).save(heavy, format="JPEG", quality=95)
    assert len(heavy.getvalue()) > OWN_THUMBNAIL_BYTES
    for data in (gif.getvalue(), heavy.getvalue(), jpeg_bytes(200, 150, seed=4)):
        _, uri = preprocess_with_thumbnail(data, SPEC, LIMITS)
        prefix = "data:image/jpeg;base64,"
        assert uri.startswith(prefix)
        assert base64.b64decode(uri[len(prefix) :]) != data
        assert max(Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :]))).size) <= 160


def test_a_small_image_a_browser_would_show_otherwise_is_re_encoded() -> None:
    """What the page shows must be what was embedded: an animated PNG plays frames the
    model never saw, and an EXIF orientation is applied by browsers, not by the model."""
    animated = io.BytesIO()
    red, blue = Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))
    red.save(animated, format="PNG", save_all=True, append_images=[blue], default_image=True)
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90 degrees
    Image.new("RGB", (120, 40), (10, 200, 30)).save(rotated, format="JPEG", exif=exif.tobytes())
    for data in (animated.getvalue(), rotated.getvalue()):
        assert len(data) <= OWN_THUMBNAIL_BYTES
        _, uri = preprocess_with_thumbnail(data, SPEC, LIMITS)
        assert uri.startswith("data:image/jpeg;base64,")
        assert base64.b64decode(uri.removeprefix("data:image/jpeg;base64,")) != data


def test_a_small_png_in_a_mode_the_model_saw_converted_is_re_encoded() -> None:
    """The model sees the image converted to RGB: an animated PNG of RGBA or palette
    frames still plays frames it never saw, and transparent pixels show the page behind
    them where the model saw their colour, so neither is its own thumbnail."""
    animated = io.BytesIO()
    red = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    blue = Image.new("RGBA", (64, 64), (0, 0, 255, 255))
    red.save(animated, format="PNG", save_all=True, append_images=[blue], default_image=True)
    palette = io.BytesIO()
    red.convert("RGB").convert("P").save(
        palette, format="PNG", save_all=True, append_images=[blue.convert("RGB").convert("P")]
    )
    transparent = io.BytesIO()
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(transparent, format="PNG")
    for data in (animated.getvalue(), palette.getvalue(), transparent.getvalue()):
        assert len(data) <= OWN_THUMBNAIL_BYTES
        _, uri = preprocess_with_thumbnail(data, SPEC, LIMITS)
        assert uri.startswith("data:image/jpeg;base64,")


def test_non_jpeg_formats_and_modes_are_converted() -> None:
    image = Image.new("RGBA", (500, 300), (10, 200, 30, 128))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    pixels = preprocess(buffer.getvalue(), SPEC, LIMITS)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8


def png_rgb(width: int, height: int, seed: int) -> bytes:
    """A lossless image, so that the comparison sees resampling only."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (CRC fixed up)."""
    import struct
    import zlib

    data = bytearray(png(1, 1))
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), fields (13), crc (4)
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 21]))
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "limits", "reason"),
    [
        (b"", LIMITS, Reason.NOT_AN_IMAGE),
        (b"<html>hello</html>", LIMITS, Reason.NOT_AN_IMAGE),
        (jpeg_bytes(seed=1)[:2000], LIMITS, Reason.CORRUPT_IMAGE),
        (jpeg_bytes(seed=1), ImageLimits(max_bytes=1000), Reason.IMAGE_TOO_LARGE),
        # A decompression bomb: a few bytes of PNG that claim 400 M pixels.
        (bomb(20000, 20000), LIMITS, Reason.TOO_MANY_PIXELS),
        (png(3000, 3000), ImageLimits(max_pixels=4_000_000), Reason.TOO_MANY_PIXELS),
    ],
)
def test_bad_images_are_refused_with_a_reason(
    data: bytes, limits: ImageLimits, reason: Reason
) -> None:
    with pytest.raises(BadInput) as caught:
        preprocess(data, SPEC, limits)
    assert caught.value.reason is reason


def test_a_bomb_is_refused_from_its_header_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import resource

    from PIL import ImageFile

    decoded: list[object] = []
    load = ImageFile.ImageFile.load

    def spied_load(image: ImageFile.ImageFile) -> object:
        decoded.append(image)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spied_load)
    data = bomb(60000, 60000)  # 3.6 G pixels claimed by a 70-byte file
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BadInput) as caught:
        preprocess(data, SPEC, LIMITS)
    assert caught.value.reason is Reason.TOO_MANY_PIXELS
    assert "60000x60000" in caught.value.message
    assert decoded == []  # not a pixel was decoded
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_importing_the_module_leaves_pillows_own_pixel_limit_in_force() -> None:
    import subprocess
    import sys

    script = (
        "from PIL import Image; before = Image.MAX_IMAGE_PIXELS; import catalens.images; "
        "assert before == Image.MAX_IMAGE_PIXELS is not None, Image.MAX_IMAGE_PIXELS"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_the_callers_pixel_limit_applies_even_above_pillows_and_pillows_is_restored() -> None:
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    before = Image.MAX_IMAGE_PIXELS
    above_pillow = bomb(12000, 12000)  # 144 M pixels: Pillow alone would warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_checked(above_pillow, ImageLimits(max_pixels=200_000_000)).size == (
            12000,
            12000,
        )
    assert before == Image.MAX_IMAGE_PIXELS

    def refused(_: int) -> Reason:
        try:
            open_checked(above_pillow, LIMITS)
        except BadInput as exc:
            return exc.reason
        raise AssertionError("not refused")

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(refused, range(200))) == {Reason.TOO_MANY_PIXELS}
    assert before == Image.MAX_IMAGE_PIXELS


def _frames(kind: str, count: int, side: int) -> bytes:
    rng = np.random.default_rng(3)
    frames = [
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)) for _ in range(count)
    ]
    out = io.BytesIO()
    if kind == "GIF":
        frames = [frame.convert("P") for frame in frames]
    frames[0].save(out, format=kind, save_all=True, append_images=frames[1:])
    return out.getvalue()


@pytest.mark.parametrize("kind", ["GIF", "TIFF", "PNG"])
def test_a_truncated_multi_frame_image_gets_the_same_answer_with_or_without_a_thumbnail(
    kind: str,
) -> None:
    """Inline images (which get a thumbnail) and fetched ones (which do not) are judged
    alike: the same crop, or a BadInput, at every cut of a truncated animation; never
    another exception, which would stop the embedder instead of dead-lettering the record."""
    data = _frames(kind, 3, 120)
    outcomes = set()
    for cut in range(8, len(data), max(1, len(data) // 97)):
        truncated = data[:cut]
        try:
            expected: np.ndarray | None = preprocess(truncated, SPEC, LIMITS)
        except BadInput:
            expected = None
        try:
            pixels, _thumbnail = preprocess_with_thumbnail(truncated, SPEC, LIMITS)
        except BadInput:
            assert expected is None, f"cut at {cut}: BadInput only with a thumbnail"
            outcomes.add("bad input")
            continue
        assert expected is not None, f"cut at {cut}: decoded only with a thumbnail"
        np.testing.assert_array_equal(pixels, expected)
        outcomes.add("decoded")
    assert "bad input" in outcomes  # the cuts did reach the broken cases
