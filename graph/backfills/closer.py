"""The background task of each server process that closes backfills at their closeTime."""

import asyncio
import logging

from db.backfill_closer import close_due_backfills
from db.database import Database
from db.rules.ingestion import utc_now
from db.settings import Settings

log = logging.getLogger(__name__)


async def run_backfill_closer(database: Database, settings: Settings) -> None:
    """Every BACKFILL_CLOSE_INTERVAL, reflect the backfills whose closeTime has come (B4).

    A failed pass (the database away for a moment) is logged and the next one tries
    again: the closer outlives any fault but its cancellation at shutdown.
    """
    interval = settings.backfill_close_interval.total_seconds()
    while True:
        try:
            await close_due_backfills(database, utc_now())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("closing the backfills due failed; trying again in %s s", interval)
        await asyncio.sleep(interval)
