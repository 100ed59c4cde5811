"""Rollups stay exact under concurrent writers (db.repositories.rollups, "Races").

Ingestions into overlapping hours, amendments and deprecations of the same hours, a
backfill filled and closed over one of those hours (replacing its events), and a meter
created in the middle of it all run at once, each in a transaction of its own (on
PostgreSQL truly concurrently; SQLite lets one writer in at a time). Afterwards every
answer the rollups give equals the answer read from the raw events — asked with `asOf`
a moment from now, which the rollups never answer — and every event is counted once.
"""

import asyncio
import random
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest

from db.database import Database
from db.errors import RuleViolations
from db.records import EventDraft, MeterRecord
from db.repositories.backfills import BackfillRepository
from db.repositories.corrections import EventCorrectionRepository
from db.repositories.customers import CustomerRepository
from db.repositories.events import EventRepository
from db.repositories.meters import MeterRepository
from db.repositories.rollups import RollupRepository
from db.repositories.usage import UsageRepository
from db.repositories.volume import VolumeRepository
from db.rules.backfills import BackfillDraft
from db.rules.corrections import Amendment
from db.rules.meters import AggregationType, MeterDraft
from db.settings import Settings
from db.usage.query import Granularity, MeterUsage, UsageQuery, VolumeQuery
from tests.support import Tenant, now_utc

pytestmark = pytest.mark.asyncio(loop_scope="session")

WRITERS = 6
BATCHES = 5
BATCH_SIZE = 40
MODELS = ["small", "large", 1, 1.0, True]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url, ingest_past_window=timedelta(hours=4), correction_limit=0
    )


def metadata(rng: random.Random) -> dict[str, Any]:
    document: dict[str, Any] = {"tokens": rng.choice([1, 2, 0.5, 0.1, 7, 100])}
    if rng.random() < 0.8:
        document["model"] = rng.choice(MODELS)
    return document


