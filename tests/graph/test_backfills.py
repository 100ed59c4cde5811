"""Backfills over HTTP (SPEC §16, B1–B7), on SQLite and PostgreSQL.

History is loaded the way the README tells users to: into a backfill, closed. Every
check reads what a client reads — `events`, `event`, `meterUsage`, `eventVolume`, the
backfill itself — at every step.
"""

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from db.backfill_closer import close_due_backfills
from db.database import Database
from db.settings import Settings
from graph.backfills.closer import run_backfill_closer
from tests.support import (
    GraphQLClient,
    bad_user_input,
    count_rows,
    create_customer,
    event_input,
    get_event,
    ingest,
    iso,
    now_utc,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

BACKFILL_FIELDS = """
  id status timeframeStart timeframeEnd customer { id } externalCustomerId
  replaceExistingEvents deprecationFilter { conjunction clauses { key operator value } }
  closeTime createdAt reflectedAt revertedAt eventsIngested eventsToDeprecate
"""

CREATE = f"""
mutation Create($input: CreateBackfillInput!) {{
  createBackfill(input: $input) {{
    backfill {{ {BACKFILL_FIELDS} }}
    userErrors {{ code message field }}
  }}
}}
"""

CLOSE = f"""
mutation Close($id: ID!) {{
  closeBackfill(input: {{id: $id}}) {{
    backfill {{ {BACKFILL_FIELDS} }}
    userErrors {{ code message field }}
  }}
}}
"""

REVERT = f"""
mutation Revert($id: ID!) {{
  revertBackfill(input: {{id: $id}}) {{
    backfill {{ {BACKFILL_FIELDS} }}
    userErrors {{ code message field }}
  }}
}}
"""

GET = f"""
query Get($id: ID!) {{
  backfill(id: $id) {{
    {BACKFILL_FIELDS}
    events(first: 100) {{ totalCount nodes {{ eventId deprecated deprecationReason }} }}
    deprecatedEvents(first: 100) {{
      totalCount nodes {{ eventId deprecated deprecationReason }}
    }}
  }}
}}
"""

LIST = """
query List($status: BackfillStatus) {
  backfills(status: $status, first: 50) { totalCount nodes { id status } }
}
"""

INGEST_INTO = """
mutation Ingest($input: IngestEventsInput!) {
  ingestEvents(input: $input) {
    ingestedCount duplicateCount ingested duplicates
    userErrors { code message field eventId }
  }
}
"""

EVENTS = """
query Events($filter: EventFilter) {
  events(filter: $filter, first: 100) {
    totalCount nodes { eventId deprecated deprecationReason backfill { id status } }
  }
}
"""

USAGE = """
query Usage($input: MeterUsageInput!) {
  meterUsage(input: $input) { total eventCount }
}
"""

VOLUME = """
query Volume($input: EventVolumeInput!) {
  eventVolume(input: $input) { total }
}
"""

CREATE_METER = """
mutation Meter($input: CreateMeterInput!) {
  createMeter(input: $input) { meter { id } userErrors { code } }
}
"""

DEPRECATE = """
mutation Deprecate($input: DeprecateEventInput!) {
  deprecateEvent(input: $input) { event { deprecated } userErrors { code } }
}
"""


# The timeframes of these tests: whole days well behind the ingestion window.
def days_ago(days: float) -> datetime:
    today = now_utc().replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


START, END = days_ago(4), days_ago(2)


async def create(api: GraphQLClient, **fields: Any) -> dict[str, Any]:
    fields.setdefault("timeframeStart", iso(START))
    fields.setdefault("timeframeEnd", iso(END))
    fields.setdefault("replaceExistingEvents", False)
    data = await api.data(CREATE, {"input": fields})
    payload: dict[str, Any] = data["createBackfill"]
    return payload


async def created(api: GraphQLClient, **fields: Any) -> dict[str, Any]:
    payload = await create(api, **fields)
    assert payload["userErrors"] == [], payload["userErrors"]
    backfill: dict[str, Any] = payload["backfill"]
    return backfill


async def ingest_into(
    api: GraphQLClient, backfill_id: str, events: list[dict[str, Any]]
) -> dict[str, Any]:
    data = await api.data(INGEST_INTO, {"input": {"backfillId": backfill_id, "events": events}})
    payload: dict[str, Any] = data["ingestEvents"]
    return payload


async def ingested_into(api: GraphQLClient, backfill_id: str, events: list[dict[str, Any]]) -> None:
    payload = await ingest_into(api, backfill_id, events)
    assert payload["userErrors"] == [], payload["userErrors"]


def old_event(
    event_id: str, hours_after_start: float, tokens: int, **fields: Any
) -> dict[str, Any]:
    fields.setdefault("event_name", "llm")
    return event_input(
        event_id,
        timestamp=iso(START + timedelta(hours=hours_after_start)),
        metadata={"tokens": tokens, "model": fields.pop("model", "a")},
        **fields,
    )


async def mutate(api: GraphQLClient, query: str, backfill_id: str) -> dict[str, Any]:
    data = await api.data(query, {"id": backfill_id})
    payload: dict[str, Any] = next(iter(data.values()))
    return payload


async def closed(api: GraphQLClient, backfill_id: str) -> dict[str, Any]:
    payload = await mutate(api, CLOSE, backfill_id)
    assert payload["userErrors"] == [], payload["userErrors"]
    backfill: dict[str, Any] = payload["backfill"]
    return backfill


async def reverted(api: GraphQLClient, backfill_id: str) -> dict[str, Any]:
    payload = await mutate(api, REVERT, backfill_id)
    assert payload["userErrors"] == [], payload["userErrors"]
    backfill: dict[str, Any] = payload["backfill"]
    return backfill


async def get(api: GraphQLClient, backfill_id: str) -> dict[str, Any] | None:
    data = await api.data(GET, {"id": backfill_id})
    backfill: dict[str, Any] | None = data["backfill"]
    return backfill


async def listed(api: GraphQLClient, **event_filter: Any) -> list[str]:
    data = await api.data(EVENTS, {"filter": event_filter})
    return sorted(node["eventId"] for node in data["events"]["nodes"])


async def meter(api: GraphQLClient) -> str:
    data = await api.data(
        CREATE_METER,
        {
            "input": {
                "name": "tokens",
                "eventName": "llm",
                "aggregation": {"type": "SUM", "key": "tokens"},
                "dimensions": ["model"],
            }
        },
    )
    assert data["createMeter"]["userErrors"] == []
    meter_id: str = data["createMeter"]["meter"]["id"]
    return meter_id


async def usage(api: GraphQLClient, meter_id: str, **fields: Any) -> tuple[str | None, int]:
    """(total, eventCount) of the meter over the backfills' days, in HOUR buckets (rollups)."""
    data = await api.data(
        USAGE,
        {
            "input": {
                "meterId": meter_id,
                "from": iso(days_ago(5)),
                "to": iso(days_ago(1)),
                "granularity": "HOUR",
                **fields,
            }
        },
    )
    answer = data["meterUsage"]
    return answer["total"], answer["eventCount"]


async def volume(api: GraphQLClient, **fields: Any) -> int:
    data = await api.data(
        VOLUME, {"input": {"from": iso(days_ago(5)), "to": iso(days_ago(1)), **fields}}
    )
    total: int = data["eventVolume"]["total"]
    return total


async def history(api: GraphQLClient) -> str:
    """Three events of Acme loaded through a backfill, closed: the history others replace."""
    loaded = await created(api)
    payload = await ingest_into(
        api,
        loaded["id"],
        [
            old_event("h1", 1, 10),
            old_event("h2", 2, 20, model="b"),
            old_event("h3", 30, 30),
        ],
    )
    assert payload["ingestedCount"] == 3, payload
    await closed(api, loaded["id"])
    backfill_id: str = loaded["id"]
    return backfill_id


# -- B1 ----------------------------------------------------------------------------------------


async def test_b1_create_is_pending_with_a_default_close_time(api: GraphQLClient) -> None:
    before = now_utc()
    backfill = await created(api, externalCustomerId="acme")
    assert backfill["id"].startswith("bfl_")
    assert backfill["status"] == "PENDING"
    assert datetime.fromisoformat(backfill["timeframeStart"]) == START
    assert backfill["externalCustomerId"] == "acme"
    assert backfill["replaceExistingEvents"] is False
    assert backfill["eventsIngested"] == 0
    assert backfill["reflectedAt"] is None
    assert backfill["revertedAt"] is None
    close_time = datetime.fromisoformat(backfill["closeTime"])
    created_at = datetime.fromisoformat(backfill["createdAt"])
    assert before <= created_at <= now_utc()
    assert close_time == created_at + timedelta(days=1)
    # node(id:) fetches it too
    data = await api.data(
        "query($id: ID!) { node(id: $id) { ... on Backfill { id status } } }",
        {"id": backfill["id"]},
    )
    assert data["node"] == {"id": backfill["id"], "status": "PENDING"}


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"timeframeEnd": iso(START)}, "TIME_RANGE_INVALID", ["timeframeEnd"]),
        (
            {
                "timeframeStart": iso(days_ago(40)),
                "timeframeEnd": iso(days_ago(9) + timedelta(seconds=1)),
            },
            "TIME_RANGE_INVALID",
            ["timeframeEnd"],
        ),
        (
            {
                "timeframeStart": iso(days_ago(1)),
                "timeframeEnd": iso(now_utc() + timedelta(hours=1)),
            },
            "TIME_RANGE_INVALID",
            ["timeframeEnd"],
        ),
        ({"closeTime": iso(now_utc() - timedelta(seconds=1))}, "TIME_RANGE_INVALID", ["closeTime"]),
        (
            {"timeframeStart": "1969-12-31T23:59:59Z", "timeframeEnd": "1970-01-02T00:00:00Z"},
            "TIME_RANGE_INVALID",
            ["timeframeStart"],
        ),
        ({"deprecationFilter": {"clauses": []}}, "FILTER_INVALID", ["deprecationFilter"]),
        (
            {
                "replaceExistingEvents": True,
                "deprecationFilter": {"clauses": [{"key": "", "operator": "EQUALS", "value": 1}]},
            },
            "FILTER_INVALID",
            ["deprecationFilter", "clauses", "0", "key"],
        ),
        ({"customerId": "cus_nobody"}, "CUSTOMER_NOT_FOUND", ["customerId"]),
        (
            {"customerId": "x", "externalCustomerId": "y"},
            "CUSTOMER_REFERENCE_INVALID",
            ["customerId"],
        ),
        ({"externalCustomerId": ""}, "CUSTOMER_REFERENCE_INVALID", ["externalCustomerId"]),
    ],
)
async def test_b1_bad_input_is_refused_and_nothing_is_written(
    api: GraphQLClient, database: Database, fields: dict[str, Any], code: str, field: list[str]
) -> None:
    payload = await create(api, **fields)
    assert payload["backfill"] is None
    assert [(error["code"], error["field"]) for error in payload["userErrors"]] == [(code, field)]
    assert await count_rows(database, "backfills") == 0


