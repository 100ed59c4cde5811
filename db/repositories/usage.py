"""meterUsage (SPEC §14): from the rollups where they can answer, else from the raw events.

Both databases select the events in scope in SQL (U1: the meter's event name and filter,
the query's filter, customers, time range, visibility as of asOf) and never load another.
PostgreSQL then aggregates in SQL: `numeric` from the jsonb number, bucket numbers by
width_bucket over the edges, every cell, series total and grand total in one GROUPING SETS
statement (U4). SQLite has no decimal type and reads JSON floats as REAL, so it sends the
JSON text of the aggregated value of each event in scope, and Python adds it up exactly
while the rows stream, placing each event in its bucket by bisection.

`_cells` picks the source: the rollups (db.repositories.rollups) answer the shapes
rollup_span allows — whole quarter-hours and hours from them, the clipped minutes at both
ends from the events — and the others (asOf, an ad-hoc filter, groupBy beyond the meter's
dimensions, UNIQUE_COUNT, MINUTE) read the raw events as above.
"""

import dataclasses
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP, aggregate_order_by

from db.database import streamed_rows
from db.errors import BadUserInput, UserErrorCode
from db.filters import Filter, sqlite_key_path
from db.repositories.customers import CustomerRepository
from db.repositories.meters import MeterRepository
from db.repositories.rollups import RollupRepository
from db.repositories.scoped import BusinessScopedRepository
from db.rollups import first_whole_quarter, inner_quarters, quarter_of, quarter_start
from db.rules.meters import AggregationType
from db.settings import Settings
from db.tables import backfill_replacements, backfills, customers, event_revisions, events
from db.usage.buckets import bucket_index
from db.usage.cells import Cell, Partial, SeriesCells, UsageCells, assemble
from db.usage.decimals import average, parse_json_exactly
from db.usage.plan import UsagePlan, check_usage_query
from db.usage.query import (
    Granularity,
    GroupKey,
    MeterUsage,
    SeriesKey,
    UsageQuery,
    group_key,
)


def bucket_number(moment: sa.ColumnElement[Any], edges: list[datetime]) -> sa.ColumnElement[Any]:
    """PostgreSQL: the index of the bucket [edges[i], edges[i+1]) holding `moment`, for a
    moment inside [edges[0], edges[-1]) (width_bucket over the inner edges)."""
    inner = edges[1:-1]
    if not inner:
        return sa.literal(0, sa.Integer)
    return sa.func.width_bucket(
        moment,
        sa.bindparam("bucket_edges", inner, type_=ARRAY(TIMESTAMP(timezone=True))),
        type_=sa.Integer,
    )


