"""Connection cursors over HTTP (Q3, T2), on SQLite and PostgreSQL: they reveal nothing,
and are good only in the connection and for the business that they were issued to.

Every connection with cursors is walked: events, customers, meters and backfills.
"""

import base64
import itertools
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from db.database import Database
from db.tables import events
from tests.support import GraphQLClient, create_customer, event_input, ingest, iso, now_utc

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The field of each connection, as a query selects it.
CONNECTIONS = {
    "events": "events",
    "customers": "customers",
    "meters": "meters(includeArchived: true, ",
    "backfills": "backfills",
}

CREATE_METER = """
mutation Create($input: CreateMeterInput!) {
  createMeter(input: $input) { meter { id } userErrors { code } }
}
"""

CREATE_BACKFILL = """
mutation Create($input: CreateBackfillInput!) {
  createBackfill(input: $input) { backfill { id } userErrors { code } }
}
"""


def page_query(connection: str) -> str:
    field = CONNECTIONS[connection]
    opening = field if field.endswith(", ") else f"{field}("
    return f"""
query Page($first: Int, $after: String, $last: Int, $before: String) {{
  {opening}first: $first, after: $after, last: $last, before: $before) {{
    edges {{ cursor node {{ id }} }}
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
  }}
}}
"""


async def page(api: GraphQLClient, connection: str, **arguments: Any) -> dict[str, Any]:
    data = await api.data(page_query(connection), arguments)
    found: dict[str, Any] = data[connection]
    return found


def node_ids(found: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in found["edges"]]


def cursors_of(found: dict[str, Any]) -> list[str]:
    return [edge["cursor"] for edge in found["edges"]]


async def refused_cursor(api: GraphQLClient, connection: str, **arguments: Any) -> None:
    """The page is refused as INVALID_CURSOR, with nothing of the listing in the answer."""
    cursor: str = arguments["after"] if "after" in arguments else arguments["before"]
    response = await api.post(page_query(connection), arguments)
    body = response.json()
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"]["reason"] == "INVALID_CURSOR", error
    assert error["message"] == f"The cursor {cursor[:64]!r} is not a cursor of this connection."


async def fill(api: GraphQLClient, *, rows: int) -> None:
    """`rows` rows in each connection of the business."""
    await ingest(api, [event_input(f"e{index}", minutes_ago=index) for index in range(rows)])
    for index in range(rows):
        await create_customer(api, externalId=f"customer-{index}")
        meter = {"name": f"m{index}", "eventName": "e", "aggregation": {"type": "COUNT"}}
        created = await api.data(CREATE_METER, {"input": meter})
        assert created["createMeter"]["userErrors"] == []
        start = now_utc().replace(microsecond=0) - timedelta(days=30 - 2 * index)
        backfill = {
            "timeframeStart": iso(start),
            "timeframeEnd": iso(start + timedelta(days=1)),
            "replaceExistingEvents": False,
        }
        created = await api.data(CREATE_BACKFILL, {"input": backfill})
        assert created["createBackfill"]["userErrors"] == []


