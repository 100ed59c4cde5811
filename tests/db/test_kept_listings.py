"""Listing statements kept per filter shape read what freshly built ones read (Q2–Q7 of
the events connection, and T2: a statement kept for one business serves another
only with that other business bound).

A listing without lookups keeps its statement by shape (db.repositories.event_listing)
and its page statement by page shape (db.pagination): the values are bound parameters.
A shape that missed something the SQL depends on would hand one request another's
statement. Every request here is answered twice, once with nothing kept (each statement
built afresh, as before any was kept) and once in a shuffled sequence that reuses them
all, and for two businesses whose requests share every kept statement.
"""

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
import pytest_asyncio
import sqlalchemy as sa

from db import pagination
from db.database import Database
from db.event_filter import EventFilter, EventOrder
from db.pagination import PageRequest
from db.repositories import event_listing
from db.repositories.event_listing import EventListing
from db.settings import Settings
from db.tables import customers, events
from tests.support import Tenant, make_tenant, now_utc

pytestmark = pytest.mark.asyncio(loop_scope="session")

EVENTS_PER_BUSINESS = 60
NAMES = ("api.call", "llm.tokens")
# Two selections of nodes: each listing's SQL writes the keys of its own.
JSON_FIELDS = (
    (("eventId", "event_id"), ("businessId", "business_id")),
    (("eventId", "event_id"), ("businessId", "business_id"), ("name", "event_name")),
)


@dataclass
class Business:
    label: str
    tenant: Tenant
    customer_id: str
    moments: list[datetime]


