"""ingestEvents over HTTP, rule by rule (SPEC §2, I1–I12), on SQLite and PostgreSQL."""

from datetime import timedelta
from typing import Any

import pytest

from db.database import Database
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


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["userErrors"]]


async def assert_nothing_stored(database: Database) -> None:
    assert await count_rows(database, "events") == 0
    assert await count_rows(database, "event_revisions") == 0


def rejected(payload: dict[str, Any]) -> None:
    assert payload["ingestedCount"] == 0
    assert payload["duplicateCount"] == 0
    assert payload["ingested"] == []
    assert payload["duplicates"] == []


# I1 — batch size


async def test_i1_a_full_batch_written_inline_fits_the_request_bounds(
    api: GraphQLClient, database: Database
) -> None:
    # No variables: 1000 events with 50 metadata keys each, as GraphQL literals.
    metadata = "{" + ", ".join(f'key{index}: "value"' for index in range(50)) + "}"
    events = ", ".join(
        f'{{eventId: "e{index}", eventName: "api.request", externalCustomerId: "acme", '
        f"metadata: {metadata}}}"
        for index in range(1000)
    )
    response = await api.post(
        f"mutation {{ ingestEvents(input: {{events: [{events}]}}) {{ ingestedCount }} }}"
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"ingestEvents": {"ingestedCount": 1000}}}
    assert await count_rows(database, "events") == 1000


async def test_i1_empty_batch_is_rejected(api: GraphQLClient, database: Database) -> None:
    payload = await ingest(api, [])
    rejected(payload)
    assert payload["userErrors"] == [
        {
            "code": "EMPTY_BATCH",
            "message": "The batch holds no events.",
            "field": ["events"],
            "eventId": None,
        }
    ]
    await assert_nothing_stored(database)


async def test_i1_batch_of_1001_events_is_rejected(api: GraphQLClient, database: Database) -> None:
    events = [event_input(f"e-{index}") for index in range(1001)]
    payload = await ingest(api, events)
    rejected(payload)
    assert codes(payload) == ["BATCH_TOO_LARGE"]
    assert payload["userErrors"][0]["field"] == ["events"]
    await assert_nothing_stored(database)


async def test_i1_batch_of_1000_events_is_accepted(api: GraphQLClient, database: Database) -> None:
    events = [event_input(f"e-{index}") for index in range(1000)]
    payload = await ingest(api, events)
    assert payload["userErrors"] == []
    assert payload["ingestedCount"] == 1000
    assert await count_rows(database, "events") == 1000
    assert await count_rows(database, "event_revisions") == 1000


# I2 — eventId


@pytest.mark.parametrize("event_id", ["", "x" * 256])
async def test_i2_event_id_outside_1_to_255_characters(
    api: GraphQLClient, database: Database, event_id: str
) -> None:
    payload = await ingest(api, [event_input(event_id)])
    rejected(payload)
    assert codes(payload) == ["EVENT_ID_INVALID"]
    assert payload["userErrors"][0]["field"] == ["events", "0", "eventId"]
    await assert_nothing_stored(database)


async def test_i2_event_id_of_255_characters_is_accepted(api: GraphQLClient) -> None:
    payload = await ingest(api, [event_input("x" * 255)])
    assert payload["ingested"] == ["x" * 255]


async def test_i2_event_ids_are_case_sensitive(api: GraphQLClient) -> None:
    payload = await ingest(api, [event_input("Order-1"), event_input("order-1")])
    assert payload["ingested"] == ["Order-1", "order-1"]
    assert (await get_event(api, "ORDER-1")) is None


# I3 — eventName


@pytest.mark.parametrize("event_name", ["", "n" * 256])
async def test_i3_event_name_outside_1_to_255_characters(
    api: GraphQLClient, database: Database, event_name: str
) -> None:
    payload = await ingest(api, [event_input("e1", event_name=event_name)])
    rejected(payload)
    assert payload["userErrors"][0]["code"] == "EVENT_NAME_INVALID"
    assert payload["userErrors"][0]["field"] == ["events", "0", "eventName"]
    assert payload["userErrors"][0]["eventId"] == "e1"
    await assert_nothing_stored(database)


# I4 — customer reference


