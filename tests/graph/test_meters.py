"""Meters over HTTP (SPEC §5, M1–M3; Q5), on SQLite and PostgreSQL."""

from typing import Any

import pytest

from db.database import Database
from tests.support import GraphQLClient, count_rows, event_input, ingest

pytestmark = pytest.mark.asyncio(loop_scope="session")

METER_FIELDS = """
  id name description eventName measurementUnit archived createdAt updatedAt dimensions
  aggregation { type key }
  filter { conjunction clauses { key operator value }
           groups { conjunction clauses { key operator value } groups { conjunction } } }
"""

CREATE_METER = f"""
mutation Create($input: CreateMeterInput!) {{
  createMeter(input: $input) {{ meter {{ {METER_FIELDS} }} userErrors {{ code message field }} }}
}}
"""

ARCHIVE = f"""
mutation Archive($id: ID!) {{
  archiveMeter(input: {{id: $id}}) {{ meter {{ {METER_FIELDS} }} userErrors {{ code field }} }}
}}
"""

UNARCHIVE = f"""
mutation Unarchive($id: ID!) {{
  unarchiveMeter(input: {{id: $id}}) {{ meter {{ {METER_FIELDS} }} userErrors {{ code field }} }}
}}
"""

LIST_METERS = """
query List($includeArchived: Boolean! = false, $first: Int, $after: String) {
  meters(includeArchived: $includeArchived, first: $first, after: $after) {
    totalCount nodes { id name archived } pageInfo { hasNextPage endCursor }
  }
}
"""

EVENTS_OF_METER = """
query Events($filter: EventFilter) {
  events(filter: $filter, orderBy: TIMESTAMP_ASC, first: 100) { nodes { eventId } }
}
"""

TOKENS_OVER_100 = {
    "conjunction": "AND",
    "clauses": [{"key": "tokens", "operator": "GREATER_THAN", "value": 100}],
    "groups": [
        {
            "conjunction": "OR",
            "clauses": [
                {"key": "model", "operator": "EQUALS", "value": "large"},
                {"key": "cached", "operator": "EQUALS", "value": False},
            ],
            "groups": [],
        }
    ],
}


def meter_input(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": "LLM tokens",
        "eventName": "llm.tokens",
        "aggregation": {"type": "SUM", "key": "tokens"},
    }
    return fields | changes


async def create_meter_payload(api: GraphQLClient, **changes: Any) -> dict[str, Any]:
    data = await api.data(CREATE_METER, {"input": meter_input(**changes)})
    payload: dict[str, Any] = data["createMeter"]
    return payload


async def create_meter(api: GraphQLClient, **changes: Any) -> dict[str, Any]:
    payload = await create_meter_payload(api, **changes)
    assert payload["userErrors"] == [], payload["userErrors"]
    meter: dict[str, Any] = payload["meter"]
    return meter


async def events_of(api: GraphQLClient, **filter_fields: Any) -> list[str]:
    response = await api.post(EVENTS_OF_METER, {"filter": filter_fields})
    body = response.json()
    assert "errors" not in body, body["errors"]
    return [node["eventId"] for node in body["data"]["events"]["nodes"]]


async def event_errors(api: GraphQLClient, **filter_fields: Any) -> dict[str, Any]:
    response = await api.post(EVENTS_OF_METER, {"filter": filter_fields})
    body = response.json()
    assert body["data"] is None
    extensions: dict[str, Any] = body["errors"][0]["extensions"]
    return extensions


# M1 — creating and reading meters


async def test_m1_create_meter_returns_every_field(api: GraphQLClient) -> None:
    meter = await create_meter(
        api, description="Billable tokens", measurementUnit="tokens", filter=TOKENS_OVER_100
    )
    assert meter["id"].startswith("mtr_")
    assert meter["name"] == "LLM tokens"
    assert meter["description"] == "Billable tokens"
    assert meter["eventName"] == "llm.tokens"
    assert meter["aggregation"] == {"type": "SUM", "key": "tokens"}
    assert meter["measurementUnit"] == "tokens"
    assert meter["archived"] is False
    assert meter["createdAt"] == meter["updatedAt"]
    assert meter["filter"] == {
        "conjunction": "AND",
        "clauses": [{"key": "tokens", "operator": "GREATER_THAN", "value": 100}],
        "groups": [
            {
                "conjunction": "OR",
                "clauses": [
                    {"key": "model", "operator": "EQUALS", "value": "large"},
                    {"key": "cached", "operator": "EQUALS", "value": False},
                ],
                "groups": [],
            }
        ],
    }

    data = await api.data(
        f"query($id: ID!) {{ meter(id: $id) {{ {METER_FIELDS} }} "
        f"node(id: $id) {{ id ... on Meter {{ name }} }} }}",
        {"id": meter["id"]},
    )
    assert data["meter"] == meter
    assert data["node"] == {"id": meter["id"], "name": "LLM tokens"}


