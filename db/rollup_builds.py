"""Building the rollups of meters made before rollups existed (migration 0004).

A migration must not import the service's decimal code, so it leaves such meters with
`rollups_built_at` NULL; they are answered from the raw events until this builds their
rollups, which `usage-events migrate` (and `serve`, which migrates first) does. Building a
meter twice is harmless: each build replaces its rows, under its business's lock.
"""

import sqlalchemy as sa

from db.database import Database
from db.repositories.rollups import RollupRepository
from db.rules.ingestion import utc_now
from db.tables import meters


async def build_pending_meter_rollups(database: Database) -> int:
    """Build every meter's rollups that are not built yet; returns how many were built."""
    async with database.session() as session:
        pending = (
            await session.execute(
                sa.select(meters.c.business_id, meters.c.id)
                .where(meters.c.rollups_built_at.is_(None))
                .order_by(meters.c.id)
            )
        ).all()
    for business_id, meter_id in pending:
        async with database.unit_of_work() as session:
            await RollupRepository(session, business_id).build_meter(meter_id, utc_now())
    return len(pending)