async def test_i4_neither_customer_reference_is_invalid(
    api: GraphQLClient, database: Database
) -> None:
    payload = await ingest(api, [event_input("e1", external_customer_id=None)])
    assert codes(payload) == ["CUSTOMER_REFERENCE_INVALID"]
    assert payload["userErrors"][0]["eventId"] == "e1"
    await assert_nothing_stored(database)


async def test_i4_both_customer_references_are_invalid(
    api: GraphQLClient, database: Database
) -> None:
    customer = await create_customer(api, externalId="acme")
    event = event_input("e1") | {"customerId": customer["id"], "externalCustomerId": "acme"}
    payload = await ingest(api, [event])
    assert codes(payload) == ["CUSTOMER_REFERENCE_INVALID"]
    await assert_nothing_stored(database)


@pytest.mark.parametrize(
    ("references", "field"),
    [
        ({"customerId": "", "externalCustomerId": ""}, ["events", "0"]),
        ({"customerId": "", "externalCustomerId": "acme"}, ["events", "0"]),
        ({"customerId": ""}, ["events", "0", "customerId"]),
        ({"externalCustomerId": ""}, ["events", "0", "externalCustomerId"]),
    ],
)
async def test_i4_an_empty_reference_is_invalid_and_never_reaches_the_database(
    api: GraphQLClient, database: Database, references: dict[str, str], field: list[str]
) -> None:
    event = event_input("e1", external_customer_id=None) | references
    payload = await ingest(api, [event])
    assert codes(payload) == ["CUSTOMER_REFERENCE_INVALID"]
    assert payload["userErrors"][0]["field"] == field
    await assert_nothing_stored(database)


async def test_i4_unknown_customer_id_is_not_found(api: GraphQLClient, database: Database) -> None:
    payload = await ingest(api, [event_input("e1", customer_id="cus_01ZZZZZZZZZZZZZZZZZZZZZZZZ")])
    assert codes(payload) == ["CUSTOMER_NOT_FOUND"]
    assert payload["userErrors"][0]["field"] == ["events", "0", "customerId"]
    await assert_nothing_stored(database)


async def test_i4_an_external_id_sent_as_customer_id_says_where_it_belongs(
    api: GraphQLClient, database: Database
) -> None:
    await create_customer(api, externalId="acme")

    payload = await ingest(api, [event_input("e1", customer_id="acme")])

    assert codes(payload) == ["CUSTOMER_NOT_FOUND"]
    [error] = payload["userErrors"]
    assert error["field"] == ["events", "0", "customerId"]
    assert error["message"] == (
        "This is not a customer id (those start with cus_); it looks like your own id for "
        "the customer, which goes in externalCustomerId."
    )
    await assert_nothing_stored(database)


async def test_i4_customer_id_of_the_caller_is_accepted(api: GraphQLClient) -> None:
    customer = await create_customer(api, externalId="acme")
    payload = await ingest(api, [event_input("e1", customer_id=customer["id"])])
    assert payload["ingested"] == ["e1"]
    event = await get_event(api, "e1")
    assert event is not None
    assert event["customerId"] == customer["id"]
    assert event["customer"] == {"id": customer["id"], "externalId": "acme"}


async def test_i4_external_customer_id_need_not_exist_yet(api: GraphQLClient) -> None:
    payload = await ingest(api, [event_input("e1", external_customer_id="later-co")])
    assert payload["ingested"] == ["e1"]
    event = await get_event(api, "e1")
    assert event is not None
    assert event["customer"] is None

    customer = await create_customer(api, externalId="later-co")

    event = await get_event(api, "e1")
    assert event is not None
    assert event["externalCustomerId"] == "later-co"
    assert event["customer"] == {"id": customer["id"], "externalId": "later-co"}


async def test_i4_external_customer_id_longer_than_255_is_invalid(
    api: GraphQLClient, database: Database
) -> None:
    payload = await ingest(api, [event_input("e1", external_customer_id="c" * 256)])
    assert codes(payload) == ["CUSTOMER_REFERENCE_INVALID"]
    assert payload["userErrors"][0]["field"] == ["events", "0", "externalCustomerId"]
    await assert_nothing_stored(database)


# I5 — timestamp


async def test_i5_absent_timestamp_is_the_server_time(api: GraphQLClient) -> None:
    before = now_utc()
    await ingest(api, [event_input("e1")])
    after = now_utc()
    event = await get_event(api, "e1")
    assert event is not None
    from datetime import datetime

    stored = datetime.fromisoformat(event["timestamp"])
    assert before - timedelta(seconds=1) <= stored <= after + timedelta(seconds=1)


