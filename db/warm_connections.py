"""Read connections kept checked out for a moment between requests (PostgreSQL).

Taking a connection from SQLAlchemy's pool and giving it back cost a request about
150 µs of CPU in process, and a fifth of a point read's samples under load (issue 14's
profiles): two greenlet switches, the pool's events, the autocommit isolation level set
at checkout and reset at checkin. Under load a connection given back is asked for
again within a millisecond. So a request's read connection that only sent statements on
asyncpg itself (db.driver_reads: no transaction of SQLAlchemy's begun) is parked here
when the request is done, and the next request of the process takes it as it is.

What keeps this as safe as the pool itself:

- Nobody waiting for the pool is passed over. A connection is parked, and a parked one
  taken, only while the pool has a connection to spare (`pool_has_room`): then nobody
  can be waiting in its queue. Once it has none, connections go back to the pool, whose
  queue serves the requests, writes and key lookups waiting there in their turn.
- At most `limit` connections are parked, and one unused for WARM_SECONDS goes back to
  the pool (a sweep), so an idle process holds none.
- A parked connection is taken only if the checks of db.connection_checks trust it
  (parked within its window, nothing on its socket, asyncpg has not seen it close), as
  the pool's checkout would; otherwise it goes back to the pool, which pings or replaces
  it. (One check of SQLAlchemy's checkout is not repeated: the retirement of every
  connection opened before a pool-wide invalidation, which follows a lost server; such a
  connection's socket has its end of stream waiting, which the checks catch.) Its
  asyncpg connection and the pool's record of it are read once, when it is parked:
  nothing else holds a parked connection, so neither changes meanwhile. (Read through
  SQLAlchemy's properties at every take, with the checks of the next point, they cost a
  point read 2 % of its instructions; issue 14.)
- Only a connection with nothing begun, neither closed nor invalidated, is parked; one
  whose statement was cut off is invalidated (db.database.abort_if_cut_off) and never
  comes here. Nothing can begin, close or invalidate it while it is parked, so that is
  checked when it is parked, not again when it is taken.
- Connections belong to the event loop that opened them: all parked ones belong to one
  loop, and no other is given one. After `close_all` (the engine being disposed) nothing
  is parked any more.
"""

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from db import connection_checks

# A parked connection unused this long goes back to the pool.
WARM_SECONDS = 0.1


class Parked(NamedTuple):
    connection: AsyncConnection
    parked_at: float  # time.monotonic()
    # Read when it was parked (see the module): its asyncpg connection, and the pool's
    # record's `info` that db.connection_checks keeps its notes in.
    driver: Any
    info: dict[str, Any]


class WarmConnections:
    """The parked read connections of one engine, most recently parked last."""

    def __init__(self, limit: int, pool_has_room: Callable[[], bool]) -> None:
        self.limit = limit
        # Whether the pool could hand out a connection now without anyone waiting.
        self._pool_has_room = pool_has_room
        # Taken from the end, swept from the front.
        self._parked: list[Parked] = []
        # The event loop of every parked connection (one at a time), and its thread.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._sweep: asyncio.TimerHandle | None = None
        # Connections being given back, held so that their tasks are not collected.
        self._returning: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._parked)

    def take(self) -> AsyncConnection | None:
        """The most recently parked connection the pool would trust, or None."""
        if not self._parked or not self._on_their_loop():
            return None
        if not self._pool_has_room():
            # Someone may be waiting for the pool: every parked connection goes to it.
            while self._parked:
                self._give_back(self._parked.pop().connection)
            return None
        while self._parked:
            parked = self._parked.pop()
            if _trusted(parked):
                return parked.connection
            self._give_back(parked.connection)
        return None

    def park(self, connection: AsyncConnection) -> bool:
        """Keep `connection` for the next request; False: the caller closes it."""
        if (
            self._closed
            or len(self._parked) >= self.limit
            or not _clean(connection)
            or not self._pool_has_room()
        ):
            return False
        sync_connection = connection.sync_connection
        assert sync_connection is not None  # _clean
        pooled = sync_connection.connection  # The pool's checked-out connection.
        driver = pooled.driver_connection
        if driver is None:
            return False
        if self._on_their_loop():
            assert self._loop is not None
            loop = self._loop
        else:
            loop = asyncio.get_running_loop()
            if self._parked:
                return False  # Those of another loop are parked: this one is not.
            self._loop = loop
            self._thread = threading.get_ident()
            if self._sweep is not None:  # Another loop's, which may never run again.
                self._sweep.cancel()
                self._sweep = None
        # The checkout window of db.connection_checks starts now, as at a checkin.
        connection_checks.note_returned(pooled.info)
        self._parked.append(Parked(connection, time.monotonic(), driver, pooled.info))
        if self._sweep is None:
            self._sweep = loop.call_later(WARM_SECONDS, self._swept)
        return True

    async def close_all(self) -> None:
        """Every parked connection back to the pool, and none parked from now on."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        parked, self._parked = self._parked, []
        if asyncio.get_running_loop() is not self._loop:
            return  # Their loop has ended, and the connections with it.
        for each in parked:
            await _close(each.connection)
        if self._returning:
            await asyncio.gather(*self._returning, return_exceptions=True)

    def _on_their_loop(self) -> bool:
        """Whether the running event loop is the parked connections' one: it is when that
        loop runs in this thread, since a thread runs one loop at a time. Asked so rather
        than of asyncio.get_running_loop, which makes a getpid system call on Python 3.11
        (two per request were 4 % of a point read under load)."""
        loop = self._loop
        return loop is not None and self._thread == threading.get_ident() and loop.is_running()

    def _swept(self) -> None:
        self._sweep = None
        cutoff = time.monotonic() - WARM_SECONDS
        while self._parked and self._parked[0].parked_at <= cutoff:
            self._give_back(self._parked.pop(0).connection)
        if self._parked and self._loop is not None:
            next_due = self._parked[0].parked_at + WARM_SECONDS - time.monotonic()
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


def _trusted(parked: Parked) -> bool:
    """What db.database's checkout hook would check of a pooled connection (that it is
    clean was checked when it was parked)."""
    return not parked.driver.is_closed() and not connection_checks.needs_ping(parked.info)
