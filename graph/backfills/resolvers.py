"""backfill, backfills and the backfill mutations: thin resolvers over the repository.

A backfill whose closeTime has come is closed by each server process's closer within
BACKFILL_CLOSE_INTERVAL (graph.backfills.closer); a read of it before that closes it at
once (B4, "also lazily when it is read": graph.dataloaders and `reflect_due` here), so
that no answer shows it PENDING past its closeTime.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db.records import BackfillRecord
from db.repositories.backfills import BackfillRepository
from db.rules.backfills import BackfillDraft
from db.rules.backfills import BackfillStatus as DomainBackfillStatus
from db.rules.bounds import refuse_long_id
from db.rules.ingestion import utc_now
from graph.backfills.types import Backfill, BackfillStatus
from graph.context import Info, RequestContext
from graph.mutations.base import run_mutation
from graph.types.connection import Connection
from graph.types.filter_input import MeterFilterInput
from graph.types.user_error import UserError


@strawberry.input
class CreateBackfillInput:
    timeframe_start: datetime = strawberry.field(description="Inclusive.")
    timeframe_end: datetime = strawberry.field(
        description="Exclusive; at most BACKFILL_MAX_SPAN (31 days) after the start."
    )
    customer_id: strawberry.ID | None = strawberry.field(
        default=None, description="One customer's events only (by id or by its externalId)."
    )
    external_customer_id: str | None = strawberry.field(
        default=None, description="One customer's events only; neither: every customer's."
    )
    replace_existing_events: bool = strawberry.field(
        description="Whether the close deprecates the events already in the timeframe and scope."
    )
    deprecation_filter: MeterFilterInput | None = strawberry.field(
        default=None,
        description="Only with replaceExistingEvents: which of those events are replaced.",
    )
    close_time: datetime | None = strawberry.field(
        default=None,
        description="When the service closes the backfill by itself; one day from now if null.",
    )

    def to_draft(self) -> BackfillDraft:
        return BackfillDraft(
            timeframe_start=self.timeframe_start,
            timeframe_end=self.timeframe_end,
            replace_existing_events=self.replace_existing_events,
            customer_id=self.customer_id,
            external_customer_id=self.external_customer_id,
            deprecation_filter=(
                self.deprecation_filter.to_raw() if self.deprecation_filter is not None else None
            ),
            close_time=self.close_time,
        )


@strawberry.input
class BackfillIdInput:
    id: strawberry.ID


@strawberry.type
class BackfillPayload:
    backfill: Backfill | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def create_backfill(info: Info, input: CreateBackfillInput) -> BackfillPayload:
    context = info.context

    async def create(session: AsyncSession) -> BackfillPayload:
        record = await BackfillRepository(session, context.business.id).create(
            input.to_draft(), context.settings, utc_now()
        )
        return BackfillPayload(backfill=Backfill.from_record(record))

    return await run_mutation(info, BackfillPayload, create)


async def close_backfill(info: Info, input: BackfillIdInput) -> BackfillPayload:
    return await _changed(info, input.id, BackfillRepository.close)


async def revert_backfill(info: Info, input: BackfillIdInput) -> BackfillPayload:
    return await _changed(info, input.id, BackfillRepository.revert)


async def _changed(
    info: Info,
    backfill_id: str,
    change: Callable[[BackfillRepository, str, datetime], Awaitable[BackfillRecord]],
) -> BackfillPayload:
    """closeBackfill and revertBackfill: one change of status, in one transaction."""
    context = info.context

    async def write(session: AsyncSession) -> BackfillPayload:
        repository = BackfillRepository(session, context.business.id)
        record = await change(repository, backfill_id, utc_now())
        return BackfillPayload(backfill=Backfill.from_record(record))

    return await run_mutation(info, BackfillPayload, write, long_running=True)


async def backfill(info: Info, id: strawberry.ID) -> Backfill | None:
    refuse_long_id(id, ("id",))
    record = await info.context.loaders.backfill_by_id.load(id)
    return Backfill.from_record(record) if record is not None else None


async def backfills(
    info: Info,
    status: BackfillStatus | None = None,  # type: ignore[valid-type]
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[Backfill]:
    context = info.context
    if status in (None, DomainBackfillStatus.PENDING, DomainBackfillStatus.REFLECTED):
        # Those due are closed first, so that they are listed under their real status.
        await reflect_due(context)
    request = context.page_request(first, after, last, before)
    async with context.reading() as session:
        page = await BackfillRepository(session, context.business.id).page(
            request, context.settings, status=status
        )
    return Connection.from_page(page, Backfill.from_record, context.locked)


async def reflect_due(context: RequestContext) -> None:
    """Close every backfill of the business whose closeTime has come."""
    now = utc_now()
    async with context.reading() as session:
        due = await BackfillRepository(session, context.business.id).due(now)
    for backfill_id in due:
        async with context.writing(long_running=True) as session:
            await BackfillRepository(session, context.business.id).close_if_due(
                backfill_id, now, wait=True
            )