async def test_i5_timestamp_without_offset_is_utc(api: GraphQLClient) -> None:
    moment = (now_utc() - timedelta(minutes=5)).replace(microsecond=123456)
    naive_text = moment.replace(tzinfo=None).isoformat()
    await ingest(api, [event_input("e1", timestamp=naive_text)])
    event = await get_event(api, "e1")
    assert event is not None
    assert event["timestamp"] == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_i5_timestamp_with_offset_is_returned_in_utc_with_microseconds(
    api: GraphQLClient,
) -> None:
    from datetime import timezone

    moment = (now_utc() - timedelta(minutes=5)).replace(microsecond=7)
    in_new_york = moment.astimezone(timezone(timedelta(hours=-5)))
    await ingest(api, [event_input("e1", timestamp=in_new_york.isoformat())])
    event = await get_event(api, "e1")
    assert event is not None
    assert event["timestamp"] == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert event["timestamp"].endswith(".000007Z")


async def test_i5_lowercase_t_and_z_of_rfc_3339_are_accepted(api: GraphQLClient) -> None:
    moment = (now_utc() - timedelta(minutes=5)).replace(microsecond=250000)
    lowercase = moment.strftime("%Y-%m-%dt%H:%M:%S.%fz")
    payload = await ingest(api, [event_input("e1", timestamp=lowercase)])
    assert payload["ingested"] == ["e1"]
    event = await get_event(api, "e1")
    assert event is not None
    assert event["timestamp"] == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(
    "timestamp",
    ["2026-01-31", "2026-01-31T12:00Z", "20260131T120000Z", "2026-W05-6T12:00:00Z", "soon"],
)
async def test_i5_a_timestamp_that_is_not_an_rfc_3339_date_time_is_bad_user_input(
    api: GraphQLClient, database: Database, timestamp: str
) -> None:
    response = await api.post(
        "mutation($input: IngestEventsInput!) { ingestEvents(input: $input) { ingestedCount } }",
        {"input": {"events": [event_input("e1", timestamp=timestamp)]}},
    )
    # Accept: */* is answered as application/json, where a request error is a 200 too.
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "RFC 3339" in error["message"]
    assert "timestamp" in error["message"]
    await assert_nothing_stored(database)


@pytest.mark.parametrize("timestamp", ["2026-01-31", "2026-01-31T12:00Z"])
async def test_i5_a_bad_timestamp_written_inline_is_a_validation_error_not_a_server_error(
    api: GraphQLClient, database: Database, timestamp: str
) -> None:
    response = await api.post(
        'mutation { ingestEvents(input: {events: [{eventId: "e1", eventName: "n", '
        f'externalCustomerId: "acme", timestamp: "{timestamp}"}}]}}) {{ ingestedCount }} }}'
    )
    # Accept: */* is answered as application/json, where a request error is a 200 too.
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "RFC 3339" in error["message"]
    await assert_nothing_stored(database)


async def test_i5_timestamp_older_than_the_past_window(
    api: GraphQLClient, database: Database
) -> None:
    payload = await ingest(api, [event_input("e1", minutes_ago=61)])
    assert codes(payload) == ["TIMESTAMP_TOO_OLD"]
    assert payload["userErrors"][0]["field"] == ["events", "0", "timestamp"]
    assert "createBackfill" in payload["userErrors"][0]["message"]
    await assert_nothing_stored(database)


async def test_i5_timestamp_too_far_in_the_future(api: GraphQLClient, database: Database) -> None:
    payload = await ingest(api, [event_input("e1", minutes_ago=-6)])
    assert codes(payload) == ["TIMESTAMP_TOO_FAR_IN_FUTURE"]
    await assert_nothing_stored(database)


async def test_i5_timestamps_inside_both_windows_are_accepted(api: GraphQLClient) -> None:
    payload = await ingest(
        api, [event_input("old", minutes_ago=59), event_input("new", minutes_ago=-4)]
    )
    assert payload["ingested"] == ["old", "new"]


async def test_i5_unparsable_timestamp_is_a_bad_user_input_error(api: GraphQLClient) -> None:
    response = await api.post(
        "mutation($input: IngestEventsInput!) { ingestEvents(input: $input) { ingestedCount } }",
        {"input": {"events": [event_input("e1", timestamp="yesterday")]}},
    )
    # Accept: */* is answered as application/json, where a request error is a 200 too.
    assert response.status_code == 200
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "yesterday" in body["errors"][0]["message"]