class UsageRepository(BusinessScopedRepository):
    async def meter_usage(self, query: UsageQuery, settings: Settings) -> MeterUsage:
        """U1–U8; raises BadUserInput for every bound of U7, before any expensive work."""
        checked = check_usage_query(query, settings)
        meter = await MeterRepository(self.session, self.business_id).get(query.meter_id)
        if meter is None:
            raise BadUserInput(
                UserErrorCode.METER_NOT_FOUND,
                "Your business has no meter with this id.",
                ("meterId",),
            )
        customer_ids, external_ids = await self._customer_scope(query)
        plan = UsagePlan(
            meter=meter,
            start=query.start,
            end=query.end,
            granularity=query.granularity,
            time_zone=query.time_zone,
            edges=checked.edges,
            filters=tuple(
                each
                for each in (
                    Filter.from_document(meter.filter) if meter.filter is not None else None,
                    checked.filter,
                )
                if each is not None
            ),
            customer_ids=customer_ids,
            external_customer_ids=external_ids,
            group_by=query.group_by,
            group_by_customer=query.group_by_customer,
            as_of=query.as_of,
            has_query_filter=checked.filter is not None,
        )
        cells = await self._cells(plan, settings)
        answer = assemble(plan, cells)
        named = {series.customer_id for series in answer.series if series.customer_id is not None}
        found = await CustomerRepository(self.session, self.business_id).by_ids(named)
        usage: MeterUsage = dataclasses.replace(answer, customers=found)
        return usage

    async def _customer_scope(
        self, query: UsageQuery
    ) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
        """U1: the customer ids named, and the externalCustomerIds that match (theirs and
        those given); raises CUSTOMER_NOT_FOUND for an id that is not this business's."""
        if query.customer_ids is None and query.external_customer_ids is None:
            return None, None
        external_ids = list(query.external_customer_ids or ())
        customer_ids = tuple(query.customer_ids or ())
        if customer_ids:
            found = await CustomerRepository(self.session, self.business_id).by_ids(customer_ids)
            for index, customer_id in enumerate(customer_ids):
                customer = found.get(customer_id)
                if customer is None:
                    raise BadUserInput(
                        UserErrorCode.CUSTOMER_NOT_FOUND,
                        "Your business has no customer with this id.",
                        ("customerIds", str(index)),
                    )
                if customer.external_id is not None:
                    external_ids.append(customer.external_id)
        return customer_ids, tuple(dict.fromkeys(external_ids))

    async def _cells(self, plan: UsagePlan, settings: Settings) -> UsageCells:
        """From the rollups where they can answer, else from the raw events."""
        limit = _SeriesLimit(plan, settings)
        span = rollup_span(plan)
        if span is not None:
            return await self._cells_from_rollups(plan, limit, *span)
        if self.dialect_name == "postgresql":
            return await self._cells_on_postgresql(plan, limit)
        return await self._cells_on_sqlite(plan, limit)

    def _visibility(self, as_of: datetime | None) -> list[sa.ColumnElement[bool]]:
        """U1/U8: which events count at `as_of` (now when None); its twin in Python is
        db.usage.reference.visible_body. An event counts from its ingestion or its
        backfill's reflection (counted_from) until it is deprecated — and not while a
        backfill's close had it replaced, until that backfill was reverted."""
        if as_of is None:
            return [events.c.counted_from.is_not(None), events.c.deprecated_at.is_(None)]
        undone = (
            self.readable(backfill_replacements, backfill_replacements.c.event_sequence)
            .join(backfills, backfills.c.id == backfill_replacements.c.backfill_id)
            .where(
                backfill_replacements.c.event_sequence == events.c.sequence,
                backfills.c.reflected_at <= as_of,
                backfills.c.reverted_at > as_of,
            )
        )
        return [
            events.c.counted_from <= as_of,
            sa.or_(events.c.deprecated_at.is_(None), events.c.deprecated_at > as_of),
            ~undone.exists(),
        ]

    async def _cells_from_rollups(
        self, plan: UsagePlan, limit: "_SeriesLimit", quarters: range, inner: list[int]
    ) -> UsageCells:
        """Whole quarter-hours from the rollups; the slices of the range before the first
        and after the last whole quarter (at most 15 minutes each) from the raw events."""
        found: dict[SeriesKey, dict[int, Partial]] = {}

        def partial_at(key: SeriesKey, bucket: int) -> Partial:
            series = found.get(key)
            if series is None:
                series = found[key] = {}
                limit.check(len(found))
            partial = series.get(bucket)
            if partial is None:
                partial = series[bucket] = Partial()
            return partial

        # groupBy is a subset of the meter's dimensions: where each key sits among them.
        positions = [plan.meter.dimensions.index(key) for key in plan.group_by]
        rollups = RollupRepository(self.session, self.business_id)
        for cell in await rollups.usage_partials(plan, quarters, inner):
            values: GroupKey = ()
            if cell.group_values is not None:
                stored = parse_json_exactly(cell.group_values)
                values = group_key(stored[position] for position in positions)
            key = (cell.customer_id, cell.external_customer_id, values)
            partial_at(key, cell.bucket).merge(cell.partial)
        slices = [
            (start, end)
            for start, end in (
                (plan.start, quarter_start(quarters.start)),
                (quarter_start(quarters.stop), plan.end),
            )
            if start < end
        ]
        # One statement per slice: a time range each, which the planners read as an index
        # range (two ranges ORed are not, and would read every event of the name).
        for each in slices:
            scope, metadata = self._scope(plan, each)
            statement = scope.with_only_columns(
                events.c.timestamp,
                events.c.sequence,
                *self._owner_columns(plan),
                sa.cast(metadata, sa.Text).label("metadata"),
            )
            async with streamed_rows(self.session, statement) as rows:
                async for row in rows:
                    document = parse_json_exactly(row.metadata)
                    key = (
                        row.customer_id,
                        row.external_customer_id,
                        group_key(document.get(name) for name in plan.group_by),
                    )
                    member = document.get(plan.key) if plan.key is not None else None
                    partial_at(key, bucket_index(plan.edges, row.timestamp)).add(
                        row.timestamp, row.sequence, member
                    )
        cells = UsageCells()
        grand = Partial()
        for key, buckets in found.items():
            total = Partial()
            for partial in buckets.values():
                total.merge(partial)
            grand.merge(total)
            cells.series[key] = SeriesCells(
                {index: partial.cell(plan.aggregation) for index, partial in buckets.items()},
                total.cell(plan.aggregation),
            )
        cells.total = grand.cell(plan.aggregation)
        return cells

    def _scope(
        self, plan: UsagePlan, time_range: tuple[datetime, datetime] | None = None
    ) -> tuple[sa.Select[Any], sa.ColumnElement[Any]]:
        """The events in scope (U1) and the column of the metadata they count with;
        `time_range` narrows [from, to) to a slice of it."""
        start, end = time_range or (plan.edges[0], plan.edges[-1])
        query = self.readable(events)
        name: sa.ColumnElement[Any] = events.c.event_name
        metadata: sa.ColumnElement[Any] = events.c.metadata
        if plan.as_of is not None:
            # U8: each event with the latest of its revisions made by asOf.
            latest = (
                self.readable(
                    event_revisions,
                    event_revisions.c.event_sequence,
                    sa.func.max(event_revisions.c.revision).label("revision"),
                )
                .where(
                    event_revisions.c.created_at <= plan.as_of,
                    events.c.ingested_at <= plan.as_of,
                    events.c.timestamp >= start,
                    events.c.timestamp < end,
                )
                .group_by(event_revisions.c.event_sequence)
                .subquery("latest")
            )
            body = event_revisions.alias("body")
            query = query.join(latest, latest.c.event_sequence == events.c.sequence).join(
                body,
                sa.and_(
                    body.c.event_sequence == latest.c.event_sequence,
                    body.c.revision == latest.c.revision,
                ),
            )
            name, metadata = body.c.event_name, body.c.metadata
        conditions = [
            *self._visibility(plan.as_of),
            events.c.timestamp >= start,
            events.c.timestamp < end,
            name == plan.meter.event_name,
            *(each.to_sql(metadata, self.dialect_name) for each in plan.filters),
        ]
        if plan.narrowed_to_customers:
            alternatives = []
            if plan.customer_ids:
                alternatives.append(self.one_of(events.c.customer_id, plan.customer_ids))
            if plan.external_customer_ids:
                alternatives.append(
                    self.one_of(events.c.external_customer_id, plan.external_customer_ids)
                )
            conditions.append(sa.or_(*alternatives) if alternatives else sa.false())
        if plan.group_by_customer:
            # U6: an externalCustomerId event is its customer's — under asOf, a customer's
            # that existed then; otherwise a series of its own.
            owner = [
                self.owns(customers),
                customers.c.external_id == events.c.external_customer_id,
            ]
            if plan.as_of is not None:
                owner.append(customers.c.created_at <= plan.as_of)
            query = query.outerjoin(customers, sa.and_(*owner))
        return query.where(*conditions), metadata

    @staticmethod
    def _owner_columns(plan: UsagePlan) -> list[sa.ColumnElement[Any]]:
        if not plan.group_by_customer:
            return [sa.null().label("customer_id"), sa.null().label("external_customer_id")]
        return [
            sa.func.coalesce(events.c.customer_id, customers.c.id).label("customer_id"),
            sa.case(
                (
                    sa.and_(events.c.customer_id.is_(None), customers.c.id.is_(None)),
                    events.c.external_customer_id,
                ),
                else_=sa.null(),
            ).label("external_customer_id"),
        ]

    async def _cells_on_postgresql(self, plan: UsagePlan, limit: "_SeriesLimit") -> UsageCells:
        scope, metadata = self._scope(plan)
        document = sa.type_coerce(metadata, JSONB)

        def member(key: str) -> sa.ColumnElement[Any]:
            return document.op("->", return_type=JSONB)(sa.literal(key, sa.Text))

        bucket = bucket_number(events.c.timestamp, plan.edges)
        columns: list[sa.ColumnElement[Any]] = [
            bucket.label("bucket"),
            events.c.timestamp.label("timestamp"),
            events.c.sequence.label("sequence"),
            *self._owner_columns(plan),
            *(member(key).label(f"group_{index}") for index, key in enumerate(plan.group_by)),
        ]
        if plan.key is not None:
            value = member(plan.key)
            kind = sa.func.jsonb_typeof(value)
            number = sa.cast(
                document.op("->>", return_type=sa.Text)(sa.literal(plan.key, sa.Text)), sa.Numeric
            )
            columns += [
                sa.case((kind == "number", number), else_=sa.null()).label("number"),
                sa.case((kind.in_(["string", "number", "boolean"]), value), else_=sa.null()).label(
                    "distinct_member"
                ),
            ]
        counted = scope.with_only_columns(*columns).subquery("counted")

        series_columns = [counted.c.customer_id, counted.c.external_customer_id] * int(
            plan.group_by_customer
        ) + [counted.c[f"group_{index}"] for index in range(len(plan.group_by))]
        grouping_sets = (
            [
                sa.tuple_(*series_columns, counted.c.bucket),
                sa.tuple_(*series_columns),
                sa.text("()"),
            ]
            if series_columns
            else [sa.tuple_(counted.c.bucket), sa.text("()")]
        )
        level = sa.func.grouping(*series_columns[:1], counted.c.bucket)
        statement = sa.select(
            level.label("level"),
            counted.c.bucket,
            *(
                sa.cast(column, sa.Text).label(column.name)
                if column.name.startswith("group_")
                else column
                for column in series_columns
            ),
            sa.func.count().label("event_count"),
            *_postgres_aggregates(plan.aggregation, counted),
        ).group_by(sa.func.grouping_sets(*grouping_sets))

        cells = UsageCells()
        async with streamed_rows(self.session, statement) as rows:
            async for row in rows:
                cell = Cell(_postgres_value(plan.aggregation, row), row.event_count)
                if row.level == (3 if series_columns else 1):
                    cells.total = cell
                    continue
                key = _series_key(plan, row)
                series = cells.series.get(key)
                if series is None:
                    series = cells.series[key] = SeriesCells()
                    limit.check(len(cells.series))
                if row.level == 0:
                    series.buckets[row.bucket] = cell
                else:
                    series.total = cell
        if not series_columns:
            # One series: its total is the grand total, which no other grouping set repeats.
            for series in cells.series.values():
                series.total = cells.total
        return cells

    async def _cells_on_sqlite(self, plan: UsagePlan, limit: "_SeriesLimit") -> UsageCells:
        scope, metadata = self._scope(plan)
        keys = [*plan.group_by, *([plan.key] if plan.key is not None else [])]
        # One column per entry of `keys`, even when the aggregated key is also a groupBy
        # key: the members are read back by position.
        paths = [sqlite_key_path(key) for key in keys]
        whole_document = None in paths
        columns: list[sa.ColumnElement[Any]] = [
            events.c.timestamp.label("timestamp"),
            events.c.sequence.label("sequence"),
            *self._owner_columns(plan),
        ]
        if whole_document:
            # A key no SQLite path finds exactly: the document's text, read in Python.
            columns.append(sa.cast(metadata, sa.Text).label("document"))
        else:
            columns += [
                metadata.op("->", return_type=sa.Text)(sa.literal(path, sa.Text)).label(
                    f"member_{index}"
                )
                for index, path in enumerate(paths)
            ]
        cells = UsageCells()
        aggregation = plan.aggregation
        distinct = aggregation is AggregationType.UNIQUE_COUNT
        accumulators: dict[SeriesKey, tuple[dict[int, Partial], Partial]] = {}
        grand = Partial(with_distinct=distinct)
        async with streamed_rows(self.session, scope.with_only_columns(*columns)) as rows:
            async for row in rows:
                if whole_document:
                    document = parse_json_exactly(row.document)
                    members = [document.get(key) for key in keys]
                else:
                    members = [
                        None if text is None else parse_json_exactly(text)
                        for text in row[len(columns) - len(keys) :]
                    ]
                values = group_key(members[: len(plan.group_by)])
                key: SeriesKey = (row.customer_id, row.external_customer_id, values)
                entry = accumulators.get(key)
                if entry is None:
                    entry = accumulators[key] = ({}, Partial(with_distinct=distinct))
                    limit.check(len(accumulators))
                index = bucket_index(plan.edges, row.timestamp)
                bucket = entry[0].get(index)
                if bucket is None:
                    bucket = entry[0][index] = Partial(with_distinct=distinct)
                member = members[-1] if plan.key is not None else None
                for accumulator in (bucket, entry[1], grand):
                    accumulator.add(row.timestamp, row.sequence, member)
        for key, (buckets, total) in accumulators.items():
            cells.series[key] = SeriesCells(
                {index: partial.cell(aggregation) for index, partial in buckets.items()},
                total.cell(aggregation),
            )
        cells.total = grand.cell(aggregation)
        return cells


