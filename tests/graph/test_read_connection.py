"""A request's reads go through one bare read connection (Database.read_connection), not
an ORM session (graph.context.RequestContext.reading): a Session and its transaction would
cost every request more than its statement. Mutations still write in a unit of work's
session."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from db.database import Database
from db.records import BusinessRecord
from db.settings import Settings
from graph.context import RequestContext
from tests.support import GraphQLClient, event_input, ingest, iso

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def orm_statements() -> Iterator[list[str]]:
    """Statements run through any ORM session while the test runs."""
    seen: list[str] = []

    def record(state: Any) -> None:
        seen.append(str(state.statement))

    sa.event.listen(Session, "do_orm_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(Session, "do_orm_execute", record)


async def test_a_query_reads_without_an_orm_session(
    api: GraphQLClient, orm_statements: list[str]
) -> None:
    payload = await ingest(api, [event_input("evt-1", external_customer_id="c-1")])
    assert payload["ingestedCount"] == 1
    # The mutation wrote through a session: the listener hears sessions.
    assert orm_statements

    orm_statements.clear()
    data = await api.data(
        "query { events(first: 5) { totalCount nodes { eventId customer { id } revisions"
        ' { revision } } } event(eventId: "evt-1") { eventId } }'
    )
    assert data["events"]["totalCount"] == 1
    assert data["event"] == {"eventId": "evt-1"}
    # Only the API key's check, which a server whose key cache listens for revocations
    # (not started here, without the app's lifespan) makes once per key.
    assert [statement for statement in orm_statements if "api_keys" not in statement] == []
    assert len(orm_statements) <= 1


CLOSES_IN_SECONDS = 3


async def test_a_page_read_before_a_write_in_the_same_query_still_answers(
    api: GraphQLClient,
) -> None:
    # A backfill due to close: listing backfills closes it first (a write, in its own
    # unit of work) while `events` has read its page already; that page's totalCount is
    # counted after the write, on the request's read connection.
    await ingest(api, [event_input(f"evt-{index}", minutes_ago=index) for index in range(3)])
    now = datetime.now(UTC)
    created = await api.data(
        "mutation($input: CreateBackfillInput!) { createBackfill(input: $input)"
        " { backfill { id } userErrors { code } } }",
        {
            "input": {
                "timeframeStart": iso(now - timedelta(days=3)),
                "timeframeEnd": iso(now - timedelta(days=2)),
                "replaceExistingEvents": False,
                # Far enough ahead that a slow machine still creates it before then.
                "closeTime": iso(now + timedelta(seconds=CLOSES_IN_SECONDS)),
            }
        },
    )
    assert created["createBackfill"]["userErrors"] == []
    backfill = created["createBackfill"]["backfill"]
    await asyncio.sleep(CLOSES_IN_SECONDS + 0.2)
    data = await api.data(
        "{ backfills { nodes { id status } }"
        " events(first: 2) { totalCount pageInfo { hasNextPage } nodes { eventId } } }"
    )
    assert data["backfills"]["nodes"] == [{"id": backfill["id"], "status": "REFLECTED"}]
    assert data["events"]["totalCount"] == 3
    assert [node["eventId"] for node in data["events"]["nodes"]] == ["evt-0", "evt-1"]


class UnreachableDatabase:
    """A Database whose read connections cannot be had: the server is away."""

    def __init__(self) -> None:
        self.attempts = 0

    async def read_connection(self) -> Any:
        self.attempts += 1
        raise ConnectionRefusedError(111, "Connection refused")


async def test_an_outage_met_taking_the_connection_fails_the_next_read_at_once(
    settings: Settings,
) -> None:
    """The fields after the first that met the outage fail with it without waiting out the
    database once more (RequestContext.reading)."""
    database = UnreachableDatabase()
    context = RequestContext(cast(Database, database), settings, cast(BusinessRecord, None))
    errors = []
    for _ in range(3):
        with pytest.raises(ConnectionRefusedError) as raised:
            async with context.reading():
                pass
        errors.append(raised.value)
    assert database.attempts == 1
    assert errors[1] is errors[0]
    assert errors[2] is errors[0]
    # Each turn gave the lock back.
    assert not context._lock.locked()


class BrokenConnection:
    """What a read connection of a database that just went away does with a statement."""

    async def exec_driver_sql(self, _statement: str) -> Any:
        raise ConnectionResetError(104, "Connection reset by peer")


class OneConnectionDatabase:
    def __init__(self) -> None:
        self.attempts = 0

    async def read_connection(self) -> Any:
        self.attempts += 1
        return BrokenConnection()


async def test_an_outage_met_by_a_read_fails_the_next_read_at_once(settings: Settings) -> None:
    database = OneConnectionDatabase()
    context = RequestContext(cast(Database, database), settings, cast(BusinessRecord, None))
    with pytest.raises(ConnectionResetError) as first:
        async with context.reading() as connection:
            await cast(BrokenConnection, connection).exec_driver_sql("SELECT 1")
    with pytest.raises(ConnectionResetError) as second:
        async with context.reading():
            raise AssertionError("not reached: the outage is raised on entry")
    assert second.value is first.value
    assert database.attempts == 1
    assert not context._lock.locked()
    # An error that is no outage is not kept.
    other = RequestContext(
        cast(Database, OneConnectionDatabase()), settings, cast(BusinessRecord, None)
    )
    with pytest.raises(ValueError, match="bad input"):
        async with other.reading():
            raise ValueError("bad input")
    async with other.reading() as connection:
        assert isinstance(connection, BrokenConnection)
