"""eventVolume (SPEC §15): how many events arrived per bucket, counted in SQL on both databases.

PostgreSQL numbers each event's bucket with width_bucket over the edges; SQLite, which has
no such function, joins the buckets (a JSON list of [start, end) pairs) to the events, one
index range per bucket. Either way only counts leave the database.
"""

from bisect import bisect_right
from datetime import datetime
from itertools import pairwise
from typing import Any

import orjson
import sqlalchemy as sa

from db.errors import BadUserInput, UserErrorCode
from db.records import CustomerRecord
from db.repositories.customers import CustomerRepository
from db.repositories.event_inserts import sqlite_timestamp
from db.repositories.event_listing import events_sent_by
from db.repositories.rollups import RollupRepository
from db.repositories.scoped import BusinessScopedRepository
from db.repositories.usage import bucket_number
from db.rollups import on_quarter_edge, quarter_of
from db.settings import Settings
from db.tables import events
from db.usage.plan import plan_volume
from db.usage.query import EventVolume, VolumeBasis, VolumeBucket, VolumeQuery


def _whole_quarters(edges: list[datetime]) -> list[int] | None:
    """The quarters of every edge, if all are on the quarter-hour grid (V1 widens the range
    to whole buckets, so its ends are edges too); None: the raw events are counted."""
    if not all(on_quarter_edge(edge) for edge in edges):
        return None
    return [quarter_of(edge) for edge in edges]


def _answer(edges: list[datetime], counts: dict[int, int]) -> EventVolume:
    buckets = [
        VolumeBucket(edges[index], edges[index + 1], counts.get(index, 0))
        for index in range(len(edges) - 1)
    ]
    return EventVolume(sum(bucket.count for bucket in buckets), buckets)


class VolumeRepository(BusinessScopedRepository):
    async def event_volume(
        self, query: VolumeQuery, settings: Settings, now: datetime
    ) -> EventVolume:
        """V1/V2; raises BadUserInput for the bounds of U7 that apply."""
        plan = plan_volume(query, settings, now)
        moment = (
            events.c.ingested_at
            if query.basis is VolumeBasis.INGESTION_TIME
            else events.c.timestamp
        )
        quarters = _whole_quarters(plan.edges)
        if quarters is not None and query.customer_id is None:
            counts = await self._counts_from_rollups(query, quarters)
            return _answer(plan.edges, counts)
        # What the events connection lists: a backfill's events once it is reflected (B3).
        conditions: list[sa.ColumnElement[bool]] = [events.c.counted_from.is_not(None)]
        if not query.include_deprecated:
            conditions.append(events.c.deprecated_at.is_(None))
        if query.event_name is not None:
            conditions.append(events.c.event_name == query.event_name)
        if query.customer_id is not None:
            customer = await self._customer(query.customer_id)
            conditions.append(sa.or_(*events_sent_by(customer)))
        if self.dialect_name == "postgresql":
            counts = await self._counts_on_postgresql(plan.edges, moment, conditions)
        else:
            counts = await self._counts_on_sqlite(plan.edges, moment, conditions)
        return _answer(plan.edges, counts)

    async def _counts_from_rollups(self, query: VolumeQuery, quarters: list[int]) -> dict[int, int]:
        """Counts per bucket from the volume rollups (edges on the quarter-hour grid)."""
        counted = await RollupRepository(self.session, self.business_id).volume_counts(
            "ingestion" if query.basis is VolumeBasis.INGESTION_TIME else "event",
            range(quarters[0], quarters[-1]),
            query.event_name,
            query.include_deprecated,
        )
        counts: dict[int, int] = {}
        for quarter, count in counted:
            bucket = bisect_right(quarters, quarter, 1, len(quarters) - 1) - 1
            counts[bucket] = counts.get(bucket, 0) + count
        return counts

    async def _customer(self, customer_id: str) -> CustomerRecord:
        """The customer whose events are counted (Q4: sent with its id or its externalId)."""
        customer = await CustomerRepository(self.session, self.business_id).get(customer_id)
        if customer is None:
            raise BadUserInput(
                UserErrorCode.CUSTOMER_NOT_FOUND,
                "Your business has no customer with this id.",
                ("customerId",),
            )
        return customer

    async def _counts_on_postgresql(
        self,
        edges: list[datetime],
        moment: sa.ColumnElement[Any],
        conditions: list[sa.ColumnElement[bool]],
    ) -> dict[int, int]:
        bucket = bucket_number(moment, edges)
        counted = (
            self.readable(events, bucket.label("bucket"))
            .where(moment >= edges[0], moment < edges[-1], *conditions)
            .subquery("counted")
        )
        rows = await self.session.execute(
            sa.select(counted.c.bucket, sa.func.count()).group_by(counted.c.bucket)
        )
        return {bucket_number: count for bucket_number, count in rows}

    async def _counts_on_sqlite(
        self,
        edges: list[datetime],
        moment: sa.ColumnElement[Any],
        conditions: list[sa.ColumnElement[bool]],
    ) -> dict[int, int]:
        # The text UTCDateTime stores on SQLite, which compares in time order.
        stored = [sqlite_timestamp(edge) for edge in edges]
        pairs = orjson.dumps(list(pairwise(stored))).decode()
        buckets = sa.func.json_each(pairs).table_valued("key", "value").alias("buckets")
        lower = buckets.c.value.op("->>", return_type=sa.Text)(0)
        upper = buckets.c.value.op("->>", return_type=sa.Text)(1)
        rows = await self.session.execute(
            self.readable(events, buckets.c.key, sa.func.count())
            .join(buckets, sa.and_(moment >= lower, moment < upper))
            .where(*conditions)
            .group_by(buckets.c.key)
        )
        return {int(key): count for key, count in rows}
