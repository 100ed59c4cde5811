"""The DateTime, JSON and Decimal scalars of SPEC §12."""

import decimal
import re
from datetime import UTC, datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from db.usage.decimals import format_decimal

__all__ = ["JSON", "DateTime", "ExactDecimal", "parse_datetime", "serialize_datetime"]


# RFC 3339's date-time, with the offset optional (I5: none means UTC). Python's
# fromisoformat alone would also take a bare date, week dates and the basic format
# ("20260131T1200"), none of which a client means as an event's moment.
_RFC_3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
_EXAMPLE = "such as 2026-01-31T12:00:00Z or 2026-01-31T13:00:00.250+01:00"


def parse_datetime(value: Any) -> datetime:
    """RFC 3339 in; an input without a UTC offset is UTC (I5); always aware UTC out."""
    if not isinstance(value, str):
        raise ValueError(f"DateTime must be an RFC 3339 string, {_EXAMPLE}.")
    if not _RFC_3339.fullmatch(value):
        raise ValueError(f"{value[:64]!r} is not an RFC 3339 date-time, {_EXAMPLE}.")
    try:
        parsed = datetime.fromisoformat(value.upper())
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{value[:64]!r} is not a valid date-time, {_EXAMPLE}.") from None


def serialize_datetime(value: datetime) -> str:
    """Always UTC, always microseconds, always `Z`: fixed width, sortable as text."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat is several times cheaper than strftime; a UTC value ends in "+00:00".
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


# Fields are annotated with plain `datetime`; the schema's scalar_map maps it to this.
DateTime = strawberry.scalar(
    name="DateTime",
    description=("An RFC 3339 date-time. Input without a UTC offset is UTC; output is always UTC."),
    serialize=serialize_datetime,
    parse_value=parse_datetime,
)


def _parse_decimal(value: Any) -> decimal.Decimal:
    if not isinstance(value, str):
        raise ValueError('Decimal must be a string of digits, such as "1234.5".')
    try:
        parsed = decimal.Decimal(value)
    except decimal.InvalidOperation:
        raise ValueError(f"{value[:64]!r} is not a decimal number.") from None
    if not parsed.is_finite():
        raise ValueError("Decimal must be a finite number.")
    return parsed


# Strawberry's own Decimal scalar writes str(value) ("3.0", "1E+2"); U3 wants "3" and "100".
# Fields are annotated with plain `Decimal`; the schema's scalar_map maps it to this.
ExactDecimal = strawberry.scalar(
    name="Decimal",
    description=('An exact decimal number, as a string: "1234.5". No exponent, no trailing zeros.'),
    serialize=format_decimal,
    parse_value=_parse_decimal,
)
