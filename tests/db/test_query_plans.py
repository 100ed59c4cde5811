"""Every documented filter combination reads an index in order and stops after the page.

The page query the service really sends is captured and EXPLAINed on the same database:
on PostgreSQL no Sort may sit between the Limit and the index scans, on SQLite no
temporary B-tree may be built for the ORDER BY, and each must name an events index.
"""

import random
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from db.database import Database
from db.event_filter import EventFilter, EventOrder
from db.filters import Filter
from db.pagination import PageRequest
from db.repositories.customers import CustomerRepository
from db.repositories.event_listing import EventListing
from db.repositories.meters import MeterRepository
from db.rules.meters import AggregationType, MeterDraft
from db.settings import Settings
from db.tables import customers as customers_table
from db.tables import events
from tests.support import Tenant, make_tenant, now_utc

pytestmark = pytest.mark.asyncio(loop_scope="session")

EVENT_NAMES = ["api.request", "llm.tokens", "storage.gb", "email.sent"]


@pytest_asyncio.fixture
async def seeded(database: Database) -> dict[str, Any]:
    """A few thousand events over 40 customers and 4 names, then fresh planner statistics."""
    tenant = await make_tenant(database)
    now = now_utc()
    rng = random.Random(5)
    async with database.unit_of_work() as session:
        customers = CustomerRepository(session, tenant.business_id)
        acme = await customers.create(external_id="acme", name=None, email=None, now=now)
        # Enough customers that their table is read by its index, as a real one is (a
        # customer filter reads the customer's externalId within the page's statement).
        await session.execute(
            sa.insert(customers_table),
            [
                {
                    "id": f"cus_{index:026d}",
                    "business_id": tenant.business_id,
                    "external_id": f"c{index}",
                    "created_at": now,
                }
                for index in range(2000)
            ],
        )
        await session.execute(
            sa.insert(events),
            [
                {
                    "id": f"evt_{index:026d}",
                    "business_id": tenant.business_id,
                    "event_id": f"e{index}",
                    "customer_id": acme.id if index % 80 == 0 else None,
                    "external_customer_id": None if index % 80 == 0 else f"c{index % 40}",
                    "event_name": EVENT_NAMES[index % 4],
                    "timestamp": now - timedelta(seconds=rng.randrange(86_400)),
                    "metadata": {"tokens": rng.randrange(1000), "model": rng.choice("ab")},
                    "ingested_at": now,
                    "counted_from": now,
                    "revision": 1,
                }
                for index in range(4000)
            ],
        )
        meter = await MeterRepository(session, tenant.business_id).create(
            MeterDraft(
                name="big",
                event_name="llm.tokens",
                aggregation_type=AggregationType.SUM,
                aggregation_key="tokens",
                filter=Filter.from_document(
                    {
                        "conjunction": "AND",
                        "clauses": [{"key": "tokens", "operator": "GREATER_THAN", "value": 10}],
                        "groups": [],
                    }
                ).to_document(),
            ),
            now,
        )
    async with database.engine.connect() as connection:
        await connection.execute(sa.text("ANALYZE"))
        await connection.commit()
    return {"tenant": tenant, "customer_id": acme.id, "meter_id": meter.id, "now": now}


def combinations(seeded: dict[str, Any]) -> dict[str, tuple[EventFilter, str]]:
    """Each documented filter combination and the index its page must read."""
    now = seeded["now"]
    day_ago, hour_ago = now - timedelta(days=1), now - timedelta(hours=1)
    return {
        "no filter": (EventFilter(), "ix_events_business_id_timestamp_sequence"),
        "time range": (
            EventFilter(start=day_ago, end=hour_ago),
            "ix_events_business_id_timestamp_sequence",
        ),
        "customer (id and external id)": (
            EventFilter(customer_id=seeded["customer_id"]),
            "ix_events_business_id_external_customer_id_timestamp_sequence",
        ),
        "external customer id": (
            EventFilter(external_customer_id="c7"),
            "ix_events_business_id_external_customer_id_timestamp_sequence",
        ),
        "event name and time range": (
            EventFilter(event_name="llm.tokens", start=day_ago, end=hour_ago),
            "ix_events_business_id_event_name_timestamp_sequence",
        ),
        "meter": (
            EventFilter(meter_id=seeded["meter_id"]),
            "ix_events_business_id_event_name_timestamp_sequence",
        ),
    }


async def captured_page_query(
    database: Database, run: Callable[[], Awaitable[object]]
) -> tuple[list[str], str, Any]:
    """The planner settings `run` makes, then the SQL and parameters of its page query."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        sent.append((statement, parameters))

    sa.event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        await run()
    finally:
        sa.event.remove(database.engine.sync_engine, "before_cursor_execute", record)
    page = next(index for index, (sql, _) in enumerate(sent) if "LIMIT" in sql and "events" in sql)
    settings = [sql for sql, _ in sent[:page] if sql.startswith("SET ")]
    return settings, sent[page][0], sent[page][1]


async def explain(database: Database, settings: list[str], sql: str, parameters: Any) -> str:
    """The plan of `sql` in a transaction with the same planner settings as the service's."""
    prefix = "EXPLAIN QUERY PLAN " if database.dialect_name == "sqlite" else "EXPLAIN "
    async with database.engine.connect() as connection:
        for setting in settings:
            # For this transaction only (a read session sets them for its statement, then
            # resets them): the pooled connection must not keep them.
            await connection.exec_driver_sql("SET LOCAL " + setting.removeprefix("SET "))
        rows = (await connection.exec_driver_sql(prefix + sql, parameters)).all()
    return "\n".join(" ".join(str(column) for column in row) for row in rows)


@pytest.mark.parametrize("order", list(EventOrder))
@pytest.mark.parametrize(
    "combination",
    [
        "no filter",
        "time range",
        "customer (id and external id)",
        "external customer id",
        "event name and time range",
        "meter",
    ],
)
async def test_q3_q6_each_filter_combination_reads_an_index_in_order(
    database: Database, seeded: dict[str, Any], combination: str, order: EventOrder
) -> None:
    event_filter, index = combinations(seeded)[combination]
    tenant: Tenant = seeded["tenant"]

    async def list_page() -> object:
        async with database.session() as session:
            listing = EventListing(session, tenant.business_id)
            request = PageRequest(first=50, cursor_key=tenant.cursor_key)
            return await listing.page(event_filter, order, request, Settings())

    settings, sql, parameters = await captured_page_query(database, list_page)
    plan = await explain(database, settings, sql, parameters)

    assert index in plan, plan
    if database.dialect_name == "sqlite":
        assert not sqlite_sorts_what_it_searched(plan), plan
    else:
        assert plan.lstrip().startswith("Limit"), plan
        assert "Seq Scan" not in plan, plan
        assert not re.search(r"(^|->)\s*Sort\s+\(", plan, re.MULTILINE), plan


def sqlite_sorts_what_it_searched(plan: str) -> bool:
    """Whether a temporary B-tree sorts the rows of an events index search itself.

    With the customer filter, each branch's search runs in a co-routine that stops at its
    LIMIT; the merge above it may sort those few rows, never the searched set.
    """
    nodes = [line.split(" ", 3) for line in plan.splitlines()]
    searched_under = {parent for _id, parent, _unused, detail in nodes if "SEARCH events" in detail}
    return any(
        "TEMP B-TREE" in detail and parent in searched_under for _id, parent, _u, detail in nodes
    )
