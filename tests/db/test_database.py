"""The engine of a process: a database that cannot be used is refused at start-up, clearly."""

import asyncio
import os
import socket
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db import database as database_module
from db.connection_checks import TRUSTED_FOR_SECONDS, transport_of
from db.database import (
    MINIMUM_SQLITE_VERSION,
    Database,
    DatabaseUnavailableError,
    UnsupportedDatabaseError,
    check_available,
    check_sqlite_version,
    sqlite_file,
    streamed_rows,
    undone_after,
)
from db.faults import is_database_unavailable, is_statement_timeout
from db.migrate import upgrade_to_head
from db.settings import Settings
from tests.tcp_proxy import TcpProxy, tcp_proxy


def test_the_sqlite_of_this_python_is_supported() -> None:
    check_sqlite_version()

    assert sqlite3.sqlite_version_info >= MINIMUM_SQLITE_VERSION


@pytest.mark.parametrize("version", [(3, 37, 2), (3, 34, 1), (2, 99, 0)])
def test_an_older_sqlite_is_refused_naming_the_minimum(version: tuple[int, int, int]) -> None:
    found = ".".join(map(str, version))

    with pytest.raises(UnsupportedDatabaseError) as raised:
        check_sqlite_version(version)

    assert "SQLite 3.38.0 or newer" in str(raised.value)
    assert f"SQLite {found}." in str(raised.value)


@pytest.fixture
def old_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))


