"""The async engine of a process and the sessions that requests open on it."""

import asyncio
import contextlib
import os
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from db import connection_checks, sqlite_decimals
from db.api_key_cache import ApiKeyCache, listen_for_key_changes, listener_dsn
from db.json_text import dump_json
from db.settings import Settings
from db.warm_connections import WarmConnections

# `->>` (3.38) reads metadata in ingestion and filters; `RETURNING` (3.35) reports what an
# insert stored. Python's sqlite3 module carries the library of its own build.
MINIMUM_SQLITE_VERSION = (3, 38, 0)

# How long start-up waits for PostgreSQL to answer before saying it cannot reach it.
CONNECT_TIMEOUT_SECONDS = 10

# A SQLite writer waits this long for the write lock before giving up with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000

# A pooled PostgreSQL connection not used for a moment is asked whether it still answers
# before a request gets it (see _configure_postgresql), which waits at most this long (or
# the connect timeout, if shorter) for the answer: a round trip takes milliseconds, a
# frozen server never answers.
PING_TIMEOUT_SECONDS = 1.0

# Connections for long-running work (backfill closes, meter builds) per process: they
# also wait for the business's lock, so a few suffice.
LONG_RUNNING_POOL_SIZE = 4

# How much sooner than the client gives up PostgreSQL cancels a statement itself (at most
# this, and a tenth of the timeout): in normal operation the server cancels and the
# connection stays usable; the client's own timeout fires only when the server is away.
SERVER_STATEMENT_TIMEOUT_LEAD_SECONDS = 1.0


# The isolation level of reads on PostgreSQL (Database.read_engine's, and set on each of a
# request's read connections: Database.read_connection).
AUTOCOMMIT = "AUTOCOMMIT"


# What repositories read (and write) through: an ORM session (Database.session, a unit of
# work), or a bare read connection (Database.read_connection, autocommit on PostgreSQL),
# which costs a request less: no Session, no session transaction around its one statement.
Reading = AsyncSession | AsyncConnection


async def connection_of(reading: Reading) -> AsyncConnection:
    """The connection `reading` runs its statements on (a session's, taken on first use)."""
    if isinstance(reading, AsyncConnection):
        return reading
    return await reading.connection()


async def in_autocommit(session: Reading) -> bool:
    """Whether each statement of `session` is a transaction of its own (no BEGIN sent)."""
    return is_autocommit(await connection_of(session))


def is_autocommit(connection: AsyncConnection) -> bool:
    """Whether each statement on `connection` is a transaction of its own."""
    sync_connection = connection.sync_connection
    return sync_connection is not None and sync_is_autocommit(sync_connection)


def sync_is_autocommit(connection: sa.Connection) -> bool:
    """`is_autocommit`, asked of the sync connection itself (db.driver_reads, at every
    read: AsyncConnection's properties on the way cost more than the question)."""
    return bool(connection.get_execution_options().get("isolation_level") == AUTOCOMMIT)


def dialect_of(session: Reading) -> str:
    """ "sqlite" or "postgresql": the few statements that differ ask this."""
    if isinstance(session, AsyncConnection):
        # The sync connection's own attribute: AsyncConnection.dialect goes through two
        # properties (0.5 % of a point read's instructions).
        sync_connection = session.sync_connection
        return (sync_connection or session).dialect.name
    assert session.bind is not None, "sessions are always bound to the engine"
    return session.bind.dialect.name


async def abort_if_cut_off(connection: AsyncConnection, driver: Any, error: BaseException) -> None:
    """After `error` from a statement sent on asyncpg itself (`driver`, the connection
    `connection` holds): one cut off, timed out or whose connection was lost leaves the
    connection aborted and invalidated, as SQLAlchemy does for its own statements (and
    _configure_postgresql's error hook for a timeout), never handed to another request as
    it is and never closed politely, which would wait for a frozen server once more. The
    caller raises the statement's own error after it. (A function called from the caller's
    `except` rather than a context manager: entering and leaving one cost a point read
    2 % of its instructions.)"""
    if leaves_connection_unknown(error):
        driver.terminate()
        with contextlib.suppress(Exception):
            await connection.invalidate()


def leaves_connection_unknown(error: BaseException) -> bool:
    """A statement cancelled (client gone, a deadline), timed out, or a connection lost;
    not an error the server reported on a connection that goes on working."""
    return not isinstance(error, Exception) or isinstance(
        error, TimeoutError | OSError | asyncpg.InterfaceError | asyncpg.ConnectionDoesNotExistError
    )