async def test_b1_a_span_of_exactly_the_limit_is_accepted(api: GraphQLClient) -> None:
    backfill = await created(api, timeframeStart=iso(days_ago(33)), timeframeEnd=iso(days_ago(2)))
    assert backfill["status"] == "PENDING"


async def test_b1_another_business_customer_is_not_found(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    theirs = await create_customer(other_api, externalId="acme")
    payload = await create(api, customerId=theirs["id"])
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("CUSTOMER_NOT_FOUND", ["customerId"])
    ]


async def test_b1_overlapping_pending_backfills_conflict(api: GraphQLClient) -> None:
    customer = await create_customer(api, externalId="acme")
    first = await created(api, customerId=customer["id"])
    # The same customer, named by its externalId, over an overlapping timeframe
    payload = await create(
        api,
        externalCustomerId="acme",
        timeframeStart=iso(END - timedelta(hours=1)),
        timeframeEnd=iso(END + timedelta(hours=1)),
    )
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("BACKFILL_CONFLICT", ["timeframeStart"])
    ]
    assert first["id"] in payload["userErrors"][0]["message"]
    # Every customer overlaps every one
    payload = await create(api)
    assert payload["userErrors"][0]["code"] == "BACKFILL_CONFLICT"
    # Another customer, or a timeframe that only touches ([start, end)), does not
    assert (await created(api, externalCustomerId="beta"))["status"] == "PENDING"
    await created(
        api, customerId=customer["id"], timeframeStart=iso(END), timeframeEnd=iso(days_ago(1))
    )
    # Once the first is closed, its timeframe is free again
    await closed(api, first["id"])
    assert (await created(api, externalCustomerId="acme"))["status"] == "PENDING"


