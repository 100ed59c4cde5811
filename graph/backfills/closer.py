"""The background task of each server process that closes backfills at their closeTime."""

import asyncio
import logging

from db.backfill_closer import close_due_backfills
from db.database import Database
from db.faults import describe_fault, is_database_unavailable
from db.rules.ingestion import utc_now
from db.settings import Settings

log = logging.getLogger(__name__)


async def run_backfill_closer(database: Database, settings: Settings) -> None:
    """Every BACKFILL_CLOSE_INTERVAL, reflect the backfills whose closeTime has come (B4).

    A failed pass is logged and the next one tries again: the closer outlives any fault
    but its cancellation at shutdown. A database outage is one warning when it begins and
    one line when it ends, not a traceback every interval.
    """
    interval = settings.backfill_close_interval.total_seconds()
    outage = False
    while True:
        try:
            await close_due_backfills(database, utc_now())
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not is_database_unavailable(error):
                log.exception("closing the backfills due failed; trying again in %s s", interval)
            elif not outage:
                log.warning(
                    "closing the backfills due: database unavailable (%s); trying again every %s s",
                    describe_fault(error),
                    interval,
                )
            outage = is_database_unavailable(error)
        else:
            if outage:
                log.info("closing the backfills due: the database answers again")
            outage = False
        await asyncio.sleep(interval)
