"""The parts of the OpenAPI document that depend on what is served, filled in each time
the document is asked for.

* ``mode`` on ``GET /search`` lists the modes the served index answers: keyword and hybrid
  only where the Milvus server has full-text search and the generation its text fields,
  so a client (or schemathesis) never sends, as valid, a mode that a 400 then refuses.
* ``attr.<name>=<value>`` filters are one query parameter object, ``attr``, exploded in
  form style (its properties are the ``attr.``-prefixed names themselves): names that
  start with ``attr.`` must be attribute names, values are text up to an attribute
  value's length, and names that do not start with ``attr.`` are left to the other
  parameters (the ones declared are not repeated here).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from catalens.query_api.filters import ATTRIBUTE_PREFIX, MAX_VALUE_CHARS
from catalens.store.values import MAX_FILTER_VALUES, Mode

Document = dict[str, Any]
ATTRIBUTE_NAME = r"^attr\.[A-Za-z_][A-Za-z0-9_]{0,63}$"


def serving_document(base: Callable[[], Document], modes: Callable[[], Sequence[Mode]]) -> Document:
    """``base`` (FastAPI's document, built once) with what the served index answers."""
    document = copy.deepcopy(base())
    operation = document["paths"]["/search"]["get"]
    parameters = operation.setdefault("parameters", [])
    declared = sorted(p["name"] for p in parameters if p.get("in") == "query")
    for parameter in parameters:
        if parameter.get("name") == "mode":
            parameter["schema"] = {
                "type": "string",
                "enum": list(modes()),
                "title": "Mode",
            }
    parameters.append(attribute_parameter(declared))
    return document


def attribute_parameter(declared: Sequence[str]) -> Document:
    """The ``attr`` query parameter object (see the module)."""
    return {
        "name": "attr",
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "description": (
            f"Filters on any attribute by equality: {ATTRIBUTE_PREFIX}<name>=<value>, "
            "repeatable (a name repeated: any of its values). A value matches the text and "
            "the JSON boolean or number it reads as: attr.in_stock=true finds true, "
            'attr.size=42 finds 42 and "42".'
        ),
        "schema": {
            "type": "object",
            "maxProperties": MAX_FILTER_VALUES,
            "propertyNames": {
                "anyOf": [{"not": {"pattern": r"^attr\."}}, {"pattern": ATTRIBUTE_NAME}],
                "not": {"enum": list(declared)},
            },
            "additionalProperties": {"type": "string", "maxLength": MAX_VALUE_CHARS},
        },
        "example": {"attr.colour": "Black", "attr.in_stock": "true"},
    }
