from __future__ import annotations

import threading
import time

import pytest

from catalens.embedder.batcher import Batcher, Closed


def test_a_lone_item_is_released_at_once_when_nothing_else_is_coming() -> None:
    """Not after max_wait: an hour, which no machine is slow enough to confuse with the
    wait for a batch that finishes at once."""
    batcher: Batcher[int] = Batcher(32, max_wait_s=3600, capacity=64, more_coming=lambda: False)
    batcher.put(1)
    batches: list[list[int]] = []
    taker = threading.Thread(target=lambda: batches.append(batcher.next_batch()), daemon=True)
    taker.start()
    taker.join(timeout=60)
    assert batches == [[1]]


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


def test_close_does_not_block_on_a_full_queue_and_frees_a_waiting_producer() -> None:
    """The consumer (the inference thread) is gone and the queue is full: closing still
    returns, and a producer waiting for room gets Closed instead of waiting forever."""
    batcher: Batcher[int] = Batcher(3, max_wait_s=0.0, capacity=2, more_coming=lambda: False)
    batcher.put(1)
    batcher.put(2)
    outcome: list[BaseException | None] = []

    def producer() -> None:
        try:
            batcher.put(3)
            outcome.append(None)
        except Closed as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=producer)
    waiting.start()
    time.sleep(0.2)  # the producer waits for room
    closer = threading.Thread(target=batcher.close)
    closer.start()
    closer.join(timeout=2)
    waiting.join(timeout=2)
    assert not closer.is_alive() and not waiting.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Closed)
    # What was queued before the close still comes out, then the consumer ends.
    assert batcher.next_batch() == [1, 2]
    with pytest.raises(Closed):
        batcher.next_batch()
