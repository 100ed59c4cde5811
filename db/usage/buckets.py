"""Calendar buckets in an IANA time zone (U5, V1), computed with zoneinfo.

A bucket edge is the first instant of a local calendar unit: a minute, an hour, a day
from local midnight, a week from Monday's midnight, a month from the 1st's midnight. Local
times are turned into UTC instants with zoneinfo, which gives DST days their 23 or 25
hours, and Asia/Kolkata's hours their :30 UTC starts. Where a local edge does not exist
(the clock jumps over it), the unit starts at the jump; where it exists twice (the clock
falls back over it), a minute or an hour starts at both instants — the repeated hour is an
hour of its own — while a day, a week or a month starts at the first.

The number of buckets is known before any query runs: edges are produced one at a time,
and a caller that allows at most N buckets stops after N + 1.
"""

from bisect import bisect_right
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from db.usage.query import Granularity

MAX_TIME_ZONE_LENGTH = 100

_STEPS = {
    Granularity.MINUTE: timedelta(minutes=1),
    Granularity.HOUR: timedelta(hours=1),
    Granularity.DAY: timedelta(days=1),
    Granularity.WEEK: timedelta(weeks=1),
}


class CalendarOverflow(Exception):
    """The buckets would reach beyond the years 1–9999 that datetime can represent."""


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def time_zone(name: str) -> ZoneInfo | None:
    """The IANA zone of that exact name, or None (never a file path, never a guess)."""
    if not 1 <= len(name) <= MAX_TIME_ZONE_LENGTH or name not in _zone_names():
        return None
    return ZoneInfo(name)


def _floor(local: datetime, granularity: Granularity) -> datetime:
    """The local wall time (naive) at which the unit holding `local` starts."""
    wall = local.replace(tzinfo=None, fold=0)
    if granularity is Granularity.MINUTE:
        return wall.replace(second=0, microsecond=0)
    if granularity is Granularity.HOUR:
        return wall.replace(minute=0, second=0, microsecond=0)
    midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity is Granularity.DAY:
        return midnight
    if granularity is Granularity.WEEK:
        return midnight - timedelta(days=midnight.weekday())
    return midnight.replace(day=1)


def _next_wall(wall: datetime, granularity: Granularity) -> datetime:
    if granularity is Granularity.MONTH:
        if wall.month == 12:
            return wall.replace(year=wall.year + 1, month=1)
        return wall.replace(month=wall.month + 1)
    return wall + _STEPS[granularity]


def _previous_wall(wall: datetime, granularity: Granularity) -> datetime:
    if granularity is Granularity.MONTH:
        if wall.month == 1:
            return wall.replace(year=wall.year - 1, month=12)
        return wall.replace(month=wall.month - 1)
    return wall - _STEPS[granularity]


def _instants(wall: datetime, zone: ZoneInfo, granularity: Granularity) -> list[datetime]:
    """The UTC instants at which the local wall time `wall` begins a unit."""
    found = set()
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            found.add(instant)
    if not found:
        return [_jump_over(wall, zone)]
    ordered = sorted(found)
    if granularity in (Granularity.MINUTE, Granularity.HOUR):
        return ordered
    return ordered[:1]


def _jump_over(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant the clock jumps over the nonexistent wall time `wall`."""
    # Read with the offsets before and after the jump, the wall time gives two instants
    # that enclose the jump; it is found to the microsecond by bisection.
    low, high = sorted(wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    before = low.astimezone(zone).utcoffset()
    while high - low > timedelta(microseconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high


def _edges_from(wall: datetime, zone: ZoneInfo, granularity: Granularity) -> Iterator[datetime]:
    """Every calendar edge from the local wall time `wall` on, in time order, endlessly."""
    last: datetime | None = None
    while True:
        for instant in _instants(wall, zone, granularity):
            if last is None or instant > last:
                last = instant
                yield instant
        wall = _next_wall(wall, granularity)


def _wall_before(moment: datetime, zone: ZoneInfo, granularity: Granularity) -> datetime:
    """A local unit start at least one whole unit before `moment`."""
    return _previous_wall(_floor(moment.astimezone(zone), granularity), granularity)


def inner_edges(
    start: datetime, end: datetime, granularity: Granularity, zone: ZoneInfo
) -> Iterator[datetime]:
    """The calendar edges strictly between `start` and `end`, in time order (UTC).

    Raises CalendarOverflow when they reach beyond what datetime represents.
    """
    try:
        for edge in _edges_from(_wall_before(start, zone, granularity), zone, granularity):
            if edge >= end:
                return
            if edge > start:
                yield edge
    except (OverflowError, ValueError) as error:
        raise CalendarOverflow(str(error)) from None


def bucket_edges(
    start: datetime,
    end: datetime,
    granularity: Granularity | None,
    zone: ZoneInfo,
    max_buckets: int,
) -> list[datetime] | None:
    """[start, e1, …, end]: the buckets' edges, the first and last clipped to [start, end).

    None when there would be more than `max_buckets` buckets; no more than that many edges
    are ever computed. Without a granularity, one bucket spans the range.
    """
    edges = [start]
    if granularity is not None:
        for edge in inner_edges(start, end, granularity, zone):
            if len(edges) >= max_buckets:
                return None
            edges.append(edge)
    edges.append(end)
    return edges


def widened(
    start: datetime, end: datetime, granularity: Granularity, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    """V1: `start` back to the edge of its bucket, `end` on to the edge after it (if not one)."""
    try:
        new_start = start
        for edge in _edges_from(_wall_before(start, zone, granularity), zone, granularity):
            if edge > start:
                break
            new_start = edge
        new_end = end
        for edge in _edges_from(_wall_before(end, zone, granularity), zone, granularity):
            if edge >= end:
                new_end = edge
                break
    except (OverflowError, ValueError) as error:
        raise CalendarOverflow(str(error)) from None
    return new_start, new_end


def bucket_index(edges: list[datetime], moment: datetime) -> int:
    """The bucket of `moment` among [edges[0], edges[-1]), which must hold it."""
    return bisect_right(edges, moment, 1, len(edges) - 1) - 1
