from __future__ import annotations

from catalens.embedder.offsets import OffsetTracker

TP = ("t", 0)


def test_the_committable_offset_never_passes_an_unfinished_record() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.start(TP, offset)
    tracker.finish(TP, 12)
    tracker.finish(TP, 11)
    assert tracker.take_committable() == {}
    tracker.finish(TP, 10)
    assert tracker.take_committable() == {TP: 13}
    assert tracker.in_flight() == 0


def test_a_finished_prefix_is_committable_while_later_records_run() -> None:
    tracker = OffsetTracker()
    for offset in (0, 1, 2):
        tracker.start(TP, offset)
    tracker.finish(TP, 0)
    assert tracker.take_committable() == {TP: 1}
    assert tracker.take_committable() == {}
    assert tracker.in_flight() == 2


def test_revoked_partitions_are_forgotten_and_late_finishes_ignored() -> None:
    tracker = OffsetTracker()
    tracker.start(TP, 5)
    tracker.start(("t", 1), 7)
    tracker.forget([TP])
    tracker.finish(TP, 5)
    assert tracker.in_flight() == 1
    assert tracker.take_committable() == {}
