"""Exact usage values (U3), without a database."""

from decimal import Decimal

import pytest

from db.usage.decimals import add, average, format_decimal, number_of, parse_json_exactly


def test_u3_a_stored_json_number_is_the_exact_decimal_of_its_text() -> None:
    assert parse_json_exactly('{"a": 0.1, "b": 3, "c": 2.25, "d": -3.5}') == {
        "a": Decimal("0.1"),
        "b": 3,
        "c": Decimal("2.25"),
        "d": Decimal("-3.5"),
    }
    assert parse_json_exactly("123456789012345678901234567890.123456789") == Decimal(
        "123456789012345678901234567890.123456789"
    )
    # A float as Python holds it: the decimal of its repr, not of its binary value
    assert number_of(0.1) == Decimal("0.1")
    assert number_of(2**70) == Decimal(2**70)


def test_u3_point_one_plus_point_two_is_point_three() -> None:
    total = add(number_of(0.1), number_of(0.2))
    assert total == Decimal("0.3")
    assert format_decimal(total) == "0.3"


def test_u3_sums_never_round() -> None:
    total = add(Decimal("1E+30"), Decimal("1E-30"))
    assert format_decimal(total) == "1" + "0" * 30 + "." + "0" * 29 + "1"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("3"), "3"),
        (Decimal("3.0"), "3"),
        (Decimal("3.000"), "3"),
        (Decimal("1.50"), "1.5"),
        (Decimal("-2.50"), "-2.5"),
        (Decimal("1E+2"), "100"),
        (Decimal("100"), "100"),
        (Decimal("1E-7"), "0.0000001"),
        (Decimal("0"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("0.000"), "0"),
        (Decimal("0.3"), "0.3"),
        (Decimal("1234.5"), "1234.5"),
    ],
)
def test_u3_no_exponent_no_trailing_zeros(value: Decimal, text: str) -> None:
    assert format_decimal(value) == text


def test_u3_average_of_two_thirds_to_28_significant_digits() -> None:
    assert format_decimal(average(Decimal(2), 3)) == "0.6666666666666666666666666667"


def test_u3_average_that_is_exact_stays_exact() -> None:
    assert format_decimal(average(Decimal(1), 8)) == "0.125"
    assert format_decimal(average(Decimal("3.3"), 3)) == "1.1"


def test_u3_average_rounds_a_tie_half_even() -> None:
    # 1.0000000000000000000000000005 has 29 significant digits, the last a tie: it goes to
    # the even neighbour, down here and up for …15
    assert format_decimal(average(Decimal("2.000000000000000000000000001"), 2)) == "1"
    assert (
        format_decimal(average(Decimal("2.000000000000000000000000003"), 2))
        == "1.000000000000000000000000002"
    )
