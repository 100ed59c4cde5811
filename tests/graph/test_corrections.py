"""amendEvent and deprecateEvent over HTTP (SPEC §3, C1–C6), on SQLite and PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa

from db.database import Database
from db.settings import Settings
from db.tables import event_corrections
from graph.app import create_app
from tests.support import (
    GraphQLClient,
    count_rows,
    create_customer,
    event_input,
    get_event,
    ingest,
    iso,
    now_utc,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

AMEND = """
mutation Amend($input: AmendEventInput!) {
  amendEvent(input: $input) {
    event { id eventId eventName metadata revision timestamp deprecated
            revisions { revision eventName metadata reason createdAt timestamp } }
    userErrors { code message field eventId }
  }
}
"""

DEPRECATE = """
mutation Deprecate($input: DeprecateEventInput!) {
  deprecateEvent(input: $input) {
    event { id eventId deprecated deprecatedAt deprecationReason revision }
    userErrors { code message field eventId }
  }
}
"""


async def amend(api: GraphQLClient, **fields: Any) -> dict[str, Any]:
    data = await api.data(AMEND, {"input": fields})
    payload: dict[str, Any] = data["amendEvent"]
    return payload


async def deprecate(api: GraphQLClient, event_id: str, reason: str | None = None) -> dict[str, Any]:
    data = await api.data(DEPRECATE, {"input": {"eventId": event_id, "reason": reason}})
    payload: dict[str, Any] = data["deprecateEvent"]
    return payload


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["userErrors"]]


@pytest_asyncio.fixture
async def customer(api: GraphQLClient) -> dict[str, Any]:
    return await create_customer(api, externalId="acme")


async def ingest_one(api: GraphQLClient, event_id: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("external_customer_id", "acme")
    payload = await ingest(api, [event_input(event_id, **fields)])
    assert payload["ingested"] == [event_id], payload
    event = await get_event(api, event_id)
    assert event is not None
    return event


# C1 — amend replaces the whole body, keeping every earlier one


async def test_c1_amend_replaces_the_body_and_keeps_the_old_one(
    api: GraphQLClient, customer: dict[str, Any]
) -> None:
    original = await ingest_one(api, "e1", metadata={"tokens": 10, "model": "small"})

    payload = await amend(
        api, eventId="e1", eventName="llm.tokens", metadata={"tokens": 12}, reason="recount"
    )

    assert payload["userErrors"] == []
    event = payload["event"]
    assert event["id"] == original["id"]
    assert event["eventId"] == "e1"
    assert event["eventName"] == "llm.tokens"
    assert event["metadata"] == {"tokens": 12}, "metadata is replaced, not merged"
    assert event["revision"] == 2
    assert event["timestamp"] == original["timestamp"]
    assert [
        (revision["revision"], revision["eventName"], revision["metadata"], revision["reason"])
        for revision in event["revisions"]
    ] == [
        (1, "api.request", {"tokens": 10, "model": "small"}, None),
        (2, "llm.tokens", {"tokens": 12}, "recount"),
    ]
    assert all(revision["timestamp"] == original["timestamp"] for revision in event["revisions"])
    stored = await get_event(api, "e1")
    assert stored is not None
    assert stored["metadata"] == {"tokens": 12}
    assert stored["revisions"][0]["createdAt"] <= stored["revisions"][1]["createdAt"]


async def test_c1_an_event_can_be_amended_many_times(
    api: GraphQLClient, customer: dict[str, Any]
) -> None:
    await ingest_one(api, "e1", metadata={"n": 0})
    for number in range(1, 6):
        payload = await amend(api, eventId="e1", eventName="api.request", metadata={"n": number})
        assert payload["event"]["revision"] == number + 1
    event = await get_event(api, "e1")
    assert event is not None
    assert [revision["metadata"]["n"] for revision in event["revisions"]] == [0, 1, 2, 3, 4, 5]


async def test_c1_new_body_is_validated_like_ingestion(
    api: GraphQLClient, database: Database, customer: dict[str, Any]
) -> None:
    await ingest_one(api, "e1")
    payload = await amend(
        api, eventId="e1", eventName="", metadata={"plan": {"nested": True}, "": 1}
    )
    assert payload["event"] is None
    assert [(error["code"], error["field"]) for error in payload["userErrors"]] == [
        ("EVENT_NAME_INVALID", ["eventName"]),
        ("METADATA_VALUE_INVALID", ["metadata", "plan"]),
        ("METADATA_KEY_INVALID", ["metadata", ""]),
    ]
    assert await count_rows(database, "event_revisions") == 1
    event = await get_event(api, "e1")
    assert event is not None
    assert event["revision"] == 1


async def test_c1_metadata_must_be_an_object(api: GraphQLClient, customer: dict[str, Any]) -> None:
    await ingest_one(api, "e1")
    payload = await amend(api, eventId="e1", eventName="api.request", metadata=[1])
    assert codes(payload) == ["METADATA_INVALID"]


async def test_c1_timestamp_must_match(api: GraphQLClient, customer: dict[str, Any]) -> None:
    moment = (now_utc() - timedelta(minutes=10)).replace(microsecond=250)
    await ingest_one(api, "e1", timestamp=iso(moment))

    wrong = await amend(
        api,
        eventId="e1",
        eventName="api.request",
        metadata={},
        timestamp=iso(moment + timedelta(microseconds=1)),
    )
    same_instant_elsewhere = await amend(
        api,
        eventId="e1",
        eventName="renamed",
        metadata={},
        timestamp=moment.astimezone(timezone(timedelta(hours=9))).isoformat(),
    )

    assert codes(wrong) == ["TIMESTAMP_MISMATCH"]
    assert wrong["userErrors"][0]["field"] == ["timestamp"]
    assert same_instant_elsewhere["userErrors"] == []
    assert same_instant_elsewhere["event"]["eventName"] == "renamed"


async def test_c1_customer_must_match(api: GraphQLClient, customer: dict[str, Any]) -> None:
    other = await create_customer(api, externalId="globex")
    await ingest_one(api, "e1")

    by_other_id = await amend(api, eventId="e1", eventName="x", metadata={}, customerId=other["id"])
    by_other_external_id = await amend(
        api, eventId="e1", eventName="x", metadata={}, externalCustomerId="globex"
    )
    by_own_id = await amend(
        api, eventId="e1", eventName="x", metadata={}, customerId=customer["id"]
    )
    by_own_external_id = await amend(
        api, eventId="e1", eventName="y", metadata={}, externalCustomerId="acme"
    )

    assert codes(by_other_id) == ["CUSTOMER_MISMATCH"]
    assert by_other_id["userErrors"][0]["field"] == ["customerId"]
    assert codes(by_other_external_id) == ["CUSTOMER_MISMATCH"]
    assert by_other_external_id["userErrors"][0]["field"] == ["externalCustomerId"]
    assert by_own_id["userErrors"] == []
    assert by_own_external_id["userErrors"] == []
    assert by_own_external_id["event"]["revision"] == 3


async def test_c1_identical_amendment_is_a_no_op(
    api: GraphQLClient, database: Database, customer: dict[str, Any]
) -> None:
    await ingest_one(api, "e1", metadata={"a": 1, "b": "x"})
    payload = await amend(api, eventId="e1", eventName="api.request", metadata={"b": "x", "a": 1})
    assert payload["userErrors"] == []
    assert payload["event"]["revision"] == 1
    assert len(payload["event"]["revisions"]) == 1
    assert await count_rows(database, "event_revisions") == 1
    assert await count_rows(database, "event_corrections") == 0


async def test_c1_identical_amendment_with_huge_floats_is_a_no_op(
    api: GraphQLClient, database: Database, customer: dict[str, Any]
) -> None:
    # Read back from PostgreSQL's jsonb, 1e16 must still be the float it was sent as.
    metadata = {"a": 1e16, "b": -2.5e200}
    await ingest_one(api, "e1", metadata=metadata)
    payload = await amend(api, eventId="e1", eventName="api.request", metadata=metadata)
    assert payload["userErrors"] == []
    assert payload["event"]["revision"] == 1
    assert await count_rows(database, "event_revisions") == 1

    payload = await amend(api, eventId="e1", eventName="api.request", metadata={"a": 10**16})
    assert payload["event"]["revision"] == 2
    assert type(payload["event"]["metadata"]["a"]) is int


async def test_c1_identical_amendment_with_negative_zero_is_a_no_op(
    api: GraphQLClient, database: Database, customer: dict[str, Any]
) -> None:
    # Stored as 0.0; sent again as -0.0, it is the same body and no correction.
    await ingest_one(api, "e1", metadata={"x": -0.0})
    for _ in range(2):
        payload = await amend(api, eventId="e1", eventName="api.request", metadata={"x": -0.0})
        assert payload["userErrors"] == []
        assert payload["event"]["revision"] == 1
    assert await count_rows(database, "event_corrections") == 0


@pytest.mark.parametrize("changed", [1.0, True, "1"])
async def test_c1_values_of_another_json_type_are_a_change(
    api: GraphQLClient, customer: dict[str, Any], changed: Any
) -> None:
    await ingest_one(api, "e1", metadata={"a": 1})
    payload = await amend(api, eventId="e1", eventName="api.request", metadata={"a": changed})
    assert payload["event"]["revision"] == 2
    assert payload["event"]["metadata"] == {"a": changed}
    assert type(payload["event"]["metadata"]["a"]) is type(changed)


# C2 — deprecate


async def test_c2_deprecate_marks_the_event_and_keeps_it_readable(
    api: GraphQLClient, customer: dict[str, Any]
) -> None:
    await ingest_one(api, "e1")
    before = now_utc()
    payload = await deprecate(api, "e1", reason="test traffic")
    assert payload["userErrors"] == []
    event = payload["event"]
    assert event["deprecated"] is True
    assert event["deprecationReason"] == "test traffic"
    assert datetime.fromisoformat(event["deprecatedAt"]) >= before - timedelta(seconds=1)
    stored = await get_event(api, "e1")
    assert stored is not None
    assert stored["deprecated"] is True
    assert stored["revision"] == 1


async def test_c2_deprecating_again_succeeds_and_changes_nothing(
    api: GraphQLClient, database: Database, customer: dict[str, Any]
) -> None:
    await ingest_one(api, "e1")
    first = await deprecate(api, "e1", reason="first")
    again = await deprecate(api, "e1", reason="second")
    assert again["userErrors"] == []
    assert again["event"] == first["event"]
    assert await count_rows(database, "event_corrections") == 1


# C1, C2 — a reason is at most 1000 characters


async def test_c1_c2_reason_of_1000_characters_is_kept(
    api: GraphQLClient, customer: dict[str, Any]
) -> None:
    await ingest_one(api, "e1")
    reason = "é" * 1000

    amended = await amend(api, eventId="e1", eventName="x", metadata={}, reason=reason)
    deprecated = await deprecate(api, "e1", reason=reason)

    assert amended["userErrors"] == []
    assert amended["event"]["revisions"][-1]["reason"] == reason
    assert deprecated["userErrors"] == []
    assert deprecated["event"]["deprecationReason"] == reason


async def test_c1_longer_reason_refuses_the_amendment_before_reading_the_event(
    api: GraphQLClient, database: Database, customer: dict[str, Any], statements: list[str]
) -> None:
    # Given a stored event
    await ingest_one(api, "e1", metadata={"n": 0})
    statements.clear()

    # When it is amended with a reason of 1001 characters
    payload = await amend(api, eventId="e1", eventName="x", metadata={"n": 1}, reason="r" * 1001)

    # Then the amendment is refused before any event row is read, and nothing is written
    assert payload["event"] is None
    assert [
        (error["code"], error["field"], error["eventId"]) for error in payload["userErrors"]
    ] == [("REASON_TOO_LONG", ["reason"], "e1")]
    assert not [sql for sql in statements if "FROM events" in sql]
    assert await count_rows(database, "event_revisions") == 1
    assert await count_rows(database, "event_corrections") == 0
    event = await get_event(api, "e1")
    assert event is not None
    assert (event["revision"], event["eventName"], event["metadata"]) == (
        1,
        "api.request",
        {"n": 0},
    )


async def test_c2_longer_reason_refuses_the_deprecation_before_reading_the_event(
    api: GraphQLClient, database: Database, customer: dict[str, Any], statements: list[str]
) -> None:
    # Given a stored event
    await ingest_one(api, "e1")
    statements.clear()

    # When it is deprecated with a reason of 1001 characters
    payload = await deprecate(api, "e1", reason="r" * 1001)

    # Then the deprecation is refused before any event row is read, and nothing is written
    assert payload["event"] is None
    assert [
        (error["code"], error["field"], error["eventId"]) for error in payload["userErrors"]
    ] == [("REASON_TOO_LONG", ["reason"], "e1")]
    assert not [sql for sql in statements if "FROM events" in sql]
    assert await count_rows(database, "event_corrections") == 0
    event = await get_event(api, "e1")
    assert event is not None
    assert event["deprecated"] is False
    assert event["deprecationReason"] is None


async def test_i9_deprecated_event_id_cannot_be_ingested_again(
    api: GraphQLClient, customer: dict[str, Any]
) -> None:
    await ingest_one(api, "e1")
    await deprecate(api, "e1")
    payload = await ingest(api, [event_input("e1", external_customer_id="acme")])
    assert codes(payload) == ["EVENT_DEPRECATED"]
    assert payload["ingestedCount"] == 0


# C3 — deprecated and unknown events


async def test_c3_amending_a_deprecated_event_fails(
    api: GraphQLClient, database: Database, customer: dict[str, Any]
) -> None:
    await ingest_one(api, "e1")
    await deprecate(api, "e1")
    payload = await amend(api, eventId="e1", eventName="x", metadata={"a": 1})
    assert payload["event"] is None
    assert payload["userErrors"] == [
        {
            "code": "EVENT_DEPRECATED",
            "message": "The event is deprecated and can no longer be amended.",
            "field": ["eventId"],
            "eventId": "e1",
        }
    ]
    assert await count_rows(database, "event_revisions") == 1


async def test_c3_unknown_event_is_not_found(api: GraphQLClient) -> None:
    amended = await amend(api, eventId="nope", eventName="x", metadata={})
    deprecated = await deprecate(api, "nope")
    for payload in (amended, deprecated):
        assert payload["event"] is None
        assert codes(payload) == ["EVENT_NOT_FOUND"]
        assert payload["userErrors"][0]["field"] == ["eventId"]


async def test_c3_t2_other_business_event_is_not_found(
    api: GraphQLClient, other_api: GraphQLClient, database: Database, customer: dict[str, Any]
) -> None:
    await ingest_one(api, "e1")
    await create_customer(other_api, externalId="acme")
    amended = await amend(other_api, eventId="e1", eventName="x", metadata={})
    deprecated = await deprecate(other_api, "e1")
    assert codes(amended) == ["EVENT_NOT_FOUND"]
    assert codes(deprecated) == ["EVENT_NOT_FOUND"]
    event = await get_event(api, "e1")
    assert event is not None
    assert event["revision"] == 1
    assert event["deprecated"] is False
    assert await count_rows(database, "event_corrections") == 0


# C4 — the event's customer must exist


async def test_c4_event_of_a_customer_not_yet_created_cannot_be_corrected(
    api: GraphQLClient, database: Database
) -> None:
    await ingest_one(api, "e1", external_customer_id="future-co")

    amended = await amend(api, eventId="e1", eventName="x", metadata={})
    deprecated = await deprecate(api, "e1")

    assert codes(amended) == ["CUSTOMER_NOT_FOUND"]
    assert codes(deprecated) == ["CUSTOMER_NOT_FOUND"]
    assert "future-co" in amended["userErrors"][0]["message"]
    assert await count_rows(database, "event_revisions") == 1

    await create_customer(api, externalId="future-co")
    assert (await amend(api, eventId="e1", eventName="x", metadata={}))["userErrors"] == []
    assert (await deprecate(api, "e1"))["userErrors"] == []


async def test_c4_event_sent_by_customer_id_can_be_corrected(
    api: GraphQLClient, customer: dict[str, Any]
) -> None:
    await ingest_one(api, "e1", customer_id=customer["id"])
    payload = await amend(api, eventId="e1", eventName="x", metadata={})
    assert payload["userErrors"] == []


# C5 — per-customer rolling limits


@pytest_asyncio.fixture
async def limited_api(
    settings: Settings, database: Database, api: GraphQLClient
) -> AsyncIterator[GraphQLClient]:
    """The same tenant on a server whose correction limit is 3."""
    limited = settings.model_copy(update={"correction_limit": 3})
    transport = httpx.ASGITransport(app=create_app(limited, database))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield GraphQLClient(client, api.tenant)


async def test_c5_amendments_per_customer_are_limited(
    limited_api: GraphQLClient, database: Database, customer: dict[str, Any]
) -> None:
    for index in range(4):
        await ingest_one(limited_api, f"e{index}")
    for index in range(3):
        payload = await amend(limited_api, eventId=f"e{index}", eventName="x", metadata={})
        assert payload["userErrors"] == []

    refused = await amend(limited_api, eventId="e3", eventName="x", metadata={})

    assert codes(refused) == ["CORRECTION_LIMIT_EXCEEDED"]
    assert refused["userErrors"][0]["eventId"] == "e3"
    assert await count_rows(database, "event_revisions") == 4 + 3
    # An identical body is a no-op, and no-ops pass even at the limit.
    same = await amend(limited_api, eventId="e0", eventName="x", metadata={})
    assert same["userErrors"] == []
    assert same["event"]["revision"] == 2


async def test_c5_amendments_and_deprecations_are_counted_separately(
    limited_api: GraphQLClient, customer: dict[str, Any]
) -> None:
    for index in range(4):
        await ingest_one(limited_api, f"e{index}")
    for index in range(3):
        assert (await amend(limited_api, eventId=f"e{index}", eventName="x", metadata={}))[
            "userErrors"
        ] == []
    for index in range(3):
        assert (await deprecate(limited_api, f"e{index}"))["userErrors"] == []
    assert codes(await deprecate(limited_api, "e3")) == ["CORRECTION_LIMIT_EXCEEDED"]


async def test_c5_limits_are_per_customer(
    limited_api: GraphQLClient, customer: dict[str, Any]
) -> None:
    await create_customer(limited_api, externalId="globex")
    for index in range(3):
        await ingest_one(limited_api, f"acme-{index}")
        assert (await amend(limited_api, eventId=f"acme-{index}", eventName="x", metadata={}))[
            "userErrors"
        ] == []
    await ingest_one(limited_api, "globex-0", external_customer_id="globex")
    payload = await amend(limited_api, eventId="globex-0", eventName="x", metadata={})
    assert payload["userErrors"] == []


async def test_c5_corrections_older_than_the_window_do_not_count(
    limited_api: GraphQLClient, database: Database, customer: dict[str, Any]
) -> None:
    for index in range(4):
        await ingest_one(limited_api, f"e{index}")
    for index in range(3):
        await amend(limited_api, eventId=f"e{index}", eventName="x", metadata={})
    async with database.unit_of_work() as session:
        await session.execute(
            sa.update(event_corrections).values(created_at=now_utc() - timedelta(days=101))
        )
    payload = await amend(limited_api, eventId="e3", eventName="x", metadata={})
    assert payload["userErrors"] == []


async def test_c5_limit_of_zero_disables_it(
    settings: Settings, database: Database, api: GraphQLClient, customer: dict[str, Any]
) -> None:
    unlimited = settings.model_copy(update={"correction_limit": 0})
    transport = httpx.ASGITransport(app=create_app(unlimited, database))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        unlimited_api = GraphQLClient(client, api.tenant)
        await ingest_one(unlimited_api, "e1")
        for number in range(150):
            payload = await amend(
                unlimited_api, eventId="e1", eventName="x", metadata={"n": number}
            )
            assert payload["userErrors"] == []
    event = await get_event(api, "e1")
    assert event is not None
    assert event["revision"] == 151


async def test_c5_limit_holds_under_concurrent_corrections(
    limited_api: GraphQLClient, database: Database, customer: dict[str, Any]
) -> None:
    await ingest(
        limited_api,
        [event_input(f"e{index}", external_customer_id="acme") for index in range(12)],
    )

    payloads = await asyncio.gather(
        *(
            amend(limited_api, eventId=f"e{index}", eventName="x", metadata={"n": index})
            for index in range(12)
        )
    )

    succeeded = [payload for payload in payloads if not payload["userErrors"]]
    refused = [payload for payload in payloads if payload["userErrors"]]
    assert len(succeeded) == 3
    assert all(codes(payload) == ["CORRECTION_LIMIT_EXCEEDED"] for payload in refused)
    assert await count_rows(database, "event_revisions") == 12 + 3


# C6 — racing amendments


async def test_c6_racing_amendments_get_consecutive_revisions(
    api: GraphQLClient, database: Database, customer: dict[str, Any]
) -> None:
    await ingest_one(api, "e1", metadata={"n": 0})

    payloads = await asyncio.gather(
        *(
            amend(api, eventId="e1", eventName="x", metadata={"n": number})
            for number in range(1, 13)
        )
    )

    assert all(payload["userErrors"] == [] for payload in payloads)
    assert sorted(payload["event"]["revision"] for payload in payloads) == list(range(2, 14))
    event = await get_event(api, "e1")
    assert event is not None
    assert event["revision"] == 13
    assert [revision["revision"] for revision in event["revisions"]] == list(range(1, 14))
    assert event["metadata"] == event["revisions"][-1]["metadata"]
    bodies = sorted(revision["metadata"]["n"] for revision in event["revisions"])
    assert bodies == list(range(13)), "no amendment was lost"
    assert await count_rows(database, "event_revisions") == 13
