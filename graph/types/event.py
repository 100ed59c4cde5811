from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from db.records import EventRecord, EventRevisionRecord
from graph.context import Info
from graph.scalars import JSON
from graph.types.customer import Customer
from graph.types.node import Node

if TYPE_CHECKING:
    from graph.backfills.types import Backfill


@strawberry.type(description="One body of an event: revision 1 as ingested, then each amendment.")
class EventRevision:
    revision: int
    event_name: str
    timestamp: datetime
    customer_id: strawberry.ID | None
    external_customer_id: str | None
    metadata: JSON
    created_at: datetime
    reason: str | None

    @classmethod
    def from_record(cls, record: EventRevisionRecord) -> "EventRevision":
        return cls(
            revision=record.revision,
            event_name=record.event_name,
            timestamp=record.timestamp,
            customer_id=strawberry.ID(record.customer_id) if record.customer_id else None,
            external_customer_id=record.external_customer_id,
            metadata=JSON(record.metadata),
            created_at=record.created_at,
            reason=record.reason,
        )


@strawberry.type(description="A usage event, as its current revision says.")
class Event(Node):
    event_id: str = strawberry.field(description="The client's idempotency key.")
    business_id: strawberry.ID
    customer_id: strawberry.ID | None = strawberry.field(
        description="The customer id the event was sent with, if it was sent with one."
    )
    external_customer_id: str | None = strawberry.field(
        description="The external customer id the event was sent with, if it was sent with one."
    )
    event_name: str
    timestamp: datetime
    metadata: JSON
    ingested_at: datetime
    deprecated: bool
    deprecated_at: datetime | None
    deprecation_reason: str | None
    revision: int = strawberry.field(description="The number of the current revision.")
    sequence: strawberry.Private[int]
    backfill_id: strawberry.Private[str | None]

    @strawberry.field(description="The backfill the event was sent into, if any.")
    async def backfill(
        self, info: Info
    ) -> Annotated["Backfill", strawberry.lazy("graph.backfills.types")] | None:
        if self.backfill_id is None:
            return None
        from graph.backfills.types import Backfill

        record = await info.context.loaders.backfill_by_id.load(self.backfill_id)
        return Backfill.from_record(record) if record is not None else None

    @strawberry.field(
        description="The customer of the event, whether it was sent by id or by external id."
    )
    async def customer(self, info: Info) -> Customer | None:
        loaders = info.context.loaders
        if self.customer_id is not None:
            record = await loaders.customer_by_id.load(self.customer_id)
        elif self.external_customer_id is not None:
            record = await loaders.customer_by_external_id.load(self.external_customer_id)
        else:
            return None
        return Customer.from_record(record) if record else None

    @strawberry.field(description="Every body of the event, oldest first, the current one last.")
    async def revisions(self, info: Info) -> list[EventRevision]:
        records = await info.context.loaders.revisions_by_event_sequence.load(self.sequence)
        return [EventRevision.from_record(record) for record in records]

    @classmethod
    def from_record(cls, record: EventRecord) -> "Event":
        return cls(
            id=strawberry.ID(record.id),
            event_id=record.event_id,
            business_id=strawberry.ID(record.business_id),
            customer_id=strawberry.ID(record.customer_id) if record.customer_id else None,
            external_customer_id=record.external_customer_id,
            event_name=record.event_name,
            timestamp=record.timestamp,
            metadata=JSON(record.metadata),
            ingested_at=record.ingested_at,
            deprecated=record.deprecated,
            deprecated_at=record.deprecated_at,
            deprecation_reason=record.deprecation_reason,
            revision=record.revision,
            sequence=record.sequence,
            backfill_id=record.backfill_id,
        )
