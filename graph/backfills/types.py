from datetime import datetime

import strawberry

from db.event_filter import EventFilter
from db.event_filter import EventOrder as DomainEventOrder
from db.pagination import PageRequest
from db.records import BackfillRecord
from db.repositories.backfills import BackfillRepository
from db.repositories.event_listing import EventListing
from db.rules.backfills import BackfillStatus as DomainBackfillStatus
from graph.context import Info
from graph.types.connection import Connection
from graph.types.customer import Customer
from graph.types.event import Event
from graph.types.meter import MeterFilter
from graph.types.node import Node

BackfillStatus = strawberry.enum(
    DomainBackfillStatus,
    name="BackfillStatus",
    description=(
        "PENDING: taking events, none of them counted yet. REFLECTED: closed, its events "
        "count and the events it replaced do not. REVERTED: undone, its events deprecated "
        "and the events it replaced restored."
    ),
)


@strawberry.type(
    description=(
        "A timeframe and customer scope of history to load or replace: its events count "
        "nowhere until it is closed, and a revert restores exactly what it replaced."
    )
)
class Backfill(Node):
    status: BackfillStatus  # type: ignore[valid-type]
    timeframe_start: datetime = strawberry.field(description="Inclusive.")
    timeframe_end: datetime = strawberry.field(description="Exclusive.")
    external_customer_id: str | None = strawberry.field(
        description="The scope's externalCustomerId, when it was given as one."
    )
    replace_existing_events: bool
    deprecation_filter: MeterFilter | None = strawberry.field(
        description="Which events in the timeframe and scope the close replaces; all of them "
        "when null."
    )
    close_time: datetime = strawberry.field(
        description="When the service closes the backfill by itself if no one has."
    )
    created_at: datetime
    reflected_at: datetime | None
    reverted_at: datetime | None
    record: strawberry.Private[BackfillRecord]

    @strawberry.field(description="The one customer of the scope; null for every customer.")
    async def customer(self, info: Info) -> Customer | None:
        loaders = info.context.loaders
        if self.record.customer_id is not None:
            found = await loaders.customer_by_id.load(self.record.customer_id)
        elif self.record.external_customer_id is not None:
            found = await loaders.customer_by_external_id.load(self.record.external_customer_id)
        else:
            return None
        return Customer.from_record(found) if found else None

    @strawberry.field(description="How many events were sent into the backfill.")
    async def events_ingested(self, info: Info) -> int:
        return await info.context.loaders.events_ingested_by_backfill.load(self.record.id)

    @strawberry.field(
        description=(
            "How many events closing the backfill would deprecate now (a preview; 0 once "
            "it is no longer PENDING: see deprecatedEvents)."
        )
    )
    async def events_to_deprecate(self, info: Info) -> int:
        context = info.context
        async with context.reading() as session:
            return await BackfillRepository(session, context.business.id).events_to_deprecate(
                self.record
            )

    @strawberry.field(description="The events sent into the backfill, deprecated ones included.")
    async def events(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Event]:
        return await _events(
            info,
            EventFilter(backfill_id=self.record.id, include_deprecated=True),
            info.context.page_request(first, after, last, before),
        )

    @strawberry.field(
        description="The events the backfill's close deprecated, restored ones included."
    )
    async def deprecated_events(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Event]:
        return await _events(
            info,
            EventFilter(replaced_by_backfill_id=self.record.id, include_deprecated=True),
            info.context.page_request(first, after, last, before),
        )

    @classmethod
    def from_record(cls, record: BackfillRecord) -> "Backfill":
        return cls(
            id=strawberry.ID(record.id),
            status=DomainBackfillStatus(record.status),
            timeframe_start=record.timeframe_start,
            timeframe_end=record.timeframe_end,
            external_customer_id=record.external_customer_id,
            replace_existing_events=record.replace_existing_events,
            deprecation_filter=(
                MeterFilter.from_document(record.deprecation_filter)
                if record.deprecation_filter is not None
                else None
            ),
            close_time=record.close_time,
            created_at=record.created_at,
            reflected_at=record.reflected_at,
            reverted_at=record.reverted_at,
            record=record,
        )


async def _events(info: Info, event_filter: EventFilter, request: PageRequest) -> Connection[Event]:
    context = info.context
    async with context.reading() as session:
        page = await EventListing(session, context.business.id).page(
            event_filter, DomainEventOrder.TIMESTAMP_DESC, request, context.settings
        )
    return Connection.from_page(page, Event.from_record, context.locked)
