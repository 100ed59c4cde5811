"""Statements read by asyncpg itself (db.driver_reads) give SQLAlchemy's rows, value for value.

db.driver_reads relies on SQLAlchemy's compiled cache and parameter binding beyond its
public API: each statement here binds a kind of parameter the service's pages bind
(strings, UTC instants, integers, keyset tuples, limits, subqueries, unions), and the
rows asyncpg reads must equal those SQLAlchemy reads. An upgrade that changes any of
what the module assumes fails here.
"""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa

from db.database import Database
from db.driver_reads import driver_rows, row_value
from db.event_json import event_json
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
            assert all(row_value(row, "sequence") == row[1] for row in rows if len(row) > 2)
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


async def test_a_statement_that_times_out_discards_its_connection(
    database: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.dialect_name != "postgresql":
        return  # SQLite reads go the usual way (covered above)

    async def never_answers(*_arguments: Any, **_keywords: Any) -> Any:
        raise TimeoutError

    statement = sa.select(events.c.sequence).where(events.c.business_id == tenant.business_id)
    async with database.session() as session:
        connection = await session.connection()
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        monkeypatch.setattr(asyncpg.Connection, "fetch", never_answers)
        with pytest.raises(TimeoutError):
            await driver_rows(session, statement)
        # Aborted and invalidated: never handed to another request to wait again
        assert driver.is_closed()
        assert connection.invalidated


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
