"""Lookups by eventId stay index lookups when the planner's statistics are stale.

A business that grew since the last ANALYZE must not make PostgreSQL filter the whole
business (it estimates such a business at one row), nor may a long list of eventIds make
SQLite scan the table. The statements the repository really sends are captured and
EXPLAINed on the same database, right after such growth.
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.event_filter import EventFilter, EventOrder
from db.pagination import PageRequest
from db.records import EventDraft
from db.repositories.corrections import EventCorrectionRepository
from db.repositories.customers import CustomerRepository
from db.repositories.event_listing import EventListing
from db.repositories.events import EventRepository
from db.rules.corrections import Amendment
from db.settings import Settings
from db.tables import events
from tests.support import Tenant, make_tenant, now_utc

pytestmark = pytest.mark.asyncio(loop_scope="session")


def event_rows(tenant: Tenant, count: int, prefix: str) -> list[dict[str, Any]]:
    now = now_utc()
    return [
        {
            "id": f"evt_{prefix}{index:024d}",
            "business_id": tenant.business_id,
            "event_id": f"{prefix}{index}",
            "customer_id": None,
            "external_customer_id": f"c{index % 50}",
            "event_name": ("api.request", "llm.tokens", "storage.gb")[index % 3],
            "timestamp": now - timedelta(seconds=index),
            "metadata": {"n": index},
            "ingested_at": now,
            "counted_from": now,
            "revision": 1,
        }
        for index in range(count)
    ]


@pytest_asyncio.fixture
async def grown_since_analyze(database: Database) -> Tenant:
    """Statistics taken while the business had no events; then it got 6000 of them."""
    established = await make_tenant(database, name="Established")
    grown = await make_tenant(database, name="Grown since ANALYZE")
    async with database.unit_of_work() as session:
        await session.execute(sa.insert(events), event_rows(established, 3000, "old-"))
    async with database.engine.connect() as connection:
        await connection.execute(sa.text("ANALYZE"))
        await connection.commit()
    async with database.unit_of_work() as session:
        await session.execute(sa.insert(events), event_rows(grown, 6000, "new-"))
    return grown


async def plans_of(
    database: Database,
    business_id: str,
    run: Callable[[AsyncSession], Awaitable[object]],
    kinds: tuple[str, ...] = ("SELECT",),
) -> str:
    """The plans of every statement on `events` of the given kinds that `run` sends."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith(kinds) and "events" in statement:
            sent.append((statement, parameters))

    sa.event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with database.session() as session:
            await run(session)
    finally:
        sa.event.remove(database.engine.sync_engine, "before_cursor_execute", record)
    assert sent, "the lookup sent no statement"
    prefix = "EXPLAIN QUERY PLAN " if database.dialect_name == "sqlite" else "EXPLAIN "
    plans = []
    async with database.engine.connect() as connection:
        for statement, parameters in sent:
            rows = (await connection.exec_driver_sql(prefix + statement, parameters)).all()
            plans.append("\n".join(" ".join(str(column) for column in row) for row in rows))
    return "\n".join(plans)


def assert_no_scan_of_the_business(plan: str, dialect: str) -> None:
    """Not the trap: a business-leading index read whole (PostgreSQL), a table scan (SQLite)."""
    if dialect == "postgresql":
        assert "ix_events_business_id_" not in plan, plan
    else:
        assert "(business_id=? AND event_id=?)" in plan, plan
        assert "SCAN events" not in plan, plan


async def test_point_read_by_event_id_uses_the_unique_index(
    database: Database, grown_since_analyze: Tenant
) -> None:
    business = grown_since_analyze.business_id
    plan = await plans_of(
        database,
        business,
        lambda session: EventRepository(session, business).get_by_event_id("new-42"),
    )
    assert_no_scan_of_the_business(plan, database.dialect_name)
    if database.dialect_name == "postgresql":
        assert "uq_events_business_id_event_id" in plan, plan


@pytest.mark.parametrize("batch_size", [20, 1000])
async def test_deprecated_check_of_a_batch_never_reads_the_whole_business(
    database: Database, grown_since_analyze: Tenant, batch_size: int
) -> None:
    event_ids = [f"new-{index}" for index in range(batch_size)]
    business = grown_since_analyze.business_id
    plan = await plans_of(
        database,
        business,
        lambda session: EventRepository(session, business)._deprecated_event_ids(event_ids),
    )
    assert_no_scan_of_the_business(plan, database.dialect_name)
    if database.dialect_name == "postgresql" and batch_size == 20:
        # For 1000 ids a scan of this small table is cheaper, and the planner knows it.
        assert "uq_events_business_id_event_id" in plan, plan


async def test_listing_by_event_ids_finds_them_through_the_unique_index(
    database: Database, grown_since_analyze: Tenant
) -> None:
    business = grown_since_analyze.business_id
    wanted = EventFilter(event_ids=tuple(f"new-{index}" for index in range(20)))
    plan = await plans_of(
        database,
        business,
        lambda session: EventListing(session, business).page(
            wanted,
            EventOrder.TIMESTAMP_DESC,
            PageRequest(first=10, cursor_key=grown_since_analyze.cursor_key),
            Settings(),
        ),
    )
    assert_no_scan_of_the_business(plan, database.dialect_name)
    if database.dialect_name == "postgresql":
        assert "uq_events_business_id_event_id" in plan, plan


async def test_ingest_writes_first_revisions_of_the_new_events_by_key(
    database: Database, tenant: Tenant
) -> None:
    """Also without any statistics, as a SQLite database that was never analyzed has none."""
    business = tenant.business_id
    drafts = [
        EventDraft(f"fresh-{index}", "api.request", external_customer_id="c1")
        for index in range(20)
    ]
    plan = await plans_of(
        database,
        business,
        lambda session: EventRepository(session, business).ingest(drafts, Settings(), now_utc()),
        kinds=("SELECT", "INSERT", "WITH"),
    )
    assert "ix_events_business_id_" not in plan, plan
    assert "SCAN events" not in plan, plan


async def test_a_correction_reads_and_writes_its_event_by_key(
    database: Database, grown_since_analyze: Tenant
) -> None:
    business = grown_since_analyze.business_id
    async with database.unit_of_work() as session:
        await CustomerRepository(session, business).create(
            external_id="c42", name=None, email=None, now=now_utc()
        )
    amendment = Amendment("new-42", "api.request", {"n": -42})
    plan = await plans_of(
        database,
        business,
        lambda session: EventCorrectionRepository(session, business).amend(
            amendment, Settings(), now_utc()
        ),
        kinds=("SELECT", "INSERT", "UPDATE"),
    )
    assert_no_scan_of_the_business(plan, database.dialect_name)
    assert "ix_events_business_id_" not in plan, plan
