"""The one retry loop: backoff, stopping, readiness transitions, giving up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from catalens.retry import Backoff, Stopped, TransientError, retry_transient


def failing(times: int, result: str = "done") -> Callable[[], str]:
    """An action that raises ``TransientError`` ``times`` times, then returns ``result``."""
    calls = {"n": 0}

    def action() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise TransientError(f"away ({calls['n']})")
        return result

    return action


def test_delays_double_from_the_initial_one_up_to_the_cap_with_jitter_below_each() -> None:
    delay = Backoff(initial_s=0.1, max_s=1.0).delays()
    for attempt, base in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]):
        samples = [delay(attempt) for _ in range(200)]
        assert all(base / 2 <= s <= base for s in samples), (attempt, min(samples), max(samples))
        assert max(samples) - min(samples) > base / 10  # jittered, not lockstep
    assert delay(10_000) <= 1.0  # huge attempt counts neither overflow nor exceed the cap


def test_the_action_is_retried_after_each_transient_error_with_growing_waits() -> None:
    waits: list[float] = []
    result = retry_transient(
        failing(4),
        what="thing",
        backoff=Backoff(initial_s=1.0, max_s=4.0),
        stop=threading.Event(),
        sleep=waits.append,
    )
    assert result == "done"
    bases = [1.0, 2.0, 4.0, 4.0]
    assert len(waits) == 4
    assert all(b / 2 <= w <= b for w, b in zip(waits, bases, strict=True))


def test_on_wait_reports_waiting_once_when_the_first_try_fails_and_once_when_back() -> None:
    seen: list[bool] = []
    retry_transient(
        failing(3),
        what="thing",
        backoff=Backoff(),
        stop=threading.Event(),
        on_wait=seen.append,
        sleep=lambda _s: None,
    )
    assert seen == [True, False]

    seen.clear()
    retry_transient(
        failing(0),
        what="thing",
        backoff=Backoff(),
        stop=threading.Event(),
        on_wait=seen.append,
    )
    assert seen == []  # never waited: nothing to report


def test_setting_stop_while_waiting_raises_stopped_promptly() -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopped):
        retry_transient(
            failing(1_000_000),
            what="thing",
            backoff=Backoff(initial_s=60, max_s=60),  # would wait 30-60 s without the stop
            stop=stop,
        )
    assert time.monotonic() - started < 5


def test_an_already_stopped_caller_gets_stopped_after_the_first_failure() -> None:
    stop = threading.Event()
    stop.set()
    calls: list[int] = []

    def action() -> None:
        calls.append(1)
        raise TransientError("away")

    with pytest.raises(Stopped):
        retry_transient(action, what="thing", backoff=Backoff(), stop=stop)
    assert calls == [1]


def test_errors_that_are_not_transient_propagate_at_once() -> None:
    calls: list[int] = []
    seen: list[bool] = []

    def action() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("away")
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        retry_transient(
            action,
            what="thing",
            backoff=Backoff(),
            stop=threading.Event(),
            on_wait=seen.append,
            sleep=lambda _s: None,
        )
    assert len(calls) == 2 and seen == [True]


def test_with_attempts_it_gives_up_by_raising_the_last_transient_error() -> None:
    waits: list[float] = []
    with pytest.raises(TransientError, match=r"away \(3\)"):
        retry_transient(
            failing(10),
            what="thing",
            backoff=Backoff(),
            stop=threading.Event(),
            sleep=waits.append,
            attempts=3,
        )
    assert len(waits) == 2  # three tries, two waits between them
    assert retry_transient(
        failing(2),
        what="thing",
        backoff=Backoff(),
        stop=threading.Event(),
        sleep=lambda _s: None,
        attempts=3,
    )


def test_with_a_timeout_it_tries_at_the_deadline_then_gives_up() -> None:
    started = time.monotonic()
    calls: list[float] = []

    def action() -> None:
        calls.append(time.monotonic() - started)
        raise TransientError("away")

    with pytest.raises(TransientError):
        retry_transient(
            action,
            what="thing",
            backoff=Backoff(initial_s=10, max_s=10),
            stop=threading.Event(),
            timeout_s=0.3,
        )
    assert len(calls) == 2  # the first try, and one at the deadline (not after 5-10 s)
    assert 0.3 <= calls[-1] < 2
