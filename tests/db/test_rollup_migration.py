"""Migrations 0004 and 0005 on a database that already holds events and meters (both
databases).

Volume rollups are counted by the migration itself; meters made before rollups existed
are answered from the raw events until build_pending_meter_rollups builds theirs, and
answer the same afterwards, now from the rollups. Events stored before backfills existed
count from their ingestion (0005 sets counted_from), so nothing of them disappears.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command

from db.column_types import UTCDateTime
from db.database import Database
from db.migrate import alembic_config, upgrade_to_head
from db.repositories.usage import UsageRepository
from db.repositories.volume import VolumeRepository
from db.rollup_builds import build_pending_meter_rollups
from db.settings import Settings
from db.usage.query import Granularity, UsageQuery, VolumeQuery

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = datetime(2026, 1, 10, tzinfo=UTC)


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


async def seed_at_revision_0003(database: Database) -> None:
    """A business, a SUM meter and four events (one deprecated), as 0003's schema held them."""
    rows = [
        # (sequence, eventId, tokens, timestamp, deprecated)
        (1, "e1", "0.1", at(1), False),
        (2, "e2", "0.2", at(1.2), False),
        (3, "e3", "100", at(5), True),
        (4, "e4", "7", at(30), False),
    ]
    async with database.engine.begin() as connection:
        await connection.execute(
            sa.text("INSERT INTO businesses (id, name, created_at) VALUES ('bus_1', 'B', :now)"),
            {"now": DAY},
        )
        await connection.execute(
            sa.text(
                "INSERT INTO meters (id, business_id, name, event_name, aggregation_type, "
                "aggregation_key, created_at, updated_at) VALUES ('mtr_1', 'bus_1', 'tokens', "
                "'llm', 'SUM', 'tokens', :now, :now)"
            ),
            {"now": DAY},
        )
        for sequence, event_id, tokens, timestamp, deprecated in rows:
            await connection.execute(
                sa.text(
                    "INSERT INTO events (sequence, id, business_id, event_id, "
                    "external_customer_id, event_name, timestamp, metadata, ingested_at, "
                    "revision, deprecated_at) VALUES (:sequence, :id, 'bus_1', :event_id, "
                    "'acme', 'llm', :timestamp, :metadata, :timestamp, 1, :deprecated_at)"
                ).bindparams(
                    sa.bindparam("timestamp", type_=UTCDateTime()),
                    sa.bindparam("deprecated_at", type_=UTCDateTime()),
                ),
                {
                    "sequence": sequence,
                    "id": f"evt_{sequence}",
                    "event_id": event_id,
                    "timestamp": timestamp,
                    "metadata": f'{{"tokens": {tokens}}}',
                    "deprecated_at": timestamp if deprecated else None,
                },
            )


async def usage(database: Database) -> tuple[Decimal | None, list[Decimal | None]]:
    query = UsageQuery("mtr_1", DAY, DAY + timedelta(days=2), granularity=Granularity.DAY)
    async with database.session() as session:
        answer = await UsageRepository(session, "bus_1").meter_usage(query, Settings())
    [series] = answer.series
    return answer.total, [bucket.value for bucket in series.buckets]


async def test_0004_counts_volume_and_leaves_old_meters_to_be_built(
    empty_database_url: str,
) -> None:
    # Given a database at revision 0003 holding a meter and its events
    await asyncio.to_thread(command.upgrade, alembic_config(empty_database_url), "0003")
    database = Database.from_settings(Settings(database_url=empty_database_url))
    try:
        await seed_at_revision_0003(database)
        # When it is migrated to the newest schema
        await database.dispose()
        await asyncio.to_thread(upgrade_to_head, empty_database_url)
        # Then every stored event counts from its ingestion, as before backfills existed
        async with database.session() as session:
            uncounted = await session.scalar(
                sa.text(
                    "SELECT count(*) FROM events "
                    "WHERE counted_from IS NULL OR counted_from <> ingested_at"
                )
            )
            counted = await session.scalar(
                sa.text("SELECT count(*) FROM events WHERE counted_from IS NOT NULL")
            )
        assert (uncounted, counted) == (0, 4)
        # And the volume counts the stored events at once (the deprecated one apart)
        async with database.session() as session:
            volume = await VolumeRepository(session, "bus_1").event_volume(
                VolumeQuery(DAY, DAY + timedelta(days=2), granularity=Granularity.DAY),
                Settings(),
                DAY + timedelta(days=3),
            )
        assert [bucket.count for bucket in volume.buckets] == [2, 1]
        # And the old meter answers from the raw events, exactly
        expected = (Decimal("7.3"), [Decimal("0.3"), Decimal("7")])
        assert await usage(database) == expected
        # And once its rollups are built (usage-events migrate), the same from them
        assert await build_pending_meter_rollups(database) == 1
        assert await build_pending_meter_rollups(database) == 0
        async with database.session() as session:
            built = await session.scalar(sa.text("SELECT count(*) FROM meter_rollups"))
        assert built is not None
        assert built > 0
        assert await usage(database) == expected
    finally:
        await database.dispose()
