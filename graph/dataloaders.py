"""Per-request DataLoaders: whatever is resolved per item costs one query per page."""

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from strawberry.dataloader import DataLoader

from db.records import BackfillRecord, CustomerRecord, EventRevisionRecord
from db.repositories.backfills import PENDING, BackfillRepository
from db.repositories.customers import CustomerRepository
from db.repositories.events import EventRepository
from db.rules.ingestion import utc_now

if TYPE_CHECKING:
    from graph.context import RequestContext


class Loaders:
    """A request's loaders, each made on first use: most requests use none, and making all
    five cost a point read a thirtieth of its CPU (issue 14's profiles)."""

    def __init__(self, context: "RequestContext") -> None:
        self._context = context

    @cached_property
    def customer_by_id(self) -> DataLoader[str, CustomerRecord | None]:
        return DataLoader(self._customers_by_id)

    @cached_property
    def customer_by_external_id(self) -> DataLoader[str, CustomerRecord | None]:
        return DataLoader(self._customers_by_external_id)

    @cached_property
    def revisions_by_event_sequence(self) -> DataLoader[int, list[EventRevisionRecord]]:
        return DataLoader(self._revisions_by_event_sequence)

    @cached_property
    def backfill_by_id(self) -> DataLoader[str, BackfillRecord | None]:
        return DataLoader(self._backfills_by_id)

    @cached_property
    def events_ingested_by_backfill(self) -> DataLoader[str, int]:
        return DataLoader(self._events_ingested_by_backfill)

    async def _customers_by_id(self, keys: Sequence[str]) -> list[CustomerRecord | None]:
        async with self._context.reading() as session:
            found = await CustomerRepository(session, self._context.business.id).by_ids(keys)
        return [found.get(key) for key in keys]

    async def _customers_by_external_id(self, keys: Sequence[str]) -> list[CustomerRecord | None]:
        async with self._context.reading() as session:
            repository = CustomerRepository(session, self._context.business.id)
            found = await repository.by_external_ids(keys)
        return [found.get(key) for key in keys]

    async def _revisions_by_event_sequence(
        self, keys: Sequence[int]
    ) -> list[list[EventRevisionRecord]]:
        async with self._context.reading() as session:
            repository = EventRepository(session, self._context.business.id)
            found = await repository.revisions_by_sequence(keys)
        return [found.get(key, []) for key in keys]

    async def _backfills_by_id(self, keys: Sequence[str]) -> list[BackfillRecord | None]:
        """The backfills — each closed first if it is PENDING past its closeTime (B4: "also
        lazily when it is read"), so that no answer shows it PENDING any later."""
        business_id = self._context.business.id
        async with self._context.reading() as session:
            found = await BackfillRepository(session, business_id).by_ids(keys)
        now = utc_now()
        due = [
            each.id for each in found.values() if each.status == PENDING and each.close_time <= now
        ]
        if due:
            async with self._context.writing(long_running=True) as session:  # Closes.
                repository = BackfillRepository(session, business_id)
                for backfill_id in due:
                    await repository.close_if_due(backfill_id, now, wait=True)
                found.update(await repository.by_ids(due))
        return [found.get(key) for key in keys]

    async def _events_ingested_by_backfill(self, keys: Sequence[str]) -> list[int]:
        async with self._context.reading() as session:
            repository = BackfillRepository(session, self._context.business.id)
            counts = await repository.events_ingested(keys)
        return [counts.get(key, 0) for key in keys]
