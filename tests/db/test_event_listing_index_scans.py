"""Sorting switched off for a page on PostgreSQL (EventListing._ordered_index_scans).

The setting is reset after the page; it must neither outlive a page that was refused nor
hide the error of a statement that failed while it was in force.
"""

import pytest
import sqlalchemy as sa

from db.database import Database, in_autocommit
from db.errors import BadUserInput, UserErrorCode
from db.event_filter import EventFilter, EventOrder
from db.pagination import PageRequest
from db.repositories.event_listing import EventListing
from db.settings import Settings
from tests.support import make_tenant

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.postgres]

METADATA_FILTER = {
    "conjunction": "AND",
    "clauses": [{"key": "tokens", "operator": "GREATER_THAN", "value": 10}],
    "groups": [],
}


async def test_a_statement_failing_without_sorting_reports_its_own_error(
    postgres_database: Database,
) -> None:
    database = postgres_database
    tenant = await make_tenant(database)
    async with database.session() as session:
        listing = EventListing(session, tenant.business_id)

        async def fail_in_database() -> None:
            async with listing._ordered_index_scans(enforce=True):
                await session.execute(sa.text("SELECT 1 / 0"))

        with pytest.raises(sa.exc.DBAPIError) as raised:
            await fail_in_database()
    assert "division by zero" in str(raised.value)
    assert "current transaction is aborted" not in str(raised.value)


async def test_sorting_is_switched_back_on_after_a_refused_page(
    postgres_database: Database,
) -> None:
    database, settings = postgres_database, Settings()
    tenant = await make_tenant(database)
    async with database.session() as session:
        listing = EventListing(session, tenant.business_id)
        with pytest.raises(BadUserInput) as raised:
            await listing.page(
                EventFilter(metadata=METADATA_FILTER),
                EventOrder.TIMESTAMP_DESC,
                PageRequest(after="not a cursor", cursor_key=tenant.cursor_key),
                settings,
            )
        assert raised.value.code is UserErrorCode.INVALID_CURSOR
        assert (await session.execute(sa.text("SHOW enable_sort"))).scalar_one() == "on"


async def test_reads_send_no_transaction_and_leave_sorting_on_for_the_next_request(
    postgres_database: Database,
) -> None:
    database, settings = postgres_database, Settings()
    tenant = await make_tenant(database)
    async with database.session() as session:
        assert await in_autocommit(session)
        await EventListing(session, tenant.business_id).page(
            EventFilter(metadata=METADATA_FILTER),
            EventOrder.TIMESTAMP_DESC,
            PageRequest(first=10, cursor_key=tenant.cursor_key),
            settings,
        )
        # The connection the page used, as it goes back to the pool: sorting on again…
        assert (await session.execute(sa.text("SHOW enable_sort"))).scalar_one() == "on"
        # …and in no transaction: a SET LOCAL would hold until its end; alone, it ends at once.
        await session.execute(sa.text("SET LOCAL lock_timeout = '123s'"))
        assert (await session.execute(sa.text("SHOW lock_timeout"))).scalar_one() != "123s"
