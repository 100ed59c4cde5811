"""db.warm_connections: a request's read connection kept for the next request, safely."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from db import warm_connections
from db.database import Database
from db.repositories.businesses import BusinessRepository
from db.settings import Settings
from db.warm_connections import WARM_SECONDS
from graph.context import RequestContext
from tests.support import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def lasting_warmth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parked connections stay parked while a test looks (a slow machine may take longer
    than WARM_SECONDS between two steps); the sweep's own test does without."""
    monkeypatch.setattr(warm_connections, "WARM_SECONDS", 60.0)


@pytest_asyncio.fixture
async def small_pool(postgres_database_url: str) -> AsyncIterator[Database]:
    """PostgreSQL with a pool of 4 (2 may be parked) and a short pool timeout."""
    settings = Settings(
        database_url=postgres_database_url,
        database_pool_size=4,
        database_pool_timeout=timedelta(seconds=5),
    )
    database = Database.from_settings(settings)
    try:
        yield database
    finally:
        await database.dispose()


def checked_out(database: Database) -> int:
    pool = database.engine.sync_engine.pool
    assert isinstance(pool, sa.pool.QueuePool)
    return pool.checkedout()


def backend_of(connection: AsyncConnection) -> Any:
    """The asyncpg connection under `connection`."""
    sync_connection = connection.sync_connection
    assert sync_connection is not None
    return sync_connection.connection.driver_connection


async def give_back(database: Database, count: int) -> None:
    """Take `count` read connections at once, then give each back as a request would."""
    held = [await database.read_connection() for _ in range(count)]
    for connection in held:
        await database.release_read_connection(connection)


async def answers(connection: AsyncConnection) -> bool:
    return bool(await backend_of(connection).fetchval("SELECT 1") == 1)


@pytest.mark.postgres
@pytest.mark.usefixtures("lasting_warmth")
async def test_a_clean_read_connection_is_handed_to_the_next_reader(
    postgres_database: Database,
) -> None:
    first = await postgres_database.read_connection()
    assert await answers(first)
    await postgres_database.release_read_connection(first)

    assert len(postgres_database.warm_reads) == 1
    assert checked_out(postgres_database) == 1  # still out of the pool, parked
    second = await postgres_database.read_connection()
    assert second is first
    assert await answers(second)
    await postgres_database.release_read_connection(second)


@pytest.mark.postgres
async def test_a_connection_with_a_transaction_begun_goes_back_to_the_pool(
    postgres_database: Database,
) -> None:
    connection = await postgres_database.read_connection()
    await connection.execute(sa.text("SELECT 1"))  # SQLAlchemy begins its transaction
    await postgres_database.release_read_connection(connection)

    assert len(postgres_database.warm_reads) == 0
    assert checked_out(postgres_database) == 0


