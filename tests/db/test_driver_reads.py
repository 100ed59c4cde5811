"""Statements read by asyncpg itself (db.driver_reads) give SQLAlchemy's rows, value for value.

db.driver_reads relies on SQLAlchemy's compiled cache and parameter binding beyond its
public API: each statement here binds a kind of parameter the service's pages bind
(strings, UTC instants, integers, keyset tuples, limits, subqueries, unions), and the
rows asyncpg reads must equal those SQLAlchemy reads. An upgrade that changes any of
what the module assumes fails here.
"""

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa

from db.database import Database
from db.driver_reads import driver_rows, row_value
from db.event_json import event_json
from db.faults import is_database_unavailable
from db.repositories.events import EventRepository, event_record
from db.tables import customers, events
from tests.support import Tenant, now_utc

pytestmark = pytest.mark.asyncio(loop_scope="session")


def statement_kinds(business_id: str) -> dict[str, Callable[[], Any]]:
    now = now_utc()
    owned = events.c.business_id == business_id
    keyset = sa.tuple_(events.c.timestamp, events.c.sequence)
    page = sa.select(events.c.timestamp, events.c.sequence, events.c.event_id).where(owned)
    return {
        "strings and a limit": lambda: (
            page.where(events.c.event_name == "api.request")
            .order_by(events.c.timestamp.desc(), events.c.sequence.desc())
            .limit(5)
        ),
        "instants": lambda: page.where(
            events.c.timestamp >= now - timedelta(hours=2), events.c.timestamp < now
        ).order_by(events.c.sequence),
        "a keyset position": lambda: page.where(
            keyset < sa.tuple_(now - timedelta(minutes=30), 10**12)
        ).order_by(events.c.timestamp.desc(), events.c.sequence.desc()),
        "a scalar subquery": lambda: page.where(
            events.c.external_customer_id
            == sa.select(customers.c.external_id)
            .where(customers.c.business_id == business_id, customers.c.id == "cus_c1")
            .scalar_subquery()
        ),
        "a union of limited branches": lambda: sa.union_all(
            page.where(events.c.event_name == "api.request").order_by(events.c.sequence).limit(3),
            page.where(events.c.event_name == "llm.tokens").order_by(events.c.sequence).limit(3),
        ).order_by(sa.literal_column("sequence")),
        "JSON written by PostgreSQL": lambda: (
            sa.select(events.c.sequence, event_json((("eventId", "event_id"), ("at", "timestamp"))))
            .where(owned)
            .order_by(events.c.sequence)
        ),
    }


# json_build_object, and (… LIMIT) UNION ALL (… LIMIT), are PostgreSQL's.
POSTGRESQL_ONLY = {"a union of limited branches", "JSON written by PostgreSQL"}


@pytest.mark.parametrize(
    "kind",
    [
        "strings and a limit",
        "instants",
        "a keyset position",
        "a scalar subquery",
        "a union of limited branches",
        "JSON written by PostgreSQL",
    ],
)
async def test_rows_read_by_the_driver_equal_sqlalchemys(
    database: Database, tenant: Tenant, kind: str
) -> None:
    await insert_events(database, tenant)
    statement = statement_kinds(tenant.business_id)[kind]
    if kind in POSTGRESQL_ONLY and database.dialect_name != "postgresql":
        return  # SQLite's pages are built otherwise, and always read the usual way
    async with database.session() as session:
        expected = [tuple(row) for row in (await session.execute(statement())).all()]
        # Twice: the second read takes the statement from SQLAlchemy's compiled cache
        for _ in range(2):
            rows = await driver_rows(session, statement())
            assert [tuple(row) for row in rows] == expected
            at = 0 if kind == "JSON written by PostgreSQL" else 1
            assert [row_value(row, "sequence") for row in rows] == [row[at] for row in expected]
            if database.dialect_name == "postgresql":
                assert all(isinstance(row, asyncpg.Record) for row in rows)
    assert expected


async def test_statements_rewritten_at_execution_go_the_usual_way(
    database: Database, tenant: Tenant
) -> None:
    # An IN list expands at execution: SQLAlchemy reads it, with the same rows
    await insert_events(database, tenant)
    statement = (
        sa.select(events.c.event_id)
        .where(events.c.business_id == tenant.business_id, events.c.event_id.in_(["e1", "e2"]))
        .order_by(events.c.event_id)
    )
    async with database.session() as session:
        rows = await driver_rows(session, statement)
    assert [tuple(row) for row in rows] == [("e1",), ("e2",)]
    assert not any(isinstance(row, asyncpg.Record) for row in rows)


