"""The parts of the OpenAPI document that depend on what is served, filled in each time
the document is asked for.

* ``mode`` on ``GET /search`` lists the modes the served index answers: keyword and hybrid
  only where the Milvus server has full-text search and the generation its text fields,
  so a client (or schemathesis) never sends, as valid, a mode that a 400 then refuses.
* ``attr.<name>=<value>`` filters are one query parameter object, ``attr``, exploded in
  form style (its properties are the ``attr.``-prefixed names themselves), on every
  operation that takes the search filters: its names are attribute names, each given
  once (a text up to an attribute value's length) or repeated ("any of": a list of such
  texts). Names that are neither declared nor ``attr.`` ones are refused
  (``query_api.parameters``), so this object is all the rest of a valid query string.
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
    for parameter in document["paths"]["/search"]["get"]["parameters"]:
        if parameter.get("name") == "mode":
            parameter["schema"] = {
                "type": "string",
                "enum": list(modes()),
                "title": "Mode",
            }
    for item in document["paths"].values():
        for operation in item.values():
            parameters = operation.get("parameters", [])
            # The search filters' parameters (routes.search.search_options), of which
            # price_min is one, come with attr.* filters.
            if any(p.get("name") == "price_min" for p in parameters):
                parameters.append(attribute_parameter())
    return document


def attribute_parameter() -> Document:
    """The ``attr`` query parameter object (see the module)."""
    return {
        "name": "attr",
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "description": (
            f"Filters on any attribute by equality: {ATTRIBUTE_PREFIX}<name>=<value>, "
            f"repeatable (a name repeated: any of its values); at most {MAX_FILTER_VALUES} "
            "values in all. A value matches the text and "
            "the JSON boolean or number it reads as: attr.in_stock=true finds true, "
            'attr.size=42 finds 42 and "42".'
        ),
        "schema": {
            "type": "object",
            "maxProperties": MAX_FILTER_VALUES,
            "propertyNames": {"pattern": ATTRIBUTE_NAME},
            # A value each: OpenAPI gives an exploded form object scalar values only (a
            # client generator skips an operation whose object holds lists), so the
            # repeated name that says "any of" is said in words, not in the schema.
            "additionalProperties": {"type": "string", "maxLength": MAX_VALUE_CHARS},
        },
        "example": {"attr.colour": "Black", "attr.in_stock": "true"},
    }
