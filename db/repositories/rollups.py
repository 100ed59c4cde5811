"""Rollups kept exact in the same transaction as every write (SPEC §13 usage and volume rows).

`meter_rollups` hold each meter's events as mergeable partial states (db.usage.cells.
Partial) per UTC quarter-hour — business-wide and per customer key — and per UTC hour,
business-wide, each per combination of values at the meter's dimensions (and, with
dimensions, business-wide for every group together). Every write keeps them exact:
- ingestion merges the new events' partials into the rows, computed from the batch itself
  (nothing is read back), in one INSERT … ON CONFLICT: PostgreSQL adds `numeric`s, SQLite
  adds decimal text with db.sqlite_decimals;
- an amendment or a deprecation rebuilds the rows of the event's UTC hour of every meter
  whose event name the event had or has, from the events (minimum, maximum and last do
  not subtract);
- a new meter is built from the events stored, before it is returned.

`volume_rollups` count events per quarter, of every event name and of each, by event time
and by ingestion time. Ingestion adds to them; a correction adds its change in rows of
its own (db.tables.VolumeRollup.part), so that it never waits for, nor holds up, an
ingestion of the same quarter.

Races (PostgreSQL; SQLite's single writer rules them out):
- A rebuild deletes an hour's rows and writes them anew from the events committed; an
  ingestion that merged into them meanwhile would be lost, so both take a
  transaction-scoped advisory lock per (meter, UTC hour) first, in one order.
- A new meter is built from the events committed; an ingestion still in flight would miss
  it. Building takes the business row FOR UPDATE, which waits for every writer holding
  FOR KEY SHARE on it — every INSERT of an event takes that lock through its foreign key,
  and corrections take it explicitly — and writers read the meters only after it.
"""

import hashlib
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP, aggregate_order_by

from db.database import streamed_rows
from db.filters import Filter
from db.records import EventRecord
from db.repositories.event_inserts import NewEvent, sqlite_timestamp
from db.repositories.scoped import BusinessScopedRepository
from db.rollups import quarter_column, quarter_of, quarter_start
from db.rules.meters import AggregationType
from db.tables import (
    EVERY_EVENT_NAME,
    NO_CUSTOMER,
    customers,
    events,
    meter_rollups,
    meters,
    volume_rollups,
)
from db.usage.cells import Partial
from db.usage.decimals import parse_json_exactly, sum_exactly
from db.usage.plan import UsagePlan

# (meter id, customer id, external customer id, span, quarter, group values): the key of
# a meter rollup row.
RollupKey = tuple[str, str, str, int, int, str]

_METER_ROLLUP_KEY = (
    "meter_id",
    "customer_id",
    "external_customer_id",
    "span",
    "quarter",
    "group_values",
)
# The spans of meter rollup rows, in quarter-hours (db.tables.MeterRollup.span).
QUARTER_SPAN = 1
HOUR_SPAN = 4
_VOLUME_ROLLUP_KEY = ("business_id", "basis", "event_name", "quarter", "part")
# The part of the volume rollups that ingestion merges into (see db.tables.VolumeRollup).
INGESTED = 0
_BASES = (("event", events.c.timestamp), ("ingestion", events.c.ingested_at))


@dataclass(frozen=True, slots=True)
class RolledMeter:
    """What the upkeep needs of a meter."""

    id: str
    event_name: str
    aggregation: AggregationType
    key: str | None
    filter: Filter | None
    dimensions: tuple[str, ...]

    @classmethod
    def of(cls, row: Any) -> "RolledMeter":
        return cls(
            id=row.id,
            event_name=row.event_name,
            aggregation=AggregationType(row.aggregation_type),
            key=row.aggregation_key,
            filter=Filter.from_document(row.filter) if row.filter is not None else None,
            dimensions=tuple(row.dimensions),
        )


class _Partials:
    """Partials of a meter's rows, fed event by event (ingestion, and builds on SQLite)."""

    def __init__(self) -> None:
        self.by_key: dict[RollupKey, Partial] = {}
        self._quarters: dict[datetime, int] = {}

    def quarter(self, moment: datetime) -> int:
        # quarter_of once per distinct moment: a batch's events mostly share a few.
        quarter = self._quarters.get(moment)
        if quarter is None:
            quarter = self._quarters[moment] = quarter_of(moment)
        return quarter

    def add(
        self,
        meter: RolledMeter,
        sequence: int,
        timestamp: datetime,
        customer_id: str | None,
        external_customer_id: str | None,
        metadata: Mapping[str, Any],
    ) -> None:
        """One event the meter counts (its filter already applied)."""
        quarter = self.quarter(timestamp)
        hour = quarter - quarter % HOUR_SPAN
        group_values = group_values_text(metadata, meter.dimensions)
        member = metadata.get(meter.key) if meter.key is not None else None
        customer = (customer_id or NO_CUSTOMER, external_customer_id or NO_CUSTOMER)
        business = (NO_CUSTOMER, NO_CUSTOMER)
        keys = [
            (meter.id, *customer, QUARTER_SPAN, quarter, group_values),
            (meter.id, *business, QUARTER_SPAN, quarter, group_values),
            (meter.id, *business, HOUR_SPAN, hour, group_values),
        ]
        if meter.dimensions:
            keys.append((meter.id, *business, QUARTER_SPAN, quarter, EVERY_GROUP))
            keys.append((meter.id, *business, HOUR_SPAN, hour, EVERY_GROUP))
        for key in keys:
            partial = self.by_key.get(key)
            if partial is None:
                partial = self.by_key[key] = Partial()
            partial.add(timestamp, sequence, member)