# I6 — metadata


async def test_i6_absent_or_null_metadata_is_an_empty_object(api: GraphQLClient) -> None:
    event = event_input("e2") | {"metadata": None}
    await ingest(api, [event_input("e1"), event])
    for event_id in ("e1", "e2"):
        stored = await get_event(api, event_id)
        assert stored is not None
        assert stored["metadata"] == {}


@pytest.mark.parametrize("metadata", [[1, 2], "text", 3, True])
async def test_i6_metadata_that_is_not_an_object(
    api: GraphQLClient, database: Database, metadata: Any
) -> None:
    payload = await ingest(api, [event_input("e1", metadata=metadata)])
    assert codes(payload) == ["METADATA_INVALID"]
    assert payload["userErrors"][0]["field"] == ["events", "0", "metadata"]
    await assert_nothing_stored(database)


async def test_i6_too_many_metadata_keys(api: GraphQLClient, database: Database) -> None:
    metadata = {f"k{index}": index for index in range(51)}
    payload = await ingest(api, [event_input("e1", metadata=metadata)])
    assert codes(payload) == ["METADATA_TOO_MANY_KEYS"]
    await assert_nothing_stored(database)


async def test_i6_fifty_metadata_keys_are_accepted(api: GraphQLClient) -> None:
    metadata = {f"k{index}": index for index in range(50)}
    payload = await ingest(api, [event_input("e1", metadata=metadata)])
    assert payload["ingested"] == ["e1"]


@pytest.mark.parametrize("key", ["", "k" * 101])
async def test_i6_metadata_key_outside_1_to_100_characters(
    api: GraphQLClient, database: Database, key: str
) -> None:
    payload = await ingest(api, [event_input("e1", metadata={key: 1})])
    assert codes(payload) == ["METADATA_KEY_INVALID"]
    assert payload["userErrors"][0]["field"][:3] == ["events", "0", "metadata"]
    await assert_nothing_stored(database)


async def test_i6_metadata_string_longer_than_500(api: GraphQLClient, database: Database) -> None:
    payload = await ingest(api, [event_input("e1", metadata={"plan": "p" * 501})])
    assert codes(payload) == ["METADATA_VALUE_TOO_LONG"]
    assert payload["userErrors"][0]["field"] == ["events", "0", "metadata", "plan"]
    await assert_nothing_stored(database)


@pytest.mark.parametrize("value", [None, {"nested": 1}, [1, 2], 2**63])
async def test_i6_metadata_value_of_a_forbidden_kind(
    api: GraphQLClient, database: Database, value: Any
) -> None:
    payload = await ingest(api, [event_input("e1", metadata={"plan": value})])
    assert codes(payload) == ["METADATA_VALUE_INVALID"]
    assert payload["userErrors"][0]["field"] == ["events", "0", "metadata", "plan"]
    await assert_nothing_stored(database)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_i6_metadata_nan_and_infinity_are_invalid(
    api: GraphQLClient, database: Database, literal: str
) -> None:
    # No JSON encoder writes NaN, but the standard library's parser reads it.
    body = (
        '{"query": "mutation($input: IngestEventsInput!) { ingestEvents(input: $input) '
        '{ ingestedCount userErrors { code field } } }", "variables": {"input": {"events": '
        '[{"eventId": "e1", "externalCustomerId": "c", "eventName": "n", '
        f'"metadata": {{"ratio": {literal}}}}}]}}}}}}'
    )
    response = await api.http.post(
        "/graphql",
        content=body,
        headers=api.tenant.headers | {"Content-Type": "application/json"},
    )
    payload = response.json()["data"]["ingestEvents"]
    assert payload == {
        "ingestedCount": 0,
        "userErrors": [
            {"code": "METADATA_VALUE_INVALID", "field": ["events", "0", "metadata", "ratio"]}
        ],
    }
    await assert_nothing_stored(database)


