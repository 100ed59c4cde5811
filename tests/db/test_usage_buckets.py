"""Calendar buckets in IANA zones (U5, V1, U7's bucket count), without a database."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from db.errors import BadUserInput, UserErrorCode
from db.settings import Settings
from db.usage.buckets import bucket_edges, bucket_index, time_zone, widened
from db.usage.plan import check_usage_query
from db.usage.query import Granularity, UsageQuery


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def edges(
    start: str, end: str, granularity: Granularity | None, zone: str = "UTC"
) -> list[datetime]:
    found = bucket_edges(utc(start), utc(end), granularity, _zone(zone), 10_000)
    assert found is not None
    return found


def _zone(name: str) -> ZoneInfo:
    zone = time_zone(name)
    assert zone is not None
    return zone


def lengths(found: list[datetime]) -> list[timedelta]:
    return [later - earlier for earlier, later in pairwise(found)]


def test_u5_berlin_spring_day_has_23_hours() -> None:
    # 2026-03-29: clocks go from 02:00 CET to 03:00 CEST
    found = edges("2026-03-28T23:00:00", "2026-03-30T22:00:00", Granularity.DAY, "Europe/Berlin")
    assert found == [
        utc("2026-03-28T23:00:00"),
        utc("2026-03-29T22:00:00"),
        utc("2026-03-30T22:00:00"),
    ]
    assert lengths(found) == [timedelta(hours=23), timedelta(hours=24)]


def test_u5_berlin_autumn_day_has_25_hours() -> None:
    # 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET
    found = edges("2026-10-24T22:00:00", "2026-10-26T23:00:00", Granularity.DAY, "Europe/Berlin")
    assert found == [
        utc("2026-10-24T22:00:00"),
        utc("2026-10-25T23:00:00"),
        utc("2026-10-26T23:00:00"),
    ]
    assert lengths(found) == [timedelta(hours=25), timedelta(hours=24)]


def test_u5_berlin_spring_day_in_hours_is_23_hours_long() -> None:
    found = edges("2026-03-28T23:00:00", "2026-03-29T22:00:00", Granularity.HOUR, "Europe/Berlin")
    assert len(found) - 1 == 23
    assert set(lengths(found)) == {timedelta(hours=1)}


def test_u5_berlin_autumn_day_in_hours_repeats_the_hour_from_two_to_three() -> None:
    found = edges("2026-10-24T22:00:00", "2026-10-25T23:00:00", Granularity.HOUR, "Europe/Berlin")
    assert len(found) - 1 == 25
    assert set(lengths(found)) == {timedelta(hours=1)}
    zone = _zone("Europe/Berlin")
    local_hours = [edge.astimezone(zone).hour for edge in found[:-1]]
    assert local_hours[:5] == [0, 1, 2, 2, 3]  # 02:00 CEST, then 02:00 CET


def test_u5_kolkata_hours_start_at_half_past_utc() -> None:
    found = edges("2026-01-10T00:00:00", "2026-01-10T03:00:00", Granularity.HOUR, "Asia/Kolkata")
    assert found == [
        utc("2026-01-10T00:00:00"),
        utc("2026-01-10T00:30:00"),
        utc("2026-01-10T01:30:00"),
        utc("2026-01-10T02:30:00"),
        utc("2026-01-10T03:00:00"),
    ]


def test_u5_kathmandu_hours_and_days_start_at_quarter_past() -> None:
    hours = edges("2026-01-10T00:00:00", "2026-01-10T02:00:00", Granularity.HOUR, "Asia/Kathmandu")
    assert hours[1:-1] == [utc("2026-01-10T00:15:00"), utc("2026-01-10T01:15:00")]
    # Local midnight in Kathmandu (+05:45) is 18:15 UTC the day before
    days = edges("2026-01-09T00:00:00", "2026-01-11T00:00:00", Granularity.DAY, "Asia/Kathmandu")
    assert days[1:-1] == [utc("2026-01-09T18:15:00"), utc("2026-01-10T18:15:00")]


def test_u5_weeks_start_on_monday() -> None:
    # 2026-01-07 is a Wednesday; the Mondays after it are the 12th and the 19th
    found = edges("2026-01-07T00:00:00", "2026-01-21T00:00:00", Granularity.WEEK)
    assert found[1:-1] == [utc("2026-01-12T00:00:00"), utc("2026-01-19T00:00:00")]
    assert all(edge.weekday() == 0 for edge in found[1:-1])


def test_u5_months_follow_the_calendar_with_a_leap_february() -> None:
    found = edges("2028-01-15T00:00:00", "2028-04-10T00:00:00", Granularity.MONTH)
    assert found == [
        utc("2028-01-15T00:00:00"),
        utc("2028-02-01T00:00:00"),
        utc("2028-03-01T00:00:00"),
        utc("2028-04-01T00:00:00"),
        utc("2028-04-10T00:00:00"),
    ]
    assert lengths(found)[1] == timedelta(days=29)


def test_u5_months_in_berlin_start_at_local_midnight() -> None:
    found = edges("2026-03-15T00:00:00", "2026-05-15T00:00:00", Granularity.MONTH, "Europe/Berlin")
    # March starts in winter time (UTC+1), April and May in summer time (UTC+2)
    assert found[1:-1] == [utc("2026-03-31T22:00:00"), utc("2026-04-30T22:00:00")]


def test_u5_first_and_last_buckets_are_clipped_to_the_range() -> None:
    found = edges("2026-01-10T10:20:00", "2026-01-10T13:10:00", Granularity.HOUR)
    assert found == [
        utc("2026-01-10T10:20:00"),
        utc("2026-01-10T11:00:00"),
        utc("2026-01-10T12:00:00"),
        utc("2026-01-10T13:00:00"),
        utc("2026-01-10T13:10:00"),
    ]


def test_u5_a_range_on_edges_is_not_clipped() -> None:
    found = edges("2026-01-10T10:00:00", "2026-01-10T12:00:00", Granularity.HOUR)
    assert found == [
        utc("2026-01-10T10:00:00"),
        utc("2026-01-10T11:00:00"),
        utc("2026-01-10T12:00:00"),
    ]


def test_u5_without_granularity_one_bucket_spans_the_range() -> None:
    found = edges("2026-01-10T10:20:00", "2026-03-10T13:10:00", None, "Europe/Berlin")
    assert found == [utc("2026-01-10T10:20:00"), utc("2026-03-10T13:10:00")]


def test_u5_an_instant_belongs_to_the_bucket_that_starts_at_or_before_it() -> None:
    found = edges("2026-01-10T10:20:00", "2026-01-10T13:10:00", Granularity.HOUR)
    assert bucket_index(found, utc("2026-01-10T10:20:00")) == 0
    assert bucket_index(found, utc("2026-01-10T10:59:59.999999")) == 0
    assert bucket_index(found, utc("2026-01-10T11:00:00")) == 1
    assert bucket_index(found, utc("2026-01-10T13:09:59.999999")) == 3


def test_v1_widening_to_whole_hours() -> None:
    zone = _zone("UTC")
    start, end = widened(
        utc("2026-01-10T10:20:00"), utc("2026-01-10T13:10:00"), Granularity.HOUR, zone
    )
    assert (start, end) == (utc("2026-01-10T10:00:00"), utc("2026-01-10T14:00:00"))
    # Edges already whole stay where they are
    start, end = widened(
        utc("2026-01-10T10:00:00"), utc("2026-01-10T13:00:00"), Granularity.HOUR, zone
    )
    assert (start, end) == (utc("2026-01-10T10:00:00"), utc("2026-01-10T13:00:00"))


def test_v1_widening_in_kolkata_and_to_whole_berlin_days() -> None:
    start, end = widened(
        utc("2026-01-10T10:20:00"),
        utc("2026-01-10T10:40:00"),
        Granularity.HOUR,
        _zone("Asia/Kolkata"),
    )
    assert (start, end) == (utc("2026-01-10T09:30:00"), utc("2026-01-10T11:30:00"))
    start, end = widened(
        utc("2026-03-29T12:00:00"),
        utc("2026-03-29T13:00:00"),
        Granularity.DAY,
        _zone("Europe/Berlin"),
    )
    assert (start, end) == (utc("2026-03-28T23:00:00"), utc("2026-03-29T22:00:00"))


def test_u7_the_bucket_count_is_bounded_without_computing_every_edge() -> None:
    zone = _zone("UTC")
    start, end = utc("2026-01-10T00:00:00"), utc("2026-01-10T01:00:00")
    # Exactly as many buckets as allowed is fine; one more is not
    assert bucket_edges(start, end, Granularity.MINUTE, zone, 60) is not None
    assert bucket_edges(start, end, Granularity.MINUTE, zone, 59) is None
    # Nearly ten thousand years of minutes: refused after the first few, at once
    assert (
        bucket_edges(
            utc("0002-01-01T00:00:00"), utc("9998-01-01T00:00:00"), Granularity.MINUTE, zone, 10
        )
        is None
    )


def test_u7_a_minute_query_over_a_year_is_refused_before_any_query() -> None:
    # check_usage_query needs no database: the refusal comes before the meter is read
    query = UsageQuery(
        meter_id="mtr_any",
        start=utc("2025-01-01T00:00:00"),
        end=utc("2026-01-01T00:00:00"),
        granularity=Granularity.MINUTE,
    )
    with pytest.raises(BadUserInput) as refused:
        check_usage_query(query, Settings())
    assert refused.value.code is UserErrorCode.USAGE_RESULT_TOO_LARGE
    assert refused.value.field == ("granularity",)


def test_u7_unknown_zones_are_not_zones() -> None:
    assert time_zone("Mars/Olympus") is None
    assert time_zone("../../etc/passwd") is None
    assert time_zone("") is None
    assert time_zone("Asia/Kathmandu") is not None