def sealed_bytes(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def respelled(sealed: bytes) -> str:
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


# (a) A cursor reveals nothing: no sequence, timestamp, id or business


async def test_t2_event_cursors_reveal_no_sequence_timestamp_or_id(
    api: GraphQLClient, other_api: GraphQLClient, database: Database
) -> None:
    # Another business's events first, so that the sequences of ours tell its volume.
    await ingest(other_api, [event_input(f"theirs-{index}") for index in range(300)])
    await ingest(api, [event_input(f"ours-{index}", minutes_ago=index) for index in range(5)])
    data = await api.data(
        "{ events(first: 10) { edges { cursor node { id eventId timestamp businessId } } } }"
    )
    edges = data["events"]["edges"]
    async with database.session() as session:
        rows = await session.execute(sa.select(events.c.id, events.c.sequence))
        sequences: dict[str, int] = {row.id: row.sequence for row in rows}
    assert len(edges) == 5
    for edge in edges:
        cursor, node = edge["cursor"], edge["node"]
        sealed = sealed_bytes(cursor)
        sequence = sequences[node["id"]]
        assert sequence > 300
        revealing_bytes = [
            str(sequence).encode(),
            sequence.to_bytes(8, "big"),
            sequence.to_bytes(8, "little"),
        ]
        revealing_text = [
            node["id"],
            node["id"].removeprefix("evt_"),
            node["eventId"],
            node["timestamp"],
            node["timestamp"][:19],
            node["businessId"],
            node["businessId"].removeprefix("bus_"),
            "events",
        ]
        for revealing in [*revealing_bytes, *(text.encode() for text in revealing_text)]:
            assert revealing not in sealed, revealing
        for text in revealing_text:
            assert text not in cursor, text
    # The same length for every event, whatever its sequence.
    assert len({len(edge["cursor"]) for edge in edges}) == 1


@pytest.mark.parametrize("connection", ["customers", "meters", "backfills"])
async def test_t2_cursors_of_ids_do_not_spell_them(api: GraphQLClient, connection: str) -> None:
    await fill(api, rows=3)
    found = await page(api, connection, first=10)
    business_id = api.tenant.business_id
    assert len(found["edges"]) == 3
    for edge in found["edges"]:
        cursor, node_id = edge["cursor"], edge["node"]["id"]
        _prefix, _, ulid = node_id.partition("_")
        for revealing in (node_id, ulid, ulid[:10], business_id, connection):
            assert revealing.encode() not in sealed_bytes(cursor), revealing
            assert revealing not in cursor, revealing


# (b) Another business's cursor


@pytest.mark.parametrize("connection", list(CONNECTIONS))
async def test_t2_cursor_of_another_business_is_refused(
    api: GraphQLClient, other_api: GraphQLClient, connection: str
) -> None:
    await fill(api, rows=2)
    await fill(other_api, rows=2)
    theirs = await page(other_api, connection, first=1)
    their_cursor = theirs["pageInfo"]["endCursor"]
    assert their_cursor is not None

    await refused_cursor(api, connection, first=5, after=their_cursor)
    await refused_cursor(api, connection, last=5, before=their_cursor)

    # The cursor still works for the business it was issued to.
    assert len((await page(other_api, connection, first=5, after=their_cursor))["edges"]) == 1


# (c) A cursor of another connection of the same business


async def test_q3_cursor_of_another_connection_is_refused(api: GraphQLClient) -> None:
    await fill(api, rows=2)
    cursors = {
        connection: (await page(api, connection, first=1))["pageInfo"]["endCursor"]
        for connection in CONNECTIONS
    }
    for issued_by, used_in in itertools.permutations(CONNECTIONS, 2):
        cursor = cursors[issued_by]
        await refused_cursor(api, used_in, first=5, after=cursor)
        await refused_cursor(api, used_in, last=5, before=cursor)


# (d) A tampered cursor


@pytest.mark.parametrize("connection", list(CONNECTIONS))
async def test_q3_cursor_with_a_flipped_byte_is_refused(
    api: GraphQLClient, connection: str
) -> None:
    await fill(api, rows=2)
    cursor = (await page(api, connection, first=1))["pageInfo"]["endCursor"]
    sealed = sealed_bytes(cursor)
    assert len((await page(api, connection, first=5, after=cursor))["edges"]) == 1
    for index in sorted({0, 1, len(sealed) // 2, len(sealed) - 17, len(sealed) - 1}):
        tampered = bytearray(sealed)
        tampered[index] ^= 0x01
        await refused_cursor(api, connection, first=5, after=respelled(bytes(tampered)))
    await refused_cursor(api, connection, first=5, after=cursor[:-1])


# (e) Paging through a whole listing, forwards and backwards


@pytest.mark.parametrize("connection", list(CONNECTIONS))
async def test_q3_paging_visits_every_row_once_forwards_and_backwards(
    api: GraphQLClient, connection: str
) -> None:
    await fill(api, rows=7)
    everything = node_ids(await page(api, connection, first=100))
    assert len(everything) == 7

    forwards: list[str] = []
    after = None
    while True:
        found = await page(api, connection, first=2, after=after)
        forwards += node_ids(found)
        if not found["pageInfo"]["hasNextPage"]:
            break
        after = found["pageInfo"]["endCursor"]

    backwards: list[str] = []
    before = None
    while True:
        found = await page(api, connection, last=2, before=before)
        backwards = node_ids(found) + backwards
        if not found["pageInfo"]["hasPreviousPage"]:
            break
        before = found["pageInfo"]["startCursor"]

    assert forwards == everything
    assert backwards == everything
    # A row's cursor is the same on every page that holds it.
    first_page, all_at_once = (
        await page(api, connection, first=2),
        await page(api, connection, first=100),
    )
    assert cursors_of(first_page) == cursors_of(all_at_once)[:2]
