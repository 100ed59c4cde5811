"""eventVolume over HTTP (SPEC §15, V1–V2), on SQLite and PostgreSQL.

Events are ingested through the API into the past (a wide INGEST_PAST_WINDOW for these
tests) and corrected through the API; every count below is computed by hand.
"""

import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from db.settings import Settings
from tests.support import (
    GraphQLClient,
    bad_user_input,
    create_customer,
    event_input,
    ingest,
    iso,
    now_utc,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

VOLUME = """
query Volume($input: EventVolumeInput!) {
  eventVolume(input: $input) { total buckets { start end count } }
}
"""

DEPRECATE = """
mutation Deprecate($input: DeprecateEventInput!) {
  deprecateEvent(input: $input) { event { deprecated } userErrors { code } }
}
"""

DAY = "2026-01-10"
# A statement that reads the events, or their counts in the volume rollups (not
# event_revisions, not event_corrections).
READS_EVENTS = re.compile(r"\b(events|volume_rollups)\b")


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, ingest_past_window=timedelta(days=36500))


async def volume(api: GraphQLClient, **fields: Any) -> dict[str, Any]:
    data = await api.data(VOLUME, {"input": fields})
    answer: dict[str, Any] = data["eventVolume"]
    return answer


async def refused(api: GraphQLClient, **fields: Any) -> tuple[str, list[str]]:
    return await bad_user_input(api, VOLUME, {"input": fields})


async def put(api: GraphQLClient, *events: tuple[str, str], **common: Any) -> None:
    """Events (eventId, time of day on DAY in UTC)."""
    payload = await ingest(
        api,
        [event_input(event_id, timestamp=f"{DAY}T{time}Z", **common) for event_id, time in events],
    )
    assert payload["userErrors"] == []


def counts(answer: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(bucket["start"], bucket["end"], bucket["count"]) for bucket in answer["buckets"]]


def hour(time: str) -> str:
    return f"{DAY}T{time}.000000Z"


async def test_v1_hourly_buckets_by_default(api: GraphQLClient) -> None:
    # Given events at 01:10, 01:50 and 03:00 UTC
    await put(api, ("a", "01:10:00"), ("b", "01:50:00"), ("c", "03:00:00"))
    # When the volume from 00:00 to 04:00 is asked for with no granularity or zone
    answer = await volume(api, **{"from": f"{DAY}T00:00:00Z", "to": f"{DAY}T04:00:00Z"})
    # Then it comes in UTC hours, dense, and its total is their sum (V2)
    assert counts(answer) == [
        (hour("00:00:00"), hour("01:00:00"), 0),
        (hour("01:00:00"), hour("02:00:00"), 2),
        (hour("02:00:00"), hour("03:00:00"), 0),
        (hour("03:00:00"), hour("04:00:00"), 1),
    ]
    assert answer["total"] == 3


async def test_v1_from_and_to_are_widened_to_whole_buckets(api: GraphQLClient) -> None:
    # Given events before `from` and after `to`, but in their hours
    await put(api, ("early", "10:05:00"), ("late", "12:30:00"), ("outside", "13:00:00"))
    # When the volume from 10:20 to 12:10 is asked for
    answer = await volume(api, **{"from": f"{DAY}T10:20:00Z", "to": f"{DAY}T12:10:00Z"})
    # Then the buckets are whole hours, 10:00 to 13:00, and count what is in them
    assert counts(answer) == [
        (hour("10:00:00"), hour("11:00:00"), 1),
        (hour("11:00:00"), hour("12:00:00"), 0),
        (hour("12:00:00"), hour("13:00:00"), 1),
    ]
    assert answer["total"] == 2


async def test_v1_kolkata_hours_start_at_half_past(api: GraphQLClient) -> None:
    await put(api, ("a", "09:29:59"), ("b", "09:30:00"), ("c", "10:29:59.999999"))
    answer = await volume(
        api,
        **{"from": f"{DAY}T10:20:00Z", "to": f"{DAY}T10:40:00Z"},
        timeZone="Asia/Kolkata",
    )
    # 10:20 UTC is 15:50 in Kolkata: its hour starts at 09:30 UTC
    assert counts(answer) == [
        (hour("09:30:00"), hour("10:30:00"), 2),
        (hour("10:30:00"), hour("11:30:00"), 0),
    ]


