"""A small generated catalog for ``catalens up``: an H&M-shaped ``articles.csv`` with
product names, descriptions and brands, and one to four pictures per product (the garment
from the front; from the back; a close-up of its fabric; laid flat on a tinted board), as
a shop shows them; and relevance judgments for it (``judgments.jsonl``, for
``catalens eval``): queries a shopper would type — a colour and a garment, a pattern, a
brand, a fabric, a product's name — each with the products that answer it, read from what
the catalog was generated from."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

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
BRANDS = ["Northwind", "Fjordline", "Atelier Mira", "Kestrel & Co", "Solvang"]
FABRICS = {
    "Vest top": ["soft cotton jersey", "ribbed modal jersey"],
    "Trousers": ["stretch twill", "washed denim", "linen blend"],
    "Dress": ["crinkled viscose", "cotton poplin", "lyocell satin"],
    "Sweater": ["merino wool knit", "chunky cable knit", "recycled cashmere blend"],
    "Skirt": ["pleated chiffon", "cotton corduroy", "washed denim"],
}
DETAILS = {
    "Vest top": "narrow adjustable shoulder straps",
    "Trousers": "a high waist, side pockets and straight legs",
    "Dress": "a V-neck, short sleeves and a flared skirt",
    "Sweater": "dropped shoulders and ribbing at the cuffs and hem",
    "Skirt": "an elasticated waist and a midi length",
}
# The pictures a product may have, in the order a shop shows them.
VIEWS = ("front", "back", "detail", "flat")


@dataclass(frozen=True)
class SampleProduct:
    article_id: str
    name: str
    garment: str
    colour: str
    pattern: str
    brand: str
    fabric: str
    price: float
    description: str
    views: tuple[str, ...]


def sample_products(count: int = 40, seed: int = 7) -> list[SampleProduct]:
    """The sample catalog's products, the same for the same ``count`` and ``seed``."""
    rng = random.Random(seed)
    products = []
    for index in range(count):
        colour = rng.choice(list(COLOURS))
        garment = rng.choice(list(GARMENTS))
        pattern = rng.choice(PATTERNS)
        brand = BRANDS[index % len(BRANDS)]
        fabric = rng.choice(FABRICS[garment])
        name = (
            f"{'' if pattern == 'plain' else pattern.title() + ' '}{colour.lower()} "
            f"{garment.lower()}".strip().capitalize()
        )
        description = (
            f"{garment} in {fabric} with {DETAILS[garment]}. "
            f"{'Plain' if pattern == 'plain' else pattern.title()} {colour.lower()}, "
            f"by {brand}."
        )
        products.append(
            SampleProduct(
                article_id=f"0{100000000 + index * 7919:09d}",
                name=name,
                garment=garment,
                colour=colour,
                pattern=pattern,
                brand=brand,
                fabric=fabric,
                price=rng.choice([9.99, 12.99, 19.99, 24.99, 39.99, 59.99]),
                description=description,
                views=VIEWS[: 1 + index % len(VIEWS)],
            )
        )
    return products


def write_sample_catalog(directory: Path, count: int = 40, seed: int = 7) -> Path:
    """Write ``count`` products to ``directory``; returns the path of ``articles.csv``.
    Every product has a front picture, ``<article_id>.jpg``; some also have back, detail
    and flat ones, ``<article_id>-back.jpg`` and so on (1 to 4 pictures). The judgments
    for them go to ``judgments.jsonl`` beside it."""
    products = sample_products(count, seed)
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
                "brand",
                "price",
                "detail_desc",
            ]
        )
        for product in products:
            folder = images / product.article_id[:3]
            for view in product.views:
                suffix = "" if view == "front" else f"-{view}"
                _draw(
                    folder / f"{product.article_id}{suffix}.jpg",
                    view,
                    COLOURS[product.colour],
                    product.garment,
                    product.pattern,
                )
            writer.writerow(
                [
                    product.article_id,
                    product.name,
                    product.garment,
                    product.colour,
                    product.pattern,
                    product.brand,
                    f"{product.price:.2f}",
                    product.description,
                ]
            )
    (directory / "judgments.jsonl").write_text(
        "".join(json.dumps(j) + "\n" for j in sample_judgments(products)), encoding="utf-8"
    )
    return csv_path


def sample_judgments(products: list[SampleProduct]) -> list[dict[str, object]]:
    """Queries over ``products`` with every product that answers each (those with at
    least one): the facts the catalog was generated from decide, not any search."""
    queries: dict[str, list[str]] = {}

    def judge(query: str, relevant: list[SampleProduct]) -> None:
        if relevant:
            queries.setdefault(query, [p.article_id for p in relevant])

    for colour in ("Black", "Red", "Blue", "Yellow"):
        for garment in ("Dress", "Sweater", "Trousers"):
            judge(
                f"{colour.lower()} {garment.lower()}",
                [p for p in products if (p.colour, p.garment) == (colour, garment)],
            )
    for pattern in ("striped", "dotted"):
        judge(f"{pattern} clothes", [p for p in products if p.pattern == pattern])
    for brand in BRANDS:
        judge(brand, [p for p in products if p.brand == brand])
    for fabric in ("merino wool", "washed denim", "corduroy", "chiffon", "linen"):
        judge(fabric, [p for p in products if fabric in p.fabric])
    for garment in GARMENTS:
        judge(garment.lower(), [p for p in products if p.garment == garment])
    for product in products[:: max(1, len(products) // 6)]:
        judge(product.name.lower(), [p for p in products if p.name == product.name])
    return [{"query": query, "relevant": relevant} for query, relevant in queries.items()]


def _draw(path: Path, view: str, colour: tuple[int, int, int], garment: str, pattern: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    background = (246, 244, 240) if view != "flat" else (205, 214, 222)
    shade = colour if view != "back" else tuple(int(c * 0.8) for c in colour)
    image = _garment(GARMENTS[garment], shade, pattern, background)
    if view == "back":
        image = ImageOps.mirror(image)
    elif view == "detail":  # the fabric up close: the pattern fills the frame
        image = image.crop((140, 260, 260, 440)).resize((400, 600), Image.Resampling.NEAREST)
    elif view == "flat":
        image = image.rotate(8, fillcolor=background)
    image.save(path, quality=90)


def _garment(
    outline: list[tuple[int, int]],
    colour: tuple[int, ...],
    pattern: str,
    background: tuple[int, int, int],
) -> Image.Image:
    fill = (colour[0], colour[1], colour[2])
    image = Image.new("RGB", (400, 600), background)
    draw = ImageDraw.Draw(image)
    shape = [(x * 2, y * 2 + 60) for x, y in outline]
    draw.polygon(shape, fill=fill)
    if pattern != "plain":
        contrast = (255 - fill[0], 255 - fill[1], 255 - fill[2])
        for y in range(80, 540, 24):
            if pattern == "striped":
                draw.line([(0, y), (400, y)], fill=contrast, width=6)
            else:
                for x in range(12, 400, 24):
                    draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=contrast)
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).polygon(shape, fill=255)
        base = Image.new("RGB", (400, 600), background)
        ImageDraw.Draw(base).polygon(shape, fill=fill)
        image = Image.composite(image, base, mask)
    return image
