"""The DateTime and JSON scalars of SPEC §12."""

from datetime import UTC, datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

__all__ = ["JSON", "DateTime", "parse_datetime", "serialize_datetime"]


def parse_datetime(value: Any) -> datetime:
    """ISO-8601 in; an input without a UTC offset is UTC (I5); always aware UTC out."""
    if not isinstance(value, str):
        raise ValueError("DateTime must be an ISO-8601 string, such as 2026-01-31T12:00:00Z.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value[:64]!r} is not an ISO-8601 date-time, such as 2026-01-31T12:00:00Z."
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def serialize_datetime(value: datetime) -> str:
    """Always UTC, always microseconds, always `Z`: fixed width, sortable as text."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat is several times cheaper than strftime; a UTC value ends in "+00:00".
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


# Fields are annotated with plain `datetime`; the schema's scalar_map maps it to this.
DateTime = strawberry.scalar(
    name="DateTime",
    description="An ISO-8601 date-time. Input without a UTC offset is UTC; output is always UTC.",
    serialize=serialize_datetime,
    parse_value=parse_datetime,
)
