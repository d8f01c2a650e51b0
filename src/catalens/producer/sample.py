"""A small generated catalog (images + an H&M-shaped ``articles.csv``) for ``catalens up``."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "Black": (20, 20, 20),
    "White": (240, 240, 235),
    "Red": (200, 30, 40),
    "Blue": (40, 70, 190),
    "Green": (40, 150, 70),
    "Yellow": (235, 205, 40),
    "Pink": (240, 150, 180),
    "Beige": (215, 195, 160),
}
GARMENTS = {
    "Vest top": [(70, 30), (130, 30), (150, 220), (50, 220)],
    "Trousers": [(60, 20), (140, 20), (160, 230), (110, 230), (100, 90), (90, 230), (40, 230)],
    "Dress": [(80, 20), (120, 20), (170, 230), (30, 230)],
    "Sweater": [
        (60, 30),
        (140, 30),
        (190, 110),
        (150, 120),
        (150, 220),
        (50, 220),
        (50, 120),
        (10, 110),
    ],
    "Skirt": [(70, 60), (130, 60), (165, 200), (35, 200)],
}
PATTERNS = ["plain", "striped", "dotted"]


def write_sample_catalog(directory: Path, count: int = 40, seed: int = 7) -> Path:
    """Write ``count`` products to ``directory``; returns the path of ``articles.csv``."""
    rng = random.Random(seed)
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    csv_path = directory / "articles.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "article_id",
                "prod_name",
                "product_type_name",
                "colour_group_name",
                "pattern",
                "price",
            ]
        )
        for index in range(count):
            colour = rng.choice(list(COLOURS))
            garment = rng.choice(list(GARMENTS))
            pattern = rng.choice(PATTERNS)
            article_id = f"0{100000000 + index * 7919:09d}"
            _draw(images / article_id[:3], article_id, COLOURS[colour], GARMENTS[garment], pattern)
            name = (
                f"{'' if pattern == 'plain' else pattern.title() + ' '}{colour.lower()} "
                f"{garment.lower()}".strip().capitalize()
            )
            writer.writerow(
                [
                    article_id,
                    name,
                    garment,
                    colour,
                    pattern,
                    f"{rng.choice([9.99, 12.99, 19.99, 24.99, 39.99, 59.99]):.2f}",
                ]
            )
    return csv_path


def _draw(
    folder: Path,
    article_id: str,
    colour: tuple[int, int, int],
    outline: list[tuple[int, int]],
    pattern: str,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (400, 600), (246, 244, 240))
    draw = ImageDraw.Draw(image)
    shape = [(x * 2, y * 2 + 60) for x, y in outline]
    draw.polygon(shape, fill=colour)
    if pattern != "plain":
        contrast = tuple(255 - c for c in colour)
        for y in range(80, 540, 24):
            if pattern == "striped":
                draw.line([(0, y), (400, y)], fill=contrast, width=6)
            else:
                for x in range(12, 400, 24):
                    draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=contrast)
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).polygon(shape, fill=255)
        base = Image.new("RGB", (400, 600), (246, 244, 240))
        ImageDraw.Draw(base).polygon(shape, fill=colour)
        image = Image.composite(image, base, mask)
    image.save(folder / f"{article_id}.jpg", quality=90)
