"""Catalog files into events (producer/catalog.py), and publishing them with confirmation
(producer/publisher.py) against the in-memory broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from catalens.kafka.memory import MemoryBroker, MemoryPublisher
from catalens.producer.catalog import CatalogError, read_csv, read_jsonl
from catalens.producer.publisher import EventPublisher
from catalens.schemas import Op, ProductImageEvent


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def events_of(rows: list[ProductImageEvent | CatalogError]) -> list[ProductImageEvent]:
    return [row for row in rows if isinstance(row, ProductImageEvent)]


def event_json(product_id: str, version: int = 1, **extra: object) -> str:
    body = {
        "schema_version": 1,
        "event_id": f"e-{product_id}",
        "op": "upsert",
        "product_id": product_id,
        "version": version,
        "occurred_at": "2026-11-24T10:00:00Z",
        "image": {"url": "https://cdn.example.com/a.jpg"},
    } | extra
    return json.dumps(body)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for relative in ("010/0108775015.jpg", "flat.jpg", "shot.png"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"not decoded here")
    return root


def test_jsonl_lines_become_events_and_bad_lines_errors_with_their_line_number(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "events.jsonl",
        "\n".join(
            [
                event_json("a", 3),
                "",  # blank lines are skipped, but counted
                "{not json",
                event_json("b", op="upsert", image=None),  # an upsert needs an image
                event_json("c", op="delete", image=None),
            ]
        )
        + "\n",
    )
    rows = list(read_jsonl(path))
    assert [(r.product_id, r.version) for r in events_of(rows)] == [("a", 3), ("c", 1)]
    assert events_of(rows)[1].op is Op.DELETE
    errors = [r for r in rows if isinstance(r, CatalogError)]
    assert [e.line for e in errors] == [3, 4]
    assert all(e.message and "\n" not in e.message for e in errors)


def test_csv_rows_find_their_image_in_the_hm_layout_or_flat_and_are_upserts(
    tmp_path: Path, images: Path
) -> None:
    csv = write(
        tmp_path / "articles.csv",
        "article_id,prod_name,product_type_name,colour_group_name,price,detail_desc\n"
        "0108775015,Strap top,Vest top,Black,12.99,Jersey top\n"
        "flat,Flat one,Dress,Red,not a number,\n"
        "shot,Png one,Skirt,Blue,5,\n",
    )
    rows = list(read_csv(csv, images, version=7))
    assert not [r for r in rows if isinstance(r, CatalogError)]
    by_id = {e.product_id: e for e in events_of(rows)}
    top = by_id["0108775015"]
    assert top.op is Op.UPSERT and top.version == 7
    # A name or a description makes a version 2 event: the product's text has a place there.
    assert (top.schema_version, top.name, top.description) == (2, "Strap top", "Jersey top")
    (image,) = top.product_images()
    assert (image.id, image.ref.path) == ("0", str(images / "010" / "0108775015.jpg"))
    assert top.attributes == {"category": "Vest top", "colour": "Black", "price": 12.99}
    # A price that is not a number stays text; empty columns are left out.
    assert by_id["flat"].attributes["price"] == "not a number"
    assert by_id["flat"].description is None
    (shot,) = by_id["shot"].product_images()
    assert shot.ref.path is not None and shot.ref.path.endswith("shot.png")
    assert len({e.event_id for e in by_id.values()}) == 3


def test_csv_rows_without_an_id_or_an_image_are_errors_with_their_line_number(
    tmp_path: Path, images: Path
) -> None:
    csv = write(
        tmp_path / "articles.csv",
        "article_id,prod_name\n,No id\nmissing,No image\nflat,Fine\n",
    )
    rows = list(read_csv(csv, images, version=1))
    errors = [r for r in rows if isinstance(r, CatalogError)]
    assert [(e.line, "article_id" in e.message) for e in errors] == [(2, True), (3, False)]
    assert "no image for missing" in errors[1].message
    assert [e.product_id for e in events_of(rows)] == ["flat"]


def test_csv_versions_default_to_now_so_a_republished_catalog_supersedes_the_last(
    tmp_path: Path, images: Path
) -> None:
    csv = write(tmp_path / "articles.csv", "product_id,name\nflat,Flat\n")
    before_ms = int(time.time() * 1000)
    first = events_of(list(read_csv(csv, images)))[0].version
    time.sleep(0.002)
    second = events_of(list(read_csv(csv, images)))[0].version
    assert before_ms <= first < second


def test_csv_images_become_urls_under_a_base_url_when_one_is_given(
    tmp_path: Path, images: Path
) -> None:
    csv = write(tmp_path / "articles.csv", "id,name\n0108775015,Top\nflat,Flat\n")
    rows = events_of(list(read_csv(csv, images, version=1, image_base_url="https://cdn.x/img/")))
    assert [i.ref.url for r in rows for i in r.product_images()] == [
        "https://cdn.x/img/010/0108775015.jpg",
        "https://cdn.x/img/flat.jpg",
    ]


def test_csv_attributes_keep_the_first_of_two_columns_of_one_name_and_at_most_64(
    tmp_path: Path, images: Path
) -> None:
    extra = [f"c{i:02d}" for i in range(70)]
    header = "article_id,prod_name,name,colour_group_name,colour," + ",".join(extra)
    row = "flat,From prod_name,From name,Red,Blue," + ",".join("v" for _ in extra)
    csv = write(tmp_path / "articles.csv", f"{header}\n{row}\n")
    (event,) = events_of(list(read_csv(csv, images, version=1)))
    assert event.name == "From prod_name"
    assert event.attributes["colour"] == "Red"
    assert len(event.attributes) == 64


def test_publishing_keys_events_by_product_id_and_counts_what_the_broker_acknowledged(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "e.jsonl", "\n".join(event_json(p) for p in ("a", "ABC/1", "é")))
    events = events_of(list(read_jsonl(path)))
    broker = MemoryBroker(partitions=1)
    progress: list[int] = []
    publisher = MemoryPublisher(broker)
    sent, failures = EventPublisher(publisher, "topic").publish_many(events, progress.append)
    assert (sent, failures, sum(progress)) == (3, [], 3)
    records = broker.records("topic")
    assert [r.key for r in records] == [b"a", b"ABC/1", "é".encode()]
    assert [json.loads(r.value or b"")["product_id"] for r in records] == ["a", "ABC/1", "é"]

    # The broker takes the records but acknowledges none.
    silent = MemoryPublisher(MemoryBroker(partitions=1), hold=True)
    sent, failures = EventPublisher(silent, "topic").publish_many(events, timeout_s=0.01)
    assert sent == 0 and [event_id for event_id, _ in failures] == ["*"]


def test_an_event_too_large_for_the_topic_is_its_own_failure_and_the_rest_are_sent(
    tmp_path: Path,
) -> None:
    """Refused as too large (the topic's or the client's limit), one event is reported
    failed by its id, too_large; the events around it are published and counted."""
    path = write(tmp_path / "e.jsonl", "\n".join(event_json(p) for p in ("a", "b", "c")))
    events = events_of(list(read_jsonl(path)))
    big = events[1].model_copy(update={"product_id": "b" * 100})
    limit = max(len(e.to_json()) + len(e.key) for e in (events[0], events[2]))
    assert len(big.to_json()) > limit
    broker = MemoryBroker(partitions=1)
    publisher = MemoryPublisher(broker, max_record_bytes=limit)
    sent, failures = EventPublisher(publisher, "topic").publish_many([events[0], big, events[2]])
    assert sent == 2
    assert [(event_id, error.too_large) for event_id, error in failures] == [(big.event_id, True)]
    assert [r.key for r in broker.records("topic")] == [b"a", b"c"]


def test_a_csv_row_without_text_and_with_one_image_stays_a_version_1_event(
    tmp_path: Path, images: Path
) -> None:
    csv = write(tmp_path / "articles.csv", "article_id,category\nflat,Dress\n")
    (event,) = events_of(list(read_csv(csv, images, version=1)))
    assert event.schema_version == 1 and event.image is not None and event.images is None
    assert json.loads(event.to_json())["image"] == {"path": str((images / "flat.jpg").resolve())}


def test_a_products_other_images_in_the_folder_become_its_images_named_by_their_suffix(
    tmp_path: Path, images: Path
) -> None:
    for name in ("0108775015-back.jpg", "0108775015_2.jpg", "0108775015-detail.png", "other.jpg"):
        (images / "010" / name).write_bytes(b"x")
    (images / "010" / "0108775015-notes.txt").write_bytes(b"not an image")
    csv = write(tmp_path / "articles.csv", "article_id,category\n0108775015,Top\n")
    (event,) = events_of(list(read_csv(csv, images, version=1)))
    assert event.schema_version == 2
    assert [(i.id, Path(i.ref.path or "").name) for i in event.product_images()] == [
        ("0", "0108775015.jpg"),
        ("back", "0108775015-back.jpg"),
        ("detail", "0108775015-detail.png"),
        ("2", "0108775015_2.jpg"),
    ]


def test_an_image_paths_column_lists_the_images_in_order_and_a_missing_one_is_an_error(
    tmp_path: Path, images: Path
) -> None:
    csv = write(
        tmp_path / "articles.csv",
        "article_id,image_paths\n"
        "a,shot.png|flat.jpg\n"
        f"b,{images / 'flat.jpg'}\n"
        "c,flat.jpg|missing.jpg\n",
    )
    rows = list(read_csv(csv, images, version=1))
    by_id = {e.product_id: e for e in events_of(rows)}
    assert [Path(i.ref.path or "").name for i in by_id["a"].product_images()] == [
        "shot.png",
        "flat.jpg",
    ]
    assert [i.id for i in by_id["a"].product_images()] == ["0", "flat"]
    assert by_id["b"].schema_version == 1
    errors = [r for r in rows if isinstance(r, CatalogError)]
    assert [(e.line, "missing.jpg" in e.message) for e in errors] == [(4, True)]
