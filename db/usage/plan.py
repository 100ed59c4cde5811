"""U7 and V2: a usage or volume query checked before any expensive work, as a plan.

Every check here is pure and cheap; the bucket count is known (and bounded) before any
query runs, so a MINUTE query over a year is refused without touching the events. What
needs the database (the meter, the customers) is checked by the repository, right after.
"""

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from db.errors import BadUserInput, UserErrorCode, shown
from db.filters import Filter, parse_filter_argument
from db.records import MeterRecord
from db.rules.bounds import MAX_SERVER_ID_LENGTH, each_too_long, refuse, too_long
from db.rules.ingestion import MAX_EVENT_NAME_LENGTH, MAX_EXTERNAL_CUSTOMER_ID_LENGTH
from db.rules.meters import AggregationType, grouping_key_problems
from db.settings import Settings
from db.usage.buckets import (
    MAX_TIME_ZONE_LENGTH,
    CalendarOverflow,
    bucket_edges,
    time_zone,
    widened,
)
from db.usage.query import Granularity, UsageQuery, VolumeQuery

MAX_CUSTOMER_REFERENCES = 100


@dataclass(frozen=True, slots=True)
class CheckedUsageQuery:
    edges: list[datetime]
    filter: Filter | None


@dataclass(frozen=True, slots=True)
class UsagePlan:
    """A checked usage query with its meter and customers resolved: what a source answers."""

    meter: MeterRecord
    start: datetime
    end: datetime
    granularity: Granularity | None
    time_zone: str
    # [start, e1, …, end]: bucket i is [edges[i], edges[i + 1]).
    edges: list[datetime]
    # The meter's filter and the query's, both of which must match (U1).
    filters: tuple[Filter, ...]
    # None when the query names no customer; else events sent with one of these customer
    # ids or with one of these externalCustomerIds (the customers' own and those given).
    customer_ids: tuple[str, ...] | None
    external_customer_ids: tuple[str, ...] | None
    group_by: tuple[str, ...]
    group_by_customer: bool
    as_of: datetime | None
    # Whether `filters` holds an ad-hoc filter of the query besides the meter's own.
    has_query_filter: bool = False

    @property
    def aggregation(self) -> AggregationType:
        return AggregationType(self.meter.aggregation_type)

    @property
    def key(self) -> str | None:
        return self.meter.aggregation_key

    @property
    def narrowed_to_customers(self) -> bool:
        return self.customer_ids is not None or self.external_customer_ids is not None


def check_usage_query(query: UsageQuery, settings: Settings) -> CheckedUsageQuery:
    """U7's bounds that need no database; raises BadUserInput with code and field."""
    references = UserErrorCode.CUSTOMER_REFERENCE_INVALID
    refuse(
        too_long(query.meter_id, MAX_SERVER_ID_LENGTH, ("meterId",), UserErrorCode.INVALID_INPUT)
        + each_too_long(query.customer_ids, MAX_SERVER_ID_LENGTH, ("customerIds",), references)
        + each_too_long(
            query.external_customer_ids,
            MAX_EXTERNAL_CUSTOMER_ID_LENGTH,
            ("externalCustomerIds",),
            references,
        )
    )
    zone = _zone(query.time_zone)
    if not query.start < query.end:
        raise BadUserInput(
            UserErrorCode.TIME_RANGE_INVALID, "from must be earlier than to.", ("to",)
        )
    _check_group_by(query.group_by)
    _check_reference_count(query.customer_ids, ("customerIds",))
    _check_reference_count(query.external_customer_ids, ("externalCustomerIds",))
    query_filter = None
    if query.filter is not None:
        query_filter = parse_filter_argument(query.filter, ("filter",))
    edges = _edges(query.start, query.end, query.granularity, zone, settings)
    return CheckedUsageQuery(edges, query_filter)


@dataclass(frozen=True, slots=True)
class VolumePlan:
    start: datetime
    end: datetime
    edges: list[datetime]


def plan_volume(query: VolumeQuery, settings: Settings, now: datetime) -> VolumePlan:
    """V1/V2: the range widened to whole buckets, and their edges; raises BadUserInput."""
    refuse(
        too_long(
            query.customer_id,
            MAX_SERVER_ID_LENGTH,
            ("customerId",),
            UserErrorCode.CUSTOMER_REFERENCE_INVALID,
        )
        + too_long(
            query.event_name,
            MAX_EVENT_NAME_LENGTH,
            ("eventName",),
            UserErrorCode.EVENT_NAME_INVALID,
        )
    )
    zone = _zone(query.time_zone)
    end = query.end if query.end is not None else now
    if not query.start < end:
        field = ("to",) if query.end is not None else ("from",)
        message = (
            "from must be earlier than to."
            if query.end is not None
            else "from must be in the past: to defaults to now."
        )
        raise BadUserInput(UserErrorCode.TIME_RANGE_INVALID, message, field)
    try:
        start, end = widened(query.start, end, query.granularity, zone)
    except CalendarOverflow:
        raise _calendar_overflow() from None
    edges = _edges(start, end, query.granularity, zone, settings)
    return VolumePlan(start, end, edges)


def _zone(name: str) -> ZoneInfo:
    refuse(too_long(name, MAX_TIME_ZONE_LENGTH, ("timeZone",), UserErrorCode.TIME_ZONE_INVALID))
    zone = time_zone(name)
    if zone is None:
        raise BadUserInput(
            UserErrorCode.TIME_ZONE_INVALID,
            f'{shown(name)!r} is not an IANA time zone name, such as "UTC" or "Europe/Berlin".',
            ("timeZone",),
        )
    return zone


def _edges(
    start: datetime,
    end: datetime,
    granularity: Granularity | None,
    zone: ZoneInfo,
    settings: Settings,
) -> list[datetime]:
    try:
        edges = bucket_edges(start, end, granularity, zone, settings.max_usage_points)
    except CalendarOverflow:
        raise _calendar_overflow() from None
    if edges is None:
        assert granularity is not None
        raise BadUserInput(
            UserErrorCode.USAGE_RESULT_TOO_LARGE,
            f"This range holds more than {settings.max_usage_points} {granularity.name} "
            "buckets; ask for a shorter range or a coarser granularity.",
            ("granularity",),
        )
    return edges


def _calendar_overflow() -> BadUserInput:
    return BadUserInput(
        UserErrorCode.TIME_RANGE_INVALID,
        "The buckets of this range would reach beyond the years 1 to 9999; ask for a "
        "range further from the ends of the calendar.",
        ("from",),
    )


def _check_group_by(keys: tuple[str, ...]) -> None:
    for path, message in grouping_key_problems(keys, "groupBy"):
        raise BadUserInput(UserErrorCode.GROUP_BY_INVALID, message, path)


def _check_reference_count(references: tuple[str, ...] | None, path: tuple[str, ...]) -> None:
    if references is not None and not 1 <= len(references) <= MAX_CUSTOMER_REFERENCES:
        raise BadUserInput(
            UserErrorCode.INVALID_INPUT,
            f"{path[0]} must hold 1 to {MAX_CUSTOMER_REFERENCES} entries, not "
            f"{len(references)}; leave it out for every customer.",
            path,
        )
