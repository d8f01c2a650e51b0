"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalens.localstack import free_port, start_broker
from catalens.modelkit import build_random_clip


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny CLIP in the Hugging Face format (no downloads here)."""
    return build_random_clip(tmp_path_factory.mktemp("model") / "tiny-clip", size="tiny")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real broker's bootstrap address: Tansu started for the session, or
    ``CATALENS_TEST_KAFKA_BOOTSTRAP`` to use an existing Kafka instead."""
    if external := os.environ.get("CATALENS_TEST_KAFKA_BOOTSTRAP"):
        yield external
        return
    port = free_port()
    child = start_broker(port, tmp_path_factory.mktemp("broker") / "broker.log")
    yield f"127.0.0.1:{port}"
    child.kill()  # memory only: nothing to flush


def jpeg_bytes(width: int = 320, height: int = 480, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG: smooth gradients plus noise, different for every seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1)
    base = base * rng.uniform(80, 200, size=3) + rng.uniform(0, 50, size=3)
    noisy = base + rng.normal(0, 12, size=base.shape)
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
