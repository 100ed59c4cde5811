from datetime import datetime

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db.repositories.corrections import EventCorrectionRepository
from db.rules.corrections import Amendment
from db.rules.ingestion import utc_now
from graph.context import Info
from graph.mutations.base import run_mutation
from graph.scalars import JSON
from graph.types.event import Event
from graph.types.user_error import UserError


@strawberry.input(
    description="A new body for an event: eventName and metadata replace the current ones."
)
class AmendEventInput:
    event_id: str
    event_name: str
    metadata: JSON = strawberry.field(description="The whole new metadata; it is not merged.")
    timestamp: datetime | None = strawberry.field(
        default=None, description="If given, must equal the event's timestamp."
    )
    customer_id: strawberry.ID | None = strawberry.field(
        default=None, description="If given, must be the event's customer."
    )
    external_customer_id: str | None = strawberry.field(
        default=None, description="If given, must be the externalId of the event's customer."
    )
    reason: str | None = strawberry.field(
        default=None,
        description=(
            "Kept on the new revision; at most USAGE_EVENTS_MAX_REASON_LENGTH characters "
            "(1000 by default), else REASON_TOO_LONG."
        ),
    )

    def to_amendment(self) -> Amendment:
        return Amendment(
            event_id=self.event_id,
            event_name=self.event_name,
            metadata=self.metadata,
            timestamp=self.timestamp,
            customer_id=self.customer_id,
            external_customer_id=self.external_customer_id,
            reason=self.reason,
        )


@strawberry.type
class AmendEventPayload:
    event: Event | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def amend_event(info: Info, input: AmendEventInput) -> AmendEventPayload:
    """Replace an event's body; the previous body stays readable in `revisions` (C1)."""
    context = info.context

    async def amend(session: AsyncSession) -> AmendEventPayload:
        repository = EventCorrectionRepository(session, context.business.id)
        record = await repository.amend(input.to_amendment(), context.settings, utc_now())
        return AmendEventPayload(event=Event.from_record(record))

    return await run_mutation(info, AmendEventPayload, amend)