async def test_m1_count_needs_no_key_and_no_filter(api: GraphQLClient) -> None:
    meter = await create_meter(api, aggregation={"type": "COUNT"})
    assert meter["aggregation"] == {"type": "COUNT", "key": None}
    assert meter["filter"] is None


@pytest.mark.parametrize("aggregation", ["SUM", "MAX", "MIN", "AVG", "LAST", "UNIQUE_COUNT"])
async def test_m1_aggregations_other_than_count_need_a_key(
    api: GraphQLClient, database: Database, aggregation: str
) -> None:
    payload = await create_meter_payload(api, aggregation={"type": aggregation})
    assert payload["meter"] is None
    assert [(error["code"], error["field"]) for error in payload["userErrors"]] == [
        ("AGGREGATION_INVALID", ["aggregation", "key"])
    ]
    assert await count_rows(database, "meters") == 0


async def test_m1_invalid_fields_are_all_reported(api: GraphQLClient, database: Database) -> None:
    payload = await create_meter_payload(
        api, name="", eventName="e" * 256, aggregation={"type": "SUM", "key": ""}
    )
    assert [(error["code"], error["field"]) for error in payload["userErrors"]] == [
        ("INVALID_INPUT", ["name"]),
        ("EVENT_NAME_INVALID", ["eventName"]),
        ("AGGREGATION_INVALID", ["aggregation", "key"]),
    ]
    assert await count_rows(database, "meters") == 0


# M2, M3 — filter validation with paths


@pytest.mark.parametrize(
    ("filter_input", "field"),
    [
        (
            {"clauses": [{"key": "n", "operator": "GREATER_THAN", "value": "10"}]},
            ["filter", "clauses", "0", "value"],
        ),
        (
            {"clauses": [{"key": "n", "operator": "CONTAINS", "value": 1}]},
            ["filter", "clauses", "0", "value"],
        ),
        (
            {"clauses": [{"key": "n", "operator": "EQUALS", "value": {"a": 1}}]},
            ["filter", "clauses", "0", "value"],
        ),
        (
            {"clauses": [{"key": "", "operator": "EQUALS", "value": 1}]},
            ["filter", "clauses", "0", "key"],
        ),
        (
            {"groups": [{"groups": [{"groups": [{}]}]}]},
            ["filter", "groups", "0", "groups", "0", "groups", "0"],
        ),
        (
            {"clauses": [{"key": f"k{n}", "operator": "EQUALS", "value": n} for n in range(51)]},
            ["filter"],
        ),
    ],
)
async def test_m2_m3_invalid_filters_name_the_offending_part(
    api: GraphQLClient, database: Database, filter_input: dict[str, Any], field: list[str]
) -> None:
    payload = await create_meter_payload(api, filter=filter_input)
    assert payload["meter"] is None
    assert payload["userErrors"][0]["code"] == "FILTER_INVALID"
    assert payload["userErrors"][0]["field"] == field
    assert await count_rows(database, "meters") == 0


async def test_m2_depth_three_and_fifty_clauses_are_accepted(api: GraphQLClient) -> None:
    clause = {"key": "k", "operator": "EQUALS", "value": 1}
    deepest = {"groups": [{"groups": [{"clauses": [clause] * 48}]}], "clauses": [clause, clause]}
    meter = await create_meter(api, filter=deepest)
    assert meter["filter"]["groups"][0]["groups"][0]["conjunction"] == "AND"


# Archiving


async def test_archive_and_unarchive_are_idempotent(api: GraphQLClient) -> None:
    meter = await create_meter(api)

    archived = (await api.data(ARCHIVE, {"id": meter["id"]}))["archiveMeter"]
    again = (await api.data(ARCHIVE, {"id": meter["id"]}))["archiveMeter"]
    restored = (await api.data(UNARCHIVE, {"id": meter["id"]}))["unarchiveMeter"]

    assert archived["userErrors"] == []
    assert archived["meter"]["archived"] is True
    assert archived["meter"]["updatedAt"] > meter["updatedAt"]
    assert again["meter"] == archived["meter"]
    assert restored["meter"]["archived"] is False