async def test_concurrent_writes_keep_rollups_exact(
    database: Database, tenant: Tenant, settings: Settings
) -> None:
    business = tenant.business_id
    now = now_utc()
    async with database.unit_of_work() as session:
        customers = [
            await CustomerRepository(session, business).create(
                external_id=f"c{index}", name=None, email=None, now=now
            )
            for index in range(4)
        ]
        first = await MeterRepository(session, business).create(
            MeterDraft("tokens", "llm", AggregationType.SUM, "tokens", dimensions=("model",)),
            now,
        )
    ingested: list[str] = []
    meters: list[MeterRecord] = [first]

    async def ingest(writer: int) -> None:
        rng = random.Random(writer)
        for batch in range(BATCHES):
            drafts = []
            for index in range(BATCH_SIZE):
                customer = rng.choice(customers)
                sender: dict[str, Any] = (
                    {"customer_id": customer.id}
                    if rng.random() < 0.5
                    else {"external_customer_id": customer.external_id}
                )
                drafts.append(
                    EventDraft(
                        f"w{writer}-b{batch}-e{index}",
                        "llm",
                        # Spread over the last three hours: every writer meets every other
                        # in the same hours and quarters.
                        timestamp=now - timedelta(seconds=rng.randrange(3 * 3600)),
                        metadata=metadata(rng),
                        **sender,
                    )
                )
            async with database.unit_of_work() as session:
                await EventRepository(session, business).ingest(drafts, settings, now_utc())
            ingested.extend(draft.event_id for draft in drafts)
            await asyncio.sleep(0)

    async def correct(corrector: int) -> None:
        rng = random.Random(100 + corrector)
        for _ in range(BATCHES * 4):
            await asyncio.sleep(0)
            if not ingested:
                continue
            event_id = rng.choice(ingested)
            try:
                async with database.unit_of_work() as session:
                    corrections = EventCorrectionRepository(session, business)
                    if rng.random() < 0.7:
                        amendment = Amendment(event_id, "llm", metadata(rng), reason="fix")
                        await corrections.amend(amendment, settings, now_utc())
                    else:
                        await corrections.deprecate(event_id, None, settings, now_utc())
            except RuleViolations:
                pass  # deprecated meanwhile: refused as the service refuses it

    backfilled: list[str] = []

    async def backfill() -> None:
        # A backfill replacing an hour of the events being written and corrected, filled
        # and closed while they are.
        await asyncio.sleep(0.02)
        rng = random.Random(200)
        start = now - timedelta(hours=2)
        async with database.unit_of_work() as session:
            created = await BackfillRepository(session, business).create(
                BackfillDraft(start, start + timedelta(hours=1), replace_existing_events=True),
                settings,
                now_utc(),
            )
        for batch in range(3):
            drafts = [
                EventDraft(
                    f"backfill-b{batch}-e{index}",
                    "llm",
                    external_customer_id=rng.choice(customers).external_id,
                    timestamp=start + timedelta(seconds=rng.randrange(3600)),
                    metadata=metadata(rng),
                )
                for index in range(BATCH_SIZE)
            ]
            async with database.unit_of_work() as session:
                await EventRepository(session, business).ingest(
                    drafts, settings, now_utc(), backfill_id=created.id
                )
            backfilled.extend(draft.event_id for draft in drafts)
            await asyncio.sleep(0)
        async with database.unit_of_work() as session:
            await BackfillRepository(session, business).close(created.id, now_utc())

    async def create_meter() -> None:
        await asyncio.sleep(0.05)
        async with database.unit_of_work() as session:
            meters.append(
                await MeterRepository(session, business).create(
                    MeterDraft("largest", "llm", AggregationType.MAX, "tokens"), now_utc()
                )
            )

    # When all of them write at once
    await asyncio.gather(
        *(ingest(writer) for writer in range(WRITERS)),
        correct(0),
        correct(1),
        create_meter(),
        backfill(),
    )

    # Then every shape the rollups answer equals the raw events' answer
    start = (now - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
    end = now + timedelta(hours=1)
    later = now_utc() + timedelta(minutes=1)
    shapes: list[dict[str, Any]] = [
        {},
        {"granularity": Granularity.HOUR},
        {"granularity": Granularity.HOUR, "time_zone": "Asia/Kolkata"},
        {"granularity": Granularity.DAY, "group_by_customer": True},
        {"customer_ids": (customers[0].id,), "granularity": Granularity.HOUR},
    ]
    asked = 0
    with mock.patch.object(
        RollupRepository,
        "usage_partials",
        autospec=True,
        side_effect=RollupRepository.usage_partials,
    ) as read_rollups:
        for meter in meters:
            for shape in shapes:
                grouped = [{**shape, "group_by": ("model",)}] if meter.dimensions else []
                for fields in [shape, *grouped]:
                    query = UsageQuery(meter.id, start, end, **fields)
                    from_rollups = await usage(database, business, query, settings)
                    from_events = await usage(database, business, query, settings, as_of=later)
                    assert answered(from_rollups) == answered(from_events), fields
                    asked += 1
    # (asOf is always read from the events; every other question here from the rollups)
    assert read_rollups.call_count == asked == 15

    # And the volume counts every event once, the backfill's too, deprecated ones apart
    async with database.session() as session:
        volume = await VolumeRepository(session, business).event_volume(
            VolumeQuery(start, end, include_deprecated=True), settings, now_utc()
        )
    assert len(backfilled) == 3 * BATCH_SIZE
    assert volume.total == WRITERS * BATCHES * BATCH_SIZE + len(backfilled)


async def usage(
    database: Database,
    business: str,
    query: UsageQuery,
    settings: Settings,
    *,
    as_of: Any = None,
) -> MeterUsage:
    if as_of is not None:
        query = UsageQuery(
            query.meter_id,
            query.start,
            query.end,
            granularity=query.granularity,
            time_zone=query.time_zone,
            customer_ids=query.customer_ids,
            group_by=query.group_by,
            group_by_customer=query.group_by_customer,
            as_of=as_of,
        )
    async with database.session() as session:
        return await UsageRepository(session, business).meter_usage(query, settings)


def answered(answer: MeterUsage) -> Any:
    return (
        answer.total,
        answer.event_count,
        [
            (
                series.customer_id,
                series.external_customer_id,
                sorted(series.group_values.items(), key=repr),
                series.total,
                series.event_count,
                [(bucket.start, bucket.value, bucket.event_count) for bucket in series.buckets],
            )
            for series in answer.series
        ],
    )
