"""Calibration and check images for quantisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from catalens.encoder import calibration
from catalens.images import PreprocessSpec
from tests.conftest import jpeg_bytes


def test_generated_images_are_deterministic_crops_in_several_styles() -> None:
    spec = PreprocessSpec()
    first = calibration.generated(8, seed=1, spec=spec)
    again = calibration.generated(8, seed=1, spec=spec)
    other = calibration.generated(8, seed=2, spec=spec)
    assert all(c.shape == (224, 224, 3) and c.dtype == np.uint8 for c in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    # Styles differ: brightness and detail vary widely across one set.
    means = [float(c.mean()) for c in first]
    assert max(means) - min(means) > 60


def test_a_product_shot_is_a_product_on_a_light_background_of_the_size_asked() -> None:
    shot = calibration.product_shot(np.random.default_rng(4), size=(300, 450))
    again = calibration.product_shot(np.random.default_rng(4), size=(300, 450))
    pixels = np.asarray(shot, dtype=np.float32)
    assert shot.size == (300, 450) and shot.mode == "RGB"
    assert np.array_equal(pixels, np.asarray(again, dtype=np.float32))
    border = np.concatenate([pixels[:10].reshape(-1, 3), pixels[-10:].reshape(-1, 3)])
    assert border.mean() > 200  # the background
    centre = pixels[200:250, 130:170].reshape(-1, 3)
    assert np.abs(centre.mean(axis=0) - border.mean(axis=0)).max() > 5  # the product


def test_the_operators_folder_is_read_in_order_and_bad_files_are_skipped(tmp_path: Path) -> None:
    for index in range(3):
        (tmp_path / f"{index}.jpg").write_bytes(jpeg_bytes(seed=index))
    (tmp_path / "1b.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    crops = calibration.from_folder(tmp_path, PreprocessSpec(), limit=10)
    assert len(crops) == 3
    assert len(calibration.from_folder(tmp_path, PreprocessSpec(), limit=2)) == 2


def test_the_fingerprint_follows_the_operators_files(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(seed=0))
    before = calibration.fingerprint(tmp_path)
    assert before == calibration.fingerprint(tmp_path)
    (tmp_path / "b.jpg").write_bytes(jpeg_bytes(seed=1))
    assert calibration.fingerprint(tmp_path) != before
    assert calibration.fingerprint(None) != before
