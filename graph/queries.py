"""The Query type: thin resolvers over the repositories."""

import strawberry

from db import ids
from db.errors import UserErrorCode
from db.event_filter import EventFilter
from db.event_filter import EventOrder as DomainEventOrder
from db.pagination import Page, PageRequest
from db.repositories.customers import CustomerRepository
from db.repositories.event_listing import EventListing
from db.repositories.events import EventRepository
from db.repositories.meters import MeterRepository
from db.rules.bounds import refuse, refuse_long_id, too_long
from db.rules.ingestion import MAX_EVENT_ID_LENGTH
from graph.backfills.resolvers import backfill, backfills
from graph.backfills.types import Backfill
from graph.context import Info, RequestContext
from graph.serialized import NodeFields, serialized_node_fields
from graph.types.business import Business
from graph.types.connection import Connection
from graph.types.customer import Customer
from graph.types.customer_filter_input import CustomerFilterInput
from graph.types.event import Event
from graph.types.event_filter_input import EventFilterInput, EventOrder
from graph.types.meter import Meter
from graph.types.node import Node
from graph.usage.resolvers import event_volume, meter_usage
from graph.usage.types import EventVolume, MeterUsage


def refuse_long_event_id(event_id: str) -> None:
    """`event`'s argument within its bound (also checked by graph.plans)."""
    refuse(too_long(event_id, MAX_EVENT_ID_LENGTH, ("eventId",), UserErrorCode.EVENT_ID_INVALID))


async def json_events_page(
    context: RequestContext,
    event_filter: EventFilter,
    order_by: DomainEventOrder,
    request: PageRequest,
    node_fields: NodeFields,
) -> Page[str]:
    """`events`' page with each node as PostgreSQL's JSON text (also read by graph.plans)."""
    async with context.reading() as session:
        return await EventListing(session, context.business.id).json_page(
            event_filter, order_by, request, context.settings, node_fields
        )


@strawberry.type
class Query:
    meter_usage: MeterUsage = strawberry.field(
        resolver=meter_usage,
        description="How much of a meter was used, per period and series, exactly (U1–U8).",
    )
    event_volume: EventVolume = strawberry.field(
        resolver=event_volume, description="How many of your events arrived, per period."
    )
    backfill: Backfill | None = strawberry.field(
        resolver=backfill, description="A backfill of your business by its id."
    )
    backfills: Connection[Backfill] = strawberry.field(
        resolver=backfills, description="Your backfills, oldest first; of one status if asked."
    )

    @strawberry.field(description="The business of the API key in use.")
    def viewer(self, info: Info) -> Business:
        return Business.from_record(info.context.business)

    @strawberry.field(description="Any object of your business by its server id.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        refuse_long_id(id, ("id",))
        context = info.context
        if id.startswith(ids.BUSINESS_PREFIX):
            return Business.from_record(context.business) if id == context.business.id else None
        if id.startswith(ids.CUSTOMER_PREFIX):
            customer = await context.loaders.customer_by_id.load(id)
            return Customer.from_record(customer) if customer else None
        if id.startswith(ids.EVENT_PREFIX):
            async with context.reading() as session:
                event = await EventRepository(session, context.business.id).get(id)
            return Event.from_record(event) if event else None
        if id.startswith(ids.BACKFILL_PREFIX):
            found = await context.loaders.backfill_by_id.load(id)
            return Backfill.from_record(found) if found else None
        if id.startswith(ids.METER_PREFIX):
            async with context.reading() as session:
                meter = await MeterRepository(session, context.business.id).get(id)
            return Meter.from_record(meter) if meter else None
        return None

    @strawberry.field(description="An event by its eventId; null if your business has none.")
    async def event(self, info: Info, event_id: str) -> Event | None:
        refuse_long_event_id(event_id)
        context = info.context
        async with context.reading() as session:
            record = await EventRepository(session, context.business.id).get_by_event_id(event_id)
        return Event.from_record(record) if record else None

    @strawberry.field(description="Your events, newest first unless ordered otherwise.")
    async def events(
        self,
        info: Info,
        filter: EventFilterInput | None = None,
        order_by: EventOrder = DomainEventOrder.TIMESTAMP_DESC,  # type: ignore[valid-type]
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Event]:
        context = info.context
        event_filter = filter.to_domain() if filter is not None else EventFilter()
        request = context.page_request(first, after, last, before)
        node_fields = serialized_node_fields(info, Event)
        if node_fields is not None:
            texts = await json_events_page(context, event_filter, order_by, request, node_fields)
            return Connection.from_serialized(texts, node_fields, context.locked)
        async with context.reading() as session:
            listing = EventListing(session, context.business.id)
            page = await listing.page(event_filter, order_by, request, context.settings)
        return Connection.from_page(page, Event.from_record, context.locked)

    @strawberry.field
    async def meter(self, info: Info, id: strawberry.ID) -> Meter | None:
        refuse_long_id(id, ("id",))
        context = info.context
        async with context.reading() as session:
            record = await MeterRepository(session, context.business.id).get(id)
        return Meter.from_record(record) if record else None

    @strawberry.field(description="Your meters, oldest first; archived ones only when asked.")
    async def meters(
        self,
        info: Info,
        include_archived: bool = False,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Meter]:
        context = info.context
        request = context.page_request(first, after, last, before)
        async with context.reading() as session:
            page = await MeterRepository(session, context.business.id).page(
                request, context.settings, include_archived=include_archived
            )
        return Connection.from_page(page, Meter.from_record, context.locked)

    @strawberry.field
    async def customer(self, info: Info, id: strawberry.ID) -> Customer | None:
        refuse_long_id(id, ("id",))
        record = await info.context.loaders.customer_by_id.load(id)
        return Customer.from_record(record) if record else None

    @strawberry.field(description="Your customers, oldest first.")
    async def customers(
        self,
        info: Info,
        filter: CustomerFilterInput | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Customer]:
        context = info.context
        request = context.page_request(first, after, last, before)
        async with context.reading() as session:
            page = await CustomerRepository(session, context.business.id).page(
                request,
                context.settings,
                external_id=filter.external_id if filter is not None else None,
            )
        return Connection.from_page(page, Customer.from_record, context.locked)