def rollup_span(plan: UsagePlan) -> tuple[range, list[int]] | None:
    """The whole quarter-hours of the range and the quarters at which buckets 1… start, if
    the rollups can answer `plan`; None for the shapes read from the raw events: asOf (the
    rollups know only the present), an ad-hoc filter, groupBy beyond the meter's
    dimensions (the rollups are per meter, customer and dimension values), UNIQUE_COUNT
    (distinct members do not merge), MINUTE buckets, edges off the quarter-hour grid, and
    ranges without a whole quarter-hour."""
    if (
        plan.meter.rollups_built_at is None
        or plan.as_of is not None
        or plan.has_query_filter
        or not set(plan.group_by) <= set(plan.meter.dimensions)
        or plan.aggregation is AggregationType.UNIQUE_COUNT
        or plan.granularity is Granularity.MINUTE
    ):
        return None
    inner = inner_quarters(plan.edges)
    first, stop = first_whole_quarter(plan.start), quarter_of(plan.end)
    if inner is None or first >= stop:
        return None
    return range(first, stop), inner


class _SeriesLimit:
    """U7: at most MAX_USAGE_POINTS buckets × series; checked while the series appear."""

    def __init__(self, plan: UsagePlan, settings: Settings) -> None:
        self.buckets = len(plan.edges) - 1
        self.maximum = settings.max_usage_points
        self.field = ("groupBy",) if plan.group_by else ("groupByCustomer",)

    def check(self, series: int) -> None:
        if series * self.buckets > self.maximum:
            raise BadUserInput(
                UserErrorCode.USAGE_RESULT_TOO_LARGE,
                f"The answer would hold more than {self.maximum} buckets × series "
                f"({self.buckets} buckets, more than {series - 1} series); group by fewer "
                "keys, narrow the query, or ask for fewer buckets.",
                self.field,
            )


