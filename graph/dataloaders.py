"""Per-request DataLoaders: whatever is resolved per item costs one query per page."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from strawberry.dataloader import DataLoader

from db.records import CustomerRecord, EventRevisionRecord
from db.repositories.customers import CustomerRepository
from db.repositories.events import EventRepository

if TYPE_CHECKING:
    from graph.context import RequestContext


class Loaders:
    def __init__(self, context: "RequestContext") -> None:
        self._context = context
        self.customer_by_id = DataLoader(self._customers_by_id)
        self.customer_by_external_id = DataLoader(self._customers_by_external_id)
        self.revisions_by_event_sequence = DataLoader(self._revisions_by_event_sequence)

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