async def test_v1_days_in_berlin(api: GraphQLClient) -> None:
    await put(api, ("a", "22:59:59"), ("b", "23:00:00"))
    answer = await volume(
        api,
        **{"from": f"{DAY}T12:00:00Z", "to": f"{DAY}T23:30:00Z"},
        granularity="DAY",
        timeZone="Europe/Berlin",
    )
    # Berlin's 10 January runs from 23:00 UTC on the 9th to 23:00 UTC on the 10th
    assert counts(answer) == [
        ("2026-01-09T23:00:00.000000Z", hour("23:00:00"), 1),
        (hour("23:00:00"), "2026-01-11T23:00:00.000000Z", 1),
    ]


async def test_v1_event_time_or_ingestion_time(api: GraphQLClient) -> None:
    # Given events stamped on DAY but ingested now
    await put(api, ("a", "01:00:00"), ("b", "02:00:00"))
    now = now_utc()
    recent = {"from": iso(now - timedelta(hours=2)), "to": iso(now + timedelta(minutes=1))}
    day = {"from": f"{DAY}T00:00:00Z", "to": f"{DAY}T03:00:00Z"}
    # Then by event time they are on DAY, by ingestion time in the last hours
    assert (await volume(api, **day))["total"] == 2
    assert (await volume(api, **day, basis="EVENT_TIME"))["total"] == 2
    assert (await volume(api, **day, basis="INGESTION_TIME"))["total"] == 0
    assert (await volume(api, **recent))["total"] == 0
    by_arrival = await volume(api, **recent, basis="INGESTION_TIME")
    assert by_arrival["total"] == 2
    [arrived] = [bucket for bucket in by_arrival["buckets"] if bucket["count"]]
    ingested = now - timedelta(seconds=30)
    assert datetime.fromisoformat(arrived["start"]) <= now
    assert ingested < datetime.fromisoformat(arrived["end"])


async def test_v1_to_defaults_to_now(api: GraphQLClient) -> None:
    payload = await ingest(
        api, [event_input("a", minutes_ago=1), event_input("b", minutes_ago=200)]
    )
    assert payload["userErrors"] == []
    now = now_utc()
    answer = await volume(api, **{"from": iso(now - timedelta(hours=2))})
    # From the hour two hours ago to the end of the current hour: 3 buckets (or 2 at :00)
    last = answer["buckets"][-1]
    assert datetime.fromisoformat(last["start"]) <= now < datetime.fromisoformat(last["end"])
    assert datetime.fromisoformat(last["end"]) - now <= timedelta(hours=1)
    assert last["count"] == 1 or answer["buckets"][-2]["count"] == 1
    assert answer["total"] == 1  # 200 minutes ago is before the first bucket


async def test_v1_customer_by_id_and_by_external_id(api: GraphQLClient) -> None:
    acme = await create_customer(api, externalId="acme")
    plain = await create_customer(api)
    await put(api, ("by-external-id", "01:00:00"), external_customer_id="acme")
    await put(api, ("by-id", "01:00:00"), customer_id=acme["id"])
    await put(api, ("other", "01:00:00"), external_customer_id="zed")
    await put(api, ("plain", "01:00:00"), customer_id=plain["id"])
    day = {"from": f"{DAY}T00:00:00Z", "to": f"{DAY}T02:00:00Z"}
    assert (await volume(api, **day, customerId=acme["id"]))["total"] == 2
    assert (await volume(api, **day, customerId=plain["id"]))["total"] == 1
    assert (await volume(api, **day))["total"] == 4


async def test_v1_event_name(api: GraphQLClient) -> None:
    await put(api, ("a", "01:00:00"), ("b", "01:10:00"), event_name="llm")
    await put(api, ("c", "01:20:00"), event_name="api.request")
    day = {"from": f"{DAY}T00:00:00Z", "to": f"{DAY}T02:00:00Z"}
    assert (await volume(api, **day, eventName="llm"))["total"] == 2
    assert (await volume(api, **day, eventName="api.request"))["total"] == 1
    assert (await volume(api, **day, eventName="nothing"))["total"] == 0


