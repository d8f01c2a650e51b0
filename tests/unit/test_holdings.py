"""The embedder's byte accounting on its own (catalens.embedder.holdings)."""

from __future__ import annotations

from catalens.embedder.holdings import Holdings, weight
from catalens.kafka.records import Record

TP = ("in", 0)


def record(value: bytes | None, key: bytes = b"k", offset: int = 0) -> Record:
    return Record("in", 0, offset, key, value, [("h", b"12")], 0)


def test_a_record_weighs_its_bytes_and_its_value_once_more_for_the_parsed_event() -> None:
    assert record(b"x" * 100).nbytes == 1 + 100 + 3
    assert weight(record(b"x" * 100)) == 1 + 100 + 3 + 100
    assert weight(record(None)) == 1 + 3  # a tombstone parses into nothing


def test_records_fit_in_the_budget_less_the_reserve_for_decoded_images() -> None:
    holdings = Holdings(budget=1000, pixel_reserve=200)
    assert holdings.record_share == 800
    holdings.take(TP, 0, 500)
    assert holdings.fits(300) and not holdings.fits(301)
    assert holdings.room() == 300


def test_a_record_larger_than_the_share_fits_only_when_nothing_else_is_held() -> None:
    holdings = Holdings(budget=1000, pixel_reserve=200)
    assert holdings.fits(5000)
    holdings.take(TP, 0, 5000)
    assert not holdings.fits(1) and holdings.room() < 0
    holdings.release(TP, 0)
    assert holdings.records == 0 and holdings.fits(5000)


def test_a_reserve_as_large_as_the_budget_lets_records_in_one_at_a_time() -> None:
    holdings = Holdings(budget=100, pixel_reserve=500)
    assert holdings.record_share == 0
    assert holdings.fits(10)
    holdings.take(TP, 0, 10)
    assert not holdings.fits(1)


def test_held_counts_records_and_decoded_images_and_the_peak_keeps_the_most() -> None:
    holdings = Holdings(budget=1000, pixel_reserve=200)
    holdings.take(TP, 0, 300)
    holdings.take_pixels(150)
    holdings.take(("in", 1), 7, 100)
    assert holdings.held == 550
    holdings.release_pixels(150)
    holdings.release(TP, 0)
    assert holdings.held == 100 and holdings.peak == 550


def test_revoked_partitions_release_their_records_and_late_finishes_are_ignored() -> None:
    holdings = Holdings(budget=1000, pixel_reserve=0)
    holdings.take(TP, 0, 100)
    holdings.take(TP, 1, 200)
    holdings.take(("in", 1), 0, 50)
    holdings.forget([TP])
    assert holdings.records == 50
    holdings.release(TP, 1)  # finished after its partition was revoked
    assert holdings.records == 50
