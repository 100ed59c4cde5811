"""Seeding: the schema by the real migrations, tenants by the real repositories, events in bulk.

Businesses, API keys, customers and meters go through the service's own repositories, so
they are exactly what the service would have made; every business, the write businesses
too, gets the meters of METER_DRAFTS, so ingestion is measured with the per-meter rollups
the service keeps up on every ingest. The events — a million of them — are written
straight into the real `events` and `event_revisions` tables in bulk (COPY on PostgreSQL,
executemany in big transactions on SQLite), one revision-1 row per event as ingestion
writes it. Since that bypasses the service, the service's own RollupRepository.rebuild_all
then recomputes the rollups of each business with events, and the tables are analyzed.
"""

import asyncio
import random
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg  # type: ignore[import-untyped]
import orjson

from bench.config import BenchConfig
from bench.databases import BenchDatabase
from bench.workload import (
    METER_DRAFTS,
    SeedCustomer,
    SeedEvent,
    customer_external_ids,
    generate_events,
)
from db import ids
from db.database import Database
from db.migrate import upgrade_to_head
from db.repositories.businesses import BusinessRepository
from db.repositories.customers import CustomerRepository
from db.repositories.meters import MeterRepository
from db.repositories.rollups import RollupRepository
from db.settings import Settings

# Businesses without seeded events, one per write scenario, so that writes never change
# what the read scenarios read.
WRITE_BUSINESSES = (
    "ingest",
    "ingest-floor",
    "concurrency-1",
    "concurrency-n",
    "soak",
    "backfill-ingest",
    "backfill-close",
)
SAMPLE_EVENT_IDS = 1000

EVENT_COLUMNS = [
    "sequence",
    "id",
    "business_id",
    "event_id",
    "customer_id",
    "external_customer_id",
    "event_name",
    "timestamp",
    "metadata",
    "ingested_at",
    "revision",
    "counted_from",
]
REVISION_COLUMNS = [
    "event_sequence",
    "revision",
    "event_name",
    "timestamp",
    "customer_id",
    "external_customer_id",
    "metadata",
    "created_at",
]


@dataclass
class SeededBusiness:
    name: str
    id: str
    api_key: str
    events: int = 0
    customers: list[SeedCustomer] = field(default_factory=list)
    meter_ids: list[str] = field(default_factory=list)
    sample_event_ids: list[str] = field(default_factory=list)
    # Customers in descending order of their event count, with that count.
    customer_sizes: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Seeded:
    businesses: dict[str, SeededBusiness]
    seconds: float
    now: datetime
    # Of `seconds`: RollupRepository.rebuild_all for the businesses with events.
    rollup_seconds: float = 0.0

    @property
    def main(self) -> SeededBusiness:
        return self.businesses["main"]

    @property
    def small(self) -> SeededBusiness:
        return self.businesses["small"]


async def _create_tenants(
    url: str, config: BenchConfig, now: datetime
) -> dict[str, SeededBusiness]:
    database = Database.from_settings(Settings(database_url=url))
    created: dict[str, SeededBusiness] = {}
    try:
        async with database.unit_of_work() as session:
            businesses = BusinessRepository(session)
            plan = [("main", config.customers), ("small", config.small_customers)]
            plan += [(name, 0) for name in WRITE_BUSINESSES]
            for name, customer_count in plan:
                business = await businesses.create(f"bench {name}")
                _key, secret = await businesses.create_api_key(business.id)
                seeded = SeededBusiness(name, business.id, secret)
                repository = CustomerRepository(session, business.id)
                for index, external_id in enumerate(
                    customer_external_ids(customer_count, f"{name}-cust")
                ):
                    customer = await repository.create(
                        external_id=external_id,
                        name=f"Customer {index:05d}",
                        email=f"billing+{index}@example.com",
                        now=now,
                    )
                    seeded.customers.append(SeedCustomer(customer.id, customer.external_id))
                meters = MeterRepository(session, business.id)
                for draft in METER_DRAFTS:
                    seeded.meter_ids.append((await meters.create(draft, now)).id)
                created[name] = seeded
    finally:
        await database.dispose()
    return created


def _count_customers(
    business: SeededBusiness, chunk: list[SeedEvent], counts: dict[str, int]
) -> None:
    by_external = {c.external_id: c.id for c in business.customers if c.external_id}
    for event in chunk:
        customer = event.customer_id or by_external.get(event.external_customer_id or "")
        if customer is not None:
            counts[customer] = counts.get(customer, 0) + 1


def _sample(chunk: list[SeedEvent], every: int, start_index: int) -> list[str]:
    return [
        event.event_id
        for index, event in enumerate(chunk, start=start_index)
        if index % every == every // 2
    ]