@pytest.mark.postgres
@pytest.mark.usefixtures("lasting_warmth")
async def test_at_most_half_the_pool_is_parked(postgres_database: Database) -> None:
    size = postgres_database.engine.sync_engine.pool.size()  # type: ignore[attr-defined]
    await give_back(postgres_database, size // 2 + 3)

    assert len(postgres_database.warm_reads) == size // 2
    assert checked_out(postgres_database) == size // 2


@pytest.mark.postgres
async def test_parked_connections_go_back_to_the_pool_once_unused_for_a_moment(
    postgres_database: Database,
) -> None:
    await give_back(postgres_database, 3)
    assert checked_out(postgres_database) == 3

    await asyncio.sleep(WARM_SECONDS * 3)

    assert len(postgres_database.warm_reads) == 0
    assert checked_out(postgres_database) == 0


@pytest.mark.postgres
@pytest.mark.usefixtures("lasting_warmth")
async def test_a_parked_connection_the_server_ended_is_never_handed_out(
    postgres_database: Database,
) -> None:
    parked = await postgres_database.read_connection()
    pid = backend_of(parked).get_server_pid()
    await postgres_database.release_read_connection(parked)
    async with postgres_database.engine.connect() as other:
        await other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await asyncio.sleep(0.05)  # the server's goodbye reaches the socket

    taken = await postgres_database.read_connection()

    assert taken is not parked
    assert await answers(taken)
    await postgres_database.release_read_connection(taken)
    await asyncio.sleep(0.05)  # the ended one is given back (and discarded) by a task
    assert checked_out(postgres_database) == 1  # `taken`, parked


@pytest.mark.postgres
@pytest.mark.usefixtures("lasting_warmth")
async def test_a_parked_connection_is_never_handed_to_another_event_loop(
    postgres_database: Database,
) -> None:
    parked = await postgres_database.read_connection()
    await postgres_database.release_read_connection(parked)

    async def take() -> AsyncConnection | None:
        return postgres_database.warm_reads.take()

    assert await asyncio.to_thread(asyncio.run, take()) is None
    assert await postgres_database.read_connection() is parked
    await postgres_database.release_read_connection(parked)


class StubConnection:
    """As much of an AsyncConnection as parking looks at: clean, outside a transaction."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        pooled = SimpleNamespace(driver_connection=SimpleNamespace(), info=self.info)
        self.sync_connection = SimpleNamespace(closed=False, invalidated=False, connection=pooled)

    def in_transaction(self) -> bool:
        return False


async def test_a_loop_after_another_in_the_same_thread_gets_nothing_parked_by_it() -> None:
    """One thread runs one loop at a time, so the loop that parked a connection is known
    to be running here only while it runs in this thread: a later loop of the same thread
    (one asyncio.run after another) is another loop."""
    warm = warm_connections.WarmConnections(4, lambda: True)
    first = cast(AsyncConnection, StubConnection())

    def two_loops_in_one_thread() -> tuple[bool, AsyncConnection | None, bool]:
        async def park(connection: AsyncConnection) -> bool:
            return warm.park(connection)

        async def take() -> AsyncConnection | None:
            return warm.take()

        parked = asyncio.run(park(first))
        # The first loop has ended; the connection it parked stays its own.
        return (
            parked,
            asyncio.run(take()),
            asyncio.run(park(cast(AsyncConnection, StubConnection()))),
        )

    parked, taken, parked_again = await asyncio.to_thread(two_loops_in_one_thread)
    assert parked
    assert taken is None
    assert not parked_again
    assert len(warm) == 1


@pytest.mark.postgres
@pytest.mark.usefixtures("lasting_warmth")
async def test_disposing_gives_every_parked_connection_back(postgres_database_url: str) -> None:
    database = Database.from_settings(Settings(database_url=postgres_database_url))
    await give_back(database, 3)
    assert checked_out(database) == 3

    await database.warm_reads.close_all()

    assert checked_out(database) == 0
    # And nothing is parked from then on (a request cancelled at shutdown ends later).
    late = await database.read_connection()
    await database.release_read_connection(late)
    assert len(database.warm_reads) == 0
    assert checked_out(database) == 0
    await database.dispose()


@pytest.mark.usefixtures("lasting_warmth")
async def test_a_request_leaves_its_read_connection_warm_on_postgresql_only(
    database: Database, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "{ events(first: 5) { nodes { eventId } } }"},
        headers=tenant.headers,
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"events": {"nodes": []}}}

    parked = 1 if database.dialect_name == "postgresql" else 0
    assert len(database.warm_reads) == parked


@pytest.mark.usefixtures("lasting_warmth")
async def test_up_to_half_the_pool_on_postgresql_and_nothing_on_sqlite(database: Database) -> None:
    postgresql = database.dialect_name == "postgresql"
    connection = await database.read_connection()
    await database.release_read_connection(connection)

    assert database.warm_reads.limit == (10 if postgresql else 0)  # the default pool: 20
    assert len(database.warm_reads) == (1 if postgresql else 0)


@pytest.mark.postgres
@pytest.mark.usefixtures("lasting_warmth")
async def test_an_invalidated_connection_is_never_parked(postgres_database: Database) -> None:
    connection = await postgres_database.read_connection()
    await connection.invalidate()  # as a statement cut off leaves it
    await postgres_database.release_read_connection(connection)

    assert len(postgres_database.warm_reads) == 0
    assert checked_out(postgres_database) == 0


@pytest.mark.postgres
@pytest.mark.usefixtures("lasting_warmth")
async def test_with_the_pool_used_up_a_connection_goes_to_whoever_waits(
    small_pool: Database,
) -> None:
    reads = [await small_pool.read_connection() for _ in range(4)]  # the whole pool
    write = asyncio.create_task(write_one(small_pool))
    await asyncio.sleep(0.05)
    assert not write.done()  # waiting in the pool's queue

    await small_pool.release_read_connection(reads.pop())

    assert len(small_pool.warm_reads) == 0  # not parked: the write gets it
    async with asyncio.timeout(2):
        await write
    for connection in reads:
        await small_pool.release_read_connection(connection)


@pytest.mark.postgres
@pytest.mark.usefixtures("lasting_warmth")
async def test_parked_connections_go_to_whoever_waits_once_the_pool_is_used_up(
    small_pool: Database,
) -> None:
    parked = await small_pool.read_connection()
    await small_pool.release_read_connection(parked)
    assert len(small_pool.warm_reads) == 1
    held = [await small_pool.engine.connect() for _ in range(3)]  # the pool's other three
    write = asyncio.create_task(write_one(small_pool))
    await asyncio.sleep(0.05)
    assert not write.done()  # waiting, while one connection is parked

    # A new reader does not take the parked one past the waiting write: it goes to the pool.
    reader = asyncio.create_task(small_pool.read_connection())
    async with asyncio.timeout(2):
        await write
    assert len(small_pool.warm_reads) == 0
    async with asyncio.timeout(2):  # the write's connection, back in the pool
        await small_pool.release_read_connection(await reader)
    for connection in held:
        await connection.close()


async def write_one(database: Database) -> None:
    async with database.unit_of_work() as session:
        await session.execute(sa.text("SELECT 1"))


@pytest.mark.postgres
async def test_no_read_after_the_request_closed_its_reads(
    postgres_database: Database, postgres_database_url: str
) -> None:
    async with postgres_database.unit_of_work() as session:
        business = await BusinessRepository(session).create("Acme")
    context = RequestContext(
        postgres_database, Settings(database_url=postgres_database_url), business
    )
    async with context.reading() as connection:
        assert isinstance(connection, AsyncConnection)
        assert await answers(connection)
    await context.close()

    with pytest.raises(RuntimeError, match="reads are over"):
        async with context.reading():
            pass


@pytest.mark.postgres
async def test_a_write_after_a_request_read_on_the_same_connection_is_a_transaction(
    postgres_database_url: str,
) -> None:
    """A request's read connection is in autocommit (set on the connection itself); once
    it goes back to the pool that is undone, so a write on the same pooled connection
    runs in a real transaction, its statements all or nothing."""
    database = Database.from_settings(
        Settings(database_url=postgres_database_url, database_pool_size=1)
    )
    try:
        reading = await database.read_connection()
        assert reading.sync_connection is not None
        read_driver = reading.sync_connection.connection.driver_connection
        assert read_driver is not None
        await reading.exec_driver_sql("SELECT 1")
        assert not read_driver.is_in_transaction()  # Autocommit: no BEGIN was sent.
        await database.release_read_connection(reading)  # A pool of 1 parks none.
        async with database.unit_of_work() as session:
            writing = await session.connection()
            await writing.exec_driver_sql("SELECT 1")
            raw = await writing.get_raw_connection()
            write_driver = raw.driver_connection
            assert write_driver is read_driver  # The same pooled connection.
            assert write_driver.is_in_transaction()
    finally:
        await database.dispose()