# -- B2, B3 ------------------------------------------------------------------------------------


async def test_b2_b3_events_go_in_and_count_nowhere_until_the_close(api: GraphQLClient) -> None:
    meter_id = await meter(api)
    backfill = await created(api)
    payload = await ingest_into(
        api, backfill["id"], [old_event("b1", 1, 5), old_event("b2", 47, 7)]
    )
    assert (payload["ingestedCount"], payload["userErrors"]) == (2, [])
    # Not in the events list, usage or volume…
    assert await listed(api) == []
    assert await listed(api, includeDeprecated=True) == []
    assert await usage(api, meter_id) == ("0", 0)
    assert await volume(api) == 0
    assert await volume(api, includeDeprecated=True) == 0
    # …but by eventId, with their backfill, and listed when the backfill is asked for
    event = await get_event(api, "b1")
    assert event is not None
    data = await api.data(EVENTS, {"filter": {"backfillId": backfill["id"]}})
    assert {node["eventId"] for node in data["events"]["nodes"]} == {"b1", "b2"}
    assert data["events"]["nodes"][0]["backfill"] == {"id": backfill["id"], "status": "PENDING"}
    reread = await get(api, backfill["id"])
    assert reread is not None
    assert reread["eventsIngested"] == 2
    # The close makes them count
    await closed(api, backfill["id"])
    assert await listed(api) == ["b1", "b2"]
    assert await usage(api, meter_id) == ("12", 2)
    assert await volume(api) == 2
    assert await volume(api, basis="INGESTION_TIME", **{"from": iso(days_ago(1)), "to": None}) == 2


