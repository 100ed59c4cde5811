"""Events and their revisions: ingestion (SPEC §2) and reads by eventId, id and sequence."""

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from db import ids
from db.errors import RuleViolations
from db.event_json import JsonFields, event_json
from db.records import (
    BackfillRecord,
    EventDraft,
    EventRecord,
    EventRevisionRecord,
    IngestResult,
)
from db.repositories.backfills import BackfillRepository
from db.repositories.customers import CustomerRepository
from db.repositories.event_inserts import NewEvent, insert_new_events
from db.repositories.rollups import RollupRepository
from db.repositories.scoped import BusinessScopedRepository
from db.rules.backfills import CustomerScope, check_backfill_event
from db.rules.ingestion import (
    MAX_EVENT_ID_LENGTH,
    check_batch_size,
    check_customers_exist,
    check_duplicates_in_batch,
    check_event_draft,
    check_not_deprecated,
    sort_by_event_index,
)
from db.settings import Settings
from db.tables import event_revisions, events

# Longer strings cannot be ids of ours; they are not sent to the database at all.
MAX_SERVER_ID_LENGTH = 40

# The keys of point reads, looked up once: `events.c` makes a read-only view of the
# columns at each use (1 % of a point read's instructions).
_EVENT_ID = events.c.event_id
_SERVER_ID = events.c.id


# The events table's columns, in the order of EventRecord's fields: every read of events
# selects the whole table (BusinessScopedRepository.readable), so a row is handed over
# by position — four times cheaper than by name, and a page is up to 100 of them.
EVENT_COLUMNS = tuple(column.key for column in events.c)
if tuple(field.name for field in fields(EventRecord)) != EVENT_COLUMNS:
    raise RuntimeError("EventRecord's fields must follow the events table's columns")


def event_record(row: Any) -> EventRecord:
    """The record of a row of `select(events)` (the whole table, in its column order)."""
    if len(row) != len(EVENT_COLUMNS):
        raise ValueError(f"a row of every events column expected, not {len(row)} columns")
    return EventRecord(*row)


def _revision_record(row: Any) -> EventRevisionRecord:
    return EventRevisionRecord(
        event_sequence=row.event_sequence,
        revision=row.revision,
        event_name=row.event_name,
        timestamp=row.timestamp,
        customer_id=row.customer_id,
        external_customer_id=row.external_customer_id,
        metadata=row.metadata,
        created_at=row.created_at,
        reason=row.reason,
    )


