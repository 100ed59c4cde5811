"""Backfills (SPEC §16, B1–B7): create, close (reflect), revert, and what they hold.

A backfill's events are stored at ingestion like any other (dedup, I8–I11), with
`events.backfill_id` set and `events.counted_from` NULL: they count nowhere until the
close. The close is one transaction that deprecates the events it replaces (recording
each in `backfill_replacements`), sets `counted_from` of its own events, and brings the
rollups up to date; the revert is one transaction that deprecates the backfill's events
and restores the replaced ones. Nothing is deleted, so every earlier state stays readable
(U8, db.repositories.usage).

Locks (PostgreSQL; SQLite's single writer rules the races out): an ingestion into a
backfill reads its row FOR SHARE before it inserts anything, a close or a revert takes it
FOR UPDATE — so an ingestion lands wholly before the close, or sees it and is refused
(B7) — and then takes the business row FOR UPDATE, which waits for every writer of the
business's events and rollups (each holds FOR KEY SHARE on it, see db.repositories.
rollups) and holds new ones until the close commits. Always the backfill row first, then
the business row: no two transactions wait for each other in opposite orders.
"""

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from db import ids
from db.errors import RuleViolations, UserErrorCode, Violation
from db.filters import Filter
from db.pagination import Keyset, Page, PageRequest
from db.records import BackfillRecord
from db.repositories.customers import CustomerRepository
from db.repositories.rollups import RollupRepository
from db.repositories.scoped import BusinessScopedRepository
from db.rules.backfills import (
    BackfillDraft,
    BackfillStatus,
    CustomerScope,
    backfill_conflict,
    backfill_not_found,
    check_backfill_draft,
    check_backfill_id,
    check_pending,
    replaced_since,
)
from db.rules.customers import NOT_A_CUSTOMER_ID, is_customer_id
from db.settings import Settings
from db.tables import backfill_replacements, backfills, customers, events

# Backfill ids are ULIDs: id order is creation order.
BACKFILL_KEYSET = Keyset("backfills", (backfills.c.id,), (str,))
MAX_BACKFILL_ID_LENGTH = 40
# closeTime when createBackfill gives none (B1).
DEFAULT_CLOSE_DELAY = timedelta(days=1)

PENDING = BackfillStatus.PENDING.value
REFLECTED = BackfillStatus.REFLECTED.value
REVERTED = BackfillStatus.REVERTED.value


def backfill_record(row: Any) -> BackfillRecord:
    return BackfillRecord(
        id=row.id,
        business_id=row.business_id,
        status=row.status,
        timeframe_start=row.timeframe_start,
        timeframe_end=row.timeframe_end,
        customer_id=row.customer_id,
        external_customer_id=row.external_customer_id,
        replace_existing_events=row.replace_existing_events,
        deprecation_filter=row.deprecation_filter,
        close_time=row.close_time,
        created_at=row.created_at,
        reflected_at=row.reflected_at,
        reverted_at=row.reverted_at,
    )


def replaced_reason(backfill_id: str) -> str:
    return f"replaced by backfill {backfill_id}"


def reverted_reason(backfill_id: str) -> str:
    return f"backfill {backfill_id} was reverted"