def _postgres_aggregates(
    aggregation: AggregationType, counted: sa.Subquery
) -> list[sa.ColumnElement[Any]]:
    if aggregation is AggregationType.COUNT:
        return []
    number = counted.c.number
    if aggregation is AggregationType.UNIQUE_COUNT:
        # jsonb equality is M4's: by type first, numbers by value (1 = 1.0, "1" ≠ 1).
        return [sa.func.count(sa.distinct(counted.c.distinct_member)).label("value")]
    if aggregation in (AggregationType.SUM, AggregationType.AVG):
        return [sa.func.sum(number).label("value"), sa.func.count(number).label("numbers")]
    if aggregation is AggregationType.MIN:
        return [sa.func.min(number).label("value")]
    if aggregation is AggregationType.MAX:
        return [sa.func.max(number).label("value")]
    latest_first = sa.func.array_agg(
        aggregate_order_by(number, counted.c.timestamp.desc(), counted.c.sequence.desc())
    ).filter(number.is_not(None))
    return [sa.type_coerce(latest_first, ARRAY(sa.Numeric))[1].label("value")]


def _postgres_value(aggregation: AggregationType, row: Any) -> Decimal | None:
    if aggregation is AggregationType.COUNT:
        return Decimal(row.event_count)
    if aggregation is AggregationType.UNIQUE_COUNT:
        return Decimal(row.value)
    if aggregation is AggregationType.SUM:
        return row.value if row.value is not None else Decimal(0)
    if aggregation is AggregationType.AVG:
        return average(row.value, row.numbers) if row.numbers else None
    value: Decimal | None = row.value
    return value


def _series_key(plan: UsagePlan, row: Any) -> SeriesKey:
    values = group_key(
        None if text is None else parse_json_exactly(text)
        for text in (row._mapping[f"group_{index}"] for index in range(len(plan.group_by)))
    )
    if not plan.group_by_customer:
        return (None, None, values)
    return (row.customer_id, row.external_customer_id, values)
