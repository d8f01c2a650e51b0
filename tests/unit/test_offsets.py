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


def test_two_copies_of_a_record_across_a_revocation_finish_it_once() -> None:
    """A partition revoked and assigned back while a record of it still runs: the new copy
    is started, the old copy ends (its output is the same), then the new one ends. The
    record counts once in flight and once done, and the offset is committed once."""
    tracker = OffsetTracker()
    tracker.start(TP, 5)  # the old copy
    tracker.forget([TP])
    tracker.start(TP, 5)  # assigned back: the new copy
    tracker.start(TP, 6)
    tracker.finish(TP, 5)  # the old copy ends
    assert tracker.take_committable() == {TP: 6}
    tracker.finish(TP, 5)  # the new copy ends
    assert tracker.in_flight() == 1  # offset 6 only
    tracker.finish(TP, 6)
    assert tracker.in_flight() == 0
    assert tracker.take_committable() == {TP: 7}


def test_an_offset_not_started_yet_is_not_finished_by_an_older_copy() -> None:
    tracker = OffsetTracker()
    tracker.forget([TP])
    tracker.start(TP, 3)  # assigned back from the committed offset 3
    tracker.finish(TP, 4)  # the old copy of 4, started before the revocation, ends
    tracker.start(TP, 4)
    tracker.finish(TP, 3)
    assert tracker.take_committable() == {TP: 4}  # not past 4: its new copy runs
    assert tracker.in_flight() == 1