async def test_archiving_an_unknown_or_foreign_meter_is_not_found(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    theirs = await create_meter(other_api)
    for meter_id in ("mtr_unknown", theirs["id"]):
        for mutation, name in ((ARCHIVE, "archiveMeter"), (UNARCHIVE, "unarchiveMeter")):
            payload = (await api.data(mutation, {"id": meter_id}))[name]
            assert payload == {
                "meter": None,
                "userErrors": [{"code": "METER_NOT_FOUND", "field": ["id"]}],
            }
    data = await api.data("query($id: ID!) { meter(id: $id) { id } }", {"id": theirs["id"]})
    assert data["meter"] is None


async def test_meters_lists_archived_ones_only_when_asked(api: GraphQLClient) -> None:
    kept = await create_meter(api, name="kept")
    hidden = await create_meter(api, name="hidden")
    await api.data(ARCHIVE, {"id": hidden["id"]})

    listed = (await api.data(LIST_METERS))["meters"]
    everything = (await api.data(LIST_METERS, {"includeArchived": True}))["meters"]

    assert [node["id"] for node in listed["nodes"]] == [kept["id"]]
    assert listed["totalCount"] == 1
    assert [node["id"] for node in everything["nodes"]] == [kept["id"], hidden["id"]]
    assert everything["totalCount"] == 2


async def test_meters_page_with_cursors(api: GraphQLClient, other_api: GraphQLClient) -> None:
    created = [(await create_meter(api, name=f"m{index}"))["id"] for index in range(7)]
    await create_meter(other_api, name="theirs")
    seen: list[str] = []
    after = None
    while True:
        page = (await api.data(LIST_METERS, {"first": 3, "after": after}))["meters"]
        seen += [node["id"] for node in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == created


# Q5 — events of a meter


async def test_q5_meter_applies_its_event_name_and_filter(api: GraphQLClient) -> None:
    meter = await create_meter(api, filter=TOKENS_OVER_100)
    await ingest(
        api,
        [
            event_input(
                "big-large",
                event_name="llm.tokens",
                metadata={"tokens": 500, "model": "large"},
                minutes_ago=5,
            ),
            event_input(
                "big-small-uncached",
                event_name="llm.tokens",
                metadata={"tokens": 500, "model": "small", "cached": False},
                minutes_ago=4,
            ),
            event_input(
                "big-small-cached",
                event_name="llm.tokens",
                metadata={"tokens": 500, "model": "small", "cached": True},
                minutes_ago=3,
            ),
            event_input(
                "tiny-large",
                event_name="llm.tokens",
                metadata={"tokens": 5, "model": "large"},
                minutes_ago=2,
            ),
            event_input(
                "other-name",
                event_name="api.request",
                metadata={"tokens": 500, "model": "large"},
                minutes_ago=1,
            ),
        ],
    )
    assert await events_of(api, meterId=meter["id"]) == ["big-large", "big-small-uncached"]
    assert await events_of(api, meterId=meter["id"], eventName="llm.tokens") == [
        "big-large",
        "big-small-uncached",
    ]
    also_uncached = {"clauses": [{"key": "cached", "operator": "EQUALS", "value": False}]}
    assert await events_of(api, meterId=meter["id"], metadata=also_uncached) == [
        "big-small-uncached"
    ]


async def test_q5_event_name_that_differs_from_the_meter_is_an_error(api: GraphQLClient) -> None:
    meter = await create_meter(api)
    extensions = await event_errors(api, meterId=meter["id"], eventName="api.request")
    assert extensions == {
        "code": "BAD_USER_INPUT",
        "reason": "EVENT_NAME_MISMATCH",
        "field": ["filter", "eventName"],
    }


async def test_q5_unknown_or_foreign_meter_is_not_found(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    theirs = await create_meter(other_api)
    for meter_id in ("mtr_unknown", theirs["id"]):
        extensions = await event_errors(api, meterId=meter_id)
        assert extensions["reason"] == "METER_NOT_FOUND"


async def test_q5_archived_meter_still_filters_events(api: GraphQLClient) -> None:
    meter = await create_meter(api, aggregation={"type": "COUNT"})
    await ingest(api, [event_input("e1", event_name="llm.tokens")])
    await api.data(ARCHIVE, {"id": meter["id"]})
    assert await events_of(api, meterId=meter["id"]) == ["e1"]


async def test_dimensions_are_kept_and_checked(api: GraphQLClient) -> None:
    payload = await create_meter_payload(api, dimensions=["model", "region"])
    assert payload["userErrors"] == []
    assert payload["meter"]["dimensions"] == ["model", "region"]
    assert (await create_meter_payload(api))["meter"]["dimensions"] == []
    for dimensions, field in [
        (["a", "b", "c", "d"], ["dimensions"]),
        (["model", ""], ["dimensions", "1"]),
        (["model", "model"], ["dimensions", "1"]),
        (["x" * 101], ["dimensions", "0"]),
    ]:
        refused = await create_meter_payload(api, dimensions=dimensions)
        assert refused["meter"] is None
        assert [(error["code"], error["field"]) for error in refused["userErrors"]] == [
            ("INVALID_INPUT", field)
        ]
