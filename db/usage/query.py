"""What meterUsage and eventVolume ask for and answer (SPEC §14, §15), as plain values."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from db.records import CustomerRecord, MeterRecord
from db.usage.decimals import number_of

# A group value: the typed JSON value at a groupBy key, or None where the event lacks it.
GroupValue = bool | int | float | str | None


class Granularity(Enum):
    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


class VolumeBasis(Enum):
    EVENT_TIME = "EVENT_TIME"
    INGESTION_TIME = "INGESTION_TIME"


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """meterUsage's input as the client sent it; db.usage.plan checks it (U7)."""

    meter_id: str
    start: datetime
    end: datetime
    granularity: Granularity | None = None
    time_zone: str = "UTC"
    customer_ids: tuple[str, ...] | None = None
    external_customer_ids: tuple[str, ...] | None = None
    # An ad-hoc filter in the meter filter language, as the client sent it.
    filter: Any = None
    group_by: tuple[str, ...] = ()
    group_by_customer: bool = False
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class UsageBucket:
    start: datetime
    end: datetime
    value: Decimal | None
    event_count: int


@dataclass(frozen=True, slots=True)
class UsageSeries:
    # Keyed by the groupBy keys, in groupBy order.
    group_values: dict[str, GroupValue]
    customer_id: str | None
    external_customer_id: str | None
    total: Decimal | None
    event_count: int
    buckets: list[UsageBucket]


@dataclass(frozen=True, slots=True)
class MeterUsage:
    meter: MeterRecord
    start: datetime
    end: datetime
    granularity: Granularity | None
    time_zone: str
    total: Decimal | None
    event_count: int
    series: list[UsageSeries]
    # The customers the series name, read in the same session.
    customers: dict[str, CustomerRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VolumeQuery:
    start: datetime
    end: datetime | None = None
    granularity: Granularity = Granularity.HOUR
    time_zone: str = "UTC"
    basis: VolumeBasis = VolumeBasis.EVENT_TIME
    customer_id: str | None = None
    event_name: str | None = None
    include_deprecated: bool = False


@dataclass(frozen=True, slots=True)
class VolumeBucket:
    start: datetime
    end: datetime
    count: int


@dataclass(frozen=True, slots=True)
class EventVolume:
    total: int
    buckets: list[VolumeBucket]


def canonical_group_value(value: Any) -> GroupValue:
    """One value per group (U6 compares as M4 does: 1 and 1.0 are one group, shown as 1).

    A number becomes an int when it is integral and a float otherwise; a stored
    non-integer number has at most 17 significant digits (it was a float), so the float
    shows exactly its stored digits. Anything that is not a JSON scalar counts as absent.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float | Decimal):
        number = value if isinstance(value, Decimal) else number_of(value)
        if number == number.to_integral_value():
            return int(number)
        return float(number)
    return None


# U6's total order of one key's values, decided here: booleans (false, true), then numbers
# by value, then strings by code point, then null (the key is absent) last.
_RANK = {bool: 0, int: 1, float: 1, str: 2}


def group_value_order(value: GroupValue) -> tuple[int, Any]:
    if value is None:
        return (3, 0)
    return (_RANK[type(value)], value)


# A series' group values as a key, each beside its JSON kind: Python holds True == 1 (and
# hashes them alike), but U6 compares as M4 does, so `true` and `1` are two series.
GroupKey = tuple[tuple[str, GroupValue], ...]
SeriesKey = tuple[str | None, str | None, GroupKey]


def _kind(value: GroupValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


def group_key(values: Iterable[Any]) -> GroupKey:
    """The key of the series of these stored values at the groupBy keys (None if absent)."""
    canonical = (canonical_group_value(value) for value in values)
    return tuple((_kind(value), value) for value in canonical)


def group_values(group_by: Sequence[str], key: GroupKey) -> dict[str, GroupValue]:
    """A series' groupValues: its key's values by groupBy key, in groupBy order."""
    return {name: value for name, (_, value) in zip(group_by, key, strict=True)}


def series_order(key: SeriesKey) -> tuple[Any, ...]:
    """U6: by customer id, then the group values in groupBy order (null last).

    Series of events whose externalCustomerId no customer has come after every customer's,
    ordered by that externalCustomerId; ids compare by code point on both databases.
    """
    customer_id, external_customer_id, values = key
    if customer_id is not None:
        customer = (0, customer_id)
    elif external_customer_id is not None:
        customer = (1, external_customer_id)
    else:
        customer = (2, "")
    return (customer, *(group_value_order(value) for _, value in values))
