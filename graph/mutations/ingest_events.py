from datetime import datetime

import strawberry

from db.errors import RuleViolations
from db.records import EventDraft
from db.repositories.events import EventRepository
from db.rules.ingestion import utc_now
from graph.context import Info
from graph.scalars import JSON
from graph.types.user_error import UserError, user_errors


@strawberry.input(description="One usage event. Give customerId or externalCustomerId.")
class EventInput:
    event_id: str = strawberry.field(
        description="Your idempotency key, 1–255 characters, unique per business forever."
    )
    customer_id: strawberry.ID | None = None
    external_customer_id: str | None = None
    event_name: str
    timestamp: datetime | None = strawberry.field(
        default=None, description="When the usage happened; the server's time when absent."
    )
    metadata: JSON | None = strawberry.field(
        default=None,
        description="A flat object of strings, finite numbers and booleans; `{}` when absent.",
    )

    def to_draft(self) -> EventDraft:
        return EventDraft(
            event_id=self.event_id,
            event_name=self.event_name,
            customer_id=self.customer_id,
            external_customer_id=self.external_customer_id,
            timestamp=self.timestamp,
            metadata=self.metadata,
        )


@strawberry.input
class IngestEventsInput:
    events: list[EventInput]


@strawberry.type
class IngestEventsPayload:
    ingested_count: int
    duplicate_count: int
    ingested: list[str] = strawberry.field(description="eventIds stored by this request.")
    duplicates: list[str] = strawberry.field(
        description="eventIds that were stored already and were ignored."
    )
    user_errors: list[UserError]


async def ingest_events(info: Info, input: IngestEventsInput) -> IngestEventsPayload:
    """Store a batch of events: all of them, or none and every error (SPEC §2)."""
    context = info.context
    drafts = [event.to_draft() for event in input.events]
    try:
        async with context.writing() as session:
            repository = EventRepository(session, context.business.id)
            result = await repository.ingest(drafts, context.settings, utc_now())
    except RuleViolations as error:
        return IngestEventsPayload(
            ingested_count=0,
            duplicate_count=0,
            ingested=[],
            duplicates=[],
            user_errors=user_errors(error.violations),
        )
    return IngestEventsPayload(
        ingested_count=len(result.ingested),
        duplicate_count=len(result.duplicates),
        ingested=result.ingested,
        duplicates=result.duplicates,
        user_errors=[],
    )
