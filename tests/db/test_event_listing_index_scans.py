"""Sorting switched off for a page on PostgreSQL (EventListing._ordered_index_scans).

The setting ends with the transaction; it must neither outlive a page that was refused nor
hide the error of a statement that failed while it was in force.
"""

import pytest
import sqlalchemy as sa

from db.database import Database
from db.errors import BadUserInput, UserErrorCode
from db.event_filter import EventFilter, EventOrder
from db.pagination import PageRequest
from db.repositories.event_listing import EventListing
from db.settings import Settings
from tests.support import make_tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

METADATA_FILTER = {
    "conjunction": "AND",
    "clauses": [{"key": "tokens", "operator": "GREATER_THAN", "value": 10}],
    "groups": [],
}


def skip_unless_postgresql(database: Database) -> None:
    if database.dialect_name != "postgresql":
        pytest.skip("sorting is switched off on PostgreSQL only")


async def test_a_statement_failing_without_sorting_reports_its_own_error(
    database: Database,
) -> None:
    skip_unless_postgresql(database)
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
    database: Database, settings: Settings
) -> None:
    skip_unless_postgresql(database)
    tenant = await make_tenant(database)
    async with database.session() as session:
        listing = EventListing(session, tenant.business_id)
        with pytest.raises(BadUserInput) as raised:
            await listing.page(
                EventFilter(metadata=METADATA_FILTER),
                EventOrder.TIMESTAMP_DESC,
                PageRequest(after="not a cursor"),
                settings,
            )
        assert raised.value.code is UserErrorCode.INVALID_CURSOR
        assert (await session.execute(sa.text("SHOW enable_sort"))).scalar_one() == "on"
