"""archiveMeter and unarchiveMeter: one switch, two names."""

import strawberry

from db.errors import RuleViolations
from db.repositories.meters import MeterRepository
from db.rules.ingestion import utc_now
from graph.context import Info
from graph.types.meter import Meter
from graph.types.user_error import UserError, user_errors


@strawberry.input
class MeterIdInput:
    id: strawberry.ID


@strawberry.type
class MeterPayload:
    meter: Meter | None
    user_errors: list[UserError]


async def _set_archived(info: Info, meter_id: str, archived: bool) -> MeterPayload:
    context = info.context
    try:
        async with context.writing() as session:
            record = await MeterRepository(session, context.business.id).set_archived(
                meter_id, archived, utc_now()
            )
    except RuleViolations as error:
        return MeterPayload(meter=None, user_errors=user_errors(error.violations))
    return MeterPayload(meter=Meter.from_record(record), user_errors=[])


async def archive_meter(info: Info, input: MeterIdInput) -> MeterPayload:
    """Hide the meter from `meters`; it can still filter events. Archiving twice is a no-op."""
    return await _set_archived(info, input.id, archived=True)


async def unarchive_meter(info: Info, input: MeterIdInput) -> MeterPayload:
    return await _set_archived(info, input.id, archived=False)
