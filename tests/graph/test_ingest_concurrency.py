"""I11: concurrent requests with overlapping eventIds store and report each event once."""

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from db.database import Database
from db.settings import Settings
from graph.app import create_app
from tests.support import GraphQLClient, Tenant, count_rows, event_input, ingest

pytestmark = pytest.mark.asyncio(loop_scope="session")

REQUESTS = 24
EVENTS_PER_REQUEST = 60
POOL = [f"evt-{index:04d}" for index in range(300)]


@pytest_asyncio.fixture
async def unshared_api(
    settings: Settings, database: Database, tenant: Tenant
) -> AsyncIterator[GraphQLClient]:
    """A server that lets one business send all REQUESTS at once (graph.admission)."""
    app = create_app(
        settings.model_copy(update={"max_concurrent_requests_per_business": REQUESTS}), database
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield GraphQLClient(client, tenant)


async def test_i11_overlapping_concurrent_batches_store_each_event_once(
    unshared_api: GraphQLClient, database: Database
) -> None:
    api = unshared_api
    rng = random.Random(11)
    # Each request has distinct eventIds (I7) in its own shuffled order, so on PostgreSQL
    # the requests also race for the same unique-index entries in different orders.
    batches = [rng.sample(POOL, EVENTS_PER_REQUEST) for _ in range(REQUESTS)]

    payloads = await asyncio.gather(
        *(ingest(api, [event_input(event_id) for event_id in batch]) for batch in batches)
    )

    assert all(payload["userErrors"] == [] for payload in payloads)
    sent = {event_id for batch in batches for event_id in batch}
    reported_ingested = Counter(
        event_id for payload in payloads for event_id in payload["ingested"]
    )
    assert set(reported_ingested) == sent
    assert set(reported_ingested.values()) == {1}, "an event was reported ingested twice"
    for batch, payload in zip(batches, payloads, strict=True):
        assert sorted(payload["ingested"] + payload["duplicates"]) == sorted(batch)
        assert payload["ingestedCount"] == len(payload["ingested"])
        assert payload["duplicateCount"] == len(payload["duplicates"])
    assert await count_rows(database, "events") == len(sent)
    assert await count_rows(database, "event_revisions") == len(sent)


async def test_i11_events_of_one_request_keep_request_order(
    api: GraphQLClient, database: Database
) -> None:
    import sqlalchemy as sa

    from db.tables import events

    order = ["zulu", "alpha", "mike", "bravo", "yankee"]
    await ingest(api, [event_input(event_id) for event_id in order])
    async with database.session() as session:
        stored = (
            await session.execute(sa.select(events.c.event_id).order_by(events.c.sequence))
        ).scalars()
        assert list(stored) == order
