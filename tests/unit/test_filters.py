"""A request's filters, the store's Filters, and the Milvus expression they become: the
same products kept by the in-memory store's rule and by Milvus (the store contract suite
runs both), and no input that can break out of its literal."""

from __future__ import annotations

import json

import pytest

from catalens.query_api.filters import read_value, request_filters
from catalens.store.expressions import filter_expression
from catalens.store.values import FilterError, Filters


def test_filters_compose_into_one_expression() -> None:
    filters = Filters(
        categories=("Dress", "Vest top"),
        ranges={"price": (10.0, 20.0)},
        equals={"brand": ("H&M",), "in_stock": (True,)},
        excluded=("p1",),
    )
    assert filter_expression(filters) == (
        'not (product_id in ["p1"]) and category in ["Dress", "Vest top"] and '
        'attributes["price"] >= 10.0 and attributes["price"] <= 20.0 and '
        'attributes["brand"] == "H&M" and attributes["in_stock"] == true'
    )
    assert filter_expression(Filters()) == ""


@pytest.mark.parametrize(
    "value", ['" or 1==1 or "', 'a\\" or "', "\\", '"]) or (["', "a\nb\r\t\x00\x01\b\f\x7f\u2028"]
)
def test_values_cannot_break_out_of_their_string_literal(value: str) -> None:
    expr = filter_expression(Filters(categories=(value,)))
    inner = expr[len("category in [") : -1]
    # One string literal, exactly the input (control characters stand as themselves).
    assert json.loads(inner, strict=False) == value
    expr = filter_expression(Filters(equals={"brand": (value,)}))
    assert json.loads(expr[len('attributes["brand"] == ') :], strict=False) == value


@pytest.mark.parametrize("name", ['price"]', "a b", "", "x" * 65, "1abc", 'a"] or 1==1 or ["'])
def test_attribute_names_are_checked(name: str) -> None:
    with pytest.raises(FilterError):
        Filters(ranges={name: (1.0, None)})
    with pytest.raises(FilterError):
        Filters(equals={name: ("x",)})


def test_an_inverted_range_is_an_empty_filter_not_an_error() -> None:
    """The OpenAPI document cannot say that price_min must not exceed price_max, and a
    request it calls valid is served: the range holds no price, so nothing matches."""
    filters = Filters(ranges={"price": (5.0, 1.0)})
    assert filter_expression(filters) == 'attributes["price"] >= 5.0 and attributes["price"] <= 1.0'
    assert not any(
        filters.matches("p", "", {"price": price}) for price in (0.5, 1.0, 3.0, 5.0, 9.0)
    )


def test_infinite_ranges_and_too_many_values_are_refused() -> None:
    with pytest.raises(FilterError):
        Filters(ranges={"price": (float("inf"), None)})
    with pytest.raises(FilterError):
        Filters(categories=tuple(str(i) for i in range(101)))
    # A hundred categories and a hundred attribute values, each read two ways, pass.
    many = tuple(str(i) for i in range(100))
    Filters(categories=many, equals={f"a{i}": (str(i), i) for i in range(100)})
    with pytest.raises(FilterError, match="at most 100 attribute values"):
        request_filters([], None, None, [(f"attr.a{i}", "1") for i in range(101)])
    with pytest.raises(FilterError, match="at most 100 attribute values"):
        request_filters([], None, None, [("attr.a", str(i)) for i in range(101)])


@pytest.mark.parametrize("name", ["colour\n", "colour\r", "colour ", "1colour", "", "a" * 65])
def test_an_attribute_name_is_matched_whole(name: str) -> None:
    with pytest.raises(FilterError, match="invalid attribute name"):
        Filters(equals={name: ("Black",)})


def test_a_query_value_matches_its_text_and_the_json_value_it_reads_as() -> None:
    assert read_value("true") == ["true", True]
    assert read_value("42") == ["42", 42]
    assert read_value("12.5") == ["12.5", 12.5]
    assert read_value("42.0") == ["42.0", 42.0]
    assert read_value("nan") == ["nan"]
    # Beyond int64 (Milvus' JSON integers) a number is a float: an expression can hold it.
    assert read_value("999999999999999999999999999999") == ["999999999999999999999999999999", 1e30]
    assert read_value("Black") == ["Black"]
    # An integer is read whole: through a float, 2**53 + 1 would match 2**53.
    assert read_value(str(2**53 + 1)) == [str(2**53 + 1), 2**53 + 1]
    assert read_value("-9223372036854775808") == ["-9223372036854775808", -(2**63)]


def test_an_integer_filter_keeps_its_exact_value_against_its_neighbour() -> None:
    filters = request_filters([], None, None, [("attr.sku", str(2**53 + 1))])
    assert filters.matches("a", None, {"sku": 2**53 + 1})
    assert not filters.matches("b", None, {"sku": 2**53})


def test_attr_parameters_become_equality_filters_a_repeated_name_any_of() -> None:
    query = [
        ("q", "dress"),
        ("attr.colour", "Black"),
        ("attr.colour", "Red"),
        ("attr.in_stock", "true"),
        ("category", "Dress"),
    ]
    filters = request_filters(["Dress"], 5.0, None, query)
    assert filters.categories == ("Dress",)
    assert filters.ranges == {"price": (5.0, None)}
    assert filters.equals == {"colour": ("Black", "Red"), "in_stock": ("true", True)}
    assert filters.matches("p", "Dress", {"colour": "Red", "in_stock": True, "price": 9.5})
    assert not filters.matches("p", "Dress", {"colour": "Blue", "in_stock": True, "price": 9})
    assert not filters.matches("p", "Dress", {"colour": "Red", "in_stock": True, "price": 1})


def test_a_bad_attribute_filter_is_a_filter_error() -> None:
    with pytest.raises(FilterError):
        request_filters([], None, None, [("attr.bad name", "x")])
    with pytest.raises(FilterError):
        request_filters([], None, None, [("attr.", "x")])
    with pytest.raises(FilterError):
        request_filters([], None, None, [("attr.colour", "x" * 2049)])
