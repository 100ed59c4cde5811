"""archiveMeter and unarchiveMeter: one switch, two names."""

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db.repositories.meters import MeterRepository
from db.rules.ingestion import utc_now
from graph.context import Info
from graph.mutations.base import run_mutation
from graph.types.meter import Meter
from graph.types.user_error import UserError


@strawberry.input
class MeterIdInput:
    id: strawberry.ID


@strawberry.type
class MeterPayload:
    meter: Meter | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def _set_archived(info: Info, meter_id: str, archived: bool) -> MeterPayload:
    context = info.context

    async def switch(session: AsyncSession) -> MeterPayload:
        record = await MeterRepository(session, context.business.id).set_archived(
            meter_id, archived, utc_now()
        )
        return MeterPayload(meter=Meter.from_record(record))

    return await run_mutation(info, MeterPayload, switch)


async def archive_meter(info: Info, input: MeterIdInput) -> MeterPayload:
    """Hide the meter from `meters`; it can still filter events. Archiving twice is a no-op."""
    return await _set_archived(info, input.id, archived=True)


async def unarchive_meter(info: Info, input: MeterIdInput) -> MeterPayload:
    return await _set_archived(info, input.id, archived=False)