@pytest.mark.usefixtures("old_sqlite")
def test_an_old_sqlite_stops_the_engine_and_the_migrations(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"

    with pytest.raises(UnsupportedDatabaseError, match=r"3\.38\.0 or newer"):
        Database.from_settings(Settings(database_url=url))
    with pytest.raises(UnsupportedDatabaseError, match=r"3\.38\.0 or newer"):
        upgrade_to_head(url)

    assert not (tmp_path / "old.db").exists(), "nothing is created on a refused database"


@pytest.mark.usefixtures("old_sqlite")
def test_postgresql_does_not_depend_on_the_local_sqlite() -> None:
    # Building the engine connects to nothing, so no server is needed here.
    settings = Settings(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")

    assert Database.from_settings(settings).dialect_name == "postgresql"


# Set-up mistakes: each is one sentence saying what to do, and nothing is created.


def free_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_sqlite_file_in_a_missing_directory_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "usage-events.db"

    with pytest.raises(DatabaseUnavailableError) as raised:
        upgrade_to_head(f"sqlite+aiosqlite:///{path}")

    assert str(raised.value).startswith(f"The directory of the SQLite database {path} does not")
    assert f"mkdir -p {path.parent}" in str(raised.value)
    assert not path.parent.exists()


def test_a_sqlite_file_that_cannot_be_opened_is_refused_naming_it(tmp_path: Path) -> None:
    # A directory where the file should be: SQLite cannot open it as a database.
    (tmp_path / "usage-events.db").mkdir()

    with pytest.raises(DatabaseUnavailableError) as raised:
        check_available(f"sqlite+aiosqlite:///{tmp_path / 'usage-events.db'}")

    assert str(raised.value) == (
        f"Cannot open the SQLite database {tmp_path / 'usage-events.db'}: "
        "unable to open database file."
    )


def test_a_relative_sqlite_path_is_made_absolute_from_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)

    assert sqlite_file("sqlite+aiosqlite:///./usage-events.db") == tmp_path / "usage-events.db"
    assert sqlite_file("sqlite+aiosqlite:///data/../x.db") == tmp_path / "x.db"
    assert sqlite_file("sqlite+aiosqlite:////srv/usage.db") == Path("/srv/usage.db")
    assert sqlite_file("sqlite+aiosqlite://") is None
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file("postgresql+asyncpg://db/usage") is None


def test_nothing_listening_on_the_postgresql_port_is_one_sentence() -> None:
    port = free_port()

    with pytest.raises(DatabaseUnavailableError) as raised:
        upgrade_to_head(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/usage")

    assert str(raised.value) == (
        f"Nothing listens on 127.0.0.1:{port}: is PostgreSQL running there? "
        "Check the host and port of USAGE_EVENTS_DATABASE_URL."
    )


@pytest.mark.postgres
def test_a_postgresql_database_that_does_not_exist_says_how_to_create_it(
    postgres_database_url: str,
) -> None:
    url = sa.make_url(postgres_database_url).set(database="usage_events_never_created")
    host, port, user = url.host, url.port or 5432, url.username

    with pytest.raises(DatabaseUnavailableError) as raised:
        upgrade_to_head(url.render_as_string(hide_password=False))

    assert str(raised.value).startswith(
        f'The PostgreSQL database "usage_events_never_created" does not exist on {host}:{port}.'
    )
    assert str(raised.value).endswith(
        f"createdb -h {host} -p {port}{f' -U {user}' if user else ''} usage_events_never_created"
    )


@pytest.mark.postgres
def test_an_unknown_postgresql_user_is_one_sentence(postgres_database_url: str) -> None:
    url = sa.make_url(postgres_database_url).set(username="usage_events_nobody", password=None)

    with pytest.raises(DatabaseUnavailableError) as raised:
        check_available(url.render_as_string(hide_password=False))

    assert "refused the connection" in str(raised.value)
    assert "usage_events_nobody" in str(raised.value)


# Database faults: bounded waits, a pre-ping that is quick, parameters kept out of errors.

# Short bounds, so that each outage below ends within a few seconds.
CONNECT_TIMEOUT = 1.0
STATEMENT_TIMEOUT = 2.0
# Scheduling, a loaded machine: what an answer may take beyond the bound it is held to.
MARGIN = 1.5


def faults_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        database_connect_timeout=timedelta(seconds=CONNECT_TIMEOUT),
        database_statement_timeout=timedelta(seconds=STATEMENT_TIMEOUT),
        database_pool_timeout=timedelta(seconds=0.5),
    )


@pytest.fixture
def proxy(postgres_database_url: str) -> Iterator[TcpProxy]:
    url = sa.make_url(postgres_database_url)
    with tcp_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest_asyncio.fixture
async def proxied(postgres_database_url: str, proxy: TcpProxy) -> AsyncIterator[Database]:
    """PostgreSQL through `proxy`, which the test freezes, drops and restores."""
    database = proxied_database(postgres_database_url, proxy, statement_timeout=STATEMENT_TIMEOUT)
    try:
        yield database
    finally:
        proxy.restore()
        await database.dispose()


def proxied_database(url: str, proxy: TcpProxy, *, statement_timeout: float) -> Database:
    proxied_url = sa.make_url(url).set(host="127.0.0.1", port=proxy.port)
    settings = faults_settings(proxied_url.render_as_string(hide_password=False))
    return Database.from_settings(
        settings.model_copy(
            update={"database_statement_timeout": timedelta(seconds=statement_timeout)}
        )
    )


async def select_one(database: Database) -> int:
    async with database.session() as session:
        return int((await session.execute(sa.text("SELECT 1"))).scalar_one())


async def failure_within(seconds: float, work: Awaitable[object]) -> BaseException:
    """The error `work` fails with, which it must do within `seconds`."""
    started = time.monotonic()
    with pytest.raises(Exception) as raised:  # noqa: PT011 - which one is checked after
        await work
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"failed after {elapsed:.1f} s, not within {seconds} s"
    return raised.value


@pytest.mark.asyncio(loop_scope="session")
async def test_sql_parameters_never_reach_an_error_message(database: Database) -> None:
    with pytest.raises(sa.exc.DBAPIError) as raised:
        async with database.session() as session:
            await session.execute(
                sa.text("SELECT :value FROM no_such_table"), {"value": "secret-parameter"}
            )

    assert "secret-parameter" not in str(raised.value)
    assert "SQL parameters hidden" in str(raised.value)


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_postgresql_cancels_a_slow_statement_itself_a_little_before_the_client(
    postgres_database_url: str,
) -> None:
    database = Database.from_settings(faults_settings(postgres_database_url))
    try:
        async with database.session() as session:
            shown = (await session.execute(sa.text("SHOW statement_timeout"))).scalar_one()
        error = await failure_within(
            STATEMENT_TIMEOUT, select_one_after(database, seconds=STATEMENT_TIMEOUT * 2)
        )
        # The server's cancel leaves the connection usable: nothing to reconnect.
        assert await select_one(database) == 1
    finally:
        await database.dispose()

    assert shown == "1800ms"
    assert getattr(getattr(error, "orig", None), "sqlstate", None) == "57014"
    assert is_database_unavailable(error)


async def select_one_after(database: Database, *, seconds: float) -> None:
    async with database.session() as session:
        await session.execute(sa.text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_maintenance_statements_are_not_bound_by_the_statement_timeout(
    postgres_database_url: str,
) -> None:
    database = Database.from_settings(faults_settings(postgres_database_url), maintenance=True)
    try:
        async with database.session() as session:
            shown = (await session.execute(sa.text("SHOW statement_timeout"))).scalar_one()
    finally:
        await database.dispose()

    assert shown == "0"


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_long_running_work_has_its_own_longer_statement_timeout(
    postgres_database_url: str,
) -> None:
    settings = faults_settings(postgres_database_url).model_copy(
        update={"database_long_statement_timeout": timedelta(seconds=STATEMENT_TIMEOUT * 3)}
    )
    database = Database.from_settings(settings)
    slow = sa.text("SELECT pg_sleep(:seconds)")
    try:
        async with database.unit_of_work(long_running=True) as session:
            shown = (await session.execute(sa.text("SHOW statement_timeout"))).scalar_one()
            # Longer than the ordinary bound, within the long one.
            await session.execute(slow, {"seconds": STATEMENT_TIMEOUT * 1.5})
        with pytest.raises(sa.exc.DBAPIError) as refused:
            async with database.unit_of_work() as session:
                await session.execute(slow, {"seconds": STATEMENT_TIMEOUT * 1.5})
    finally:
        await database.dispose()

    assert shown == "5400ms"  # A tenth sooner than the client, as for the ordinary bound.
    assert is_statement_timeout(refused.value)


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_a_frozen_server_fails_a_checkout_within_ping_and_connect_timeouts(
    postgres_database_url: str, proxy: TcpProxy
) -> None:
    # A statement timeout far beyond the bound: only the checkout's ping can fail in time.
    database = proxied_database(postgres_database_url, proxy, statement_timeout=30.0)
    try:
        assert await select_one(database) == 1  # One pooled connection, which the freeze strands.
        await asyncio.sleep(TRUSTED_FOR_SECONDS + 0.1)  # Past the window: it is pinged.
        proxy.freeze()

        error = await failure_within(1.0 + CONNECT_TIMEOUT + MARGIN, select_one(database))
        reachable = await database.is_reachable()
        proxy.restore()

        assert is_database_unavailable(error)
        assert not reachable
        assert await select_one(database) == 1
    finally:
        proxy.restore()
        await database.dispose()


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_a_server_that_froze_within_the_trust_window_fails_at_the_statement_timeout(
    proxied: Database, proxy: TcpProxy
) -> None:
    # The connection answered a moment ago, so it is handed out unpinged (the price of no
    # round trip per checkout): the request waits as one in flight at the freeze does.
    assert await select_one(proxied) == 1
    proxy.freeze()

    error = await failure_within(STATEMENT_TIMEOUT + MARGIN, select_one(proxied))
    proxy.restore()

    assert isinstance(error, TimeoutError)
    assert is_database_unavailable(error)
    assert await select_one(proxied) == 1


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_a_connection_that_answered_moments_ago_is_handed_out_without_a_ping(
    postgres_database: Database,
) -> None:
    pings: list[str] = []

    def note(record: Any) -> None:
        if record.query == "SELECT 1":
            pings.append(record.query)

    async with postgres_database.read_engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        driver.add_query_logger(note)
    try:
        for _ in range(5):
            async with postgres_database.read_engine.connect() as connection:
                got = await connection.get_raw_connection()
                assert got.driver_connection is driver  # The same pooled connection.
                await connection.execute(sa.text("SELECT 2"))
        unpinged = len(pings)

        await asyncio.sleep(TRUSTED_FOR_SECONDS + 0.1)
        async with postgres_database.read_engine.connect() as connection:
            await connection.execute(sa.text("SELECT 2"))
    finally:
        driver.remove_query_logger(note)

    assert unpinged == 0
    assert pings == ["SELECT 1"]  # Idle past the window: asked once before use.


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_the_transport_of_a_pooled_connection_is_found(
    postgres_database: Database,
) -> None:
    """db.connection_checks reads asyncpg's private `_transport`: an upgrade that moves it
    would silently ping every checkout again (or trust a socket it cannot watch)."""
    async with postgres_database.read_engine.connect() as connection:
        raw = await connection.get_raw_connection()
        transport = transport_of(raw.driver_connection)
        assert transport is not None
        assert not transport.is_closing()
        sock = transport.get_extra_info("socket")
        mode = os.fstat(sock.fileno()).st_mode
        peer = sock.getpeername()
        server_port = (await connection.execute(sa.text("SELECT inet_server_port()"))).scalar()

    assert stat.S_ISSOCK(mode)
    if isinstance(peer, tuple):  # TCP; over a Unix socket the server has no port.
        assert peer[1] == server_port


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_readiness_gives_up_within_the_connect_timeout(
    proxied: Database, proxy: TcpProxy
) -> None:
    assert await proxied.is_reachable()
    proxy.freeze()

    started = time.monotonic()
    reachable = await proxied.is_reachable()
    elapsed = time.monotonic() - started

    assert not reachable
    assert elapsed < CONNECT_TIMEOUT + MARGIN


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_a_statement_in_flight_when_the_server_freezes_ends_at_the_statement_timeout(
    proxied: Database, proxy: TcpProxy
) -> None:
    statement = asyncio.create_task(select_one_after(proxied, seconds=0.5))
    await asyncio.sleep(0.2)
    proxy.freeze()

    error = await failure_within(STATEMENT_TIMEOUT + MARGIN, statement)
    proxy.restore()

    assert isinstance(error, TimeoutError)
    assert is_database_unavailable(error)
    assert await select_one(proxied) == 1


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_the_first_query_after_postgresql_restarted_succeeds(
    proxied: Database, proxy: TcpProxy
) -> None:
    assert await select_one(proxied) == 1
    proxy.drop()  # Every pooled connection is closed under the pool's feet…
    proxy.restore()  # …and the server is back before anyone asks.

    assert await select_one(proxied) == 1


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_a_dropped_server_fails_at_once(proxied: Database, proxy: TcpProxy) -> None:
    assert await select_one(proxied) == 1
    proxy.drop()

    error = await failure_within(MARGIN, select_one(proxied))
    proxy.restore()

    assert is_database_unavailable(error)
    assert await select_one(proxied) == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_a_request_waits_for_a_free_connection_at_most_the_pool_timeout(
    database_url: str,
) -> None:
    settings = faults_settings(database_url).model_copy(update={"database_pool_size": 1})
    database = Database.from_settings(settings)
    try:
        async with database.engine.connect() as held:
            await held.execute(sa.text("SELECT 1"))
            error = await failure_within(0.5 + MARGIN, select_one(database))
    finally:
        await database.dispose()

    assert isinstance(error, sa.exc.TimeoutError)
    assert is_database_unavailable(error)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_sqlite_writer_kept_out_of_the_write_lock_is_an_outage(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "locked.db"
    path.write_bytes(sqlite_template.read_bytes())
    database = Database.from_settings(faults_settings(f"sqlite+aiosqlite:///{path}"))
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # Another process's writer, which never finishes.

        async def write() -> None:
            async with database.unit_of_work() as session:
                await session.execute(sa.text("DELETE FROM events"))

        error = await failure_within(0.2 + MARGIN, write())
    finally:
        holder.close()
        await database.dispose()

    assert "database is locked" in str(error)
    assert is_database_unavailable(error)


async def in_a_transaction(session: AsyncSession) -> bool:
    """Whether the session's connection is inside a transaction: a SET LOCAL holds then."""
    await session.execute(sa.text("SET LOCAL lock_timeout = '123s'"))
    return bool((await session.execute(sa.text("SHOW lock_timeout"))).scalar_one() == "123s")


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_a_stream_left_early_ends_its_cursor_and_transaction(
    postgres_database: Database,
) -> None:
    numbers = sa.select(sa.func.generate_series(1, 100_000).label("n"))
    inside: list[bool] = []

    async def read_until_a_bound(session: AsyncSession) -> None:
        async with streamed_rows(session, numbers) as rows:
            async for row in rows:
                inside.append(await in_a_transaction(session))  # A cursor needs one.
                if row.n == 3:
                    raise LookupError("a bound met while reading")

    async with postgres_database.session() as session:
        assert not await in_a_transaction(session)  # Reads run in autocommit.
        with pytest.raises(LookupError):
            await read_until_a_bound(session)

        assert inside == [True, True, True]
        assert not await in_a_transaction(session)
        assert (await session.execute(sa.text("SELECT 1"))).scalar_one() == 1


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_a_stream_cut_by_an_outage_reports_the_outage(postgres_database: Database) -> None:
    numbers = sa.select(sa.func.generate_series(1, 1_000_000).label("n"))

    async def read_while_the_backend_is_terminated() -> None:
        async with postgres_database.session() as session:
            backend = (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            async with streamed_rows(session, numbers) as rows:
                async for _row in rows:
                    async with postgres_database.engine.connect() as other:
                        await other.execute(
                            sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}
                        )

    with pytest.raises((sa.exc.DBAPIError, asyncpg.InterfaceError)) as raised:
        await read_while_the_backend_is_terminated()

    # The lost connection is what the caller sees (a 503), not the failed ROLLBACK after it.
    assert is_database_unavailable(raised.value), repr(raised.value)
    async with postgres_database.session() as session:
        assert (await session.execute(sa.text("SELECT 1"))).scalar_one() == 1


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_an_undo_after_an_outage_leaves_the_outage_to_report(
    postgres_database: Database,
) -> None:
    async def set_then_lose_the_connection() -> None:
        async with postgres_database.session() as session:
            backend = (await session.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            await session.execute(sa.text("SET enable_sort = off"))
            async with undone_after(session, "RESET enable_sort"):
                async with postgres_database.engine.connect() as other:
                    await other.execute(
                        sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}
                    )
                await session.execute(sa.text("SELECT 1"))

    with pytest.raises(sa.exc.DBAPIError) as raised:
        await set_then_lose_the_connection()

    assert raised.value.connection_invalidated
    assert is_database_unavailable(raised.value)
