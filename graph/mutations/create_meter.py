import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db.repositories.meters import MeterRepository
from db.rules.ingestion import utc_now
from db.rules.meters import MeterDraft
from graph.context import Info
from graph.mutations.base import run_mutation
from graph.types.filter_input import MeterFilterInput
from graph.types.meter import AggregationType, Meter
from graph.types.user_error import UserError


@strawberry.input
class MeterAggregationInput:
    type: AggregationType  # type: ignore[valid-type]
    key: str | None = strawberry.field(
        default=None, description="The metadata key to aggregate; required for all but COUNT."
    )


@strawberry.input
class CreateMeterInput:
    name: str
    description: str | None = None
    event_name: str
    aggregation: MeterAggregationInput
    measurement_unit: str | None = None
    filter: MeterFilterInput | None = None
    dimensions: list[str] | None = strawberry.field(
        default=None,
        description=(
            "Up to 3 metadata keys usage is often grouped by (e.g. model, region): "
            "meterUsage(groupBy:) over any of them is served from pre-aggregated usage. "
            "Other groupBy keys work too, read from the events."
        ),
    )

    def to_draft(self) -> MeterDraft:
        return MeterDraft(
            name=self.name,
            event_name=self.event_name,
            aggregation_type=self.aggregation.type,
            aggregation_key=self.aggregation.key,
            description=self.description,
            measurement_unit=self.measurement_unit,
            filter=self.filter.to_raw() if self.filter is not None else None,
            dimensions=tuple(self.dimensions or ()),
        )


@strawberry.type
class CreateMeterPayload:
    meter: Meter | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def create_meter(info: Info, input: CreateMeterInput) -> CreateMeterPayload:
    context = info.context

    async def create(session: AsyncSession) -> CreateMeterPayload:
        record = await MeterRepository(session, context.business.id).create(
            input.to_draft(), utc_now()
        )
        return CreateMeterPayload(meter=Meter.from_record(record))

    # Builds the meter's rollups from its whole history: long for a large business.
    return await run_mutation(info, CreateMeterPayload, create, long_running=True)
