"""C5, C6: a correction locks its customer against other corrections, never against ingestion.

The customer's row is locked FOR NO KEY UPDATE, which conflicts with another correction's
lock but not with the FOR KEY SHARE that inserting an event of that customer takes through
the foreign key. Row locks are PostgreSQL's; SQLite lets one writer in at a time.
"""

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.records import EventDraft
from db.repositories.corrections import EventCorrectionRepository
from db.repositories.customers import CustomerRepository
from db.repositories.events import EventRepository
from db.settings import Settings
from tests.support import make_tenant, now_utc

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.postgres]


async def wait_briefly_for_locks(session: AsyncSession) -> None:
    await session.execute(sa.text("SET LOCAL lock_timeout = '300ms'"))


async def test_c5_a_held_correction_lock_stops_corrections_but_not_ingestion(
    postgres_database: Database,
) -> None:
    database, settings = postgres_database, Settings()
    # Given a customer with two events
    tenant = await make_tenant(database)
    now = now_utc()
    async with database.unit_of_work() as session:
        customer = await CustomerRepository(session, tenant.business_id).create(
            external_id=None, name=None, email=None, now=now
        )
        await EventRepository(session, tenant.business_id).ingest(
            [
                EventDraft("first", "api.request", customer_id=customer.id),
                EventDraft("second", "api.request", customer_id=customer.id),
            ],
            settings,
            now,
        )

    # When a correction of that customer holds its locks
    async with database.unit_of_work() as correcting:
        corrections = EventCorrectionRepository(correcting, tenant.business_id)
        await corrections.deprecate("first", None, settings, now)

        # Then an ingest of an event naming that customer goes through
        async with database.unit_of_work() as ingesting:
            await wait_briefly_for_locks(ingesting)
            result = await EventRepository(ingesting, tenant.business_id).ingest(
                [EventDraft("third", "api.request", customer_id=customer.id)], settings, now
            )
        assert result.ingested == ["third"]

        # And a second correction of that customer waits for the first
        async def correct_again() -> None:
            async with database.unit_of_work() as second:
                await wait_briefly_for_locks(second)
                repository = EventCorrectionRepository(second, tenant.business_id)
                await repository.deprecate("second", None, settings, now)

        with pytest.raises(sa.exc.DBAPIError, match="lock timeout"):
            await correct_again()
