"""The time a request waited on the store's server: calls at once count once."""

from __future__ import annotations

import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from catalens.store.waiting import Waited, recording, server_call


def test_overlapping_calls_count_once_and_gaps_do_not_count() -> None:
    waited = Waited([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (5.5, 5.6), (2.0, 2.5)])
    assert waited.seconds == 4.0  # [0, 3] and [5, 6]
    assert Waited().seconds == 0.0


def test_calls_on_another_thread_count_in_the_request_context_only() -> None:
    release = threading.Event()

    def call() -> None:
        with server_call():
            release.wait(5)

    with ThreadPoolExecutor(2) as pool, recording() as waited:
        started = time.perf_counter()
        carried = pool.submit(contextvars.copy_context().run, call)
        bare = pool.submit(call)  # not in the request's context: not counted
        time.sleep(0.05)
        with server_call():
            time.sleep(0.05)
        release.set()
        carried.result()
        bare.result()
        elapsed = time.perf_counter() - started
    assert len(waited.calls) == 2
    # The carried call spans the local one: the union is the carried call alone.
    assert 0.1 <= waited.seconds <= elapsed


def test_calls_outside_a_recording_are_not_recorded() -> None:
    with server_call():
        pass
    with recording() as waited:
        pass
    assert waited.calls == []