async def test_b2_events_outside_the_timeframe_or_scope_refuse_the_batch(
    api: GraphQLClient, database: Database
) -> None:
    acme = await create_customer(api, externalId="acme")
    beta = await create_customer(api, externalId="beta")
    backfill = await created(api, customerId=acme["id"])
    payload = await ingest_into(
        api,
        backfill["id"],
        [
            old_event("ok-by-id", 1, 1, customer_id=acme["id"]),
            old_event("ok-by-external-id", 1, 1, external_customer_id="acme"),
            old_event("too-early", -1, 1, customer_id=acme["id"]),
            old_event("at-the-end", 48, 1, customer_id=acme["id"]),
            old_event("beta", 1, 1, customer_id=beta["id"]),
            old_event("ghost", 1, 1, external_customer_id="ghost"),
            event_input("now", customer_id=acme["id"]),
        ],
    )
    assert payload["ingestedCount"] == 0
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("TIMESTAMP_OUTSIDE_BACKFILL", ["events", "2", "timestamp"]),
        ("TIMESTAMP_OUTSIDE_BACKFILL", ["events", "3", "timestamp"]),
        ("CUSTOMER_MISMATCH", ["events", "4", "customerId"]),
        ("CUSTOMER_MISMATCH", ["events", "5", "externalCustomerId"]),
        ("TIMESTAMP_OUTSIDE_BACKFILL", ["events", "6", "timestamp"]),
    ]
    assert await count_rows(database, "events") == 0


