import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db.repositories.corrections import EventCorrectionRepository
from db.rules.ingestion import utc_now
from graph.context import Info
from graph.mutations.base import run_mutation
from graph.types.event import Event
from graph.types.user_error import UserError


@strawberry.input
class DeprecateEventInput:
    event_id: str
    reason: str | None = strawberry.field(
        default=None,
        description=(
            "Kept as the deprecationReason; at most USAGE_EVENTS_MAX_REASON_LENGTH characters "
            "(1000 by default), else REASON_TOO_LONG."
        ),
    )


@strawberry.type
class DeprecateEventPayload:
    event: Event | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def deprecate_event(info: Info, input: DeprecateEventInput) -> DeprecateEventPayload:
    """Withdraw an event from billing; it stays readable and its eventId stays taken (C2)."""
    context = info.context

    async def deprecate(session: AsyncSession) -> DeprecateEventPayload:
        repository = EventCorrectionRepository(session, context.business.id)
        record = await repository.deprecate(
            input.event_id, input.reason, context.settings, utc_now()
        )
        return DeprecateEventPayload(event=Event.from_record(record))

    return await run_mutation(info, DeprecateEventPayload, deprecate)
