"""Per-request DataLoaders: whatever is resolved per item costs one query per page."""

from collections.abc import Sequence
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
    def __init__(self, context: "RequestContext") -> None:
        self._context = context
        self.customer_by_id = DataLoader(self._customers_by_id)
        self.customer_by_external_id = DataLoader(self._customers_by_external_id)
        self.revisions_by_event_sequence = DataLoader(self._revisions_by_event_sequence)
        self.backfill_by_id = DataLoader(self._backfills_by_id)
        self.events_ingested_by_backfill = DataLoader(self._events_ingested_by_backfill)

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
