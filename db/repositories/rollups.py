"""Rollups kept exact in the same transaction as every write (SPEC §13 usage and volume rows).

`meter_rollups` hold each meter's events per UTC quarter-hour as mergeable partial states
(db.usage.cells.Partial), one business-wide row and one row per customer key; every
write keeps them exact:
- ingestion merges the new events' partials into the rows (additive);
- an amendment or a deprecation recomputes the touched quarter of every meter whose
  event name the event had or has (minimum, maximum and last do not subtract);
- a new meter is built from the events stored, before it is returned.
PostgreSQL computes the partials in SQL (`numeric` from the jsonb number); SQLite, which
has no decimal type, reads each event's JSON number text and adds exactly in Python.

`volume_rollups` count events per quarter at four levels (business, event name, customer
key, both) and per basis (event time, ingestion time); every write changes them by
deltas, in SQL on both databases.

Races (PostgreSQL; SQLite's single writer rules them out):
- A recomputation deletes a quarter's rows and rebuilds them from the events committed;
  an ingestion that merged into them meanwhile would be lost, so both take a
  transaction-scoped advisory lock per (meter, quarter) first, in one order.
- A new meter is built from the events committed; an ingestion still in flight would miss
  it. Building takes the business row FOR UPDATE, which waits for every writer holding
  FOR KEY SHARE on it — every INSERT of an event takes that lock through its foreign key,
  and corrections take it explicitly — and writers read the meters only after it.
"""

import hashlib
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by

from db.filters import Filter, sqlite_key_path
from db.records import EventRecord
from db.repositories.scoped import BusinessScopedRepository
from db.rollups import quarter_column, quarter_of, quarter_start
from db.rules.meters import AggregationType
from db.tables import (
    NO_CUSTOMER,
    businesses,
    customers,
    events,
    meter_rollups,
    meters,
    volume_rollups,
)
from db.usage.cells import Partial
from db.usage.decimals import parse_json_exactly
from db.usage.plan import UsagePlan

# (meter id, customer id, external customer id, quarter): the key of a meter rollup row.
RollupKey = tuple[str, str, str, int]

_METER_ROLLUP_KEY = ("meter_id", "customer_id", "external_customer_id", "quarter")
_VOLUME_ROLLUP_KEY = (
    "business_id",
    "basis",
    "event_name",
    "customer_id",
    "external_customer_id",
    "quarter",
    "part",
)
_BASES = (("event", events.c.timestamp), ("ingestion", events.c.ingested_at))


@dataclass(frozen=True, slots=True)
class RolledMeter:
    """What the upkeep needs of a meter."""

    id: str
    event_name: str
    aggregation: AggregationType
    key: str | None
    filter: Filter | None

    @classmethod
    def of(cls, row: Any) -> "RolledMeter":
        return cls(
            id=row.id,
            event_name=row.event_name,
            aggregation=AggregationType(row.aggregation_type),
            key=row.aggregation_key,
            filter=Filter.from_document(row.filter) if row.filter is not None else None,
        )


def partial_of_row(row: Any) -> Partial:
    """A meter rollup row (or a row of its columns aggregated) as a Partial."""
    partial = Partial()
    partial.event_count = int(row.event_count)
    partial.numbers = int(row.numbers)
    partial.total = row.total
    partial.minimum = row.minimum
    partial.maximum = row.maximum
    if row.last_value is not None:
        partial.last = (row.last_timestamp, int(row.last_sequence), row.last_value)
    return partial


def _row_of_partial(key: RollupKey, partial: Partial) -> dict[str, Any]:
    meter_id, customer_id, external_customer_id, quarter = key
    last = partial.last
    return {
        "meter_id": meter_id,
        "customer_id": customer_id,
        "external_customer_id": external_customer_id,
        "quarter": quarter,
        "event_count": partial.event_count,
        "numbers": partial.numbers,
        "total": partial.total,
        "minimum": partial.minimum,
        "maximum": partial.maximum,
        "last_value": last[2] if last else None,
        "last_timestamp": last[0] if last else None,
        "last_sequence": last[1] if last else None,
    }