async def test_v1_deprecated_events_only_when_included(api: GraphQLClient) -> None:
    await create_customer(api, externalId="cust-1")  # C4: corrections need the customer
    await put(api, ("a", "01:00:00"), ("b", "01:10:00"))
    data = await api.data(DEPRECATE, {"input": {"eventId": "a"}})
    assert data["deprecateEvent"]["userErrors"] == []
    day = {"from": f"{DAY}T00:00:00Z", "to": f"{DAY}T02:00:00Z"}
    assert (await volume(api, **day))["total"] == 1
    assert (await volume(api, **day, includeDeprecated=False))["total"] == 1
    assert (await volume(api, **day, includeDeprecated=True))["total"] == 2


async def test_v2_dense_buckets_total_is_their_sum(api: GraphQLClient) -> None:
    await put(api, ("a", "00:00:00"), ("b", "05:59:59"), ("c", "23:59:59.999999"))
    answer = await volume(
        api, **{"from": f"{DAY}T00:00:00Z", "to": "2026-01-11T00:00:00Z"}, granularity="HOUR"
    )
    assert len(answer["buckets"]) == 24
    assert [bucket["count"] for bucket in answer["buckets"]] == [1, 0, 0, 0, 0, 1] + [0] * 17 + [1]
    assert answer["total"] == sum(bucket["count"] for bucket in answer["buckets"]) == 3
    ends = [bucket["end"] for bucket in answer["buckets"][:-1]]
    assert ends == [bucket["start"] for bucket in answer["buckets"][1:]]


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        ({"to": f"{DAY}T00:00:00Z"}, "TIME_RANGE_INVALID", ["to"]),
        ({"to": "2026-01-09T00:00:00Z"}, "TIME_RANGE_INVALID", ["to"]),
        ({"from": "2999-01-01T00:00:00Z", "to": None}, "TIME_RANGE_INVALID", ["from"]),
        ({"timeZone": "Mars/Olympus"}, "TIME_ZONE_INVALID", ["timeZone"]),
        ({"timeZone": "../../etc/passwd"}, "TIME_ZONE_INVALID", ["timeZone"]),
        (
            {"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "granularity": "MINUTE"},
            "USAGE_RESULT_TOO_LARGE",
            ["granularity"],
        ),
    ],
)
async def test_v2_bounds_refused_before_any_query_of_events(
    api: GraphQLClient,
    statements: list[str],
    fields: dict[str, Any],
    reason: str,
    field: list[str],
) -> None:
    await put(api, ("a", "01:00:00"))
    statements.clear()
    request = {"from": f"{DAY}T00:00:00Z", "to": f"{DAY}T02:00:00Z", **fields}
    assert await refused(api, **request) == (reason, field)
    assert not [statement for statement in statements if READS_EVENTS.search(statement)]
    # And the same request made valid does read them
    await volume(api, **{"from": f"{DAY}T00:00:00Z", "to": f"{DAY}T02:00:00Z"})
    assert [statement for statement in statements if READS_EVENTS.search(statement)]


async def test_v2_another_business_customer_does_not_exist_and_its_events_never_count(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    acme = await create_customer(api, externalId="acme")
    await put(api, ("a", "01:00:00"), ("b", "01:00:00"), external_customer_id="acme")
    day = {"from": f"{DAY}T00:00:00Z", "to": f"{DAY}T02:00:00Z"}
    assert await refused(other_api, **day, customerId=acme["id"]) == (
        "CUSTOMER_NOT_FOUND",
        ["customerId"],
    )
    assert await refused(api, **day, customerId="cus_nope") == (
        "CUSTOMER_NOT_FOUND",
        ["customerId"],
    )
    for basis in ("EVENT_TIME", "INGESTION_TIME"):
        recent = {"from": iso(now_utc() - timedelta(hours=1))} if basis == "INGESTION_TIME" else day
        answer = await volume(other_api, **recent, basis=basis, includeDeprecated=True)
        assert answer["total"] == 0
    assert (await volume(api, **day))["total"] == 2