@pytest.mark.parametrize("cut_off", [TimeoutError, asyncio.CancelledError, OSError])
async def test_a_statement_cut_off_discards_its_connection(
    database: Database,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    cut_off: type[BaseException],
) -> None:
    if database.dialect_name != "postgresql":
        return  # SQLite reads go the usual way (covered above)

    async def never_answers(*_arguments: Any, **_keywords: Any) -> Any:
        raise cut_off

    statement = sa.select(events.c.sequence).where(events.c.business_id == tenant.business_id)
    async with database.session() as session:
        connection = await session.connection()
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        monkeypatch.setattr(asyncpg.Connection, "fetch", never_answers)
        # When the statement times out, is cancelled or loses its connection
        with pytest.raises(cut_off) as raised:
            await driver_rows(session, statement)
        # Then its own error is raised, an outage where it is one (answered 503), and the
        # connection is aborted and invalidated: never handed to another request as it is
        assert driver.is_closed()
        assert connection.invalidated
    if cut_off is not asyncio.CancelledError:
        assert is_database_unavailable(raised.value)


@pytest.mark.postgres
async def test_a_read_connection_invalidated_meanwhile_reads_on_a_new_one(
    postgres_database: Database,
) -> None:
    # driver_rows takes the connection a request's read connection holds as an attribute;
    # one invalidated since (an error of an earlier statement) must reconnect instead.
    statement = sa.select(sa.literal(2).label("two"))
    connection = await postgres_database.read_connection()
    try:
        first = [tuple(row) for row in await driver_rows(connection, statement)]
        await connection.invalidate()

        again = [tuple(row) for row in await driver_rows(connection, statement)]
    finally:
        await connection.close()

    assert first == again == [(2,)]


async def test_an_error_the_server_reports_keeps_the_connection(
    database: Database, tenant: Tenant
) -> None:
    # A statement the server refuses (here: division by zero) leaves a working connection
    statement = sa.select(sa.literal(1) / sa.literal(0))
    async with database.session() as session:
        if database.dialect_name != "postgresql":
            return  # SQLite divides by zero into NULL
        connection = await session.connection()
        with pytest.raises(asyncpg.DivisionByZeroError):
            await driver_rows(session, statement)
        assert not connection.invalidated
        assert [tuple(row) for row in await driver_rows(session, sa.select(sa.literal(2)))] == [
            (2,)
        ]


async def test_in_a_transaction_statements_go_the_usual_way(
    database: Database, tenant: Tenant
) -> None:
    # SQLAlchemy sends BEGIN before its own first statement of a transaction: a read by
    # the driver first would run outside it
    await insert_events(database, tenant)
    statement = sa.select(events.c.event_id).where(events.c.business_id == tenant.business_id)
    async with database.unit_of_work() as session:
        rows = await driver_rows(session, statement)
        assert len(rows) == 20
        assert not any(isinstance(row, asyncpg.Record) for row in rows)


async def insert_events(database: Database, tenant: Tenant) -> None:
    now = now_utc()
    async with database.unit_of_work() as session:
        await session.execute(
            sa.insert(customers),
            {
                "id": "cus_c1",
                "business_id": tenant.business_id,
                "external_id": "c1",
                "created_at": now,
            },
        )
        await session.execute(
            sa.insert(events),
            [
                {
                    "id": f"evt_{index:026d}",
                    "business_id": tenant.business_id,
                    "event_id": f"e{index}",
                    "external_customer_id": f"c{index % 3}",
                    "event_name": "api.request" if index % 2 else "llm.tokens",
                    "timestamp": now - timedelta(minutes=index * 7),
                    "metadata": {"n": index},
                    "ingested_at": now,
                    "counted_from": now,
                    "revision": 1,
                }
                for index in range(20)
            ],
        )


