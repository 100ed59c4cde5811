"""Read connections kept checked out for a moment between requests (PostgreSQL).

Taking a connection from SQLAlchemy's pool and giving it back cost a request about
150 µs of CPU in process, and a fifth of a point read's samples under load (issue 14's
profiles): two greenlet switches, the pool's events, the read engine's isolation level
set at checkout and reset at checkin. Under load a connection given back is asked for
again within a millisecond. So a request's read connection that only sent statements on
asyncpg itself (db.driver_reads: no transaction of SQLAlchemy's begun) is parked here
when the request is done, and the next request of the process takes it as it is.

What keeps this as safe as the pool itself:

- At most half the pool is parked: the rest stays free for writes, and parked
  connections go back to the pool after WARM_SECONDS unused (a sweep), so an idle
  process holds none and a write waits at most that long for one held here.
- A parked connection is taken only if db.connection_checks would trust it at checkout
  (parked within its window, nothing on its socket, asyncpg has not seen it close);
  otherwise it goes back to the pool, which pings or replaces it as for any checkout.
- Only a connection with nothing begun, neither closed nor invalidated, is parked; one
  whose statement was cut off is invalidated (db.database.aborted_if_cut_off) and never
  comes here.
- Connections belong to the event loop that opened them: all parked ones belong to one
  loop, and no other is given one; `close_all` gives every one back before the engine
  is disposed.
"""

import asyncio
import contextlib
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from db import connection_checks

# A parked connection unused this long goes back to the pool.
WARM_SECONDS = 0.1


class WarmConnections:
    """The parked read connections of one engine, most recently parked last."""

    def __init__(self, limit: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        # (connection, when parked): taken from the end, swept from the front.
        self._parked: list[tuple[AsyncConnection, float]] = []
        # The event loop of every parked connection (one at a time).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep: asyncio.TimerHandle | None = None
        # Connections being given back, held so that their tasks are not collected.
        self._returning: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._parked)

    def take(self) -> AsyncConnection | None:
        """The most recently parked connection the pool would trust, or None."""
        if asyncio.get_running_loop() is not self._loop:
            return None
        while self._parked:
            connection, _parked_at = self._parked.pop()
            if _trusted(connection):
                return connection
            self._give_back(connection)
        return None

    def park(self, connection: AsyncConnection) -> bool:
        """Keep `connection` for the next request; False: the caller closes it."""
        loop = asyncio.get_running_loop()
        if not self._parked:
            self._loop = loop
        if loop is not self._loop or len(self._parked) >= self.limit or not _clean(connection):
            return False
        # The checkout window of db.connection_checks starts now, as at a checkin.
        connection_checks.note_returned(connection.info)
        self._parked.append((connection, self._clock()))
        if self._sweep is None:
            self._sweep = loop.call_later(WARM_SECONDS, self._swept)
        return True

    async def close_all(self) -> None:
        """Every parked connection back to the pool, and those on their way there."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        parked, self._parked = self._parked, []
        if asyncio.get_running_loop() is self._loop:
            for connection, _parked_at in parked:
                await _close(connection)
        # Else their loop has ended, and the connections with it.
        if self._returning:
            await asyncio.gather(*self._returning, return_exceptions=True)

    def _swept(self) -> None:
        self._sweep = None
        cutoff = self._clock() - WARM_SECONDS
        while self._parked and self._parked[0][1] <= cutoff:
            connection, _parked_at = self._parked.pop(0)
            self._give_back(connection)
        if self._parked and self._loop is not None:
            next_due = self._parked[0][1] + WARM_SECONDS - self._clock()
            self._sweep = self._loop.call_later(max(next_due, 0.0), self._swept)

    def _give_back(self, connection: AsyncConnection) -> None:
        assert self._loop is not None
        task = self._loop.create_task(_close(connection))
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)


async def _close(connection: AsyncConnection) -> None:
    # A connection that cannot be closed politely (the server went away) is the pool's
    # to discard; nobody waits for this.
    try:
        await connection.close()
    except Exception:
        with contextlib.suppress(Exception):
            await connection.invalidate()


def _clean(connection: AsyncConnection) -> bool:
    sync_connection = connection.sync_connection
    return (
        sync_connection is not None
        and not sync_connection.closed
        and not sync_connection.invalidated
        and not connection.in_transaction()
    )


def _trusted(connection: AsyncConnection) -> bool:
    """What the pool's checkout would check (db.database._configure_postgresql)."""
    if not _clean(connection):
        return False
    sync_connection = connection.sync_connection
    assert sync_connection is not None
    driver = sync_connection.connection.driver_connection
    if driver is None or driver.is_closed():
        return False
    return not connection_checks.needs_ping(connection.info)