class BackfillRepository(BusinessScopedRepository):
    # -- B1 ---------------------------------------------------------------------------------

    async def create(
        self, draft: BackfillDraft, settings: Settings, now: datetime
    ) -> BackfillRecord:
        """A new PENDING backfill; raises RuleViolations for every broken rule of B1."""
        deprecation_filter, violations = check_backfill_draft(draft, now, settings)
        if violations:
            raise RuleViolations(violations)
        scope = await self._scope_of_draft(draft)
        await self._serialize_creations()
        overlapping = await self._overlapping_pending(
            draft.timeframe_start, draft.timeframe_end, scope
        )
        if overlapping is not None:
            raise RuleViolations([backfill_conflict(overlapping)])
        record = BackfillRecord(
            id=ids.new_id(ids.BACKFILL_PREFIX),
            business_id=self.business_id,
            status=PENDING,
            timeframe_start=draft.timeframe_start,
            timeframe_end=draft.timeframe_end,
            customer_id=draft.customer_id,
            external_customer_id=draft.external_customer_id,
            replace_existing_events=draft.replace_existing_events,
            deprecation_filter=(
                deprecation_filter.to_document() if deprecation_filter is not None else None
            ),
            close_time=draft.close_time or now + DEFAULT_CLOSE_DELAY,
            created_at=now,
            reflected_at=None,
            reverted_at=None,
        )
        values = {
            name: getattr(record, name)
            for name in backfills.c.keys()  # noqa: SIM118 (column names, not columns)
            if name != "business_id"
        }
        await self.session.execute(self.insert_values(backfills, values))
        return record

    async def _scope_of_draft(self, draft: BackfillDraft) -> CustomerScope:
        if draft.customer_id is not None:
            customer = (
                await CustomerRepository(self.session, self.business_id).get(draft.customer_id)
                if is_customer_id(draft.customer_id)
                else None
            )
            if customer is None:
                raise RuleViolations(
                    [
                        Violation(
                            UserErrorCode.CUSTOMER_NOT_FOUND,
                            "No customer with this id exists in your business."
                            if is_customer_id(draft.customer_id)
                            else NOT_A_CUSTOMER_ID,
                            ("customerId",),
                        )
                    ]
                )
            return CustomerScope(customer.id, customer.external_id)
        return await self._scope(None, draft.external_customer_id)

    async def _serialize_creations(self) -> None:
        """Two creations racing would each miss the other in the overlap check: on
        PostgreSQL they take one transaction-scoped lock per business in turn."""
        if self.dialect_name != "postgresql":
            return
        await self.session.execute(
            sa.select(
                sa.func.pg_advisory_xact_lock(
                    sa.func.hashtextextended(f"backfills:{self.business_id}", 0)
                )
            )
        )

    async def _overlapping_pending(
        self, start: datetime, end: datetime, scope: CustomerScope
    ) -> str | None:
        """The id of a PENDING backfill whose timeframe and customer scope overlap these
        (B1), if there is one. A scope is one customer, known by its id and its
        externalId, or every customer, which overlaps every scope."""
        conditions = [
            backfills.c.status == PENDING,
            backfills.c.timeframe_start < end,
            backfills.c.timeframe_end > start,
        ]
        if not scope.whole_business:
            same_customer: list[sa.ColumnElement[bool]] = [
                sa.and_(
                    backfills.c.customer_id.is_(None), backfills.c.external_customer_id.is_(None)
                )
            ]
            if scope.customer_id is not None:
                same_customer.append(backfills.c.customer_id == scope.customer_id)
            if scope.external_id is not None:
                same_customer += [
                    backfills.c.external_customer_id == scope.external_id,
                    customers.c.external_id == scope.external_id,
                ]
            conditions.append(sa.or_(*same_customer))
        found = await self.session.execute(
            self.readable(backfills, backfills.c.id)
            .outerjoin(customers, customers.c.id == backfills.c.customer_id)
            .where(*conditions)
            .order_by(backfills.c.id)
            .limit(1)
        )
        overlapping: str | None = found.scalar()
        return overlapping

    # -- reading ------------------------------------------------------------------------------

    async def get(self, backfill_id: str) -> BackfillRecord | None:
        if len(backfill_id) > MAX_BACKFILL_ID_LENGTH:
            return None
        row = (
            await self.session.execute(
                self.readable(backfills).where(backfills.c.id == backfill_id)
            )
        ).first()
        return backfill_record(row) if row else None

    async def by_ids(self, backfill_ids: Collection[str]) -> dict[str, BackfillRecord]:
        wanted = [each for each in backfill_ids if len(each) <= MAX_BACKFILL_ID_LENGTH]
        if not wanted:
            return {}
        rows = await self.session.execute(
            self.readable(backfills).where(self.one_of(backfills.c.id, wanted))
        )
        return {row.id: backfill_record(row) for row in rows}

    async def page(
        self, request: PageRequest, settings: Settings, *, status: BackfillStatus | None
    ) -> Page[BackfillRecord]:
        query = self.readable(backfills)
        if status is not None:
            query = query.where(backfills.c.status == status.value)
        return await self.page_of(query, BACKFILL_KEYSET, request, settings, backfill_record)

    async def due(self, now: datetime) -> list[str]:
        """The PENDING backfills whose closeTime has come, in closeTime order."""
        rows = await self.session.execute(
            self.readable(backfills, backfills.c.id)
            .where(backfills.c.status == PENDING, backfills.c.close_time <= now)
            .order_by(backfills.c.close_time, backfills.c.id)
        )
        return list(rows.scalars())

    async def scope_of(self, backfill: BackfillRecord) -> CustomerScope:
        return await self._scope(backfill.customer_id, backfill.external_customer_id)

    async def _scope(self, customer_id: str | None, external_id: str | None) -> CustomerScope:
        """The customer's id and externalId, as far as a customer with them exists now."""
        repository = CustomerRepository(self.session, self.business_id)
        if customer_id is not None:
            customer = await repository.get(customer_id)
            return CustomerScope(customer_id, customer.external_id if customer else None)
        if external_id is not None:
            found = await repository.by_external_ids([external_id])
            owner = found.get(external_id)
            return CustomerScope(owner.id if owner else None, external_id)
        return CustomerScope(None, None)

    async def events_ingested(self, backfill_ids: Collection[str]) -> dict[str, int]:
        """How many events each backfill holds."""
        if not backfill_ids:
            return {}
        rows = await self.session.execute(
            self.readable(events, events.c.backfill_id, sa.func.count())
            .where(self.one_of(events.c.backfill_id, sorted(backfill_ids)))
            .group_by(events.c.backfill_id)
        )
        return {backfill_id: int(count) for backfill_id, count in rows}

    async def events_to_deprecate(self, backfill: BackfillRecord) -> int:
        """B6: how many events closing the backfill would deprecate now (0 unless PENDING)."""
        if backfill.status != PENDING or not backfill.replace_existing_events:
            return 0
        conditions = await self._replaced_by(backfill)
        counted = await self.session.execute(
            self.readable(events, sa.func.count()).where(*conditions)
        )
        return int(counted.scalar_one())

    def replacement_of(self, backfill_id: str) -> sa.ColumnElement[bool]:
        """The condition on events that the backfill's close deprecated (B6)."""
        replaced = self.readable(
            backfill_replacements, backfill_replacements.c.event_sequence
        ).where(backfill_replacements.c.backfill_id == backfill_id)
        condition: sa.ColumnElement[bool] = events.c.sequence.in_(replaced)
        return condition

    async def _replaced_by(self, backfill: BackfillRecord) -> list[sa.ColumnElement[bool]]:
        """B4: the counted events in the timeframe and scope, matching the deprecation
        filter, that are not the backfill's own."""
        conditions: list[sa.ColumnElement[bool]] = [
            events.c.counted_from.is_not(None),
            events.c.deprecated_at.is_(None),
            events.c.timestamp >= backfill.timeframe_start,
            events.c.timestamp < backfill.timeframe_end,
            sa.or_(events.c.backfill_id.is_(None), events.c.backfill_id != backfill.id),
        ]
        scope = await self.scope_of(backfill)
        if not scope.whole_business:
            sent_by = []
            if scope.customer_id is not None:
                sent_by.append(events.c.customer_id == scope.customer_id)
            if scope.external_id is not None:
                sent_by.append(events.c.external_customer_id == scope.external_id)
            conditions.append(sa.or_(*sent_by))
        if backfill.deprecation_filter is not None:
            conditions.append(
                Filter.from_document(backfill.deprecation_filter).to_sql(
                    events.c.metadata, self.dialect_name
                )
            )
        return conditions

    # -- B2 -------------------------------------------------------------------------------------

    async def pending_for_ingestion(self, backfill_id: str) -> tuple[BackfillRecord, CustomerScope]:
        """The backfill events are being sent into, held (FOR SHARE) so that no close or
        revert commits before this ingestion does (B7); raises RuleViolations unless it
        is PENDING."""
        if violations := check_backfill_id(backfill_id, ("backfillId",)):
            raise RuleViolations(violations)
        backfill = await self._locked(backfill_id, share=True)
        if violations := check_pending(backfill, ("backfillId",)):
            raise RuleViolations(violations)
        assert backfill is not None
        return backfill, await self.scope_of(backfill)

    # -- B4, B5 -------------------------------------------------------------------------------

    async def close(self, backfill_id: str, now: datetime) -> BackfillRecord:
        """Reflect the backfill (B4); closing a REFLECTED one again changes nothing."""
        if violations := check_backfill_id(backfill_id, ("id",)):
            raise RuleViolations(violations)
        backfill = await self._locked(backfill_id)
        if backfill is None:
            raise RuleViolations([backfill_not_found(("id",))])
        if backfill.status == REFLECTED:
            return backfill
        if violations := check_pending(backfill, ("id",)):
            raise RuleViolations(violations)
        await self._reflect(backfill, now)
        return await self._reloaded(backfill.id)

    async def close_if_due(self, backfill_id: str, now: datetime, *, wait: bool = False) -> bool:
        """Reflect the backfill if it is PENDING and its closeTime has come; False if it is
        not. Unless `wait`, also False at once if another transaction holds it (closing
        it, or sending events into it): a later pass finds it again."""
        backfill = await self._locked(backfill_id, skip_locked=not wait)
        if backfill is None or backfill.status != PENDING or backfill.close_time > now:
            return False
        await self._reflect(backfill, now)
        return True

    async def revert(self, backfill_id: str, now: datetime) -> BackfillRecord:
        """Undo the backfill (B5); reverting a REVERTED one again changes nothing."""
        if violations := check_backfill_id(backfill_id, ("id",)):
            raise RuleViolations(violations)
        backfill = await self._locked(backfill_id)
        if backfill is None:
            raise RuleViolations([backfill_not_found(("id",))])
        if backfill.status == REVERTED:
            return backfill
        await self.lock_business(exclusive=True)
        rollups = RollupRepository(self.session, self.business_id)
        own = events.c.backfill_id == backfill.id
        replaced = self.replacement_of(backfill.id)
        if backfill.status == REFLECTED and (later := await self._replacing_own_events(backfill)):
            raise RuleViolations([replaced_since(later)])
        if backfill.status == REFLECTED:
            # The rollups lose the backfill's events still counted and regain the ones it
            # replaced: the hours of both, and the volume changes, found before the change.
            hours = await rollups.hours_of(sa.and_(own, events.c.deprecated_at.is_(None)), replaced)
            await rollups.volume_changed(
                [
                    (sa.and_(own, events.c.deprecated_at.is_(None)), 0, 1),
                    (sa.and_(replaced, events.c.deprecated_at.is_not(None)), 0, -1),
                ]
            )
            await self.session.execute(
                self.update_of(events)
                .where(replaced, events.c.deprecated_at.is_not(None))
                .values(deprecated_at=None, deprecation_reason=None)
            )
        await self.session.execute(
            self.update_of(events)
            .where(own, events.c.deprecated_at.is_(None))
            .values(deprecated_at=now, deprecation_reason=reverted_reason(backfill.id))
        )
        if backfill.status == REFLECTED:
            await rollups.hours_recounted(hours)
        await self.session.execute(
            self.update_of(backfills)
            .where(backfills.c.id == backfill.id)
            .values(status=REVERTED, reverted_at=now)
        )
        return await self._reloaded(backfill.id)

    async def _replacing_own_events(self, backfill: BackfillRecord) -> str | None:
        """A REFLECTED backfill that replaced events of this one, if there is one.

        Reverting this one then would bring back what it replaced beside what replaced
        its own events: both versions of the history would count. That one is reverted
        first, so that reverts undo closes in the order they happened.
        """
        later = await self.session.execute(
            self.readable(backfill_replacements, backfill_replacements.c.backfill_id)
            .join(backfills, backfills.c.id == backfill_replacements.c.backfill_id)
            .join(events, events.c.sequence == backfill_replacements.c.event_sequence)
            .where(events.c.backfill_id == backfill.id, backfills.c.status == REFLECTED)
            .limit(1)
        )
        found: str | None = later.scalar()
        return found

    async def _reflect(self, backfill: BackfillRecord, now: datetime) -> None:
        await self.lock_business(exclusive=True)
        own = events.c.backfill_id == backfill.id
        replaced = self.replacement_of(backfill.id)
        if backfill.replace_existing_events:
            candidates = self.readable(
                events,
                sa.literal(backfill.id, sa.String).label("backfill_id"),
                events.c.sequence.label("event_sequence"),
            ).where(*await self._replaced_by(backfill))
            await self.session.execute(self.insert_from_select(backfill_replacements, candidates))
            await self.session.execute(
                self.update_of(events)
                .where(replaced)
                .values(deprecated_at=now, deprecation_reason=replaced_reason(backfill.id))
            )
        await self.session.execute(self.update_of(events).where(own).values(counted_from=now))
        await self.session.execute(
            self.update_of(backfills)
            .where(backfills.c.id == backfill.id)
            .values(status=REFLECTED, reflected_at=now)
        )
        # Now that the events changed: their hours' rollups recomputed, their counts added.
        rollups = RollupRepository(self.session, self.business_id)
        await rollups.hours_recounted(await rollups.hours_of(own, replaced))
        await rollups.volume_changed(
            [
                (own, 1, sa.case((events.c.deprecated_at.is_not(None), 1), else_=0)),
                (replaced, 0, 1),
            ]
        )

    async def _locked(
        self, backfill_id: str, *, share: bool = False, skip_locked: bool = False
    ) -> BackfillRecord | None:
        if len(backfill_id) > MAX_BACKFILL_ID_LENGTH:
            return None
        query = self.readable(backfills).where(backfills.c.id == backfill_id)
        if self.dialect_name == "postgresql":
            query = query.with_for_update(read=share, skip_locked=skip_locked)
        row = (await self.session.execute(query)).first()
        return backfill_record(row) if row else None

    async def _reloaded(self, backfill_id: str) -> BackfillRecord:
        record = await self.get(backfill_id)
        assert record is not None
        return record