def _rows_covering(
    quarters: range, inner_quarters: list[int], *, business_wide: bool
) -> sa.ColumnElement[bool]:
    """The rows that cover `quarters` once: business-wide, where every bucket edge is a
    whole UTC hour, the hour rows of the whole hours and the quarter rows of the quarters
    before and after them; else the quarter rows."""
    stored = meter_rollups.c
    quarter_rows = sa.and_(
        stored.span == QUARTER_SPAN,
        stored.quarter >= quarters.start,
        stored.quarter < quarters.stop,
    )
    if not business_wide or any(edge % HOUR_SPAN for edge in inner_quarters):
        return quarter_rows
    first_hour = -(-quarters.start // HOUR_SPAN) * HOUR_SPAN
    stop_hour = quarters.stop // HOUR_SPAN * HOUR_SPAN
    if first_hour >= stop_hour:
        return quarter_rows
    return sa.or_(
        sa.and_(stored.span == HOUR_SPAN, stored.quarter >= first_hour, stored.quarter < stop_hour),
        sa.and_(
            stored.span == QUARTER_SPAN,
            sa.or_(
                sa.and_(stored.quarter >= quarters.start, stored.quarter < first_hour),
                sa.and_(stored.quarter >= stop_hour, stored.quarter < quarters.stop),
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class RolledCell:
    """Partials of a bucket from the rollups: of one customer (groupByCustomer; else both
    None), of one group_values text (groupBy; else None)."""

    customer_id: str | None
    external_customer_id: str | None
    group_values: str | None
    bucket: int
    partial: Partial

    @classmethod
    def of(cls, row: Any, bucket: int, partial: Partial) -> "RolledCell":
        return cls(
            row.series_customer_id,
            row.series_external_id,
            row.series_group_values,
            bucket,
            partial,
        )


# The group_values of the rows of a meter without dimensions, and of the business-wide
# rows of every group together of a meter with dimensions (db.tables.MeterRollup).
EVERY_GROUP = "[]"


def group_values_text(metadata: Mapping[str, Any], dimensions: Sequence[str]) -> str:
    """The group_values of an event's rows: its values at the dimensions, as JSON."""
    if not dimensions:
        return EVERY_GROUP
    values = [metadata.get(key) for key in dimensions]
    return orjson.dumps(values, default=_decimal_json).decode()


def _decimal_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON")


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


def _row_values(key: RollupKey, partial: Partial) -> list[Any]:
    """A meter rollup row's values, in _MERGED_COLUMNS order."""
    last = partial.last
    return [
        *key,
        partial.event_count,
        partial.numbers,
        partial.total,
        partial.minimum,
        partial.maximum,
        last[2] if last else None,
        last[0] if last else None,
        last[1] if last else None,
    ]


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


def _volume_row(
    key: tuple[str, str, int], count: int, *, deprecated: int, part: int
) -> dict[str, Any]:
    basis, event_name, quarter = key
    return {
        "basis": basis,
        "event_name": event_name,
        "quarter": quarter,
        "part": part,
        "event_count": count,
        "deprecated_count": deprecated,
    }


# Partials merged into meter rollup rows on PostgreSQL: one statement, the rows as arrays
# (a thousand customers' rows in a few parameters rather than thousands).
_MERGED_COLUMNS = (
    "meter_id",
    "customer_id",
    "external_customer_id",
    "span",
    "quarter",
    "group_values",
    "event_count",
    "numbers",
    "total",
    "minimum",
    "maximum",
    "last_value",
    "last_timestamp",
    "last_sequence",
)
_POSTGRES_MERGE = sa.text(
    """
    INSERT INTO meter_rollups (business_id, meter_id, customer_id, external_customer_id,
                               span, quarter, group_values, event_count, numbers, total,
                               minimum, maximum, last_value, last_timestamp, last_sequence)
    SELECT :business_id, * FROM unnest(:meter_id, :customer_id, :external_customer_id,
                                       :span, :quarter, :group_values, :event_count,
                                       :numbers, :total, :minimum, :maximum, :last_value,
                                       :last_timestamp, :last_sequence)
    ON CONFLICT (meter_id, customer_id, external_customer_id, span, quarter, group_values)
    DO UPDATE SET
        event_count = meter_rollups.event_count + excluded.event_count,
        numbers = meter_rollups.numbers + excluded.numbers,
        total = meter_rollups.total + excluded.total,
        minimum = least(meter_rollups.minimum, excluded.minimum),
        maximum = greatest(meter_rollups.maximum, excluded.maximum),
        last_value = CASE WHEN excluded.last_value IS NOT NULL AND (
                              meter_rollups.last_value IS NULL
                              OR (excluded.last_timestamp, excluded.last_sequence)
                                 > (meter_rollups.last_timestamp, meter_rollups.last_sequence))
                          THEN excluded.last_value ELSE meter_rollups.last_value END,
        last_timestamp = CASE WHEN excluded.last_value IS NOT NULL AND (
                              meter_rollups.last_value IS NULL
                              OR (excluded.last_timestamp, excluded.last_sequence)
                                 > (meter_rollups.last_timestamp, meter_rollups.last_sequence))
                          THEN excluded.last_timestamp ELSE meter_rollups.last_timestamp END,
        last_sequence = CASE WHEN excluded.last_value IS NOT NULL AND (
                              meter_rollups.last_value IS NULL
                              OR (excluded.last_timestamp, excluded.last_sequence)
                                 > (meter_rollups.last_timestamp, meter_rollups.last_sequence))
                          THEN excluded.last_sequence ELSE meter_rollups.last_sequence END
    """
).bindparams(
    sa.bindparam("meter_id", type_=ARRAY(sa.Text())),
    sa.bindparam("customer_id", type_=ARRAY(sa.Text())),
    sa.bindparam("external_customer_id", type_=ARRAY(sa.Text())),
    sa.bindparam("span", type_=ARRAY(sa.SmallInteger())),
    sa.bindparam("quarter", type_=ARRAY(sa.BigInteger())),
    sa.bindparam("group_values", type_=ARRAY(sa.Text())),
    sa.bindparam("event_count", type_=ARRAY(sa.BigInteger())),
    sa.bindparam("numbers", type_=ARRAY(sa.BigInteger())),
    sa.bindparam("total", type_=ARRAY(sa.Numeric())),
    sa.bindparam("minimum", type_=ARRAY(sa.Numeric())),
    sa.bindparam("maximum", type_=ARRAY(sa.Numeric())),
    sa.bindparam("last_value", type_=ARRAY(sa.Numeric())),
    sa.bindparam("last_timestamp", type_=ARRAY(TIMESTAMP(timezone=True))),
    sa.bindparam("last_sequence", type_=ARRAY(sa.BigInteger())),
)


# The same on SQLite, the rows as one JSON document of arrays (as events are inserted),
# decimals as their text, added and compared by db.sqlite_decimals.
_SQLITE_MERGE = sa.text(
    """
    INSERT INTO meter_rollups (business_id, meter_id, customer_id, external_customer_id,
                               span, quarter, group_values, event_count, numbers, total,
                               minimum, maximum, last_value, last_timestamp, last_sequence)
    SELECT :business_id, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,
           value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10,
           value ->> 11, value ->> 12, value ->> 13
    FROM json_each(:rows)
    WHERE true  -- SQLite needs a WHERE before ON CONFLICT in INSERT … SELECT
    ON CONFLICT (meter_id, customer_id, external_customer_id, span, quarter, group_values)
    DO UPDATE SET
        event_count = meter_rollups.event_count + excluded.event_count,
        numbers = meter_rollups.numbers + excluded.numbers,
        total = exact_add(meter_rollups.total, excluded.total),
        minimum = exact_least(meter_rollups.minimum, excluded.minimum),
        maximum = exact_greatest(meter_rollups.maximum, excluded.maximum),
        last_value = CASE WHEN excluded.last_value IS NOT NULL AND (
                              meter_rollups.last_value IS NULL
                              OR (excluded.last_timestamp, excluded.last_sequence)
                                 > (meter_rollups.last_timestamp, meter_rollups.last_sequence))
                          THEN excluded.last_value ELSE meter_rollups.last_value END,
        last_timestamp = CASE WHEN excluded.last_value IS NOT NULL AND (
                              meter_rollups.last_value IS NULL
                              OR (excluded.last_timestamp, excluded.last_sequence)
                                 > (meter_rollups.last_timestamp, meter_rollups.last_sequence))
                          THEN excluded.last_timestamp ELSE meter_rollups.last_timestamp END,
        last_sequence = CASE WHEN excluded.last_value IS NOT NULL AND (
                              meter_rollups.last_value IS NULL
                              OR (excluded.last_timestamp, excluded.last_sequence)
                                 > (meter_rollups.last_timestamp, meter_rollups.last_sequence))
                          THEN excluded.last_sequence ELSE meter_rollups.last_sequence END
    """
)


def _sqlite_json(value: Any) -> Any:
    """A rollup value in the JSON document of _SQLITE_MERGE: decimals and moments as the
    text SQLite stores for them."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return sqlite_timestamp(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


# SQLite numbers up to this many buckets in SQL (a CASE over their edges).
SQLITE_CASE_BUCKETS = 128


def _advisory_key(meter_id: str, quarter: int) -> int:
    """The lock of a meter's rows of the UTC hour holding `quarter` (its hour row too)."""
    hour = quarter - quarter % HOUR_SPAN
    digest = hashlib.blake2b(f"{meter_id}:{hour}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# What a change adds to the volume counts: the events meeting a condition, and how much
# each adds to event_count and to deprecated_count (a number, or an expression per event).
VolumeSource = tuple[
    sa.ColumnElement[bool], int | sa.ColumnElement[Any], int | sa.ColumnElement[Any]
]
_IS_DEPRECATED = sa.case((events.c.deprecated_at.is_not(None), 1), else_=0)
# Most ranges of hours one rebuild names: beyond it, the closest runs are joined (and the
# hours between them rebuilt too), so that the statement stays small.
MAX_HOUR_RUNS = 32
# The most quarter-hours one recount statement covers: a day.
RECOUNT_QUARTERS = 96


def _weight(weight: int | sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    if isinstance(weight, int):
        return sa.literal(weight, sa.BigInteger)
    return weight


def hour_runs(hours: Sequence[int], max_runs: int = MAX_HOUR_RUNS) -> list[tuple[int, int]]:
    """Sorted UTC hours (their first quarters) as [start, stop) ranges of quarters: runs of
    consecutive hours, the closest joined until at most `max_runs` remain."""
    runs: list[list[int]] = []
    for hour in hours:
        if runs and runs[-1][1] == hour:
            runs[-1][1] = hour + HOUR_SPAN
        else:
            runs.append([hour, hour + HOUR_SPAN])
    while len(runs) > max_runs:
        _gap, index = min((runs[i + 1][0] - runs[i][1], i) for i in range(len(runs) - 1))
        runs[index][1] = runs[index + 1][1]
        del runs[index + 1]
    return [(start, stop) for start, stop in runs]


class RollupRepository(BusinessScopedRepository):
    # -- upkeep: ingestion ----------------------------------------------------------------

    async def events_inserted(
        self, inserted: Sequence[tuple[int, NewEvent]], now: datetime
    ) -> None:
        """Merge newly inserted events (with their sequences), ingested at `now`, into every
        rollup. Their partials are computed here from the batch itself (the meters'
        filters by Filter.matches, which M5 holds equal to the SQL), so nothing is read
        back. Runs after the INSERT, whose foreign key to the business row is what orders
        it after a meter being built (see the module's docstring)."""
        partials = _Partials()
        ingested = partials.quarter(now)
        by_name: dict[str, list[tuple[int, NewEvent]]] = defaultdict(list)
        for sequence, event in inserted:
            by_name[event.event_name].append((sequence, event))
        counts: Counter[tuple[str, str, int]] = Counter()
        for name, named in by_name.items():
            in_quarters = Counter(partials.quarter(event.timestamp) for _, event in named)
            for quarter, count in in_quarters.items():
                counts[("event", EVERY_EVENT_NAME, quarter)] += count
                counts[("event", name, quarter)] += count
            counts[("ingestion", EVERY_EVENT_NAME, ingested)] += len(named)
            counts[("ingestion", name, ingested)] += len(named)
        await self.merge_rows(
            volume_rollups,
            [
                _volume_row(key, count, deprecated=0, part=INGESTED)
                for key, count in sorted(counts.items())
            ],
            _VOLUME_ROLLUP_KEY,
            _added,
        )
        for meter in await self._rolled_meters(by_name):
            for sequence, event in by_name[meter.event_name]:
                if meter.filter is None or meter.filter.matches(event.metadata):
                    partials.add(
                        meter,
                        sequence,
                        event.timestamp,
                        event.customer_id,
                        event.external_customer_id,
                        event.metadata,
                    )
        if not partials.by_key:
            return
        await self._lock_quarters({(key[0], key[4]) for key in partials.by_key})
        await self._store_partials(partials.by_key)

    # -- upkeep: corrections --------------------------------------------------------------

    async def event_corrected(self, before: EventRecord, after: EventRecord) -> None:
        """An amendment or a deprecation turned `before` into `after` (same event)."""
        if not before.business_id == after.business_id == self.business_id:
            raise ValueError("the corrected event is not this business's")
        if before.sequence != after.sequence:
            raise ValueError("before and after are not the same event")
        # See the module's docstring: a meter being built waits for this, or this for
        # it, so that either the build or this recomputation sees the change.
        await self.lock_business(exclusive=False)
        await self._volume_deltas(before, after)
        rolled = await self._rolled_meters({before.event_name, after.event_name})
        if not rolled:
            return
        # The UTC hour of the event: its quarters' rows and its hour row, rebuilt whole.
        quarter = quarter_of(before.timestamp)
        hour = quarter - quarter % HOUR_SPAN
        await self._lock_quarters([(meter.id, hour) for meter in rolled])
        await self.session.execute(
            self.delete_of(meter_rollups).where(
                self.one_of(meter_rollups.c.meter_id, [meter.id for meter in rolled]),
                meter_rollups.c.quarter >= hour,
                meter_rollups.c.quarter < hour + HOUR_SPAN,
            )
        )
        await self._merge_meter_partials(
            rolled,
            [
                events.c.timestamp >= quarter_start(hour),
                events.c.timestamp < quarter_start(hour + HOUR_SPAN),
            ],
        )

    async def _volume_deltas(self, before: EventRecord, after: EventRecord) -> None:
        """The correction's change to the counts, in rows of the event's own part."""
        if before.counted_from is None:
            return  # an event of a backfill not reflected is in no count (B3)
        changes: Counter[tuple[str, str, int]] = Counter()
        deprecations: Counter[tuple[str, str, int]] = Counter()
        for basis, moment in (("event", before.timestamp), ("ingestion", before.ingested_at)):
            quarter = quarter_of(moment)
            for state, sign in ((before, -1), (after, 1)):
                for name in (EVERY_EVENT_NAME, state.event_name):
                    changes[(basis, name, quarter)] += sign
                    deprecations[(basis, name, quarter)] += sign * int(state.deprecated)
        rows = [
            _volume_row(key, changes[key], deprecated=deprecations[key], part=before.sequence)
            for key in sorted(changes.keys() | deprecations.keys())
            if changes[key] or deprecations[key]
        ]
        await self.merge_rows(volume_rollups, rows, _VOLUME_ROLLUP_KEY, _added)

    # -- upkeep: backfills ----------------------------------------------------------------

    async def hours_of(self, *changed: sa.ColumnElement[bool]) -> set[tuple[str, int]]:
        """(event name, first quarter of the UTC hour) of the events meeting any of the
        `changed` conditions (each read on its own, so that each can use its index)."""
        quarter = quarter_column(events.c.timestamp, self.dialect_name)
        hour = (quarter - quarter % HOUR_SPAN).label("hour")
        found = sa.union(
            *(
                self.readable(events, events.c.event_name, hour).where(condition)
                for condition in changed
            )
        )
        rows = await self.session.execute(sa.select(found.subquery()))
        return {(name, int(first)) for name, first in rows}

    async def hours_recounted(self, hours: Collection[tuple[str, int]]) -> None:
        """Rebuild, from the events, the meter rows of these (event name, UTC hour)s: after
        a backfill's close or revert changed which events count in them. The caller holds
        the business row FOR UPDATE (db.repositories.backfills), so no other writer of
        these rows is in flight."""
        rolled = await self._rolled_meters({name for name, _ in hours})
        if not rolled:
            return
        runs = hour_runs(sorted({hour for _, hour in hours}))
        await self.session.execute(
            self.delete_of(meter_rollups).where(
                self.one_of(meter_rollups.c.meter_id, [meter.id for meter in rolled]),
                sa.or_(
                    *(
                        sa.and_(meter_rollups.c.quarter >= start, meter_rollups.c.quarter < stop)
                        for start, stop in runs
                    )
                ),
            )
        )
        # A statement per run: one time range each is an index range to the planners;
        # ranges ORed are not, and would read every event of the meter's name. And at
        # most a day per statement, so that SQLite's partials (built in Python) of a
        # backfill's month of events never all sit in memory at once.
        for start, stop in runs:
            for first in range(start, stop, RECOUNT_QUARTERS):
                await self._merge_meter_partials(
                    rolled,
                    [
                        events.c.timestamp >= quarter_start(first),
                        events.c.timestamp < quarter_start(min(first + RECOUNT_QUARTERS, stop)),
                    ],
                )

    async def volume_changed(self, sources: Sequence["VolumeSource"]) -> None:
        """Add each source's weights, over the events meeting its condition, to the volume
        counts of their quarters (event_count, deprecated_count)."""
        await self.session.execute(
            self.merge_from_select(
                volume_rollups, self._volume_sums(sources), _VOLUME_ROLLUP_KEY, _added
            )
        )

    # -- building -------------------------------------------------------------------------

    async def build_meter(self, meter_id: str, now: datetime) -> bool:
        """Build a meter's rollups from every event stored, and mark them built; False if
        this business has no such meter."""
        # Waits for every write in flight, and holds new ones until this commits.
        await self.lock_business(exclusive=True)
        row = (
            await self.session.execute(self.readable(meters).where(meters.c.id == meter_id))
        ).first()
        if row is None:
            return False
        meter = RolledMeter.of(row)
        await self.session.execute(
            self.delete_of(meter_rollups).where(meter_rollups.c.meter_id == meter.id)
        )
        await self._merge_meter_partials([meter], [])
        await self.session.execute(
            self.update_of(meters).where(meters.c.id == meter.id).values(rollups_built_at=now)
        )
        return True

    async def rebuild_all(self, now: datetime) -> None:
        """Every rollup of this business recomputed from its stored events: after a bulk
        load that wrote events without the service (as the benchmark's seed does)."""
        await self.session.execute(self.delete_of(volume_rollups))
        await self.volume_changed([(events.c.counted_from.is_not(None), 1, _IS_DEPRECATED)])
        rows = await self.session.execute(self.readable(meters, meters.c.id))
        for meter_id in rows.scalars().all():
            await self.build_meter(meter_id, now)

    # -- reading --------------------------------------------------------------------------

    async def usage_partials(
        self, plan: UsagePlan, quarters: range, inner_quarters: list[int]
    ) -> list["RolledCell"]:
        """The meter's partials over `quarters`, per bucket (bucket i starts at quarter
        inner_quarters[i - 1]), per customer with groupByCustomer, and per combination of
        values at the meter's dimensions with groupBy (a subset of them)."""
        stored = meter_rollups.c
        business_wide = not plan.narrowed_to_customers and not plan.group_by_customer
        conditions = [
            stored.meter_id == plan.meter.id,
            _rows_covering(quarters, inner_quarters, business_wide=business_wide),
        ]
        if plan.narrowed_to_customers:
            # Each alternative a prefix of the rows' key, so that both are index ranges.
            alternatives = []
            if plan.customer_ids:
                alternatives.append(
                    sa.and_(
                        self.one_of(stored.customer_id, plan.customer_ids),
                        stored.external_customer_id == NO_CUSTOMER,
                    )
                )
            if plan.external_customer_ids:
                alternatives.append(
                    sa.and_(
                        stored.customer_id == NO_CUSTOMER,
                        self.one_of(stored.external_customer_id, plan.external_customer_ids),
                    )
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
                # Every group together, or (groupBy) each group of the dimensions.
                stored.group_values != EVERY_GROUP
                if plan.group_by
                else stored.group_values == EVERY_GROUP,
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
        varying = [column.element for column in owner if plan.group_by_customer]
        series = [*owner, sa.null().label("series_group_values")]
        if plan.group_by:
            series[-1] = stored.group_values.label("series_group_values")
            varying.append(stored.group_values)
        query = query.where(*conditions)
        if self.dialect_name == "postgresql":
            return await self._usage_partials_on_postgresql(
                plan, query, series, varying, inner_quarters
            )
        return await self._usage_partials_on_sqlite(plan, query, series, varying, inner_quarters)

    async def _usage_partials_on_sqlite(
        self,
        plan: UsagePlan,
        query: sa.Select[Any],
        series: list[sa.ColumnElement[Any]],
        varying: list[sa.ColumnElement[Any]],
        inner_quarters: list[int],
    ) -> list["RolledCell"]:
        """Grouped by bucket in SQL (through the rows' key), the decimal text of each group
        as one JSON list, added up exactly here. SQLite has no width_bucket: up to
        SQLITE_CASE_BUCKETS buckets are numbered by a CASE over their edges, more are
        grouped by quarter and numbered here."""
        stored = meter_rollups.c
        by_quarter = len(inner_quarters) >= SQLITE_CASE_BUCKETS
        position: sa.ColumnElement[Any] = stored.quarter
        if not inner_quarters:
            position = sa.literal(0, sa.Integer)
        elif not by_quarter:
            position = sa.case(
                *((stored.quarter < edge, index) for index, edge in enumerate(inner_quarters)),
                else_=len(inner_quarters),
            )
        decimal_column = {
            AggregationType.SUM: stored.total,
            AggregationType.AVG: stored.total,
            AggregationType.MIN: stored.minimum,
            AggregationType.MAX: stored.maximum,
        }.get(plan.aggregation)
        listed: sa.ColumnElement[Any] = sa.null()
        if plan.aggregation is AggregationType.LAST:
            listed = sa.func.json_group_array(
                sa.func.json_array(stored.last_timestamp, stored.last_sequence, stored.last_value)
            ).filter(stored.last_value.is_not(None))
        elif decimal_column is not None:
            listed = sa.func.json_group_array(decimal_column).filter(decimal_column.is_not(None))
        rows = await self.session.execute(
            query.with_only_columns(
                position.label("position"),
                *series,
                sa.func.sum(stored.event_count).label("event_count"),
                sa.func.sum(stored.numbers).label("numbers"),
                listed.label("listed"),
            ).group_by(
                # Not by a constant (one bucket): SQLite reads GROUP BY 0 as a column number.
                *(position for _ in inner_quarters[:1]),
                *varying,
            )
        )
        cells: dict[tuple[Any, ...], tuple[list[int], list[Any]]] = {}
        for row in rows:
            if row.event_count is None:
                continue  # without GROUP BY, no rows still aggregate into one row of NULLs
            key = (
                row.series_customer_id,
                row.series_external_id,
                row.series_group_values,
                bisect_right(inner_quarters, row.position) if by_quarter else row.position,
            )
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = ([0, 0], [])
            cell[0][0] += row.event_count
            cell[0][1] += row.numbers
            if row.listed is not None:
                cell[1].extend(orjson.loads(row.listed))
        found = []
        for (customer_id, external_id, group_values, bucket), (
            counts,
            listed_values,
        ) in cells.items():
            partial = Partial()
            partial.event_count, partial.numbers = counts
            if plan.aggregation is AggregationType.LAST:
                last = max(listed_values, default=None, key=lambda entry: (entry[0], entry[1]))
                if last is not None:
                    # The stored text of a UTCDateTime: naive UTC.
                    moment = datetime.fromisoformat(last[0]).replace(tzinfo=UTC)
                    partial.last = (moment, int(last[1]), Decimal(last[2]))
            elif listed_values:
                # The one decimal column this aggregation reads (the others stay unset).
                numbers = [Decimal(text) for text in listed_values]
                if plan.aggregation is AggregationType.MIN:
                    partial.minimum = min(numbers)
                elif plan.aggregation is AggregationType.MAX:
                    partial.maximum = max(numbers)
                else:
                    partial.total = sum_exactly(numbers)
            found.append(RolledCell(customer_id, external_id, group_values, bucket, partial))
        return found

    async def _usage_partials_on_postgresql(
        self,
        plan: UsagePlan,
        query: sa.Select[Any],
        series: list[sa.ColumnElement[Any]],
        varying: list[sa.ColumnElement[Any]],
        inner_quarters: list[int],
    ) -> list["RolledCell"]:
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
        rows = await self.session.execute(
            query.with_only_columns(
                bucket.label("bucket"),
                *series,
                sa.func.sum(stored.event_count).label("event_count"),
                sa.func.sum(stored.numbers).label("numbers"),
                sa.func.sum(stored.total).label("total"),
                sa.func.min(stored.minimum).label("minimum"),
                sa.func.max(stored.maximum).label("maximum"),
                *last,
            ).group_by(
                # Only what varies: PostgreSQL refuses a constant in GROUP BY.
                *(bucket for _ in inner_quarters[:1]),
                *varying,
            )
        )
        return [
            RolledCell.of(row, row.bucket, partial_of_row(row))
            for row in rows
            # Without GROUP BY, no rows still aggregate into one row of NULLs.
            if row.event_count is not None
        ]

    async def volume_counts(
        self, basis: str, quarters: range, event_name: str | None, include_deprecated: bool
    ) -> list[tuple[int, int]]:
        """(quarter, count) of the quarters in `quarters` that counted events: of every
        event name, or of `event_name`."""
        stored = volume_rollups.c
        counted = stored.event_count
        if not include_deprecated:
            counted = counted - stored.deprecated_count
        rows = await self.session.execute(
            self.readable(volume_rollups, stored.quarter, sa.func.sum(counted))
            .where(
                stored.basis == basis,
                stored.event_name == (event_name if event_name is not None else EVERY_EVENT_NAME),
                stored.quarter >= quarters.start,
                stored.quarter < quarters.stop,
            )
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

    def _volume_sums(self, sources: Sequence["VolumeSource"]) -> sa.Select[Any]:
        """Volume rollup rows adding up, per quarter and level, each source's weights over
        the events meeting its condition."""
        moments = sa.union_all(
            *(
                self.readable(
                    events,
                    sa.literal(basis, sa.String).label("basis"),
                    quarter_column(column, self.dialect_name).label("quarter"),
                    events.c.event_name,
                    _weight(counted).label("event_count"),
                    _weight(deprecated).label("deprecated_count"),
                ).where(condition)
                for basis, column in _BASES
                for condition, counted, deprecated in sources
            )
        ).subquery("moments")
        levels = sa.union_all(
            *(sa.select(sa.literal(by_name, sa.Integer).label("by_name")) for by_name in (0, 1))
        ).subquery("levels")
        event_name = sa.case(
            (levels.c.by_name == 1, moments.c.event_name),
            else_=sa.literal(EVERY_EVENT_NAME, sa.String),
        ).label("event_name")
        grouped = [moments.c.basis, event_name, moments.c.quarter]
        return (
            sa.select(
                *grouped,
                sa.literal(INGESTED, sa.BigInteger).label("part"),
                sa.func.sum(moments.c.event_count).label("event_count"),
                sa.func.sum(moments.c.deprecated_count).label("deprecated_count"),
            )
            .select_from(moments.join(levels, sa.true()))
            .group_by(*grouped)
        )

    async def _merge_meter_partials(
        self, rolled: Sequence[RolledMeter], conditions: list[sa.ColumnElement[bool]]
    ) -> None:
        """Write the partials of the events meeting `conditions` into the meters' rows,
        which the caller has deleted (a build, or a quarter's recomputation)."""
        if self.dialect_name == "postgresql":
            statements = [
                select for meter in rolled for select in self._postgres_partials(meter, conditions)
            ]
            await self.session.execute(
                self.merge_from_select(
                    meter_rollups,
                    sa.union_all(*statements) if len(statements) > 1 else statements[0],
                    _METER_ROLLUP_KEY,
                    _replaced,
                )
            )
            return
        partials = _Partials()
        for meter in rolled:
            await self._sqlite_partials(meter, conditions, partials)
        await self._store_partials(partials.by_key)

    async def _store_partials(self, partials: dict[RollupKey, Partial]) -> None:
        """Merge partials into their rows, in the INSERT … ON CONFLICT of each database:
        PostgreSQL adds `numeric`s, SQLite decimal text with db.sqlite_decimals."""
        if not partials:
            return
        ordered = sorted(partials)  # the lock order of the rows (see merge_from_select)
        rows = [_row_values(key, partials[key]) for key in ordered]
        if self.dialect_name == "postgresql":
            columns = zip(*rows, strict=True)
            await self.execute_text(
                _POSTGRES_MERGE, dict(zip(_MERGED_COLUMNS, columns, strict=True))
            )
            return
        document = orjson.dumps(
            rows, default=_sqlite_json, option=orjson.OPT_PASSTHROUGH_DATETIME
        ).decode()
        await self.execute_text(_SQLITE_MERGE, {"rows": document})

    def _scope(self, meter: RolledMeter, conditions: list[sa.ColumnElement[bool]]) -> Any:
        matching = [
            events.c.event_name == meter.event_name,
            events.c.counted_from.is_not(None),
            events.c.deprecated_at.is_(None),
        ]
        if meter.filter is not None:
            matching.append(meter.filter.to_sql(events.c.metadata, self.dialect_name))
        return [*matching, *conditions]

    def _postgres_partials(
        self, meter: RolledMeter, conditions: list[sa.ColumnElement[bool]]
    ) -> list[sa.Select[Any]]:
        """The meter's rows of the events meeting `conditions`: quarter rows (business-wide
        and per customer key) and hour rows (business-wide), as _Partials.add makes them."""
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
        # The same text as group_values_text, which PostgreSQL may space differently: the
        # same values in other text make rows of their own, which readers merge (U6).
        group_values: sa.ColumnElement[Any] = sa.literal(EVERY_GROUP, sa.Text)
        if meter.dimensions:
            group_values = sa.cast(
                sa.func.jsonb_build_array(
                    *(
                        document.op("->", return_type=JSONB)(sa.literal(key, sa.Text))
                        for key in meter.dimensions
                    )
                ),
                sa.Text,
            )
        quarter = quarter_column(events.c.timestamp, self.dialect_name)
        counted = (
            self.readable(
                events,
                quarter.label("quarter"),
                (quarter - quarter % HOUR_SPAN).label("hour"),
                group_values.label("group_values"),
                events.c.customer_id,
                events.c.external_customer_id,
                events.c.timestamp,
                events.c.sequence,
                sa.type_coerce(number, sa.Numeric).label("number"),
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
        aggregates = [
            sa.func.coalesce(c.group_values, EVERY_GROUP).label("group_values"),
            sa.func.count().label("event_count"),
            sa.func.count(c.number).label("numbers"),
            sa.func.coalesce(sa.func.sum(c.number), 0).label("total"),
            sa.func.min(c.number).label("minimum"),
            sa.func.max(c.number).label("maximum"),
            *last,
        ]
        quarter_rows = sa.select(
            sa.literal(meter.id, sa.String).label("meter_id"),
            sa.func.coalesce(c.customer_id, NO_CUSTOMER).label("customer_id"),
            sa.func.coalesce(c.external_customer_id, NO_CUSTOMER).label("external_customer_id"),
            sa.literal(QUARTER_SPAN, sa.SmallInteger).label("span"),
            c.quarter,
            *aggregates,
        ).group_by(
            sa.func.grouping_sets(
                *([sa.tuple_(c.quarter)] if meter.dimensions else []),
                sa.tuple_(c.quarter, c.group_values),
                sa.tuple_(c.quarter, c.group_values, c.customer_id, c.external_customer_id),
            )
        )
        hour_rows = sa.select(
            sa.literal(meter.id, sa.String).label("meter_id"),
            sa.literal(NO_CUSTOMER, sa.String).label("customer_id"),
            sa.literal(NO_CUSTOMER, sa.String).label("external_customer_id"),
            sa.literal(HOUR_SPAN, sa.SmallInteger).label("span"),
            c.hour.label("quarter"),
            *aggregates,
        ).group_by(
            sa.func.grouping_sets(
                *([sa.tuple_(c.hour)] if meter.dimensions else []),
                sa.tuple_(c.hour, c.group_values),
            )
        )
        return [quarter_rows, hour_rows]

    async def _sqlite_partials(
        self,
        meter: RolledMeter,
        conditions: list[sa.ColumnElement[bool]],
        partials: _Partials,
    ) -> None:
        statement = self.readable(
            events,
            events.c.sequence,
            events.c.timestamp,
            events.c.customer_id,
            events.c.external_customer_id,
            sa.cast(events.c.metadata, sa.Text).label("metadata"),
        ).where(*self._scope(meter, conditions))
        async with streamed_rows(self.session, statement) as rows:
            async for row in rows:
                partials.add(
                    meter,
                    row.sequence,
                    row.timestamp,
                    row.customer_id,
                    row.external_customer_id,
                    parse_json_exactly(row.metadata),
                )
