"""Amending and deprecating events (SPEC §3, C1–C6), append-only and race-safe.

Every correction takes the same locks in the same order — the business row FOR KEY SHARE
(on PostgreSQL), the customer's row, then the event's row — so that corrections of one
customer are serialized (the rolling limits of C5 cannot be overrun by concurrent
requests) and racing amendments of one event produce consecutive revisions (C6). The row
locks are FOR NO KEY UPDATE: they conflict with each other, but not with the FOR KEY SHARE
that every insert of an event naming the customer takes through its foreign key, so
corrections never hold up ingestion. On SQLite the write
transaction (BEGIN IMMEDIATE) already serializes every writer, and the locking clause is
left out of the SQL.
"""

from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from db.errors import RuleViolations
from db.records import CustomerRecord, EventRecord
from db.repositories.customers import CustomerRepository
from db.repositories.events import EventRepository, event_record
from db.repositories.rollups import RollupRepository
from db.repositories.scoped import BusinessScopedRepository
from db.rules.corrections import (
    Amendment,
    check_amendment,
    check_amendment_bounds,
    check_correction_limit,
    check_deprecation_bounds,
    check_event_amendable,
    customer_missing,
    event_not_found,
    is_same_body,
)
from db.settings import Settings
from db.tables import customers, event_corrections, event_revisions, events

CorrectionKind = Literal["amendment", "deprecation"]


class EventCorrectionRepository(BusinessScopedRepository):
    async def amend(self, amendment: Amendment, settings: Settings, now: datetime) -> EventRecord:
        """Replace the event's body with a new revision; a no-op if the body is the same."""
        # Before any row is read or locked: the bounds need nothing stored to be checked.
        if violations := check_amendment_bounds(amendment, settings):
            raise RuleViolations(violations)
        event, customer = await self._lock_event_and_customer(amendment.event_id)
        if violations := check_event_amendable(event):
            raise RuleViolations(violations)
        if violations := check_amendment(amendment, event, customer, settings):
            raise RuleViolations(violations)
        if is_same_body(amendment, event):
            return event
        await self._check_limit(customer, "amendment", settings, now, event.event_id)

        revision = event.revision + 1
        await self.session.execute(
            self.insert_values(
                event_revisions,
                {
                    "event_sequence": event.sequence,
                    "revision": revision,
                    "event_name": amendment.event_name,
                    "timestamp": event.timestamp,
                    "customer_id": event.customer_id,
                    "external_customer_id": event.external_customer_id,
                    "metadata": amendment.metadata,
                    "created_at": now,
                    "reason": amendment.reason,
                },
            )
        )
        await self.session.execute(
            self.update_of(events, lookup=True)
            .where(events.c.sequence == event.sequence)
            .values(event_name=amendment.event_name, metadata=amendment.metadata, revision=revision)
        )
        await self._log(customer, event, "amendment", now)
        return await self._rolled_up(event)

    async def deprecate(
        self, event_id: str, reason: str | None, settings: Settings, now: datetime
    ) -> EventRecord:
        """Mark the event deprecated; deprecating it again changes nothing (C2)."""
        if violations := check_deprecation_bounds(event_id, reason, settings):
            raise RuleViolations(violations)
        event, customer = await self._lock_event_and_customer(event_id)
        if event.deprecated:
            return event
        await self._check_limit(customer, "deprecation", settings, now, event.event_id)
        await self.session.execute(
            self.update_of(events, lookup=True)
            .where(events.c.sequence == event.sequence)
            .values(deprecated_at=now, deprecation_reason=reason)
        )
        await self._log(customer, event, "deprecation", now)
        return await self._rolled_up(event)

    async def _lock_event_and_customer(self, event_id: str) -> tuple[EventRecord, CustomerRecord]:
        """The event and its customer, both locked for the rest of the transaction."""
        events_of_business = EventRepository(self.session, self.business_id)
        event = await events_of_business.get_by_event_id(event_id)
        if event is None:
            raise RuleViolations([event_not_found(event_id)])
        customer = await self._customer_of(event)
        if customer is None:
            raise RuleViolations([customer_missing(event)])
        # The business row first, as every writer of its events takes it (a backfill's
        # close FOR UPDATE, see db.repositories.backfills): taken after the event's
        # row, it would let a close and this correction wait for each other.
        await self.lock_business(exclusive=False)
        # SQLAlchemy spells FOR NO KEY UPDATE as key_share=True (without read=True).
        await self.session.execute(
            self.readable(customers, customers.c.id)
            .where(customers.c.id == customer.id)
            .with_for_update(key_share=True)
        )
        # Read again under the lock: a racing correction may have committed meanwhile.
        row = (
            await self.session.execute(
                self.readable(events, lookup=True)
                .where(events.c.sequence == event.sequence)
                .with_for_update(key_share=True)
            )
        ).one()
        return event_record(row), customer

    async def _customer_of(self, event: EventRecord) -> CustomerRecord | None:
        repository = CustomerRepository(self.session, self.business_id)
        if event.customer_id is not None:
            return await repository.get(event.customer_id)
        assert event.external_customer_id is not None, "I4: every event names a customer"
        found = await repository.by_external_ids([event.external_customer_id])
        return found.get(event.external_customer_id)

    async def _check_limit(
        self,
        customer: CustomerRecord,
        kind: CorrectionKind,
        settings: Settings,
        now: datetime,
        event_id: str,
    ) -> None:
        if settings.correction_limit == 0:
            return
        counted = await self.session.execute(
            self.readable(event_corrections, sa.func.count()).where(
                event_corrections.c.customer_id == customer.id,
                event_corrections.c.kind == kind,
                event_corrections.c.created_at > now - settings.correction_window,
            )
        )
        if violations := check_correction_limit(
            int(counted.scalar_one()), kind, settings, event_id
        ):
            raise RuleViolations(violations)

    async def _log(
        self, customer: CustomerRecord, event: EventRecord, kind: CorrectionKind, now: datetime
    ) -> None:
        await self.session.execute(
            self.insert_values(
                event_corrections,
                {
                    "customer_id": customer.id,
                    "event_sequence": event.sequence,
                    "kind": kind,
                    "created_at": now,
                },
            )
        )

    async def _rolled_up(self, before: EventRecord) -> EventRecord:
        """The corrected event, read again, with the rollups brought up to date."""
        after = await self._reload(before)
        await RollupRepository(self.session, self.business_id).event_corrected(before, after)
        return after

    async def _reload(self, event: EventRecord) -> EventRecord:
        row = (
            await self.session.execute(
                self.readable(events, lookup=True).where(events.c.sequence == event.sequence)
            )
        ).one()
        return event_record(row)
