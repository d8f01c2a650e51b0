"""Log lines for shippers: one JSON object per line, extra fields included."""

from __future__ import annotations

import json
import logging
import sys

from catalens.logs import JsonFormatter


def formatted(record: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert isinstance(parsed, dict)
    return parsed


def make_record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("catalens.sink.service")
    return logger.makeRecord(
        logger.name, logging.DEBUG, __file__, 1, message, args, None, extra=extra
    )


def test_a_line_holds_time_level_logger_message_and_the_extra_fields() -> None:
    record = make_record("%s@%d: written", ("t", 2), 41, product_id="p/1", partition=2, offset=41)
    record.created = 1796000000.25
    assert formatted(record) == {
        "time": "2026-11-30T00:53:20.250+00:00",
        "level": "DEBUG",
        "logger": "catalens.sink.service",
        "message": "('t', 2)@41: written",
        "product_id": "p/1",
        "partition": 2,
        "offset": 41,
    }


def test_an_exception_travels_in_the_same_line() -> None:
    try:
        raise ValueError("bad\nthings")
    except ValueError:
        record = make_record("failed")
        record.exc_info = sys.exc_info()
    line = formatted(record)
    assert isinstance(line["exception"], str)
    assert "ValueError: bad" in line["exception"]


def test_values_json_cannot_hold_are_written_as_text() -> None:
    line = formatted(make_record("odd", where=object.__new__(object), tp=("t", 1)))
    assert str(line["where"]).startswith("<object object")
    assert line["tp"] == ["t", 1]


def _odd(**extra: object) -> str:
    record = logging.getLogger("x").makeRecord(
        "x", logging.INFO, "f", 1, "hello", (), None, extra=extra
    )
    return JsonFormatter().format(record)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_odd_extras_never_lose_the_line() -> None:
    """Keys JSON cannot hold, a cycle, an object that cannot be printed: still one line."""
    loop: list[object] = []
    loop.append(loop)
    for extra in ({"counts": {("t", 0): 3}}, {"items": loop}, {"thing": Unprintable()}):
        line = json.loads(_odd(**extra))
        assert line["message"] == "hello"
        assert next(iter(extra)) in line