async def test_i6_metadata_is_stored_and_returned_exactly(api: GraphQLClient) -> None:
    metadata = {
        "int": 7,
        "big": 2**62,
        "negative": -3,
        "float": 1.5,
        "whole_float": 2.0,
        # PostgreSQL's numeric would print these as integers if written as 1e16.
        "huge_float": 1e16,
        "huger_float": -1.5e300,
        "tiny_float": 1e-7,
        "true": True,
        "false": False,
        "text": "héllo ✓",
        "empty": "",
        "long": "x" * 500,
    }
    await ingest(api, [event_input("e1", metadata=metadata)])
    event = await get_event(api, "e1")
    assert event is not None
    assert event["metadata"] == metadata
    assert type(event["metadata"]["int"]) is int
    assert type(event["metadata"]["float"]) is float
    assert type(event["metadata"]["whole_float"]) is float
    assert type(event["metadata"]["huge_float"]) is float
    assert type(event["metadata"]["huger_float"]) is float
    assert event["metadata"]["true"] is True
    assert event["revisions"][0]["metadata"] == metadata


async def test_i6_metadata_key_order_is_kept_on_sqlite_and_jsonb_order_on_postgresql(
    api: GraphQLClient, database: Database
) -> None:
    # Given keys sent in an order that is neither by length nor alphabetical
    sent = {"zeta": 1, "a": True, "mid": "x", "bb": 2.5, "é": "accent", "B": 0}
    await ingest(api, [event_input("e1", metadata=sent)])

    # When the event is read back, alone and in a listing
    event = await get_event(api, "e1")
    listed = await api.data("{ events { nodes { metadata } } }")

    # Then keys and values are exact everywhere; the order is the one sent on SQLite, and
    # jsonb's own on PostgreSQL: shorter keys first, then keys of one length by their bytes
    if database.dialect_name == "sqlite":
        expected = list(sent)
    else:
        expected = sorted(sent, key=lambda key: (len(key.encode()), key.encode()))
        assert expected == ["B", "a", "bb", "é", "mid", "zeta"]
    assert event is not None
    for metadata in (
        event["metadata"],
        event["revisions"][0]["metadata"],
        listed["events"]["nodes"][0]["metadata"],
    ):
        assert metadata == sent
        assert list(metadata) == expected


async def test_i6_negative_zero_is_stored_as_zero_on_every_database(api: GraphQLClient) -> None:
    await ingest(api, [event_input("e1", metadata={"zero": -0.0})])
    event = await get_event(api, "e1")
    assert event is not None
    assert repr(event["metadata"]["zero"]) == "0.0"


@pytest.mark.parametrize("digits", ["18446744073709551616", "-9223372036854775809", "1" * 40])
async def test_i6_integers_beyond_64_bits_are_invalid_not_rounded_to_floats(
    api: GraphQLClient, database: Database, digits: str
) -> None:
    # Written by hand: a JSON parser that turned these into floats would store them.
    body = (
        '{"query": "mutation($input: IngestEventsInput!) { ingestEvents(input: $input) '
        '{ ingestedCount userErrors { code field } } }", "variables": {"input": {"events": '
        f'[{{"eventId": "e1", "eventName": "n", "externalCustomerId": "acme", '
        f'"metadata": {{"units": {digits}}}}}]}}}}}}'
    )
    response = await api.http.post(
        "/graphql", content=body, headers=api.tenant.headers | {"Content-Type": "application/json"}
    )
    payload = response.json()["data"]["ingestEvents"]
    assert payload["userErrors"] == [
        {"code": "METADATA_VALUE_INVALID", "field": ["events", "0", "metadata", "units"]}
    ]
    await assert_nothing_stored(database)


# I7 — duplicates inside one request


async def test_i7_duplicate_in_batch_rejects_all(api: GraphQLClient, database: Database) -> None:
    events = [event_input("a"), event_input("b"), event_input("a"), event_input("a")]
    payload = await ingest(api, events)
    rejected(payload)
    assert payload["userErrors"] == [
        {
            "code": "DUPLICATE_EVENT_ID_IN_BATCH",
            "message": "This eventId appears more than once in the request.",
            "field": ["events", str(index), "eventId"],
            "eventId": "a",
        }
        for index in (2, 3)
    ]
    await assert_nothing_stored(database)


# I8 — already-stored eventIds


