"""The exact-decimal SQL functions every SQLite connection of the service has."""

import decimal
import sqlite3
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from db import sqlite_decimals


@pytest.fixture
def connection() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:")
    sqlite_decimals.register(connection)
    return connection


def call(
    connection: sqlite3.Connection, function: str, left: str | None, right: str | None
) -> str | None:
    result: str | None = connection.execute(f"SELECT {function}(?, ?)", (left, right)).fetchone()[0]
    return result


def test_exact_add_has_no_binary_float_error(connection: sqlite3.Connection) -> None:
    assert call(connection, "exact_add", "0.1", "0.2") == "0.3"
    # Where SQLite's own + would round to a float.
    assert call(connection, "exact_add", "12345678901234567890.1", "0.01") == (
        "12345678901234567890.11"
    )


@pytest.mark.parametrize("function", ["exact_add", "exact_least", "exact_greatest"])
def test_null_is_skipped_as_postgresql_least_and_greatest_do(
    connection: sqlite3.Connection, function: str
) -> None:
    assert call(connection, function, None, "2.5") == "2.5"
    assert call(connection, function, "2.5", None) == "2.5"
    assert call(connection, function, None, None) is None


def test_least_and_greatest_compare_by_value_not_text(connection: sqlite3.Connection) -> None:
    # As text "10" < "9"; as numbers it is the other way round.
    assert call(connection, "exact_least", "10", "9") == "9"
    assert call(connection, "exact_greatest", "10", "9") == "10"
    assert call(connection, "exact_least", "1E+3", "999.5") == "999.5"


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).map(str)


@given(left=decimals, right=decimals)
def test_exact_add_is_decimal_addition(left: str, right: str) -> None:
    connection = sqlite3.connect(":memory:")
    sqlite_decimals.register(connection)
    added = call(connection, "exact_add", left, right)
    assert added is not None
    # A context wide enough for any sum drawn here: exact_add must never round.
    wide = decimal.Context(prec=10_000, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
    assert Decimal(added) == wide.add(Decimal(left), Decimal(right))
