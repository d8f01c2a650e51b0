"""Reading catalogs into events (pure: files in, events out, no Kafka).

Two inputs:

* JSON Lines, one input event (DESIGN.md) per line, taken as is;
* a CSV shaped like the H&M ``articles.csv`` plus an image folder. ``article_id`` is the
  product id; its images are listed in an ``image_paths`` column (``|``-separated, under
  the image folder or absolute), or found in the folder: ``<article_id>.jpg`` in
  ``<images>/<first 3 digits>/`` (the H&M layout) or ``<images>/`` first, then every
  other ``<article_id>*.jpg`` (``.jpeg``, ``.png``, ``.webp``) there, in name order, each
  with the rest of its name as its id (``0108775015-back.jpg``: ``back``); the product's
  name and description are taken from ``prod_name`` and ``detail_desc`` (or ``name``,
  ``description``), category and colour from ``product_type_name``, ``colour_group_name``
  (or ``category``, ``colour``), and every other column with a value is kept as an
  attribute. A row with a name, a description or several images becomes a schema version 2
  event (DESIGN.md), any other a version 1 event, which every embedder reads.
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
from catalens.schemas.event import MAX_IMAGE_ID, MAX_IMAGES, EventImage

_RENAMES = {
    "product_type_name": "category",
    "colour_group_name": "colour",
}
_ID_COLUMNS = ("article_id", "product_id", "id")
_NAME_COLUMNS = ("prod_name", "name")
_DESCRIPTION_COLUMNS = ("detail_desc", "description")
_IMAGES_COLUMN = "image_paths"
_NUMERIC = ("price",)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


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
    """The product's main image in the folder, if any."""
    found = images_for(images, product_id)
    return found[0] if found else None


def images_for(images: Path, product_id: str) -> list[Path]:
    """Every image of the product in the folder: ``<product_id>.jpg`` (or ``.png``) in the
    H&M layout or flat first, then the folder's other ``<product_id>*`` images by name."""
    folders = [images / product_id[:3], images]
    main = next(
        (
            folder / f"{product_id}{suffix}"
            for folder in folders
            for suffix in (".jpg", ".png")
            if (folder / f"{product_id}{suffix}").is_file()
        ),
        None,
    )
    if main is None:
        return []
    more = sorted(
        path
        for path in main.parent.glob(f"{_glob_escape(product_id)}*")
        if path != main and path.suffix.lower() in _IMAGE_SUFFIXES and path.is_file()
    )
    return [main, *more][:MAX_IMAGES]


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _image_ids(product_id: str, paths: list[Path]) -> list[str]:
    """Each image's id: the rest of its file name after the product id (``-back``:
    ``back``), the main image's ``0``; its position where that is empty, too long or
    taken."""
    ids: list[str] = []
    for position, path in enumerate(paths):
        rest = path.stem[len(product_id) :] if path.stem.startswith(product_id) else path.stem
        candidate = "0" if position == 0 else rest.lstrip("-_. ")
        if not candidate or len(candidate) > MAX_IMAGE_ID or candidate in ids:
            candidate = str(position)
        while candidate in ids:
            candidate += "_"
        ids.append(candidate)
    return ids


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
            listed = (row.get(_IMAGES_COLUMN) or "").strip()
            if listed:
                paths = [_under(images, p.strip()) for p in listed.split("|") if p.strip()]
                missing = [str(p) for p in paths if not p.is_file()]
                if missing:
                    yield CatalogError(number, f"no image file {missing[0]}")
                    continue
            else:
                paths = images_for(images, product_id)
            if not paths:
                yield CatalogError(number, f"no image for {product_id} under {images}")
                continue
            refs = [_ref(p, images, image_base_url) for p in paths]
            name = _first(row, _NAME_COLUMNS)
            description = _first(row, _DESCRIPTION_COLUMNS)
            several = len(refs) > 1 or name is not None or description is not None
            ids = _image_ids(product_id, paths)
            try:
                yield ProductImageEvent(
                    schema_version=2 if several else 1,
                    event_id=str(uuid.uuid4()),
                    op=Op.UPSERT,
                    product_id=product_id,
                    version=stamp,
                    occurred_at=occurred,
                    image=None if several else refs[0],
                    images=[
                        EventImage(id=i, **ref.model_dump(exclude_none=True))
                        for i, ref in zip(ids, refs, strict=True)
                    ]
                    if several
                    else None,
                    name=name,
                    description=description,
                    attributes=_attributes(row),
                )
            except ValidationError as exc:
                yield CatalogError(number, str(exc).splitlines()[0])


def _under(images: Path, listed: str) -> Path:
    path = Path(listed)
    return path if path.is_absolute() else images / path


def _ref(image: Path, images: Path, image_base_url: str | None) -> ImageRef:
    if image_base_url and image.is_relative_to(images):
        return ImageRef(url=f"{image_base_url.rstrip('/')}/{image.relative_to(images).as_posix()}")
    return ImageRef(path=str(image.resolve()))


def _first(row: dict[str, str], columns: tuple[str, ...]) -> str | None:
    return next((row[c].strip() for c in columns if (row.get(c) or "").strip()), None)


def _attributes(row: dict[str, str]) -> dict[str, str | float]:
    text = {*_ID_COLUMNS, *_NAME_COLUMNS, *_DESCRIPTION_COLUMNS, _IMAGES_COLUMN}
    attributes: dict[str, str | float] = {}
    for column, raw in row.items():
        if column is None or column in text or raw is None or not raw.strip():
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
