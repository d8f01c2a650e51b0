from __future__ import annotations

import pytest

from catalens.query_api.filters import FilterError, Filters


def test_filters_compose_into_one_expression() -> None:
    expr = Filters(categories=["Dress", "Vest top"], ranges={"price": (10.0, 20.0)}).expression()
    assert expr == (
        'category in ["Dress", "Vest top"] and attributes["price"] >= 10.0 and '
        'attributes["price"] <= 20.0'
    )


@pytest.mark.parametrize("value", ['" or 1==1 or "', 'a\\" or "', "\\", '"]) or (["'])
def test_category_values_cannot_break_out_of_their_string_literal(value: str) -> None:
    expr = Filters(categories=[value]).expression()
    inner = expr[len("category in [") : -1]
    import json

    assert json.loads(inner) == value  # one string literal, exactly the input


@pytest.mark.parametrize("name", ['price"]', "a b", "", "x" * 65, "1abc"])
def test_attribute_names_are_checked(name: str) -> None:
    with pytest.raises(FilterError):
        Filters(ranges={name: (1.0, None)}).expression()


def test_infinite_bounds_are_refused() -> None:
    with pytest.raises(FilterError):
        Filters(ranges={"price": (float("inf"), None)}).expression()


def test_an_inverted_range_is_an_empty_filter_not_an_error() -> None:
    """The OpenAPI document cannot say that price_min must not exceed price_max, and a
    request it calls valid is served: the range holds no price, so nothing matches."""
    expr = Filters(ranges={"price": (5.0, 1.0)}).expression()
    assert expr == 'attributes["price"] >= 5.0 and attributes["price"] <= 1.0'