async def _seed(database: Database, label: str) -> Business:
    tenant = await make_tenant(database, name=label)
    now = now_utc()
    customer_id = f"cus_{label.upper():0>26}"
    moments = [now - timedelta(minutes=3 * (index // 2)) for index in range(EVENTS_PER_BUSINESS)]
    rows: list[dict[str, Any]] = [
        {
            "id": f"evt_{label.upper()}{index:0>25}",
            "business_id": tenant.business_id,
            "event_id": f"{label}-{index:03d}",
            # Sent with the customer's id, with its externalId, or with another one.
            "customer_id": customer_id if index % 3 == 0 else None,
            "external_customer_id": None if index % 3 == 0 else f"ext-{label}-{index % 3}",
            "event_name": NAMES[index % 2],
            "timestamp": moments[index],
            "metadata": {"index": index},
            "ingested_at": now,
            "counted_from": now,
            "revision": 1,
            "deprecated_at": now if index % 7 == 0 else None,
        }
        for index in range(EVENTS_PER_BUSINESS)
    ]
    async with database.unit_of_work() as session:
        await session.execute(
            sa.insert(customers),
            [
                {
                    "id": customer_id,
                    "business_id": tenant.business_id,
                    "external_id": f"ext-{label}-1",
                    "created_at": now,
                }
            ],
        )
        await session.execute(sa.insert(events), rows)
    return Business(label, tenant, customer_id, moments)


@pytest_asyncio.fixture
async def businesses(database: Database) -> tuple[Business, Business]:
    return await _seed(database, "a"), await _seed(database, "b")


def _filters(business: Business) -> list[EventFilter]:
    start, end = business.moments[40], business.moments[10]
    return [
        EventFilter(),
        EventFilter(include_deprecated=True),
        EventFilter(customer_id=business.customer_id),
        EventFilter(customer_id=business.customer_id, event_name=NAMES[0]),
        EventFilter(external_customer_id=f"ext-{business.label}-2"),
        EventFilter(event_name=NAMES[1], include_deprecated=True),
        EventFilter(start=start),
        EventFilter(end=end),
        EventFilter(start=start, end=end, event_name=NAMES[0]),
        EventFilter(customer_id=business.customer_id, start=start, end=end),
    ]


def _forget_kept() -> None:
    event_listing._kept_listings.clear()
    pagination._page_statements.clear()


@contextmanager
def nothing_kept() -> Iterator[None]:
    """Statements built afresh from an empty store, which is emptied again afterwards."""
    _forget_kept()
    try:
        yield
    finally:
        _forget_kept()


# (business, filter, order, "first" or "last", the JSON selection's index or None)
Request = tuple[int, EventFilter, EventOrder, str, int | None]


async def _answer(
    database: Database, business: Business, request: Request, *, fresh: bool
) -> tuple[list[str], list[str]]:
    """The page's eventIds and the eventIds of the pages its two cursors lead to;
    `fresh`: each page read with statements built afresh."""
    _, event_filter, order, paging, selection = request
    key = business.tenant.cursor_key
    async with database.session() as session:
        listing = EventListing(session, business.tenant.business_id)

        async def ids(page_request: PageRequest) -> tuple[list[str], Any]:
            if fresh:
                _forget_kept()
            if selection is not None:
                fields = JSON_FIELDS[selection]
                page: Any = await listing.json_page(
                    event_filter, order, page_request, Settings(), fields
                )
                nodes = [orjson.loads(text) for text in page.items]
                assert {node["businessId"] for node in nodes} <= {business.tenant.business_id}
                assert all(list(node) == [key for key, _ in fields] for node in nodes)
                return [node["eventId"] for node in nodes], page
            page = await listing.page(event_filter, order, page_request, Settings())
            assert {record.business_id for record in page.items} <= {business.tenant.business_id}
            return [record.event_id for record in page.items], page

        first = PageRequest(first=7, cursor_key=key)
        last = PageRequest(last=7, cursor_key=key)
        found, page = await ids(first if paging == "first" else last)
        # What a page works out only when asked: read with the page's own statement's
        # parameters, once the statements were kept.
        counted = [str(await page.count_total())]
        if not page.items:
            return found, counted
        after, before = page.end_cursor, page.start_cursor
        onward, onward_page = await ids(PageRequest(first=5, after=after, cursor_key=key))
        back, back_page = await ids(PageRequest(last=5, before=before, cursor_key=key))
        between, between_page = await ids(
            PageRequest(first=50, after=before, before=after, cursor_key=key)
        )
        told = [
            await onward_page.has_previous_page(),
            await back_page.has_next_page(),
            await between_page.has_next_page(),
            await between_page.has_previous_page(),
            await between_page.count_total(),
        ]
        return found, [*counted, *onward, "|", *back, "|", *between, "|", *map(str, told)]


async def test_kept_statements_read_what_fresh_ones_read(
    database: Database, businesses: tuple[Business, Business]
) -> None:
    selections = (None, 0, 1) if database.dialect_name == "postgresql" else (None,)
    requests: list[Request] = [
        (which, event_filter, order, paging, selection)
        for which, business in enumerate(businesses)
        for event_filter in _filters(business)
        for order in EventOrder
        for paging in ("first", "last")
        for selection in selections
    ]
    fresh = {}
    with nothing_kept():
        for request in requests:
            fresh[id(request)] = await _answer(
                database, businesses[request[0]], request, fresh=True
            )
    assert any(pages[0] for pages in fresh.values())
    assert any(pages[1] for pages in fresh.values())

    # One business's requests build the statements the other's reuse, in any order.
    shuffled = list(requests)
    random.Random(14).shuffle(shuffled)
    with nothing_kept():
        for request in shuffled:
            answer = await _answer(database, businesses[request[0]], request, fresh=False)
            assert answer == fresh[id(request)], request
        assert event_listing._kept_listings, "no statement was kept"
        assert pagination._page_statements, "no page statement was kept"
        kept = len(event_listing._kept_listings)
        # As many as there are shapes, not requests: both businesses share them.
        shapes = {
            (request[1].include_deprecated, request[4], _given(request[1])) for request in requests
        }
        assert kept == len(shapes)


def _given(event_filter: EventFilter) -> frozenset[str]:
    return frozenset(
        name for name in event_listing.PLAIN_VALUES if getattr(event_filter, name) is not None
    )