async def _seed_postgres(
    dsn: str, plan: list[tuple[SeededBusiness, Iterable[list[SeedEvent]]]]
) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        sequence = 0
        for business, chunks in plan:
            every = max(1, business.events // SAMPLE_EVENT_IDS)
            counts: dict[str, int] = {}
            done = 0
            for chunk in chunks:
                server_ids = ids.new_ids(ids.EVENT_PREFIX, len(chunk))
                event_rows = []
                revision_rows = []
                for event, server_id in zip(chunk, server_ids, strict=True):
                    sequence += 1
                    metadata = orjson.dumps(event.metadata).decode()
                    event_rows.append(
                        (
                            sequence,
                            server_id,
                            business.id,
                            event.event_id,
                            event.customer_id,
                            event.external_customer_id,
                            event.event_name,
                            event.timestamp,
                            metadata,
                            event.ingested_at,
                            1,
                            event.ingested_at,
                        )
                    )
                    revision_rows.append(
                        (
                            sequence,
                            1,
                            event.event_name,
                            event.timestamp,
                            event.customer_id,
                            event.external_customer_id,
                            metadata,
                            event.ingested_at,
                        )
                    )
                async with connection.transaction():
                    await connection.copy_records_to_table(
                        "events", records=event_rows, columns=EVENT_COLUMNS
                    )
                    await connection.copy_records_to_table(
                        "event_revisions", records=revision_rows, columns=REVISION_COLUMNS
                    )
                business.sample_event_ids += _sample(chunk, every, done)
                _count_customers(business, chunk, counts)
                done += len(chunk)
            business.customer_sizes = sorted(counts.items(), key=lambda item: -item[1])
        await connection.execute(
            "SELECT setval('events_sequence_seq', (SELECT max(sequence) FROM events))"
        )
        # A steady-state database has been vacuumed and analyzed by autovacuum; a freshly
        # loaded one has neither visibility map nor statistics (the rollup rebuild that
        # follows reads the events with them).
        await connection.execute("VACUUM (ANALYZE) events")
        await connection.execute("VACUUM (ANALYZE) event_revisions")
    finally:
        await connection.close()


async def _finish_postgres(dsn: str) -> None:
    """After the rollup rebuild: every table vacuumed and analyzed, the rollups too."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("VACUUM (ANALYZE)")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


def _sqlite_text(moment: datetime) -> str:
    """What db.column_types.UTCDateTime stores on SQLite: naive UTC, fixed width."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _seed_sqlite(path: str, plan: list[tuple[SeededBusiness, Iterable[list[SeedEvent]]]]) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-262144")
        insert_event = (
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        )
        insert_revision = (
            f"INSERT INTO event_revisions ({', '.join(REVISION_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(REVISION_COLUMNS))})"
        )
        (start,) = connection.execute("SELECT coalesce(max(sequence), 0) FROM events").fetchone()
        sequence = start
        for business, chunks in plan:
            every = max(1, business.events // SAMPLE_EVENT_IDS)
            counts: dict[str, int] = {}
            done = 0
            for chunk in chunks:
                server_ids = ids.new_ids(ids.EVENT_PREFIX, len(chunk))
                event_rows = []
                revision_rows = []
                for event, server_id in zip(chunk, server_ids, strict=True):
                    sequence += 1
                    metadata = orjson.dumps(event.metadata).decode()
                    timestamp = _sqlite_text(event.timestamp)
                    ingested_at = _sqlite_text(event.ingested_at)
                    event_rows.append(
                        (
                            sequence,
                            server_id,
                            business.id,
                            event.event_id,
                            event.customer_id,
                            event.external_customer_id,
                            event.event_name,
                            timestamp,
                            metadata,
                            ingested_at,
                            1,
                            ingested_at,
                        )
                    )
                    revision_rows.append(
                        (
                            sequence,
                            1,
                            event.event_name,
                            timestamp,
                            event.customer_id,
                            event.external_customer_id,
                            metadata,
                            ingested_at,
                        )
                    )
                connection.execute("BEGIN")
                connection.executemany(insert_event, event_rows)
                connection.executemany(insert_revision, revision_rows)
                connection.execute("COMMIT")
                business.sample_event_ids += _sample(chunk, every, done)
                _count_customers(business, chunk, counts)
                done += len(chunk)
            business.customer_sizes = sorted(counts.items(), key=lambda item: -item[1])
        connection.execute("ANALYZE")
    finally:
        connection.close()


def _finish_sqlite(path: str) -> None:
    """After the rollup rebuild: statistics of every table, the rollups too."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("ANALYZE")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


async def _rebuild_rollups(url: str, businesses: list[SeededBusiness]) -> None:
    """The rollups of each business, recomputed by the service from its bulk-written events."""
    # Seeding, like migrating, is not bound by the statement timeout of requests.
    database = Database.from_settings(Settings(database_url=url), maintenance=True)
    try:
        for business in businesses:
            async with database.unit_of_work() as session:
                await RollupRepository(session, business.id).rebuild_all(datetime.now(UTC))
    finally:
        await database.dispose()


def seed(database: BenchDatabase, config: BenchConfig, rng: random.Random) -> Seeded:
    started = time.perf_counter()
    now = datetime.now(UTC)
    upgrade_to_head(database.url)
    businesses = asyncio.run(_create_tenants(database.url, config, now))
    plan: list[tuple[SeededBusiness, Iterable[list[SeedEvent]]]] = []
    for name, count in (("main", config.events), ("small", config.small_events)):
        business = businesses[name]
        business.events = count
        plan.append(
            (
                business,
                generate_events(
                    count, business.customers, rng=rng, now=now, event_id_prefix=f"seed-{name}"
                ),
            )
        )
    if database.kind == "postgresql":
        assert database.postgres_dsn is not None
        asyncio.run(_seed_postgres(database.postgres_dsn, plan))
    else:
        assert database.sqlite_path is not None
        _seed_sqlite(str(database.sqlite_path), plan)
    rollups_started = time.perf_counter()
    asyncio.run(_rebuild_rollups(database.url, [business for business, _ in plan]))
    rollup_seconds = time.perf_counter() - rollups_started
    if database.kind == "postgresql":
        assert database.postgres_dsn is not None
        asyncio.run(_finish_postgres(database.postgres_dsn))
    else:
        assert database.sqlite_path is not None
        _finish_sqlite(str(database.sqlite_path))
    return Seeded(businesses, time.perf_counter() - started, now, rollup_seconds)