async def test_b2_only_a_pending_backfill_of_yours_takes_events(
    api: GraphQLClient, other_api: GraphQLClient, database: Database
) -> None:
    theirs = await created(other_api)
    # An id longer than any backfill's is INVALID_INPUT (tests/graph/test_input_bounds.py).
    for backfill_id in (theirs["id"], "bfl_01HZZZZZZZZZZZZZZZZZZZZZZZ", "x" * 40):
        payload = await ingest_into(api, backfill_id, [old_event("e1", 1, 1)])
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            ("BACKFILL_NOT_FOUND", ["backfillId"])
        ]
    reflected = await created(api)
    await closed(api, reflected["id"])
    payload = await ingest_into(api, reflected["id"], [old_event("e1", 1, 1)])
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("BACKFILL_NOT_PENDING", ["backfillId"])
    ]
    undone = await created(api)
    await reverted(api, undone["id"])
    payload = await ingest_into(api, undone["id"], [old_event("e1", 1, 1)])
    assert payload["userErrors"][0]["code"] == "BACKFILL_NOT_PENDING"
    assert await count_rows(database, "events") == 0


async def test_b2_dedup_holds_across_backfills_and_normal_ingestion(api: GraphQLClient) -> None:
    payload = await ingest(api, [event_input("live", minutes_ago=1)])
    assert payload["ingestedCount"] == 1
    backfill = await created(api)
    payload = await ingest_into(
        api, backfill["id"], [old_event("live", 1, 1), old_event("b", 1, 1)]
    )
    assert (payload["ingested"], payload["duplicates"]) == (["b"], ["live"])
    later = await created(
        api, externalCustomerId="other", timeframeStart=iso(END), timeframeEnd=iso(days_ago(1))
    )
    payload = await ingest_into(
        api, later["id"], [old_event("b", 49, 1, external_customer_id="other")]
    )
    assert payload["duplicates"] == ["b"]


async def test_the_old_timestamp_error_points_to_backfills(api: GraphQLClient) -> None:
    payload = await ingest(api, [old_event("old", 1, 1)])
    [error] = payload["userErrors"]
    assert error["code"] == "TIMESTAMP_TOO_OLD"
    assert "createBackfill" in error["message"]
    assert "backfillId" in error["message"]


# -- B4, B5, B6 --------------------------------------------------------------------------------


