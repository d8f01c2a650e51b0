"""Logging set up once per process, at the entry point: plain text for people, or one
JSON object per line for log shippers (``CATALENS_LOG_FORMAT=json``).

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, the
exception when there is one, and every ``extra=`` field of the call (per-record lines
carry ``product_id``, ``partition`` and ``offset`` that way), so a shipper can index them
without parsing the message.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        try:
            # default=str: an extra value JSON cannot hold (a path, a set) still logs.
            return json.dumps(line, ensure_ascii=False, default=str)
        except Exception:  # noqa: BLE001 - a log line must never be lost to an odd extra
            # (dict keys JSON cannot hold, a cycle, a __str__ that raises): every extra
            # becomes its repr, or says it has none.
            return json.dumps({key: _safe(value) for key, value in line.items()})


def _safe(value: object) -> object:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - see JsonFormatter.format
        return f"<unprintable {type(value).__name__}>"


def configure_logging(level: str, fmt: LogFormat = "text") -> None:
    """Send the root logger's records to stderr in ``fmt``; quieten chatty libraries."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pymilvus logs a traceback for every failed call; the store reports them itself.
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