def _merged_on_postgresql(excluded: Any) -> dict[str, Any]:
    """The SET of a merge into a stored meter rollup row (LEAST/GREATEST skip NULLs)."""
    stored = meter_rollups.c
    newer = sa.and_(
        excluded.last_value.is_not(None),
        sa.or_(
            stored.last_value.is_(None),
            sa.tuple_(excluded.last_timestamp, excluded.last_sequence)
            > sa.tuple_(stored.last_timestamp, stored.last_sequence),
        ),
    )
    return {
        "event_count": stored.event_count + excluded.event_count,
        "numbers": stored.numbers + excluded.numbers,
        "total": stored.total + excluded.total,
        "minimum": sa.func.least(stored.minimum, excluded.minimum),
        "maximum": sa.func.greatest(stored.maximum, excluded.maximum),
        **{
            name: sa.case((newer, excluded[name]), else_=stored[name])
            for name in ("last_value", "last_timestamp", "last_sequence")
        },
    }


def _replaced(excluded: Any) -> dict[str, Any]:
    return {
        name: excluded[name]
        for name in meter_rollups.c.keys()  # noqa: SIM118 (a ColumnCollection iterates columns)
        if name not in _METER_ROLLUP_KEY and name != "business_id"
    }


def _added(excluded: Any) -> dict[str, Any]:
    stored = volume_rollups.c
    return {
        "event_count": stored.event_count + excluded.event_count,
        "deprecated_count": stored.deprecated_count + excluded.deprecated_count,
    }