async def test_b4_b5_b6_replace_preview_close_and_revert(api: GraphQLClient) -> None:
    meter_id = await meter(api)
    first = await history(api)
    assert await usage(api, meter_id) == ("60", 3)
    assert await volume(api) == 3
    # A replacing backfill of model "a" only: h1 and h3 go, h2 stays
    replacing = await created(
        api,
        replaceExistingEvents=True,
        deprecationFilter={"clauses": [{"key": "model", "operator": "EQUALS", "value": "a"}]},
    )
    assert replacing["deprecationFilter"]["clauses"] == [
        {"key": "model", "operator": "EQUALS", "value": "a"}
    ]
    await ingest_into(api, replacing["id"], [old_event("r1", 1, 100), old_event("r2", 3, 200)])
    # The preview: what the close would deprecate now; nothing changed yet
    assert (await get(api, replacing["id"]))["eventsToDeprecate"] == 2  # type: ignore[index]
    assert await usage(api, meter_id) == ("60", 3)
    closed_at_before = now_utc()
    reflected = await closed(api, replacing["id"])
    assert reflected["status"] == "REFLECTED"
    reflected_at = datetime.fromisoformat(reflected["reflectedAt"])
    assert reflected_at >= closed_at_before
    assert reflected["eventsToDeprecate"] == 0
    assert await usage(api, meter_id) == ("320", 3)
    assert await usage(api, meter_id, groupBy=["model"]) == ("320", 3)
    assert await listed(api) == ["h2", "r1", "r2"]
    assert await volume(api) == 3
    assert await volume(api, includeDeprecated=True) == 5
    audit = await get(api, replacing["id"])
    assert audit is not None
    assert sorted(
        (node["eventId"], node["deprecationReason"]) for node in audit["deprecatedEvents"]["nodes"]
    ) == [
        ("h1", f"replaced by backfill {replacing['id']}"),
        ("h3", f"replaced by backfill {replacing['id']}"),
    ]
    assert audit["events"]["totalCount"] == 2
    # Closing again changes nothing
    again = await closed(api, replacing["id"])
    assert again["reflectedAt"] == reflected["reflectedAt"]
    assert await usage(api, meter_id) == ("320", 3)
    # asOf a moment before the close answers as the service did then
    assert await usage(api, meter_id, asOf=iso(reflected_at - timedelta(microseconds=1))) == (
        "60",
        3,
    )

    # The revert: its events deprecated, the replaced ones restored
    undone = await reverted(api, replacing["id"])
    assert undone["status"] == "REVERTED"
    reverted_at = datetime.fromisoformat(undone["revertedAt"])
    assert await usage(api, meter_id) == ("60", 3)
    assert await listed(api) == ["h1", "h2", "h3"]
    assert await volume(api) == 3
    assert await volume(api, includeDeprecated=True) == 5
    assert (await get_event(api, "h1"))["deprecated"] is False  # type: ignore[index]
    audit = await get(api, replacing["id"])
    assert audit is not None
    assert {(n["eventId"], n["deprecated"]) for n in audit["deprecatedEvents"]["nodes"]} == {
        ("h1", False),
        ("h3", False),
    }
    assert {(n["eventId"], n["deprecationReason"]) for n in audit["events"]["nodes"]} == {
        ("r1", f"backfill {replacing['id']} was reverted"),
        ("r2", f"backfill {replacing['id']} was reverted"),
    }
    # Every moment keeps its answer: between close and revert, and after
    between = reflected_at + (reverted_at - reflected_at) / 2
    assert await usage(api, meter_id, asOf=iso(between)) == ("320", 3)
    assert await usage(api, meter_id, asOf=iso(reverted_at)) == ("60", 3)
    # Reverting again changes nothing; closing a reverted one is refused
    assert (await reverted(api, replacing["id"]))["revertedAt"] == undone["revertedAt"]
    payload = await mutate(api, CLOSE, replacing["id"])
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("BACKFILL_NOT_PENDING", ["id"])
    ]
    # The first backfill is untouched by all this
    assert (await get(api, first))["status"] == "REFLECTED"  # type: ignore[index]


async def test_b4_a_customer_scope_replaces_only_that_customers_events(api: GraphQLClient) -> None:
    meter_id = await meter(api)
    acme = await create_customer(api, externalId="acme")
    loaded = await created(api)
    await ingest_into(
        api,
        loaded["id"],
        [
            old_event("acme-by-id", 1, 1, customer_id=acme["id"]),
            old_event("acme-by-external-id", 2, 2, external_customer_id="acme"),
            old_event("beta", 3, 4, external_customer_id="beta"),
        ],
    )
    await closed(api, loaded["id"])
    replacing = await created(api, customerId=acme["id"], replaceExistingEvents=True)
    assert replacing["customer"] == {"id": acme["id"]}
    await ingest_into(api, replacing["id"], [old_event("acme-new", 5, 8, customer_id=acme["id"])])
    assert (await get(api, replacing["id"]))["eventsToDeprecate"] == 2  # type: ignore[index]
    await closed(api, replacing["id"])
    assert await listed(api) == ["acme-new", "beta"]
    assert await usage(api, meter_id) == ("12", 2)
    assert await usage(api, meter_id, customerIds=[acme["id"]]) == ("8", 1)


async def test_b5_reverts_undo_closes_in_the_order_they_happened(api: GraphQLClient) -> None:
    meter_id = await meter(api)
    first = await history(api)  # h1, h2, h3: 60
    second = await created(api, replaceExistingEvents=True)
    await ingest_into(api, second["id"], [old_event("n1", 1, 5)])
    await closed(api, second["id"])  # replaces h1, h2, h3
    assert await usage(api, meter_id) == ("5", 1)
    # Reverting the first would bring h1–h3 back beside n1, which replaced them
    payload = await mutate(api, REVERT, first)
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("BACKFILL_CONFLICT", ["id"])
    ]
    assert second["id"] in payload["userErrors"][0]["message"]
    assert await usage(api, meter_id) == ("5", 1)
    # In reverse order, each revert undoes its close
    await reverted(api, second["id"])
    assert await usage(api, meter_id) == ("60", 3)
    await reverted(api, first)
    assert await usage(api, meter_id) == ("0", 0)
    assert await listed(api) == []