async def test_i8_already_stored_event_id_is_a_duplicate_not_an_error(
    api: GraphQLClient, database: Database
) -> None:
    await ingest(api, [event_input("a", metadata={"v": 1})])
    payload = await ingest(api, [event_input("a", metadata={"v": 2}), event_input("b")])
    assert payload["userErrors"] == []
    assert payload["ingested"] == ["b"]
    assert payload["duplicates"] == ["a"]
    assert payload["ingestedCount"] == 1
    assert payload["duplicateCount"] == 1
    stored = await get_event(api, "a")
    assert stored is not None
    assert stored["metadata"] == {"v": 1}
    assert await count_rows(database, "events") == 2


async def test_i8_dedup_is_scoped_to_the_business(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    await ingest(api, [event_input("shared-id")])
    payload = await ingest(other_api, [event_input("shared-id")])
    assert payload["ingested"] == ["shared-id"]
    assert payload["duplicates"] == []


# I9 — deprecated eventIds


async def test_i9_deprecated_event_id_cannot_be_sent_again(
    api: GraphQLClient, database: Database
) -> None:
    await ingest(api, [event_input("gone")])
    await mark_deprecated(database, "gone")
    payload = await ingest(api, [event_input("fresh"), event_input("gone")])
    rejected(payload)
    assert payload["userErrors"] == [
        {
            "code": "EVENT_DEPRECATED",
            "message": (
                "An event with this eventId was deprecated; its eventId cannot be sent again."
            ),
            "field": ["events", "1", "eventId"],
            "eventId": "gone",
        }
    ]
    assert await get_event(api, "fresh") is None


async def mark_deprecated(database: Database, event_id: str) -> None:
    import sqlalchemy as sa

    from db.tables import events

    async with database.unit_of_work() as session:
        await session.execute(
            sa.update(events).where(events.c.event_id == event_id).values(deprecated_at=now_utc())
        )


# I10 — every error, all or nothing


async def test_i10_all_errors_are_reported_with_paths(
    api: GraphQLClient, database: Database
) -> None:
    events = [
        event_input("ok"),
        event_input("", event_name=""),
        event_input("bad-meta", metadata={"plan": {"tier": 1}, "note": "n" * 501}),
        event_input("old", minutes_ago=120, external_customer_id=None),
    ]
    payload = await ingest(api, events)
    rejected(payload)
    found = [(error["code"], error["field"], error["eventId"]) for error in payload["userErrors"]]
    assert found == [
        ("EVENT_ID_INVALID", ["events", "1", "eventId"], None),
        ("EVENT_NAME_INVALID", ["events", "1", "eventName"], None),
        ("METADATA_VALUE_INVALID", ["events", "2", "metadata", "plan"], "bad-meta"),
        ("METADATA_VALUE_TOO_LONG", ["events", "2", "metadata", "note"], "bad-meta"),
        ("CUSTOMER_REFERENCE_INVALID", ["events", "3"], "old"),
        ("TIMESTAMP_TOO_OLD", ["events", "3", "timestamp"], "old"),
    ]
    assert all(error["message"] for error in payload["userErrors"])
    await assert_nothing_stored(database)


# I12 — the payload


async def test_i12_payload_lists_ingested_and_duplicates_in_request_order(
    api: GraphQLClient,
) -> None:
    await ingest(api, [event_input("b"), event_input("d")])
    payload = await ingest(api, [event_input(name) for name in ["a", "b", "c", "d", "e"]])
    assert payload == {
        "ingestedCount": 3,
        "duplicateCount": 2,
        "ingested": ["a", "c", "e"],
        "duplicates": ["b", "d"],
        "userErrors": [],
    }


async def test_i12_stored_event_reads_back_with_every_field(
    api: GraphQLClient, database: Database
) -> None:
    moment = now_utc() - timedelta(minutes=3)
    await ingest(
        api, [event_input("e1", timestamp=iso(moment), metadata={"tokens": 12}, event_name="llm")]
    )
    event = await get_event(api, "e1")
    assert event is not None
    assert event["id"].startswith("evt_")
    assert event["eventId"] == "e1"
    assert event["businessId"] == api.tenant.business_id
    assert event["eventName"] == "llm"
    assert event["externalCustomerId"] == "cust-1"
    assert event["customerId"] is None
    assert event["deprecated"] is False
    assert event["deprecatedAt"] is None
    assert event["revision"] == 1
    assert [revision["revision"] for revision in event["revisions"]] == [1]
    assert event["revisions"][0]["eventName"] == "llm"
    assert event["revisions"][0]["timestamp"] == event["timestamp"]
