"""Closing backfills whose closeTime has come, without a request (SPEC §16, B4).

Every server process runs `close_due_backfills` every BACKFILL_CLOSE_INTERVAL (graph.app).
However many processes do, each backfill is reflected exactly once: the close reads the
backfill row locked and does nothing unless it is still PENDING — on PostgreSQL FOR UPDATE
SKIP LOCKED, so that a process finding a backfill being closed (or filled) by another
moves on rather than waits; on SQLite inside the write transaction, which one process
holds at a time. The search crosses businesses, so it lives here rather than in a
business's repository; each close runs in the backfill's own business scope.
"""

import logging
from datetime import datetime

import sqlalchemy as sa

from db.database import Database
from db.faults import is_database_unavailable, is_statement_timeout
from db.repositories.backfills import PENDING, BackfillRepository
from db.tables import backfills

log = logging.getLogger(__name__)

# Backfills closed per pass at most: a pass ends, and the next one goes on.
CLOSES_PER_PASS = 100


async def close_due_backfills(database: Database, now: datetime) -> int:
    """Reflect the PENDING backfills of every business whose closeTime has come by `now`;
    returns how many this call reflected."""
    async with database.session() as session:
        due = (
            await session.execute(
                sa.select(backfills.c.business_id, backfills.c.id)
                .where(backfills.c.status == PENDING, backfills.c.close_time <= now)
                .order_by(backfills.c.close_time, backfills.c.id)
                .limit(CLOSES_PER_PASS)
            )
        ).all()
    closed = 0
    failed: list[Exception] = []
    for business_id, backfill_id in due:
        # One close that fails (its statements past the long timeout, say) must not keep
        # the others of the pass, every pass, from closing: it is tried again next time.
        try:
            async with database.unit_of_work(long_running=True) as session:
                if await BackfillRepository(session, business_id).close_if_due(backfill_id, now):
                    closed += 1
                    log.info("backfill %s reflected at its closeTime", backfill_id)
        except Exception as error:
            if is_database_unavailable(error) and not is_statement_timeout(error):
                raise  # The database is away: the others would only wait for it too.
            failed.append(error)
    if failed:
        raise failed[0]  # The caller logs it (graph.backfills.closer) and tries again.
    return closed
