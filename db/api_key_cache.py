"""The businesses of API keys this process has checked, kept while every change reaches it.

Looking a key up costs a request a database round trip (three, with its transaction) and
most of the CPU of a small query. On PostgreSQL each server process therefore keeps the
business of every live key it has seen, and forgets them all whenever a key or a business
changes: migration 0007's trigger notifies the channel CHANNEL when a statement updating,
deleting or truncating `api_keys` or `businesses` commits, and `listen_for_key_changes`
holds a connection of its own that LISTENs to it. A revocation so reaches every process
as it commits, whatever revoked the key.

What the cache may not do is outlive its news. It is trusted only while the listening
connection has lately answered: a heartbeat every HEARTBEAT_SECONDS, which also flushes
notifications sent before it (PostgreSQL delivers them in order, ahead of the answer).
A connection that breaks, or does not answer within HEARTBEAT_TIMEOUT_SECONDS, empties the
cache and stops its use until a new connection is listening; so a revocation is missed
for at most HEARTBEAT_SECONDS + HEARTBEAT_TIMEOUT_SECONDS, and only while PostgreSQL is
out of reach of this process (when every query it runs fails anyway). SQLite has no
notifications: there the cache is never trusted and every key is looked up.
"""

import asyncio
import logging
import time

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa

from db.records import BusinessRecord

logger = logging.getLogger(__name__)

CHANNEL = "usage_events_api_keys"
HEARTBEAT_SECONDS = 2.0
HEARTBEAT_TIMEOUT_SECONDS = 1.0
# After a connection failed, the next attempt; an outage is retried at this pace.
RECONNECT_SECONDS = 1.0
# Keys of one process are few; a flood of distinct valid keys just starts it afresh.
MAX_ENTRIES = 10_000
# How the listening connection shows in pg_stat_activity.
APPLICATION_NAME = "usage-events key listener"


class ApiKeyCache:
    """Business by the SHA-256 of a live key's secret, served only while trusted."""

    def __init__(self) -> None:
        self._businesses: dict[str, BusinessRecord] = {}
        # Counts forgettings: a lookup that began before one must not be remembered.
        self.generation = 0
        self._trusted_until = 0.0

    def business_of(self, secret_hash: str) -> BusinessRecord | None:
        """The business of a key seen before, or None: look it up in the database."""
        if time.monotonic() >= self._trusted_until:
            if self._businesses:
                self.forget_all()
            return None
        return self._businesses.get(secret_hash)

    def remember(self, secret_hash: str, business: BusinessRecord, generation: int) -> None:
        """Keep what a lookup found, unless anything was forgotten since it began
        (`generation`, read before the lookup): it may have read a key revoked since."""
        if generation != self.generation or time.monotonic() >= self._trusted_until:
            return
        if len(self._businesses) >= MAX_ENTRIES:
            self._businesses.clear()
        self._businesses[secret_hash] = business

    def forget_all(self) -> None:
        self.generation += 1
        self._businesses.clear()

    def trust_until(self, deadline: float) -> None:
        """Serve entries until `deadline` (time.monotonic()): the listener has heard all
        changes committed before it last asked. Trust that had lapsed starts afresh: what
        was kept before may have missed news meanwhile."""
        if time.monotonic() >= self._trusted_until:
            self.forget_all()
        self._trusted_until = deadline

    def distrust(self) -> None:
        """Stop serving entries and drop them: changes may go unheard from now on."""
        self._trusted_until = 0.0
        self.forget_all()

    @property
    def trusted(self) -> bool:
        return time.monotonic() < self._trusted_until


# The heartbeat: true while this connection LISTENs to CHANNEL and both triggers of
# migration 0007 exist and fire for every writer. A connection pooler that hands each
# transaction another server connection (PgBouncer's transaction mode) fails it too.
HEARS_EVERY_CHANGE = f"""
SELECT '{CHANNEL}' = ANY (ARRAY(SELECT pg_listening_channels()))
   AND (SELECT count(*) FROM pg_trigger
        WHERE tgenabled = 'A'
          AND (tgrelid, tgname) IN ((to_regclass('api_keys'), 'notify_api_keys_change'),
                                    (to_regclass('businesses'), 'notify_businesses_change'))
       ) = 2
"""


class NotHeard(Exception):
    """The listening connection answers, but a change would not reach it."""


def listener_dsn(url: sa.URL) -> str:
    """asyncpg's own DSN for the database of a `postgresql+asyncpg://` URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_for_key_changes(cache: ApiKeyCache, dsn: str, *, connect_timeout: float) -> None:
    """Keep `cache` trusted while a connection LISTENs to CHANNEL; runs until cancelled."""

    def on_notification(*_: object) -> None:
        cache.forget_all()

    warned = False
    while True:
        connection = None
        try:
            connection = await asyncpg.connect(
                dsn,
                timeout=connect_timeout,
                server_settings={"application_name": APPLICATION_NAME},
            )
            await connection.add_listener(CHANNEL, on_notification)
            # Closed by the server (a restart, a terminated backend): distrusted at once,
            # not at the next heartbeat.
            connection.add_termination_listener(lambda _connection: cache.distrust())
            # Changes committed before LISTEN took effect were not heard.
            cache.forget_all()
            while True:
                asked = time.monotonic()
                heard = await connection.fetchval(
                    HEARS_EVERY_CHANGE, timeout=HEARTBEAT_TIMEOUT_SECONDS
                )
                if not heard:
                    raise NotHeard(
                        "this connection does not listen, or the triggers of migration "
                        "0007 are missing or not enabled ALWAYS"
                    )
                cache.trust_until(asked + HEARTBEAT_SECONDS + HEARTBEAT_TIMEOUT_SECONDS)
                await asyncio.sleep(HEARTBEAT_SECONDS)
        except asyncio.CancelledError:
            cache.distrust()
            raise
        except Exception as error:
            # Once per spell without the cache: when it began, or at the first attempt.
            if cache.trusted or not warned:
                logger.warning(
                    "API keys are looked up in the database until changes to them can be "
                    "heard again (%s: %s).",
                    type(error).__name__,
                    str(error).splitlines()[0] if str(error) else "no detail",
                )
                warned = True
            cache.distrust()
        finally:
            if connection is not None:
                connection.terminate()
        await asyncio.sleep(RECONNECT_SECONDS)