def _advisory_key(meter_id: str, quarter: int) -> int:
    digest = hashlib.blake2b(f"{meter_id}:{quarter}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class RollupRepository(BusinessScopedRepository):
    # -- upkeep: ingestion ----------------------------------------------------------------

    async def events_inserted(
        self, sequences: Sequence[int], event_names: Iterable[str], moments: Iterable[datetime]
    ) -> None:
        """Merge newly inserted events (by sequence, with their event names and timestamps)
        into every rollup. Runs after the INSERT, whose foreign key to the business row is
        what orders it after a meter being built (see the module's docstring)."""
        if not sequences:
            return
        new_events = [self.one_of(events.c.sequence, sequences)]
        await self.session.execute(
            self.merge_from_select(
                volume_rollups,
                self._volume_counts(new_events, by_key=True),
                _VOLUME_ROLLUP_KEY,
                _added,
            )
        )
        rolled = await self._rolled_meters(event_names)
        if not rolled:
            return
        quarters = {quarter_of(moment) for moment in moments}
        await self._lock_quarters([(meter.id, quarter) for meter in rolled for quarter in quarters])
        await self._merge_meter_partials(rolled, new_events, by_key=True)

    # -- upkeep: corrections --------------------------------------------------------------

    async def event_corrected(self, before: EventRecord, after: EventRecord) -> None:
        """An amendment or a deprecation turned `before` into `after` (same event)."""
        if not before.business_id == after.business_id == self.business_id:
            raise ValueError("the corrected event is not this business's")
        if before.sequence != after.sequence:
            raise ValueError("before and after are not the same event")
        if self.dialect_name == "postgresql":
            # See the module's docstring: a meter being built waits for this, or this
            # for it, so that either the build or this recomputation sees the change.
            await self.session.execute(
                sa.select(businesses.c.id)
                .where(businesses.c.id == self.business_id)
                .with_for_update(read=True, key_share=True)
            )
        await self._volume_deltas(before, after)
        rolled = await self._rolled_meters({before.event_name, after.event_name})
        if not rolled:
            return
        quarter = quarter_of(before.timestamp)
        await self._lock_quarters([(meter.id, quarter) for meter in rolled])
        await self.session.execute(
            self.delete_of(meter_rollups).where(
                self.one_of(meter_rollups.c.meter_id, [meter.id for meter in rolled]),
                meter_rollups.c.quarter == quarter,
            )
        )
        await self._merge_meter_partials(
            rolled,
            [
                events.c.timestamp >= quarter_start(quarter),
                events.c.timestamp < quarter_start(quarter + 1),
            ],
        )

    async def _volume_deltas(self, before: EventRecord, after: EventRecord) -> None:
        changes: dict[tuple[str, str, str, str, int], list[int]] = defaultdict(lambda: [0, 0])
        customer = (before.customer_id or NO_CUSTOMER, before.external_customer_id or NO_CUSTOMER)
        for basis, moment in (("event", before.timestamp), ("ingestion", before.ingested_at)):
            quarter = quarter_of(moment)
            for state, sign in ((before, -1), (after, 1)):
                for name in (NO_CUSTOMER, state.event_name):
                    for owner in ((NO_CUSTOMER, NO_CUSTOMER), customer):
                        change = changes[(basis, name, *owner, quarter)]
                        change[0] += sign
                        change[1] += sign * int(state.deprecated)
        rows = [
            {
                "basis": basis,
                "event_name": name,
                "customer_id": customer_id,
                "external_customer_id": external_customer_id,
                "quarter": quarter,
                "part": before.sequence,
                "event_count": count,
                "deprecated_count": deprecated,
            }
            for (basis, name, customer_id, external_customer_id, quarter), (
                count,
                deprecated,
            ) in sorted(changes.items())
            if count or deprecated
        ]
        await self.merge_rows(volume_rollups, rows, _VOLUME_ROLLUP_KEY, _added)

    # -- building -------------------------------------------------------------------------

    async def build_meter(self, meter_id: str, now: datetime) -> bool:
        """Build a meter's rollups from every event stored, and mark them built; False if
        this business has no such meter."""
        if self.dialect_name == "postgresql":
            # Waits for every write in flight, and holds new ones until this commits.
            await self.session.execute(
                sa.select(businesses.c.id)
                .where(businesses.c.id == self.business_id)
                .with_for_update()
            )
        row = (
            await self.session.execute(self.readable(meters).where(meters.c.id == meter_id))
        ).first()
        if row is None:
            return False
        meter = RolledMeter.of(row)
        await self.session.execute(
            self.delete_of(meter_rollups).where(meter_rollups.c.meter_id == meter.id)
        )
        await self._merge_meter_partials([meter], [], merge_stored=False)
        await self.session.execute(
            self.update_of(meters).where(meters.c.id == meter.id).values(rollups_built_at=now)
        )
        return True

    async def rebuild_all(self, now: datetime) -> None:
        """Every rollup of this business recomputed from its stored events: after a bulk
        load that wrote events without the service (as the benchmark's seed does)."""
        await self.session.execute(self.delete_of(volume_rollups))
        await self.session.execute(
            self.merge_from_select(
                volume_rollups, self._volume_counts([]), _VOLUME_ROLLUP_KEY, _added
            )
        )
        rows = await self.session.execute(self.readable(meters, meters.c.id))
        for meter_id in rows.scalars().all():
            await self.build_meter(meter_id, now)

    # -- reading --------------------------------------------------------------------------

    async def usage_partials(
        self, plan: UsagePlan, quarters: range, inner_quarters: list[int]
    ) -> list[tuple[str | None, str | None, int, Partial]]:
        """The meter's partials over `quarters`, per bucket (bucket i starts at quarter
        inner_quarters[i - 1]) and, with groupByCustomer, per customer: (customer id,
        externalCustomerId of no customer, bucket, partial)."""
        stored = meter_rollups.c
        conditions = [
            stored.meter_id == plan.meter.id,
            stored.quarter >= quarters.start,
            stored.quarter < quarters.stop,
        ]
        if plan.narrowed_to_customers:
            alternatives = []
            if plan.customer_ids:
                alternatives.append(self.one_of(stored.customer_id, plan.customer_ids))
            if plan.external_customer_ids:
                alternatives.append(
                    self.one_of(stored.external_customer_id, plan.external_customer_ids)
                )
            conditions.append(sa.or_(*alternatives) if alternatives else sa.false())
        elif plan.group_by_customer:
            conditions.append(
                sa.or_(
                    stored.customer_id != NO_CUSTOMER, stored.external_customer_id != NO_CUSTOMER
                )
            )
        else:
            conditions += [
                stored.customer_id == NO_CUSTOMER,
                stored.external_customer_id == NO_CUSTOMER,
            ]
        owner: list[sa.ColumnElement[Any]] = [
            sa.null().label("series_customer_id"),
            sa.null().label("series_external_id"),
        ]
        query = self.readable(meter_rollups)
        if plan.group_by_customer:
            # U6: an externalCustomerId's events are its customer's, if it has one now.
            query = query.outerjoin(
                customers,
                sa.and_(
                    self.owns(customers),
                    stored.customer_id == NO_CUSTOMER,
                    customers.c.external_id == stored.external_customer_id,
                ),
            )
            owner = [
                sa.case(
                    (stored.customer_id != NO_CUSTOMER, stored.customer_id),
                    else_=customers.c.id,
                ).label("series_customer_id"),
                sa.case(
                    (
                        sa.and_(stored.customer_id == NO_CUSTOMER, customers.c.id.is_(None)),
                        stored.external_customer_id,
                    ),
                    else_=sa.null(),
                ).label("series_external_id"),
            ]
        query = query.where(*conditions)
        if self.dialect_name == "postgresql":
            return await self._usage_partials_on_postgresql(plan, query, owner, inner_quarters)
        found: dict[tuple[str | None, str | None, int], Partial] = {}
        result = await self.session.stream(query.with_only_columns(*stored, *owner))
        async for row in result:
            key = (
                row.series_customer_id,
                row.series_external_id,
                bisect_right(inner_quarters, row.quarter),
            )
            partial = found.get(key)
            if partial is None:
                found[key] = partial_of_row(row)
            else:
                partial.merge(partial_of_row(row))
        return [(*key, partial) for key, partial in found.items()]

    async def _usage_partials_on_postgresql(
        self,
        plan: UsagePlan,
        query: sa.Select[Any],
        owner: list[sa.ColumnElement[Any]],
        inner_quarters: list[int],
    ) -> list[tuple[str | None, str | None, int, Partial]]:
        stored = meter_rollups.c
        bucket: sa.ColumnElement[Any] = sa.literal(0, sa.Integer)
        if inner_quarters:
            bucket = sa.func.width_bucket(
                stored.quarter,
                sa.bindparam("inner_quarters", inner_quarters, type_=sa.ARRAY(sa.BigInteger)),
                type_=sa.Integer,
            )
        last: list[sa.ColumnElement[Any]] = [
            sa.null().label("last_value"),
            sa.null().label("last_timestamp"),
            sa.null().label("last_sequence"),
        ]
        if plan.aggregation is AggregationType.LAST:

            def latest(column: Any, label: str) -> Any:
                ordered = sa.func.array_agg(
                    aggregate_order_by(
                        column, stored.last_timestamp.desc(), stored.last_sequence.desc()
                    )
                ).filter(stored.last_value.is_not(None))
                return sa.type_coerce(ordered, sa.ARRAY(column.type))[1].label(label)

            last = [
                latest(stored.last_value, "last_value"),
                latest(stored.last_timestamp, "last_timestamp"),
                latest(stored.last_sequence, "last_sequence"),
            ]
        grouped = [bucket.label("bucket"), *owner]
        rows = await self.session.execute(
            query.with_only_columns(
                *grouped,
                sa.func.sum(stored.event_count).label("event_count"),
                sa.func.sum(stored.numbers).label("numbers"),
                sa.func.sum(stored.total).label("total"),
                sa.func.min(stored.minimum).label("minimum"),
                sa.func.max(stored.maximum).label("maximum"),
                *last,
            ).group_by(
                # Only what varies: PostgreSQL refuses a constant in GROUP BY.
                *(bucket for _ in inner_quarters[:1]),
                *(column.element for column in owner if plan.group_by_customer),
            )
        )
        return [
            (row.series_customer_id, row.series_external_id, row.bucket, partial_of_row(row))
            for row in rows
            # Without GROUP BY, no rows still aggregate into one row of NULLs.
            if row.event_count is not None
        ]

    async def volume_counts(
        self,
        basis: str,
        quarters: range,
        event_name: str | None,
        customer: tuple[str, str | None] | None,
        include_deprecated: bool,
    ) -> list[tuple[int, int]]:
        """(quarter, count) of the quarters in `quarters` that counted events, at the level
        the filters ask for (`customer`: its id and externalId)."""
        stored = volume_rollups.c
        conditions = [
            stored.basis == basis,
            stored.event_name == (event_name if event_name is not None else NO_CUSTOMER),
            stored.quarter >= quarters.start,
            stored.quarter < quarters.stop,
        ]
        if customer is None:
            conditions += [
                stored.customer_id == NO_CUSTOMER,
                stored.external_customer_id == NO_CUSTOMER,
            ]
        else:
            customer_id, external_id = customer
            keys = [
                sa.and_(
                    stored.customer_id == customer_id, stored.external_customer_id == NO_CUSTOMER
                )
            ]
            if external_id is not None:
                keys.append(
                    sa.and_(
                        stored.customer_id == NO_CUSTOMER,
                        stored.external_customer_id == external_id,
                    )
                )
            conditions.append(sa.or_(*keys))
        counted = stored.event_count
        if not include_deprecated:
            counted = counted - stored.deprecated_count
        rows = await self.session.execute(
            self.readable(volume_rollups, stored.quarter, sa.func.sum(counted))
            .where(*conditions)
            .group_by(stored.quarter)
        )
        return [(int(quarter), int(count)) for quarter, count in rows]

    # -- shared -----------------------------------------------------------------------------

    async def _rolled_meters(self, event_names: Iterable[str]) -> list[RolledMeter]:
        """The meters with built rollups counting one of these event names, in id order."""
        rows = await self.session.execute(
            self.readable(meters)
            .where(
                self.one_of(meters.c.event_name, sorted(set(event_names))),
                meters.c.rollups_built_at.is_not(None),
            )
            .order_by(meters.c.id)
        )
        return [RolledMeter.of(row) for row in rows]

    async def _lock_quarters(self, pairs: Iterable[tuple[str, int]]) -> None:
        if self.dialect_name != "postgresql":
            return
        keys = sorted({_advisory_key(meter_id, quarter) for meter_id, quarter in pairs})
        locks = sa.func.unnest(sa.bindparam("keys", keys, type_=sa.ARRAY(sa.BigInteger)))
        await self.session.execute(
            sa.select(sa.func.pg_advisory_xact_lock(sa.column("key"))).select_from(
                locks.alias("key")
            )
        )

    def _volume_counts(
        self, conditions: list[sa.ColumnElement[bool]], *, by_key: bool = False
    ) -> sa.Select[Any]:
        """The volume rollup rows of the events meeting `conditions`, at every level
        (`by_key`: conditions that find the events by sequence; see db.lookups)."""
        moments = sa.union_all(
            *(
                self.readable(
                    events,
                    sa.literal(basis, sa.String).label("basis"),
                    quarter_column(column, self.dialect_name).label("quarter"),
                    events.c.event_name,
                    sa.func.coalesce(events.c.customer_id, NO_CUSTOMER).label("customer_id"),
                    sa.func.coalesce(events.c.external_customer_id, NO_CUSTOMER).label(
                        "external_customer_id"
                    ),
                    events.c.deprecated_at,
                    by_primary_key=by_key,
                ).where(*conditions)
                for basis, column in _BASES
            )
        ).subquery("moments")
        levels = sa.union_all(
            *(
                sa.select(
                    sa.literal(by_name, sa.Integer).label("by_name"),
                    sa.literal(by_customer, sa.Integer).label("by_customer"),
                )
                for by_name in (0, 1)
                for by_customer in (0, 1)
            )
        ).subquery("levels")

        def kept(flag: sa.ColumnElement[Any], column: sa.ColumnElement[Any]) -> Any:
            return sa.case((flag == 1, column), else_=sa.literal(NO_CUSTOMER, sa.String))

        grouped = [
            moments.c.basis,
            kept(levels.c.by_name, moments.c.event_name).label("event_name"),
            kept(levels.c.by_customer, moments.c.customer_id).label("customer_id"),
            kept(levels.c.by_customer, moments.c.external_customer_id).label(
                "external_customer_id"
            ),
            moments.c.quarter,
        ]
        return (
            sa.select(
                *grouped,
                sa.literal(0, sa.BigInteger).label("part"),
                sa.func.count().label("event_count"),
                sa.func.count(moments.c.deprecated_at).label("deprecated_count"),
            )
            .select_from(moments.join(levels, sa.true()))
            .group_by(*grouped)
        )

    async def _merge_meter_partials(
        self,
        rolled: Sequence[RolledMeter],
        conditions: list[sa.ColumnElement[bool]],
        *,
        by_key: bool = False,
        merge_stored: bool = True,
    ) -> None:
        """Merge the partials of the events meeting `conditions` into the meters' rows."""
        if self.dialect_name == "postgresql":
            statements = [self._postgres_partials(meter, conditions, by_key) for meter in rolled]
            await self.session.execute(
                self.merge_from_select(
                    meter_rollups,
                    sa.union_all(*statements) if len(statements) > 1 else statements[0],
                    _METER_ROLLUP_KEY,
                    _merged_on_postgresql,
                )
            )
            return
        partials: dict[RollupKey, Partial] = {}
        for meter in rolled:
            await self._sqlite_partials(meter, conditions, partials, by_key)
        if merge_stored and partials:
            await self._merge_stored_on_sqlite(partials)
        rows = [_row_of_partial(key, partials[key]) for key in sorted(partials)]
        await self.merge_rows(meter_rollups, rows, _METER_ROLLUP_KEY, _replaced)

    def _scope(self, meter: RolledMeter, conditions: list[sa.ColumnElement[bool]]) -> Any:
        matching = [events.c.event_name == meter.event_name, events.c.deprecated_at.is_(None)]
        if meter.filter is not None:
            matching.append(meter.filter.to_sql(events.c.metadata, self.dialect_name))
        return [*matching, *conditions]

    def _postgres_partials(
        self, meter: RolledMeter, conditions: list[sa.ColumnElement[bool]], by_key: bool
    ) -> sa.Select[Any]:
        document = sa.type_coerce(events.c.metadata, JSONB)
        number: sa.ColumnElement[Any] = sa.cast(sa.null(), sa.Numeric)
        if meter.key is not None:
            key = sa.literal(meter.key, sa.Text)
            number = sa.case(
                (
                    sa.func.jsonb_typeof(document.op("->", return_type=JSONB)(key)) == "number",
                    sa.cast(document.op("->>", return_type=sa.Text)(key), sa.Numeric),
                ),
                else_=sa.null(),
            )
        counted = (
            self.readable(
                events,
                quarter_column(events.c.timestamp, self.dialect_name).label("quarter"),
                events.c.customer_id,
                events.c.external_customer_id,
                events.c.timestamp,
                events.c.sequence,
                sa.type_coerce(number, sa.Numeric).label("number"),
                by_primary_key=by_key,
            )
            .where(*self._scope(meter, conditions))
            .subquery("counted")
        )
        c = counted.c
        last: list[sa.ColumnElement[Any]] = [
            sa.cast(sa.null(), sa.Numeric).label("last_value"),
            sa.cast(sa.null(), c.timestamp.type).label("last_timestamp"),
            sa.cast(sa.null(), sa.BigInteger).label("last_sequence"),
        ]
        if meter.aggregation is AggregationType.LAST:

            def latest(column: Any, array_type: Any, label: str) -> Any:
                ordered = sa.func.array_agg(
                    aggregate_order_by(column, c.timestamp.desc(), c.sequence.desc())
                ).filter(c.number.is_not(None))
                return sa.type_coerce(ordered, sa.ARRAY(array_type))[1].label(label)

            last = [
                latest(c.number, sa.Numeric, "last_value"),
                latest(c.timestamp, c.timestamp.type, "last_timestamp"),
                latest(c.sequence, sa.BigInteger, "last_sequence"),
            ]
        return sa.select(
            sa.literal(meter.id, sa.String).label("meter_id"),
            sa.func.coalesce(c.customer_id, NO_CUSTOMER).label("customer_id"),
            sa.func.coalesce(c.external_customer_id, NO_CUSTOMER).label("external_customer_id"),
            c.quarter,
            sa.func.count().label("event_count"),
            sa.func.count(c.number).label("numbers"),
            sa.func.coalesce(sa.func.sum(c.number), 0).label("total"),
            sa.func.min(c.number).label("minimum"),
            sa.func.max(c.number).label("maximum"),
            *last,
        ).group_by(
            sa.func.grouping_sets(
                sa.tuple_(c.quarter), sa.tuple_(c.quarter, c.customer_id, c.external_customer_id)
            )
        )

    async def _sqlite_partials(
        self,
        meter: RolledMeter,
        conditions: list[sa.ColumnElement[bool]],
        partials: dict[RollupKey, Partial],
        by_key: bool,
    ) -> None:
        member = member_text_column(meter.key, self.dialect_name)
        result = await self.session.stream(
            self.readable(
                events,
                events.c.timestamp,
                events.c.sequence,
                events.c.customer_id,
                events.c.external_customer_id,
                member.label("member"),
                by_primary_key=by_key,
            ).where(*self._scope(meter, conditions))
        )
        key, whole = meter.key, reads_whole_document(meter.key, self.dialect_name)
        async for row in result:
            value = read_member(row.member, key, whole)
            quarter = quarter_of(row.timestamp)
            owner = (row.customer_id or NO_CUSTOMER, row.external_customer_id or NO_CUSTOMER)
            for rollup_key in (
                (meter.id, NO_CUSTOMER, NO_CUSTOMER, quarter),
                (meter.id, *owner, quarter),
            ):
                partial = partials.get(rollup_key)
                if partial is None:
                    partial = partials[rollup_key] = Partial()
                partial.add(row.timestamp, row.sequence, value)

    async def _merge_stored_on_sqlite(self, partials: dict[RollupKey, Partial]) -> None:
        quarters = [key[3] for key in partials]
        stored = await self.session.execute(
            self.readable(meter_rollups).where(
                self.one_of(meter_rollups.c.meter_id, sorted({key[0] for key in partials})),
                meter_rollups.c.quarter.between(min(quarters), max(quarters)),
            )
        )
        for row in stored:
            key = (row.meter_id, row.customer_id, row.external_customer_id, row.quarter)
            partial = partials.get(key)
            if partial is not None:
                partial.merge(partial_of_row(row))


def reads_whole_document(key: str | None, dialect_name: str) -> bool:
    """SQLite: no JSON path finds `key` exactly, so its member is read from the document."""
    return key is not None and dialect_name == "sqlite" and sqlite_key_path(key) is None


def member_text_column(key: str | None, dialect_name: str) -> sa.ColumnElement[Any]:
    """The JSON text of the member at `key` of an event's metadata (NULL if absent), or
    the whole document's text where reads_whole_document."""
    if key is None:
        return sa.null()
    if dialect_name == "postgresql":
        document = sa.type_coerce(events.c.metadata, JSONB)
        return sa.cast(document.op("->", return_type=JSONB)(sa.literal(key, sa.Text)), sa.Text)
    if reads_whole_document(key, dialect_name):
        return sa.cast(events.c.metadata, sa.Text)
    path = sqlite_key_path(key)
    member: sa.ColumnElement[Any] = events.c.metadata.op("->", return_type=sa.Text)(
        sa.literal(path, sa.Text)
    )
    return member


def read_member(text: str | None, key: str | None, whole_document: bool) -> Any:
    """What member_text_column read, as a value: numbers exact (int, Decimal)."""
    if text is None or key is None:
        return None
    value = parse_json_exactly(text)
    return value.get(key) if whole_document else value
