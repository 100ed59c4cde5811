"""Fixtures: every database test runs on SQLite and, when configured, on PostgreSQL.

The PostgreSQL half needs USAGE_EVENTS_TEST_POSTGRES_URL (CI sets it). Without it those
tests are reported as skipped, never passed; with USAGE_EVENTS_TEST_REQUIRE_POSTGRES=1
(CI sets that too) a missing or unreachable PostgreSQL fails the run instead.
"""

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from db.database import Database
from db.migrate import upgrade_to_head
from db.settings import Settings
from db.tables import metadata
from graph.app import create_app
from tests.support import GraphQLClient, Tenant, make_tenant

POSTGRES_URL_VARIABLE = "USAGE_EVENTS_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_VARIABLE = "USAGE_EVENTS_TEST_REQUIRE_POSTGRES"
# Every table of the models, emptied between PostgreSQL tests.
TABLES = [table.name for table in metadata.sorted_tables]


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_POSTGRES_VARIABLE) == "1":
        pytest.fail(f"PostgreSQL is required here: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy, which is much faster than migrating."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade_to_head(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated, dropped at the end."""
    with _fresh_postgres_database("usage_events_test") as url:
        upgrade_to_head(url)
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own with no tables yet, for tests of the migrations themselves."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    with _fresh_postgres_database("usage_events_empty") as url:
        yield url


@contextlib.contextmanager
def _fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new database on the server of USAGE_EVENTS_TEST_POSTGRES_URL, dropped afterwards."""
    base_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not base_url:
        _postgres_unavailable(f"{POSTGRES_URL_VARIABLE} is not set")
    assert base_url is not None
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_url = sa.make_url(base_url)
    try:
        _run_admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    except OSError as error:
        _postgres_unavailable(f"PostgreSQL at {admin_url.host} is unreachable: {error}")
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        _run_admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_admin_sql(url: sa.URL, statement: str) -> None:
    import asyncio

    async def run() -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(sa.text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "usage-events.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database_url")
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest_asyncio.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    database = Database.from_settings(settings)
    if database.dialect_name == "postgresql":
        await _empty_every_table(database)
    try:
        yield database
    finally:
        await database.dispose()


@pytest_asyncio.fixture
async def postgres_database(postgres_database_url: str) -> AsyncIterator[Database]:
    """PostgreSQL alone, for what only it has (row locks, planner settings).

    Tests using it are marked `postgres` and run once, on PostgreSQL; they are not a
    SQLite half reported as skipped.
    """
    database = Database.from_settings(Settings(database_url=postgres_database_url))
    await _empty_every_table(database)
    try:
        yield database
    finally:
        await database.dispose()


async def _empty_every_table(database: Database) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


@pytest_asyncio.fixture
async def tenant(database: Database) -> Tenant:
    return await make_tenant(database, name="Acme Analytics")


@pytest_asyncio.fixture
async def client(settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest_asyncio.fixture
async def api(client: httpx.AsyncClient, tenant: Tenant) -> GraphQLClient:
    return GraphQLClient(client, tenant)


@pytest_asyncio.fixture
async def other_api(client: httpx.AsyncClient, database: Database) -> GraphQLClient:
    """A second business on the same server: tenancy tests check it sees nothing of `api`."""
    return GraphQLClient(client, await make_tenant(database, name="Globex"))


@pytest.fixture
def statements(database: Database) -> Iterator[list[str]]:
    """Every SQL statement the server sends while the test runs, to count queries."""
    sent: list[str] = []

    def record(*args: object) -> None:
        sent.append(str(args[2]))

    sa.event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(database.engine.sync_engine, "before_cursor_execute", record)
