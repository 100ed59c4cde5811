"""Exact usage values (U3): Decimal from the stored JSON text, never through a binary float.

Sums, minima and maxima are exact whatever their size (a JSON number may have hundreds of
digits), so they run in a context wide enough never to round, which raises if it would.
Only AVG divides, and it is rounded to 28 significant digits, half-even, as U3 says.
"""

import decimal
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

EXACT = decimal.Context(
    prec=decimal.MAX_PREC,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.Inexact, decimal.Overflow, decimal.InvalidOperation, decimal.DivisionByZero],
)
AVERAGE = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)


def number_of(value: int | float) -> Decimal:
    """The decimal a stored JSON number stands for: an int exactly, a float as its repr.

    A float's repr is the shortest text that reads back as it, which is what the service
    wrote into the database (db.json_text) and what the filter language compares (M4).
    """
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def parse_json_exactly(text: str) -> Any:
    """JSON text with its non-integer numbers as Decimal, digit for digit."""
    return json.loads(text, parse_float=Decimal)


def add(left: Decimal, right: Decimal) -> Decimal:
    return EXACT.add(left, right)


def sum_exactly(numbers: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for number in numbers:
        total = EXACT.add(total, number)
    return total


def average(total: Decimal, count: int) -> Decimal:
    return AVERAGE.divide(total, Decimal(count))


def format_decimal(value: Decimal) -> str:
    """ "3" for 3.0, "0.3", "1234.5": positional, no exponent, no trailing zeros, no -0."""
    if value.is_zero():
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
