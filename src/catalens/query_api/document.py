"""The parts of the OpenAPI document that depend on what is served, filled in each time
the document is asked for.

* ``mode`` on ``GET /search`` lists the modes the served index answers: keyword and hybrid
  only where the Milvus server has full-text search and the generation its text fields,
  so a client (or schemathesis) never sends, as valid, a mode that a 400 then refuses.
* ``attr.<name>=<value>`` filters are one query parameter object, ``attr``, exploded in
  form style (its properties are the ``attr.``-prefixed names themselves): names that
  start with ``attr.`` must be attribute names. The values are left unconstrained by the
  schema and their limits said in words (at most MAX_FILTER_VALUES of them, each up to an
  attribute value's length, a name repeated for several): the API ignores every other
  undeclared name, whatever its value and however often it comes, and a value or size
  constraint on the object would also cover those, promising refusals the API does not
  make. (datamodel-code-generator drops the operation when the object's values are an
  anyOf or its names split by patternProperties, so the schema cannot say both.)
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
            f'attr.size=42 finds 42 and "42". At most {MAX_FILTER_VALUES} attribute values '
            f"in a request, each of at most {MAX_VALUE_CHARS} characters (400 past them). "
            "Query parameters of other names this operation does not declare are ignored."
        ),
        "schema": {
            "type": "object",
            "propertyNames": {
                "anyOf": [{"not": {"pattern": r"^attr\."}}, {"pattern": ATTRIBUTE_NAME}],
                "not": {"enum": list(declared)},
            },
            "additionalProperties": {},
        },
        "example": {"attr.colour": "Black", "attr.in_stock": "true"},
    }