class UnsupportedDatabaseError(Exception):
    """The database cannot run this service; the message says what is needed."""


class DatabaseUnavailableError(Exception):
    """The configured database cannot be opened; the message says why and what to do."""


def sqlite_file(database_url: str) -> Path | None:
    """The absolute path of the SQLite file of `database_url`; None for PostgreSQL or memory."""
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):  # A SQLite URI filename (?uri=true): not a path.
        return None
    # Relative to the working directory, as SQLite opens it; abspath keeps symlinks as named.
    return Path(os.path.abspath(url.database))


def check_available(database_url: str) -> None:
    """Open one connection, so that a database that cannot be used is one clear message
    at start-up (DatabaseUnavailableError), not a traceback from deep inside a driver."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        check_sqlite_version()
    path = sqlite_file(database_url)
    if path is not None and not path.parent.is_dir():
        raise DatabaseUnavailableError(
            f"The directory of the SQLite database {path} does not exist: create it "
            f"(mkdir -p {path.parent}), or set USAGE_EVENTS_DATABASE_URL to a file in an "
            "existing directory."
        )
    try:
        if url.get_backend_name() == "sqlite":
            # The standard library's driver: aiosqlite leaves a thread behind when it
            # fails to open a file, which then complains once the event loop is gone.
            with contextlib.closing(sqlite3.connect(path or ":memory:")) as connection:
                connection.execute("SELECT 1")
        else:
            asyncio.run(_connect_once(url))
    except Exception as error:
        raise DatabaseUnavailableError(_why_unavailable(url, path, error)) from error


async def _connect_once(url: sa.URL) -> None:
    engine = create_async_engine(url, connect_args={"timeout": CONNECT_TIMEOUT_SECONDS})
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    finally:
        await engine.dispose()


def _why_unavailable(url: sa.URL, path: Path | None, error: Exception) -> str:
    if path is not None:
        return f"Cannot open the SQLite database {path}: {_first_line(error)}."
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    if sqlstate == "3D000":  # invalid_catalog_name
        return (
            f'The PostgreSQL database "{url.database}" does not exist on {where}. Create it, '
            f"e.g. createdb -h {url.host or 'localhost'} -p {url.port or 5432}"
            f"{f' -U {url.username}' if url.username else ''} {url.database}"
        )
    if sqlstate in ("28000", "28P01"):  # invalid_authorization_specification, bad password
        return f"PostgreSQL at {where} refused the connection: {_first_line(error)}."
    if isinstance(error, socket.gaierror):
        return f'Cannot find the database host "{url.host}": {error.strerror}.'
    if isinstance(error, ConnectionRefusedError):
        return (
            f"Nothing listens on {where}: is PostgreSQL running there? "
            "Check the host and port of USAGE_EVENTS_DATABASE_URL."
        )
    if isinstance(error, TimeoutError):
        return f"PostgreSQL at {where} did not answer within {CONNECT_TIMEOUT_SECONDS} s."
    return f"Cannot connect to PostgreSQL at {where}: {_first_line(error)}."


def _first_line(error: Exception) -> str:
    """The driver's own words, without SQLAlchemy's wrapper text and links."""
    message = str(getattr(error, "orig", None) or error) or type(error).__name__
    return message.splitlines()[0].rstrip(".")


def check_sqlite_version(version: tuple[int, int, int] | None = None) -> None:
    """Refuse at start-up a SQLite too old for the SQL the service sends, instead of failing
    on the first ingest with a masked server error."""
    version = version or sqlite3.sqlite_version_info
    if version < MINIMUM_SQLITE_VERSION:
        needed = ".".join(map(str, MINIMUM_SQLITE_VERSION))
        found = ".".join(map(str, version))
        raise UnsupportedDatabaseError(
            f"usage-events needs SQLite {needed} or newer; this Python's sqlite3 module has "
            f"SQLite {found}. Use a newer Python build, or PostgreSQL."
        )


class Database:
    """One per process: the engine, and sessions for reading and for writing."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        reachable_within: float | None = None,
        long_running_engine: AsyncEngine | None = None,
        warm_reads: int = 0,
    ) -> None:
        self.engine = engine
        self.dialect_name: str = engine.dialect.name
        # How long /readyz's check may take before the database counts as unreachable.
        self.reachable_within = reachable_within
        # Where long-running work's transactions run (unit_of_work(long_running=True)).
        self.long_running_engine = long_running_engine or engine
        # Businesses of the API keys checked lately; see listen_for_key_changes.
        self.api_keys = ApiKeyCache()
        # Reads on PostgreSQL run without BEGIN and ROLLBACK around them: in READ COMMITTED
        # each statement sees the database as of its own start, in a transaction or not,
        # so the two round trips bought nothing. SQLite's transaction is its snapshot.
        self.read_engine = (
            engine.execution_options(isolation_level=AUTOCOMMIT)
            if self.dialect_name == "postgresql"
            else engine
        )
        # A request's read connection, given back clean, is kept for the next request for
        # a moment (db.warm_connections): at most `warm_reads` of them.
        self.warm_reads = WarmConnections(warm_reads, lambda: _pool_has_room(engine))

    @classmethod
    def from_settings(cls, settings: Settings, *, maintenance: bool = False) -> "Database":
        """The engine of `settings`. `maintenance` (migrate's rollup builds): statements
        run as long as they need, unbound by USAGE_EVENTS_DATABASE_STATEMENT_TIMEOUT."""
        url = sa.make_url(settings.database_url)
        postgresql = url.get_backend_name() == "postgresql"
        if not postgresql:
            check_sqlite_version()
        connect_timeout = settings.database_connect_timeout.total_seconds()
        if not postgresql:
            engine = _engine(url, settings, settings.database_pool_size, {})
            _configure_sqlite(engine)
            return cls(engine)
        statement_timeout = (
            0.0 if maintenance else settings.database_statement_timeout.total_seconds()
        )
        engine = _engine(
            url,
            settings,
            settings.database_pool_size,
            _postgresql_connect_args(settings, statement_timeout),
        )
        _configure_postgresql(engine, ping_timeout=min(PING_TIMEOUT_SECONDS, connect_timeout))
        # Backfill closes and meter builds run on connections of their own, whose statements
        # may take USAGE_EVENTS_DATABASE_LONG_STATEMENT_TIMEOUT (see unit_of_work).
        long_timeout = (
            0.0 if maintenance else settings.database_long_statement_timeout.total_seconds()
        )
        long_running = _engine(
            url,
            settings,
            LONG_RUNNING_POOL_SIZE,
            _postgresql_connect_args(settings, long_timeout),
        )
        _configure_postgresql(long_running, ping_timeout=min(PING_TIMEOUT_SECONDS, connect_timeout))
        return cls(
            engine,
            reachable_within=connect_timeout,
            long_running_engine=long_running,
            # At most half the pool, and only while it has a connection to spare
            # (db.warm_connections).
            warm_reads=settings.database_pool_size // 2,
        )

    def session(self) -> AsyncSession:
        """A session for reads. On SQLite its transaction sees the database as of its first
        query; on PostgreSQL each statement sees it as of its own start (autocommit)."""
        return AsyncSession(self.read_engine, expire_on_commit=False)

    async def read_connection(self) -> AsyncConnection:
        """A connection for reads, as `session` reads, without an ORM session around it;
        the caller gives it back with `release_read_connection`. Used for the reads of a
        request (graph.context)."""
        warm = self.warm_reads.take()
        if warm is not None:
            return warm
        connection = self.engine.connect()
        await connection.start()
        if self.dialect_name != "postgresql":
            return connection
        # Autocommit set on the connection itself rather than taken from the read engine,
        # whose isolation level is an event listener on it. With no listener on its
        # engine, SQLAlchemy fires no statement events for the connection at all, and
        # asking whether anyone observes its statements (db.driver_reads, at every read)
        # costs two attribute reads instead of a walk through the event system's listener
        # collections (3 % of a point read's instructions). The pool resets the isolation
        # level when the connection goes back, as it does for the read engine's.
        try:
            await connection.execution_options(isolation_level=AUTOCOMMIT)
        except BaseException:
            await connection.close()
            raise
        return connection

    async def release_read_connection(self, connection: AsyncConnection) -> None:
        """A connection of `read_connection` back: kept warm for the next request if it
        may be (db.warm_connections), else closed (to the pool)."""
        if not self.warm_reads.park(connection):
            await connection.close()

    @asynccontextmanager
    async def unit_of_work(self, *, long_running: bool = False) -> AsyncIterator[AsyncSession]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        On SQLite the transaction takes the write lock at BEGIN (BEGIN IMMEDIATE): a
        transaction that first reads and later writes would otherwise fail with
        "database is locked" when another writer got in between.

        `long_running`: work long by nature (a backfill's close or revert, a meter's
        rollups built from its history), bound by the long statement timeout instead.
        """
        engine = self.long_running_engine if long_running else self.engine
        session = AsyncSession(
            engine, expire_on_commit=False, execution_options={"sqlite_begin": "IMMEDIATE"}
        )
        async with session, session.begin():
            yield session

    async def listen_for_key_changes(self, connect_timeout: float) -> None:
        """Keep `api_keys` in use while PostgreSQL can tell this process of every change to
        a key (db.api_key_cache); runs until cancelled. On SQLite: returns at once, and
        every key is looked up."""
        if self.dialect_name != "postgresql":
            return
        await listen_for_key_changes(
            self.api_keys, listener_dsn(self.engine.url), connect_timeout=connect_timeout
        )

    async def is_reachable(self) -> bool:
        """Whether the database answers a statement within `reachable_within` (readiness)."""
        try:
            async with (
                asyncio.timeout(self.reachable_within),
                self.read_engine.connect() as connection,
            ):
                if connection.dialect.name != "postgresql":
                    await connection.exec_driver_sql("SELECT 1")
                    return True
                # On asyncpg itself, outside a transaction: the pool may hand out a
                # connection it trusts unpinged (db.connection_checks), and one that does
                # not answer within the deadline is aborted.
                raw = await connection.get_raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                try:
                    await driver.execute("SELECT 1")
                except BaseException as error:
                    await abort_if_cut_off(connection, driver, error)
                    raise
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        await self.warm_reads.close_all()
        await self.engine.dispose()
        if self.long_running_engine is not self.engine:
            await self.long_running_engine.dispose()


def _pool_has_room(engine: AsyncEngine) -> bool:
    """Whether the engine's pool could hand out a connection without anyone waiting:
    one is idle or may still be opened (parked ones count as checked out)."""
    pool = engine.sync_engine.pool  # Read each time: dispose() puts a new pool in place.
    if not isinstance(pool, sa.pool.QueuePool):
        return False
    return pool.checkedout() < pool.size()  # No overflow beyond the size (_engine).


def _engine(
    url: sa.URL, settings: Settings, pool_size: int, connect_args: dict[str, Any]
) -> AsyncEngine:
    return create_async_engine(
        url,
        json_serializer=dump_json,
        json_deserializer=orjson.loads,
        pool_size=pool_size,
        max_overflow=0,
        # A request waits this long for a free connection, then is answered 503.
        pool_timeout=settings.database_pool_timeout.total_seconds(),
        # Parameters are the tenants' data: never in a log line or an error's text.
        hide_parameters=True,
        connect_args=connect_args,
    )


def _postgresql_connect_args(settings: Settings, statement_timeout: float) -> dict[str, Any]:
    """asyncpg's connect arguments: how long to wait for a connection and for a statement
    (`statement_timeout` seconds; 0: no limit)."""
    arguments: dict[str, Any] = {"timeout": settings.database_connect_timeout.total_seconds()}
    if statement_timeout:
        # The client's bound on every statement (and BEGIN, COMMIT): a server that stopped
        # answering with its socket open is given up on after this, not after TCP's minutes.
        arguments["command_timeout"] = statement_timeout
        lead = min(SERVER_STATEMENT_TIMEOUT_LEAD_SECONDS, statement_timeout / 10)
        server_milliseconds = max(1, round((statement_timeout - lead) * 1000))
        arguments["server_settings"] = {"statement_timeout": f"{server_milliseconds}ms"}
    return arguments


def _configure_postgresql(engine: AsyncEngine, *, ping_timeout: float) -> None:
    """Pre-ping with a short timeout where needed, and a connection whose statement timed
    out dropped.

    SQLAlchemy's own pool_pre_ping is off on purpose: it pings every checkout, and asyncpg's
    ping waits the connection's command_timeout (the statement timeout), so against a
    frozen server every checkout would hang that long. This pings only a connection that
    db.connection_checks does not trust (idle for a while, or news on its socket), with
    `ping_timeout`: a connection that does not answer is closed at once and the pool opens
    a new one (bound by the connect timeout), so the first request after PostgreSQL
    restarted succeeds rather than fails.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        connection_checks.note_opened(dbapi_connection.driver_connection, record.info)

    @event.listens_for(engine.sync_engine, "checkin")
    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:  # None: it was invalidated while checked out.
            connection_checks.note_returned(record.info)

    @event.listens_for(engine.sync_engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver_connection = dbapi_connection.driver_connection
        if driver_connection.is_closed():
            # asyncpg has seen the socket close: the server ended it (a restart, a
            # terminated backend). The pool opens a new one.
            raise sa.exc.DisconnectionError("the server closed the connection")
        if not connection_checks.needs_ping(record.info):
            return
        try:
            dbapi_connection.run_async(
                lambda connection: connection.execute("SELECT 1", timeout=ping_timeout)
            )
        except BaseException as error:
            # Aborted rather than closed: a polite close would wait for the server again,
            # also after a cancelled ping (/readyz's deadline).
            driver_connection.terminate()
            if not isinstance(error, Exception):
                raise
            raise sa.exc.DisconnectionError(
                f"the connection did not answer a ping: {type(error).__name__}"
            ) from error

    @event.listens_for(engine.sync_engine, "handle_error")
    def on_error(context: sa.engine.ExceptionContext) -> None:
        # asyncpg's command_timeout fired: the server is not answering this connection (it
        # would have cancelled the statement itself first). Its protocol state is unknown,
        # so it is aborted and invalidated, not returned to the pool to wait again; the
        # other pooled connections are left to their ping.
        timed_out = isinstance(context.original_exception, TimeoutError)
        if timed_out and context.connection is not None:
            with contextlib.suppress(Exception):  # Already closed: nothing to abort.
                driver_connection = context.connection.connection.driver_connection
                if driver_connection is not None:
                    driver_connection.terminate()
            context.is_disconnect = True
            context.invalidate_pool_on_disconnect = False


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins (see on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers go on while one writer writes; NORMAL sync is durable in WAL mode
        # against process crashes, which is what an embedded default needs.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()
        sqlite_decimals.register(dbapi_connection)

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


# Rows fetched at once by `streamed_rows`: aiosqlite runs each fetch in its own thread, so
# fetching row by row cost a thread switch per row — most of the time of reading a
# hundred thousand events on SQLite. A few thousand rows keep memory bounded all the same.
STREAM_CHUNK_ROWS = 2000


@asynccontextmanager
async def streamed_rows(session: Reading, statement: Any) -> AsyncIterator[AsyncIterator[Any]]:
    """The rows of `statement`, read from the database a chunk at a time, while the block
    runs: a reader that stops early (an error, a bound met) still ends the cursor and
    its transaction there and then.

        async with streamed_rows(session, statement) as rows:
            async for row in rows: ...
    """
    async with _transaction_for_cursor(session):
        result = await session.stream(statement)
        try:
            yield _rows_of(result)
        finally:
            await result.close()


async def _rows_of(result: Any) -> AsyncIterator[Any]:
    async for chunk in result.partitions(STREAM_CHUNK_ROWS):
        for row in chunk:
            yield row


@asynccontextmanager
async def _transaction_for_cursor(session: Reading) -> AsyncIterator[None]:
    """A transaction around a server-side cursor, which PostgreSQL opens only in one.

    Reads run in autocommit on PostgreSQL (Database.read_engine), where SQLAlchemy sends no
    BEGIN: this one is sent by hand and ended by hand. A connection whose transaction
    could not be ended is discarded rather than handed, mid-transaction, to another.
    """
    if not await in_autocommit(session):
        yield
        return
    await session.execute(sa.text("BEGIN READ ONLY"))
    async with undone_after(session, "ROLLBACK"):
        yield


@asynccontextmanager
async def undone_after(session: Reading, undo: str) -> AsyncIterator[None]:
    """Run the block, then the SQL `undo` (ROLLBACK, RESET …) on the same connection.

    If the block raised, its error is what the caller sees: an undo that fails then (the
    connection lost in an outage, say) only discards the connection, so that an outage
    is still answered as one. A connection whose undo did not happen is never handed
    back to the pool as it is.
    """
    try:
        yield
    except BaseException:
        try:
            await session.execute(sa.text(undo))
        except BaseException:
            await _discard_connection(session)
        raise
    try:
        await session.execute(sa.text(undo))
    except BaseException:
        await _discard_connection(session)
        raise


async def _discard_connection(session: Reading) -> None:
    """Invalidate the session's connection, if SQLAlchemy has not already."""
    with contextlib.suppress(Exception):
        connection = await connection_of(session)
        if not connection.invalidated:
            await connection.invalidate()