async def test_b5_a_pending_backfill_reverted_is_never_reflected(api: GraphQLClient) -> None:
    meter_id = await meter(api)
    backfill = await created(api)
    await ingest_into(api, backfill["id"], [old_event("p1", 1, 1)])
    undone = await reverted(api, backfill["id"])
    assert undone["status"] == "REVERTED"
    assert undone["reflectedAt"] is None
    assert await listed(api, includeDeprecated=True) == []
    assert await usage(api, meter_id) == ("0", 0)
    assert await volume(api, includeDeprecated=True) == 0
    # Its eventIds are taken for good, like any deprecated event's (I9)
    later = await created(api)
    payload = await ingest_into(api, later["id"], [old_event("p1", 1, 1)])
    assert payload["userErrors"][0]["code"] == "EVENT_DEPRECATED"


async def test_b6_backfill_deprecations_do_not_count_toward_the_correction_limit(
    settings: Settings, api: GraphQLClient, client: httpx.AsyncClient
) -> None:
    object.__setattr__(settings, "correction_limit", 1)
    await create_customer(api, externalId="cust-1")
    await history(api)  # events of "cust-1"
    replacing = await created(api, replaceExistingEvents=True)
    await ingest_into(api, replacing["id"], [old_event("n1", 1, 1)])
    await closed(api, replacing["id"])  # deprecates h1, h2, h3 of cust-1
    data = await api.data(DEPRECATE, {"input": {"eventId": "n1"}})
    assert data["deprecateEvent"]["userErrors"] == []


# -- B4: closing at closeTime, without a request ----------------------------------------------

# A close time a few seconds ahead: on a slow machine the requests that create the backfill
# and ingest into it must still reach the server before it closes (1 s was seen too short).
CLOSE_SOON = timedelta(seconds=3)


async def sleep_past(close_time: str) -> None:
    remaining = (datetime.fromisoformat(close_time) - now_utc()).total_seconds()
    await asyncio.sleep(max(remaining, 0) + 0.1)


async def test_b4_a_read_after_close_time_finds_it_reflected(api: GraphQLClient) -> None:
    backfill = await created(api, closeTime=iso(now_utc() + CLOSE_SOON))
    await ingested_into(api, backfill["id"], [old_event("t1", 1, 1)])
    await sleep_past(backfill["closeTime"])
    reread = await get(api, backfill["id"])
    assert reread is not None
    assert reread["status"] == "REFLECTED"
    assert datetime.fromisoformat(reread["reflectedAt"]) >= datetime.fromisoformat(
        backfill["closeTime"]
    )
    assert await listed(api) == ["t1"]


async def test_b4_the_listing_shows_due_backfills_reflected(api: GraphQLClient) -> None:
    backfill = await created(api, closeTime=iso(now_utc() + CLOSE_SOON))
    await sleep_past(backfill["closeTime"])
    data = await api.data(LIST, {"status": "PENDING"})
    assert data["backfills"]["nodes"] == []
    data = await api.data(LIST, {})
    assert data["backfills"]["nodes"] == [{"id": backfill["id"], "status": "REFLECTED"}]


async def test_b4_the_closer_reflects_due_backfills_exactly_once(
    api: GraphQLClient, database: Database
) -> None:
    due = await created(api, externalCustomerId="cust-1", closeTime=iso(now_utc() + CLOSE_SOON))
    await ingested_into(api, due["id"], [old_event("c1", 1, 1)])
    later = await created(
        api, externalCustomerId="x", closeTime=iso(now_utc() + timedelta(hours=1))
    )
    assert await close_due_backfills(database, now_utc()) == 0
    moment = datetime.fromisoformat(due["closeTime"]) + timedelta(microseconds=1)
    # Several closers at once (as several server processes would run them): one close
    closes = await asyncio.gather(*(close_due_backfills(database, moment) for _ in range(4)))
    assert sum(closes) == 1
    assert await close_due_backfills(database, moment) == 0
    assert await listed(api) == ["c1"]
    assert await volume(api) == 1
    assert (await get(api, later["id"]))["status"] == "PENDING"  # type: ignore[index]


