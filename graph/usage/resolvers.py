"""meterUsage and eventVolume: thin resolvers over the usage and volume repositories."""

from db.repositories.usage import UsageRepository
from db.repositories.volume import VolumeRepository
from db.rules.ingestion import utc_now
from graph.context import Info
from graph.usage.inputs import EventVolumeInput, MeterUsageInput
from graph.usage.types import EventVolume, MeterUsage


async def meter_usage(info: Info, input: MeterUsageInput) -> MeterUsage:
    context = info.context
    async with context.reading() as session:
        answer = await UsageRepository(session, context.business.id).meter_usage(
            input.to_domain(), context.settings
        )
    return MeterUsage.from_answer(answer)


async def event_volume(info: Info, input: EventVolumeInput) -> EventVolume:
    context = info.context
    async with context.reading() as session:
        answer = await VolumeRepository(session, context.business.id).event_volume(
            input.to_domain(), context.settings, utc_now()
        )
    return EventVolume.from_answer(answer)