async def test_bound_parameters_and_point_reads_equal_sqlalchemys(
    database: Database, tenant: Tenant
) -> None:
    await insert_events(database, tenant)
    wanted = sa.bindparam("wanted", type_=events.c.event_id.type)
    statement = sa.select(events.c.event_id, events.c.timestamp).where(
        events.c.business_id == tenant.business_id, events.c.event_id == wanted
    )
    async with database.session() as session:
        # A statement built once, its values bound at each read
        for event_id in ("e4", "e5", "missing"):
            expected = (await session.execute(statement, {"wanted": event_id})).all()
            rows = await driver_rows(session, statement, {"wanted": event_id})
            assert [tuple(row) for row in rows] == [tuple(row) for row in expected]
        # A statement kept (sent again with only the given values changing), with values
        # of its own besides: its form is worked out once, each read binds what it is given
        kept = sa.select(events.c.event_id, event_json((("id", "event_id"),))).where(
            events.c.business_id == tenant.business_id,
            events.c.event_name != "never sent",
            events.c.timestamp < sa.bindparam("before", type_=events.c.timestamp.type),
            events.c.event_id == wanted,
        )
        if database.dialect_name != "postgresql":
            kept = statement  # json_build_object is PostgreSQL's
        for _ in range(2):
            for event_id in ("e4", "e5", "missing", "e0"):
                values = {"wanted": event_id, "before": now_utc()}
                expected = (await session.execute(kept, values)).all()
                rows = await driver_rows(session, kept, values, kept=True)
                assert [tuple(row) for row in rows] == [tuple(row) for row in expected]
                assert len(rows) == (0 if event_id == "missing" else 1)
        # A point read by the driver gives the record SQLAlchemy's row gives, metadata
        # decoded and instants in UTC
        repository = EventRepository(session, tenant.business_id)
        for event_id in ("e0", "e7"):
            by_driver = await repository.get_by_event_id(event_id)
            row = (
                await session.execute(
                    sa.select(events).where(
                        events.c.business_id == tenant.business_id, events.c.event_id == event_id
                    )
                )
            ).one()
            assert by_driver == event_record(row)
            assert by_driver is not None
            assert by_driver.metadata == {"n": int(event_id[1:])}
            assert await repository.get(by_driver.id) == by_driver


async def test_an_observed_engine_hears_of_every_statement(
    database: Database, tenant: Tenant
) -> None:
    # Given an engine whose statements someone listens to (SQL logging, tracing)
    await insert_events(database, tenant)
    heard: list[str] = []

    def listen(*arguments: Any) -> None:
        heard.append(str(arguments[2]))

    statement = sa.select(events.c.event_id).where(events.c.business_id == tenant.business_id)
    sa.event.listen(database.engine.sync_engine, "before_cursor_execute", listen)
    try:
        async with database.session() as session:
            rows = await driver_rows(session, statement)
    finally:
        sa.event.remove(database.engine.sync_engine, "before_cursor_execute", listen)
    # Then the statement went the usual way, and the listener heard it
    assert len(rows) == 20
    assert not any(isinstance(row, asyncpg.Record) for row in rows)
    assert any("FROM events" in sql for sql in heard)


@pytest.mark.parametrize("event_name", ["before_cursor_execute", "after_cursor_execute"])
@pytest.mark.parametrize(
    "listened_on", ["engine", "Engine class", "Connection class", "connection"]
)
async def test_a_request_read_connection_observed_anywhere_goes_the_usual_way(
    database: Database, tenant: Tenant, listened_on: str, event_name: str
) -> None:
    """A request's read connection asks SQLAlchemy's own flags whether anyone observes its
    statements (db.driver_reads._observed): a listener on its engine, on its connection, or
    on either's class, is heard all the same."""
    await insert_events(database, tenant)
    heard: list[str] = []

    def listen(*arguments: Any) -> None:
        heard.append(str(arguments[2]))

    statement = sa.select(events.c.event_id).where(events.c.business_id == tenant.business_id)
    connection = await database.read_connection()
    try:
        # Unobserved, a PostgreSQL read is asyncpg's (SQLite's is always SQLAlchemy's).
        unobserved = await driver_rows(connection, statement)
        assert len(unobserved) == 20
        assert all(isinstance(row, asyncpg.Record) for row in unobserved) == (
            database.dialect_name == "postgresql"
        )
        target: Any = {
            "engine": database.engine.sync_engine,
            "Engine class": sa.engine.Engine,
            "Connection class": sa.engine.Connection,
            "connection": connection.sync_connection,
        }[listened_on]
        # A listener on a class sets the class's flag for good: put back as it was, so
        # that the cases after this one still show what each listener alone does.
        class_flag = vars(target).get("_has_events") if isinstance(target, type) else None
        sa.event.listen(target, event_name, listen)
        try:
            rows = await driver_rows(connection, statement)
        finally:
            sa.event.remove(target, event_name, listen)
            if class_flag is not None:
                target._has_events = class_flag
    finally:
        await database.release_read_connection(connection)
    assert len(rows) == 20
    assert not any(isinstance(row, asyncpg.Record) for row in rows)
    assert any("FROM events" in sql for sql in heard)