class EventRepository(BusinessScopedRepository):
    async def ingest(
        self,
        drafts: Sequence[EventDraft],
        settings: Settings,
        now: datetime,
        backfill_id: str | None = None,
    ) -> IngestResult:
        """Store a batch all-or-nothing (I1–I12); raises RuleViolations with every error.

        Into a backfill (B2), the events must lie in its timeframe and customer scope
        instead of the ingestion window, and they count nowhere until it is closed (B3).
        """
        if violations := check_batch_size(len(drafts), settings):
            raise RuleViolations(violations)
        into: tuple[BackfillRecord, CustomerScope] | None = None
        if backfill_id is not None:
            # Read (and held) before anything is written: see db.repositories.backfills.
            into = await BackfillRepository(self.session, self.business_id).pending_for_ingestion(
                backfill_id
            )
        await self._check_batch(drafts, settings, now, into)

        batch = self._new_events(drafts, now)
        inserted = await insert_new_events(
            self, batch, now, backfill_id=into[0].id if into is not None else None
        )
        duplicates = [draft.event_id for draft in drafts if draft.event_id not in inserted]
        if duplicates:
            # I9: a deprecated event is stored, so it is among the duplicates; the insert
            # already waited for any transaction that touched these eventIds. Refusing
            # here rolls the whole batch back.
            deprecated = await self._deprecated_event_ids(duplicates)
            if deprecated:
                event_ids = [draft.event_id for draft in drafts]
                raise RuleViolations(check_not_deprecated(event_ids, deprecated))
        if inserted and into is None:
            await RollupRepository(self.session, self.business_id).events_inserted(
                [
                    (inserted[event.event_id], event)
                    for event in batch
                    if event.event_id in inserted
                ],
                now,
            )
        return IngestResult(
            ingested=[draft.event_id for draft in drafts if draft.event_id in inserted],
            duplicates=duplicates,
        )

    async def _check_batch(
        self,
        drafts: Sequence[EventDraft],
        settings: Settings,
        now: datetime,
        into: tuple[BackfillRecord, CustomerScope] | None,
    ) -> None:
        violations = [
            violation
            for index, draft in enumerate(drafts)
            for violation in check_event_draft(
                index, draft, now, settings, check_window=into is None
            )
        ]
        if into is not None:
            backfill, scope = into
            violations += [
                violation
                for index, draft in enumerate(drafts)
                for violation in check_backfill_event(
                    index, draft, draft.timestamp or now, backfill, scope
                )
            ]
        event_ids = [draft.event_id for draft in drafts]
        violations += check_duplicates_in_batch(event_ids)

        referenced_customers = {
            draft.customer_id
            for draft in drafts
            if draft.customer_id and len(draft.customer_id) <= MAX_SERVER_ID_LENGTH
        }
        existing = await CustomerRepository(self.session, self.business_id).existing_ids(
            referenced_customers
        )
        violations += check_customers_exist(drafts, existing)
        if violations:
            # The batch is refused: say also which of its eventIds were deprecated (I9), so
            # that the sender sees every problem at once. A batch without other problems
            # is checked for I9 after its INSERT instead, where only the eventIds already
            # stored can be deprecated: the same answer, without a query per batch.
            deprecated = await self._deprecated_event_ids(event_ids)
            violations += check_not_deprecated(event_ids, deprecated)
            raise RuleViolations(sort_by_event_index(violations))

    async def _deprecated_event_ids(self, event_ids: Collection[str]) -> set[str]:
        candidates = [event_id for event_id in event_ids if len(event_id) <= MAX_EVENT_ID_LENGTH]
        if not candidates:
            return set()
        rows = await self.session.execute(
            self.readable(events, events.c.event_id, lookup=True).where(
                self.one_of(events.c.event_id, candidates),
                events.c.deprecated_at.is_not(None),
            )
        )
        return set(rows.scalars())

    @staticmethod
    def _new_events(drafts: Sequence[EventDraft], now: datetime) -> list[NewEvent]:
        """The rows a batch would add, each with a server id of its own."""
        return [
            NewEvent(
                id=server_id,
                event_id=draft.event_id,
                customer_id=draft.customer_id,
                external_customer_id=draft.external_customer_id,
                event_name=draft.event_name,
                timestamp=draft.timestamp or now,
                metadata=draft.metadata if draft.metadata is not None else {},
            )
            for draft, server_id in zip(
                drafts, ids.new_ids(ids.EVENT_PREFIX, len(drafts)), strict=True
            )
        ]

    async def get_by_event_id(self, event_id: str) -> EventRecord | None:
        """Q1: exact and case-sensitive; deprecated events included."""
        if len(event_id) > MAX_EVENT_ID_LENGTH:
            return None
        row = await self.row_by_key(events, _EVENT_ID, event_id, by_driver=True)
        return event_record(row) if row else None

    async def json_by_event_id(self, event_id: str, fields: JsonFields) -> str | None:
        """`get_by_event_id`'s event as the JSON text of its object of `fields`
        (db.event_json), written by PostgreSQL; None if the business has no such event."""
        if self.dialect_name != "postgresql":
            raise ValueError("events are written as JSON by PostgreSQL only")
        if len(event_id) > MAX_EVENT_ID_LENGTH:
            return None
        text: str | None = await self.value_by_key(events, _EVENT_ID, event_id, event_json(fields))
        return text

    async def get(self, event_server_id: str) -> EventRecord | None:
        if len(event_server_id) > MAX_SERVER_ID_LENGTH:
            return None
        row = await self.row_by_key(events, _SERVER_ID, event_server_id, by_driver=True)
        return event_record(row) if row else None

    async def revisions_by_sequence(
        self, sequences: Collection[int]
    ) -> dict[int, list[EventRevisionRecord]]:
        """Every revision of the given events in one query, oldest first."""
        found: dict[int, list[EventRevisionRecord]] = defaultdict(list)
        if not sequences:
            return found
        # Revisions hold no business id; `readable` joins their events, of this business.
        rows = await self.session.execute(
            self.readable(event_revisions)
            .where(self.one_of(event_revisions.c.event_sequence, sequences))
            .order_by(event_revisions.c.event_sequence, event_revisions.c.revision)
        )
        for row in rows:
            found[row.event_sequence].append(_revision_record(row))
        return found
