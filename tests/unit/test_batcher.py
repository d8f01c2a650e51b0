from __future__ import annotations

import threading
import time

import pytest

from catalens.embedder.batcher import Batcher, Closed


def test_a_lone_item_is_released_at_once_when_nothing_else_is_coming() -> None:
    batcher: Batcher[int] = Batcher(32, max_wait_s=5.0, capacity=64, more_coming=lambda: False)
    batcher.put(1)
    started = time.monotonic()
    assert batcher.next_batch() == [1]
    assert time.monotonic() - started < 1.0


def test_a_backlog_comes_out_in_full_batches() -> None:
    batcher: Batcher[int] = Batcher(4, max_wait_s=0.0, capacity=64, more_coming=lambda: True)
    for item in range(10):
        batcher.put(item)
    assert [batcher.next_batch() for _ in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_it_waits_for_work_on_its_way_up_to_max_wait() -> None:
    batcher: Batcher[int] = Batcher(3, max_wait_s=2.0, capacity=8, more_coming=lambda: True)
    batcher.put(1)
    threading.Timer(0.1, batcher.put, args=(2,)).start()
    assert batcher.next_batch() == [1, 2]


def test_close_ends_the_consumer() -> None:
    batcher: Batcher[int] = Batcher(3, max_wait_s=0.0, capacity=8, more_coming=lambda: False)
    batcher.put(1)
    batcher.close()
    assert batcher.next_batch() == [1]
    with pytest.raises(Closed):
        batcher.next_batch()
