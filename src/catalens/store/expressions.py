"""Milvus boolean expressions built from values (pure): user input only ever enters as a
JSON-quoted string literal, so no input can break out of one."""

from __future__ import annotations

import json


def literal(text: str) -> str:
    """A Milvus expression string literal for ``text``."""
    return json.dumps(text, ensure_ascii=False)