async def test_b4_the_server_process_runs_the_closer_by_itself(
    api: GraphQLClient, database: Database, settings: Settings
) -> None:
    backfill = await created(api, closeTime=iso(now_utc() + CLOSE_SOON))
    await ingested_into(api, backfill["id"], [old_event("s1", 1, 1)])
    quick = settings.model_copy(update={"backfill_close_interval": timedelta(seconds=0.1)})
    closer = asyncio.create_task(run_backfill_closer(database, quick))
    try:
        for _ in range(100):  # up to 10 s: the close time is 3 s ahead
            await asyncio.sleep(0.1)
            async with database.session() as session:
                from db.repositories.backfills import BackfillRepository

                found = await BackfillRepository(session, api.tenant.business_id).get(
                    backfill["id"]
                )
            if found is not None and found.status == "reflected":
                break
    finally:
        closer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closer
    assert found is not None
    assert found.status == "reflected"
    assert await listed(api) == ["s1"]


# -- B7 ------------------------------------------------------------------------------------------


async def test_b7_racing_closes_close_once(api: GraphQLClient) -> None:
    meter_id = await meter(api)
    backfill = await created(api)
    await ingest_into(api, backfill["id"], [old_event(f"e{i}", i, i) for i in range(10)])
    answers = await asyncio.gather(*(closed(api, backfill["id"]) for _ in range(5)))
    assert {answer["reflectedAt"] for answer in answers} == {answers[0]["reflectedAt"]}
    assert await usage(api, meter_id) == ("45", 10)
    assert await volume(api) == 10


async def test_b7_ingestion_racing_a_close_lands_before_it_or_is_refused(
    api: GraphQLClient,
) -> None:
    meter_id = await meter(api)
    backfill = await created(api)

    async def send(batch: int) -> dict[str, Any]:
        return await ingest_into(
            api, backfill["id"], [old_event(f"b{batch}-{i}", i, 1) for i in range(20)]
        )

    results = await asyncio.gather(
        *(send(batch) for batch in range(6)),
        closed(api, backfill["id"]),
        *(send(batch) for batch in range(6, 12)),
    )
    ingested = [each for each in results[:6] + results[7:] if each["ingestedCount"]]
    refused = [each for each in results[:6] + results[7:] if each["userErrors"]]
    assert len(ingested) + len(refused) == 12
    assert all(
        [error["code"] for error in each["userErrors"]] == ["BACKFILL_NOT_PENDING"]
        for each in refused
    )
    # Every event stored is visible with the backfill: none half-visible
    visible = 20 * len(ingested)
    assert await usage(api, meter_id) == (str(visible), visible)
    assert (await get(api, backfill["id"]))["eventsIngested"] == visible  # type: ignore[index]
    assert await volume(api) == visible


# -- tenancy ---------------------------------------------------------------------------------


async def test_another_business_sees_and_touches_nothing(
    api: GraphQLClient, other_api: GraphQLClient
) -> None:
    backfill = await created(api)
    await ingest_into(api, backfill["id"], [old_event("mine", 1, 1)])
    assert await get(other_api, backfill["id"]) is None
    data = await other_api.data("query($id: ID!) { node(id: $id) { id } }", {"id": backfill["id"]})
    assert data["node"] is None
    assert (await other_api.data(LIST, {}))["backfills"]["totalCount"] == 0
    for query in (CLOSE, REVERT):
        payload = await mutate(other_api, query, backfill["id"])
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            ("BACKFILL_NOT_FOUND", ["id"])
        ]
    reason, field = await bad_user_input(
        other_api, EVENTS, {"filter": {"backfillId": backfill["id"]}}
    )
    assert (reason, field) == ("BACKFILL_NOT_FOUND", ["filter", "backfillId"])
    assert (await get(api, backfill["id"]))["status"] == "PENDING"  # type: ignore[index]
