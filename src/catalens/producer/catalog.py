"""Reading catalogs into events (pure: files in, events out, no Kafka).

Two inputs:

* JSON Lines, one input event (DESIGN.md) per line, taken as is;
* a CSV shaped like the H&M ``articles.csv`` plus an image folder. ``article_id`` is the
  product id; the image is ``<images>/<first 3 digits>/<article_id>.jpg`` (the H&M
  layout) or ``<images>/<article_id>.jpg``; name, category and colour are taken from
  ``prod_name``, ``product_type_name``, ``colour_group_name`` (or ``name``, ``category``,
  ``colour``), and every other column with a value is kept as an attribute.
"""

from __future__ import annotations

import contextlib
import csv
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from catalens.schemas import ImageRef, Op, ProductImageEvent

_RENAMES = {
    "prod_name": "name",
    "product_type_name": "category",
    "colour_group_name": "colour",
}
_ID_COLUMNS = ("article_id", "product_id", "id")
_NUMERIC = ("price",)


@dataclass(frozen=True)
class CatalogError:
    line: int
    message: str


def read_jsonl(path: Path) -> Iterator[ProductImageEvent | CatalogError]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield ProductImageEvent.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as exc:
                yield CatalogError(number, str(exc).splitlines()[0])


def image_for(images: Path, product_id: str) -> Path | None:
    for candidate in (
        images / product_id[:3] / f"{product_id}.jpg",
        images / f"{product_id}.jpg",
        images / f"{product_id}.png",
    ):
        if candidate.is_file():
            return candidate
    return None


def read_csv(
    path: Path,
    images: Path,
    *,
    version: int | None = None,
    image_base_url: str | None = None,
) -> Iterator[ProductImageEvent | CatalogError]:
    """Upsert events for every row that has an image. ``version`` defaults to now in
    milliseconds, so re-publishing a catalog supersedes the previous run."""
    stamp = version if version is not None else int(datetime.now(UTC).timestamp() * 1000)
    occurred = datetime.now(UTC)
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            product_id = next((row[c].strip() for c in _ID_COLUMNS if row.get(c)), "")
            if not product_id:
                yield CatalogError(number, "row has no article_id/product_id")
                continue
            image = image_for(images, product_id)
            if image is None:
                yield CatalogError(number, f"no image for {product_id} under {images}")
                continue
            ref = (
                ImageRef(url=f"{image_base_url.rstrip('/')}/{image.relative_to(images)}")
                if image_base_url
                else ImageRef(path=str(image.resolve()))
            )
            try:
                yield ProductImageEvent(
                    event_id=str(uuid.uuid4()),
                    op=Op.UPSERT,
                    product_id=product_id,
                    version=stamp,
                    occurred_at=occurred,
                    image=ref,
                    attributes=_attributes(row),
                )
            except ValidationError as exc:
                yield CatalogError(number, str(exc).splitlines()[0])


def _attributes(row: dict[str, str]) -> dict[str, str | float]:
    attributes: dict[str, str | float] = {}
    for column, raw in row.items():
        if column is None or column in _ID_COLUMNS or raw is None or not raw.strip():
            continue
        name = _RENAMES.get(column, column)
        if name in attributes:
            continue
        value: str | float = raw.strip()
        if name in _NUMERIC:
            with contextlib.suppress(ValueError):
                value = float(raw)
        attributes[name] = value
    return dict(list(attributes.items())[:64])
