"""Per-request DataLoaders: items resolved together cost one query (SPEC §6)."""

import asyncio

import pytest

from db.database import Database
from db.repositories.businesses import BusinessRepository
from db.repositories.events import EventRepository
from db.settings import Settings
from graph.context import RequestContext
from tests.support import GraphQLClient, create_customer, event_input, ingest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def request_context(
    database: Database, settings: Settings, api: GraphQLClient
) -> RequestContext:
    async with database.session() as session:
        business = await BusinessRepository(session).authenticate(api.tenant.api_key)
    assert business is not None
    return RequestContext(database, settings, business)


async def test_customers_of_many_events_load_in_one_query(
    api: GraphQLClient, database: Database, settings: Settings, statements: list[str]
) -> None:
    created = [await create_customer(api, externalId=f"ext-{index}") for index in range(5)]
    context = await request_context(database, settings, api)
    statements.clear()

    by_external_id = await asyncio.gather(
        *(context.loaders.customer_by_external_id.load(f"ext-{index}") for index in range(5)),
        context.loaders.customer_by_external_id.load("nobody"),
    )
    by_id = await asyncio.gather(
        *(context.loaders.customer_by_id.load(customer["id"]) for customer in created)
    )
    await context.close()

    assert [customer.id if customer else None for customer in by_external_id] == [
        customer["id"] for customer in created
    ] + [None]
    assert [customer.id if customer else None for customer in by_id] == [
        customer["id"] for customer in created
    ]
    assert len([sql for sql in statements if "FROM customers" in sql]) == 2


async def test_revisions_of_many_events_load_in_one_query(
    api: GraphQLClient, database: Database, settings: Settings, statements: list[str]
) -> None:
    await ingest(api, [event_input(f"e{index}") for index in range(4)])
    context = await request_context(database, settings, api)
    async with context.reading() as session:
        records = [
            await EventRepository(session, api.tenant.business_id).get_by_event_id(f"e{index}")
            for index in range(4)
        ]
    statements.clear()

    revisions = await asyncio.gather(
        *(
            context.loaders.revisions_by_event_sequence.load(record.sequence)
            for record in records
            if record is not None
        )
    )
    await context.close()

    assert [[revision.revision for revision in found] for found in revisions] == [[1]] * 4
    assert len([sql for sql in statements if "FROM event_revisions" in sql]) == 1
