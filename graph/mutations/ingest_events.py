from collections.abc import Mapping
from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types.arguments import InputContext

from db.records import EventDraft
from db.repositories.events import EventRepository
from db.rules.ingestion import utc_now
from graph.context import Info
from graph.internals import build_input_with
from graph.mutations.base import run_mutation
from graph.scalars import JSON
from graph.types.user_error import UserError


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


@strawberry.input
class IngestEventsInput:
    events: list[EventInput]
    backfill_id: strawberry.ID | None = strawberry.field(
        default=None,
        description=(
            "Send the events into this PENDING backfill: older history than the ingestion "
            "window, within the backfill's timeframe and customer scope, counted only once "
            "the backfill is closed."
        ),
    )
    # What the resolver works with: built straight from the coerced input, see below.
    drafts: strawberry.Private[list[EventDraft]]


def _ingest_input_from_coerced(
    cls: type[IngestEventsInput], value: Mapping[str, Any], _context: InputContext
) -> IngestEventsInput:
    """Domain values straight from graphql-core's coerced input (keyed by GraphQL names).

    graphql-core has already checked every type and parsed every DateTime; having
    Strawberry build 1000 EventInput objects on top, only to turn them into drafts,
    cost more than that coercion itself.
    """
    instance = object.__new__(cls)
    instance.backfill_id = value.get("backfillId")
    instance.drafts = [
        EventDraft(
            event_id=event["eventId"],
            event_name=event["eventName"],
            customer_id=event.get("customerId"),
            external_customer_id=event.get("externalCustomerId"),
            timestamp=event.get("timestamp"),
            metadata=event.get("metadata"),
        )
        for event in value["events"]
    ]
    return instance


build_input_with(IngestEventsInput, _ingest_input_from_coerced)


@strawberry.type
class IngestEventsPayload:
    ingested_count: int = 0
    duplicate_count: int = 0
    ingested: list[str] = strawberry.field(
        default_factory=list, description="eventIds stored by this request."
    )
    duplicates: list[str] = strawberry.field(
        default_factory=list, description="eventIds that were stored already and were ignored."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def ingest_events(info: Info, input: IngestEventsInput) -> IngestEventsPayload:
    """Store a batch of events: all of them, or none and every error (SPEC §2)."""
    context = info.context

    async def ingest(session: AsyncSession) -> IngestEventsPayload:
        repository = EventRepository(session, context.business.id)
        result = await repository.ingest(
            input.drafts, context.settings, utc_now(), backfill_id=input.backfill_id
        )
        return IngestEventsPayload(
            ingested_count=len(result.ingested),
            duplicate_count=len(result.duplicates),
            ingested=result.ingested,
            duplicates=result.duplicates,
        )

    return await run_mutation(info, IngestEventsPayload, ingest)
