"""The events connection over HTTP (SPEC §4, Q2–Q7), on SQLite and PostgreSQL."""

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from db.database import Database
from tests.support import (
    GraphQLClient,
    create_customer,
    event_input,
    ingest,
    iso,
    now_utc,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

LIST_EVENTS = """
query List($filter: EventFilter, $orderBy: EventOrder! = TIMESTAMP_DESC,
           $first: Int, $after: String, $last: Int, $before: String) {
  events(filter: $filter, orderBy: $orderBy, first: $first, after: $after,
         last: $last, before: $before) {
    edges { cursor node { eventId timestamp } }
    nodes { eventId }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

COUNT_EVENTS = """
query Count($filter: EventFilter) { events(filter: $filter, first: 1) { totalCount } }
"""


async def list_events(api: GraphQLClient, **arguments: Any) -> dict[str, Any]:
    data = await api.data(LIST_EVENTS, arguments)
    connection: dict[str, Any] = data["events"]
    return connection


def event_ids(connection: dict[str, Any]) -> list[str]:
    return [edge["node"]["eventId"] for edge in connection["edges"]]


async def matching(api: GraphQLClient, **filter_fields: Any) -> list[str]:
    """eventIds matching the filter, oldest first, from one page of 100."""
    connection = await list_events(api, filter=filter_fields, orderBy="TIMESTAMP_ASC", first=100)
    assert connection["pageInfo"]["hasNextPage"] is False
    return event_ids(connection)


async def bad_argument(api: GraphQLClient, **arguments: Any) -> dict[str, Any]:
    response = await api.post(LIST_EVENTS, arguments)
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    extensions: dict[str, Any] = body["errors"][0]["extensions"]
    assert extensions["code"] == "BAD_USER_INPUT"
    return extensions


async def ingest_spread(api: GraphQLClient, count: int, *, distinct_timestamps: int) -> list[str]:
    """`count` events over `distinct_timestamps` moments, many sharing one; oldest first."""
    base = now_utc() - timedelta(minutes=30)
    moments = [base + timedelta(seconds=index) for index in range(distinct_timestamps)]
    events = [
        event_input(f"e{index:05d}", timestamp=iso(moments[index % distinct_timestamps]))
        for index in range(count)
    ]
    for start in range(0, count, 1000):
        payload = await ingest(api, events[start : start + 1000])
        assert payload["userErrors"] == []
    # The expected order: by timestamp, then by insertion (= request) order.
    ordered = sorted(range(count), key=lambda index: (index % distinct_timestamps, index))
    return [f"e{index:05d}" for index in ordered]


# Q2 — order


async def test_q2_default_order_is_newest_first_with_ties_in_insertion_order(
    api: GraphQLClient,
) -> None:
    moment = iso(now_utc() - timedelta(minutes=1))
    await ingest(api, [event_input(name, timestamp=moment) for name in ["b", "a", "c"]])
    await ingest(api, [event_input("older", minutes_ago=2), event_input("newer", minutes_ago=0)])

    newest_first = event_ids(await list_events(api))
    oldest_first = event_ids(await list_events(api, orderBy="TIMESTAMP_ASC"))

    assert newest_first == ["newer", "c", "a", "b", "older"]
    assert oldest_first == ["older", "b", "a", "c", "newer"]


# Q3 — pagination


@pytest.mark.parametrize("page_size", [1, 7, 50, 100])
async def test_q3_walk_forward_and_backward_visits_every_event_once_in_order(
    api: GraphQLClient, page_size: int
) -> None:
    expected = await ingest_spread(api, 230, distinct_timestamps=9)

    for order, want in (("TIMESTAMP_ASC", expected), ("TIMESTAMP_DESC", expected[::-1])):
        forward: list[str] = []
        after = None
        while True:
            page = await list_events(api, orderBy=order, first=page_size, after=after)
            forward += event_ids(page)
            assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert forward == want

        backward: list[str] = []
        before = None
        while True:
            page = await list_events(api, orderBy=order, last=page_size, before=before)
            backward = event_ids(page) + backward
            assert page["pageInfo"]["hasNextPage"] is (before is not None)
            if not page["pageInfo"]["hasPreviousPage"]:
                break
            before = page["pageInfo"]["startCursor"]
        assert backward == want


async def test_q3_page_edges_nodes_and_cursors_agree(api: GraphQLClient) -> None:
    await ingest_spread(api, 5, distinct_timestamps=2)
    page = await list_events(api, first=3)
    assert [node["eventId"] for node in page["nodes"]] == event_ids(page)
    assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
    assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
    assert page["pageInfo"] == page["pageInfo"] | {"hasNextPage": True, "hasPreviousPage": False}


async def test_q3_between_after_and_before(api: GraphQLClient) -> None:
    expected = await ingest_spread(api, 20, distinct_timestamps=4)
    page = await list_events(api, orderBy="TIMESTAMP_ASC", first=100)
    cursors = [edge["cursor"] for edge in page["edges"]]

    window = await list_events(
        api, orderBy="TIMESTAMP_ASC", first=100, after=cursors[3], before=cursors[9]
    )
    last_two = await list_events(
        api, orderBy="TIMESTAMP_ASC", last=2, after=cursors[3], before=cursors[9]
    )

    assert event_ids(window) == expected[4:9]
    assert window["pageInfo"]["hasPreviousPage"] is True
    assert window["pageInfo"]["hasNextPage"] is True
    assert event_ids(last_two) == expected[7:9]


async def test_q3_paging_while_events_arrive_neither_skips_nor_repeats(
    api: GraphQLClient,
) -> None:
    existing = await ingest_spread(api, 120, distinct_timestamps=6)
    seen: list[str] = []
    after = None
    arrivals = 0
    while True:
        page = await list_events(api, orderBy="TIMESTAMP_ASC", first=9, after=after)
        seen += event_ids(page)
        # New events at every existing timestamp, and newer ones, while we page.
        stamps = sorted({edge["node"]["timestamp"] for edge in page["edges"]})
        arriving = [event_input(f"new-{arrivals}-{stamp}", timestamp=stamp) for stamp in stamps]
        arriving.append(event_input(f"new-{arrivals}-now"))
        assert (await ingest(api, arriving))["userErrors"] == []
        arrivals += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    assert len(seen) == len(set(seen)), "an event was repeated"
    assert [event_id for event_id in seen if not event_id.startswith("new-")] == existing


async def test_q3_default_page_size_is_50(api: GraphQLClient) -> None:
    await ingest_spread(api, 60, distinct_timestamps=3)
    assert len((await list_events(api))["edges"]) == 50


@pytest.mark.parametrize(
    "arguments",
    [
        {"first": 0},
        {"first": 101},
        {"first": -1},
        {"last": 0},
        {"last": 101},
        {"first": 5, "last": 5},
    ],
)
async def test_q3_page_size_outside_1_to_100_or_both_is_refused(
    api: GraphQLClient, arguments: dict[str, int]
) -> None:
    extensions = await bad_argument(api, **arguments)
    assert extensions["reason"] == "PAGE_SIZE_INVALID"


@pytest.mark.parametrize(
    "cursor",
    ["", "nonsense", "WyJldmVudHMiXQ", base64.urlsafe_b64encode(b'["events", 1]').decode()],
)
async def test_q3_malformed_cursor_is_refused(api: GraphQLClient, cursor: str) -> None:
    for argument in ("after", "before"):
        extensions = await bad_argument(api, **{argument: cursor})
        assert extensions["reason"] == "INVALID_CURSOR"


async def test_q3_cursor_of_another_connection_is_refused(api: GraphQLClient) -> None:
    await create_customer(api, externalId="acme")
    data = await api.data("{ customers(first: 1) { pageInfo { endCursor } } }")
    extensions = await bad_argument(api, after=data["customers"]["pageInfo"]["endCursor"])
    assert extensions["reason"] == "INVALID_CURSOR"


async def test_q3_t2_cursor_of_another_business_is_refused(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    await ingest(other_api, [event_input("theirs")])
    theirs = await list_events(other_api, first=1)
    extensions = await bad_argument(api, after=theirs["pageInfo"]["endCursor"])
    assert extensions["reason"] == "INVALID_CURSOR"


async def test_q3_forged_cursor_with_a_huge_sequence_is_refused(api: GraphQLClient) -> None:
    forged = json.dumps(["events", api.tenant.business_id, iso(now_utc()), 2**64]).encode()
    extensions = await bad_argument(
        api, after=base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    )
    assert extensions["reason"] == "INVALID_CURSOR"


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-13-01T00:00:00"]
)
async def test_q3_forged_cursor_with_an_impossible_timestamp_is_refused(
    api: GraphQLClient, timestamp: str
) -> None:
    forged = json.dumps(["events", api.tenant.business_id, timestamp, 1]).encode()
    cursor = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    for argument in ("after", "before"):
        extensions = await bad_argument(api, **{argument: cursor})
        assert extensions["reason"] == "INVALID_CURSOR"


# Q4 — filters


async def test_q4_customer_id_matches_events_sent_either_way(api: GraphQLClient) -> None:
    acme = await create_customer(api, externalId="acme")
    loner = await create_customer(api, name="No external id")
    await ingest(
        api,
        [
            event_input("by-id", customer_id=acme["id"], minutes_ago=3),
            event_input("by-external-id", external_customer_id="acme", minutes_ago=2),
            event_input("someone-else", external_customer_id="globex", minutes_ago=1),
            event_input("loner", customer_id=loner["id"]),
        ],
    )
    assert await matching(api, customerId=acme["id"]) == ["by-id", "by-external-id"]
    assert await matching(api, customerId=loner["id"]) == ["loner"]
    assert await matching(api, customerId="cus_unknown") == []
    assert await matching(api, externalCustomerId="acme") == ["by-external-id"]


async def test_q4_customer_filter_pages_across_both_kinds(api: GraphQLClient) -> None:
    acme = await create_customer(api, externalId="acme")
    events = [
        event_input(
            f"e{index:02d}",
            minutes_ago=30 - index / 2,
            **({"customer_id": acme["id"]} if index % 3 else {"external_customer_id": "acme"}),
        )
        for index in range(40)
    ]
    await ingest(api, events)
    seen: list[str] = []
    after = None
    while True:
        page = await list_events(
            api, filter={"customerId": acme["id"]}, orderBy="TIMESTAMP_ASC", first=6, after=after
        )
        seen += event_ids(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [f"e{index:02d}" for index in range(40)]
    counted = await api.data(COUNT_EVENTS, {"filter": {"customerId": acme["id"]}})
    assert counted["events"]["totalCount"] == 40


async def test_q4_t2_another_business_customer_matches_nothing(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    theirs = await create_customer(other_api, externalId="acme")
    await ingest(api, [event_input("mine", external_customer_id="acme")])
    assert await matching(api, customerId=theirs["id"]) == []


async def test_q4_event_name_event_ids_and_time_range(api: GraphQLClient) -> None:
    base = now_utc() - timedelta(minutes=20)
    await ingest(
        api,
        [
            event_input(
                f"e{index}",
                event_name="a" if index % 2 else "b",
                timestamp=iso(base + timedelta(minutes=index)),
            )
            for index in range(6)
        ],
    )
    assert await matching(api, eventName="a") == ["e1", "e3", "e5"]
    assert await matching(api, eventIds=["e4", "e0", "missing"]) == ["e0", "e4"]
    start, end = iso(base + timedelta(minutes=2)), iso(base + timedelta(minutes=4))
    assert await matching(api, start=start, end=end) == ["e2", "e3"], "start in, end out"
    assert await matching(api, start=start, end=end, eventName="b") == ["e2"]


@pytest.mark.parametrize(
    "after_start", [timedelta(0), -timedelta(microseconds=1), -timedelta(days=1)]
)
async def test_q4_a_time_range_that_holds_no_time_is_refused(
    api: GraphQLClient, after_start: timedelta
) -> None:
    await ingest(api, [event_input("e1", minutes_ago=5)])
    start = now_utc() - timedelta(minutes=10)

    extensions = await bad_argument(
        api, filter={"start": iso(start), "end": iso(start + after_start)}
    )

    assert extensions["reason"] == "TIME_RANGE_INVALID"
    assert extensions["field"] == ["filter", "end"]


async def test_q4_the_shortest_time_range_is_one_microsecond(api: GraphQLClient) -> None:
    moment = now_utc() - timedelta(minutes=5)
    await ingest(api, [event_input("e1", timestamp=iso(moment))])

    assert await matching(api, start=iso(moment), end=iso(moment + timedelta(microseconds=1))) == [
        "e1"
    ]


@pytest.mark.parametrize("customer_id", ["acme", "", "CUS_01ZZZZZZZZZZZZZZZZZZZZZZZZ", "evt_1"])
async def test_q4_a_customer_id_that_is_no_customer_id_points_to_external_customer_id(
    api: GraphQLClient, customer_id: str
) -> None:
    await create_customer(api, externalId=customer_id or "x")
    await ingest(api, [event_input("e1", external_customer_id=customer_id or "x")])

    response = await api.post(LIST_EVENTS, {"filter": {"customerId": customer_id}})

    error = response.json()["errors"][0]
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "reason": "CUSTOMER_NOT_FOUND",
        "field": ["filter", "customerId"],
    }
    assert error["message"] == (
        "This is not a customer id (those start with cus_); it looks like your own id for "
        "the customer, which goes in externalCustomerId."
    )


@pytest.mark.parametrize("count", [0, 501])
async def test_q4_event_ids_must_hold_1_to_500(api: GraphQLClient, count: int) -> None:
    extensions = await bad_argument(
        api, filter={"eventIds": [f"e{index}" for index in range(count)]}
    )
    assert extensions["reason"] == "INVALID_INPUT"
    assert extensions["field"] == ["filter", "eventIds"]


async def test_q4_deprecated_events_only_when_asked(api: GraphQLClient, database: Database) -> None:
    from tests.graph.test_ingest_events import mark_deprecated

    await ingest(api, [event_input("kept", minutes_ago=1), event_input("gone")])
    await mark_deprecated(database, "gone")
    assert await matching(api) == ["kept"]
    assert await matching(api, includeDeprecated=True) == ["kept", "gone"]


async def test_q4_metadata_filter(api: GraphQLClient) -> None:
    await ingest(
        api,
        [
            event_input("small", metadata={"tokens": 10, "model": "gpt-small"}, minutes_ago=3),
            event_input("large", metadata={"tokens": 5000, "model": "gpt-large"}, minutes_ago=2),
            event_input("text", metadata={"tokens": "5000"}, minutes_ago=1),
            event_input("none"),
        ],
    )
    over_100 = {"clauses": [{"key": "tokens", "operator": "GREATER_THAN", "value": 100}]}
    assert await matching(api, metadata=over_100) == ["large"]
    either = {
        "conjunction": "OR",
        "clauses": [
            {"key": "model", "operator": "CONTAINS", "value": "small"},
            {"key": "tokens", "operator": "EQUALS", "value": "5000"},
        ],
    }
    assert await matching(api, metadata=either) == ["small", "text"]
    not_small = {"clauses": [{"key": "model", "operator": "NOT_EQUALS", "value": "gpt-small"}]}
    assert await matching(api, metadata=not_small) == ["large"], "a missing key is false"


async def test_q4_invalid_metadata_filter_names_the_offending_clause(api: GraphQLClient) -> None:
    bad = {
        "groups": [{"clauses": [{"key": "tokens", "operator": "GREATER_THAN", "value": "many"}]}]
    }
    extensions = await bad_argument(api, filter={"metadata": bad})
    assert extensions["reason"] == "FILTER_INVALID"
    assert extensions["field"] == ["filter", "metadata", "groups", "0", "clauses", "0", "value"]


# Q7 — totalCount


async def test_q7_total_count_is_the_filtered_set_and_only_counted_when_asked(
    api: GraphQLClient, statements: list[str]
) -> None:
    await ingest_spread(api, 130, distinct_timestamps=5)
    await ingest(api, [event_input(f"other-{index}", event_name="other") for index in range(7)])

    statements.clear()
    await list_events(api, first=10)
    assert not any("count(" in sql.lower() for sql in statements)

    assert (await api.data(COUNT_EVENTS))["events"]["totalCount"] == 137
    counted = await api.data(COUNT_EVENTS, {"filter": {"eventName": "other"}})
    assert counted["events"]["totalCount"] == 7


async def test_page_of_events_loads_customers_and_revisions_in_one_query_each(
    api: GraphQLClient, statements: list[str]
) -> None:
    customers = [await create_customer(api, externalId=f"c{index}") for index in range(5)]
    await ingest(
        api,
        [
            event_input(f"e{index}", customer_id=customers[index % 5]["id"])
            if index % 2
            else event_input(f"e{index}", external_customer_id=f"c{index % 5}")
            for index in range(40)
        ],
    )
    statements.clear()
    data = await api.data(
        "{ events(first: 40) { nodes { eventId customer { externalId } revisions { revision } } } }"
    )
    nodes = data["events"]["nodes"]
    assert len(nodes) == 40
    assert all(
        node["customer"]["externalId"] == f"c{int(node['eventId'][1:]) % 5}" for node in nodes
    )
    assert sum("FROM customers" in sql for sql in statements) == 2
    assert sum("FROM event_revisions" in sql for sql in statements) == 1
