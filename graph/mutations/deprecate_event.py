import strawberry

from db.errors import RuleViolations
from db.repositories.corrections import EventCorrectionRepository
from db.rules.ingestion import utc_now
from graph.context import Info
from graph.types.event import Event
from graph.types.user_error import UserError, user_errors


@strawberry.input
class DeprecateEventInput:
    event_id: str
    reason: str | None = None


@strawberry.type
class DeprecateEventPayload:
    event: Event | None
    user_errors: list[UserError]


async def deprecate_event(info: Info, input: DeprecateEventInput) -> DeprecateEventPayload:
    """Withdraw an event from billing; it stays readable and its eventId stays taken (C2)."""
    context = info.context
    try:
        async with context.writing() as session:
            repository = EventCorrectionRepository(session, context.business.id)
            record = await repository.deprecate(
                input.event_id, input.reason, context.settings, utc_now()
            )
    except RuleViolations as error:
        return DeprecateEventPayload(event=None, user_errors=user_errors(error.violations))
    return DeprecateEventPayload(event=Event.from_record(record), user_errors=[])
