"""Q3 at every page size: walking the events connection visits each event once, in order.

Driven through the repository (the same code the GraphQL field calls) so that all 100
page sizes, both directions and both orders fit in a test run; tests/graph covers the
same walk over HTTP for a few sizes.
"""

from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from db.database import Database
from db.event_filter import EventFilter, EventOrder
from db.pagination import PageRequest
from db.repositories.event_listing import EventListing
from db.settings import Settings
from db.tables import events
from tests.support import Tenant, make_tenant, now_utc

pytestmark = pytest.mark.asyncio(loop_scope="session")

EVENT_COUNT = 1200
DISTINCT_TIMESTAMPS = 37


@pytest_asyncio.fixture
async def stored(database: Database) -> tuple[Tenant, list[str]]:
    """EVENT_COUNT events over few timestamps (many ties), and their order oldest first."""
    tenant = await make_tenant(database)
    now = now_utc()
    moments = [now - timedelta(seconds=7 * index) for index in range(DISTINCT_TIMESTAMPS)]
    rows: list[dict[str, Any]] = [
        {
            "id": f"evt_{index:026d}",
            "business_id": tenant.business_id,
            "event_id": f"e{index:05d}",
            "external_customer_id": "c",
            "event_name": "n",
            "timestamp": moments[(index * 11) % DISTINCT_TIMESTAMPS],
            "metadata": {},
            "ingested_at": now,
            "counted_from": now,
            "revision": 1,
        }
        for index in range(EVENT_COUNT)
    ]
    async with database.unit_of_work() as session:
        await session.execute(sa.insert(events), rows)
    # Inserted in list order, so insertion order breaks the timestamp ties.
    oldest_first = sorted(range(EVENT_COUNT), key=lambda index: (rows[index]["timestamp"], index))
    return tenant, [rows[index]["event_id"] for index in oldest_first]


async def walk(
    database: Database, tenant: Tenant, order: EventOrder, size: int, *, backward: bool
) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    key = tenant.cursor_key
    async with database.session() as session:
        listing = EventListing(session, tenant.business_id)
        while True:
            request = (
                PageRequest(last=size, before=cursor, cursor_key=key)
                if backward
                else PageRequest(first=size, after=cursor, cursor_key=key)
            )
            page = await listing.page(EventFilter(), order, request, Settings())
            ids = [record.event_id for _, record in page.edges]
            assert len(ids) <= size
            seen = ids + seen if backward else seen + ids
            more = await (page.has_previous_page if backward else page.has_next_page)()
            if not more:
                return seen
            assert len(ids) == size, "only the last page may be short"
            cursor = page.start_cursor if backward else page.end_cursor


async def test_q3_every_page_size_visits_every_event_once_in_order(
    database: Database, stored: tuple[Tenant, list[str]]
) -> None:
    tenant, oldest_first = stored
    expected = {
        EventOrder.TIMESTAMP_ASC: oldest_first,
        EventOrder.TIMESTAMP_DESC: oldest_first[::-1],
    }
    for size in range(1, 101):
        order = EventOrder.TIMESTAMP_DESC if size % 2 else EventOrder.TIMESTAMP_ASC
        other = EventOrder.TIMESTAMP_ASC if size % 2 else EventOrder.TIMESTAMP_DESC
        forward = await walk(database, tenant, order, size, backward=False)
        backward = await walk(database, tenant, other, size, backward=True)
        assert forward == expected[order], f"forward walk, page size {size}"
        assert backward == expected[other], f"backward walk, page size {size}"
