"""End-to-end: a real `usage-events serve` whose PostgreSQL stops answering, or goes away.

A TCP proxy (tests.tcp_proxy) stands between the server and PostgreSQL. Frozen, it keeps
every socket open and forwards nothing, as a hung host does; dropped, it closes every
connection and refuses new ones, as a stopped server does; restored, it forwards again.
Throughout, requests are answered 503 with Retry-After and DATABASE_UNAVAILABLE within a
few seconds, none hangs, and service comes back with no restart.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from db.api_key_cache import HEARTBEAT_SECONDS, HEARTBEAT_TIMEOUT_SECONDS
from tests.e2e.server import RunningServer, describe, run_cli, running_server
from tests.tcp_proxy import TcpProxy, tcp_proxy

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio(loop_scope="session")]

# The server's bounds, short so that each outage is over in seconds (defaults: 3, 30, 5).
CONNECT_TIMEOUT = 1.0
STATEMENT_TIMEOUT = 3.0
POOL_TIMEOUT = 2.0
POOL_SIZE = 10  # The default.
# What an answer may take beyond the bound it is held to (scheduling, a loaded machine).
MARGIN = 2.0
# A checkout during a freeze: the pooled connection's ping (1 s at most), then a new one.
OUTAGE_ANSWER_WITHIN = 1.0 + CONNECT_TIMEOUT + MARGIN
# Longer than any bound of the server's: a request still open then has hung.
CLIENT_TIMEOUT = 30.0

# Sent as a SQL parameter while the database is away; the log must never show it.
PARAMETER_MARKER = "never-logged-parameter"
VIEWER = "{ viewer { id } }"
EVENT = "query Event($eventId: String!) { event(eventId: $eventId) { id } }"
LATEST = "{ events(first: 1) { nodes { id } } }"
# How long a key checked before a freeze is still known without the database (its business
# is kept in memory while PostgreSQL's notifications are known to arrive: db.api_key_cache).
KEY_CACHE_TRUSTED_FOR = HEARTBEAT_SECONDS + HEARTBEAT_TIMEOUT_SECONDS


# One proxy and one server for the module: each test leaves the proxy restored, and
# starting a server (and the CLI) costs seconds each.


@pytest.fixture(scope="module")
def proxy(postgres_database_url: str) -> Iterator[TcpProxy]:
    url = sa.make_url(postgres_database_url)
    with tcp_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest.fixture(autouse=True)
def restored(proxy: TcpProxy) -> Iterator[None]:
    yield
    proxy.restore()


@pytest.fixture(scope="module")
def server(
    postgres_database_url: str, proxy: TcpProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    proxied = sa.make_url(postgres_database_url).set(host="127.0.0.1", port=proxy.port)
    settings = {
        "DATABASE_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
        "DATABASE_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT),
        "DATABASE_POOL_TIMEOUT": str(POOL_TIMEOUT),
    }
    url = proxied.render_as_string(hide_password=False)
    directory = tmp_path_factory.mktemp("faults")
    with running_server(url, directory, workers=1, settings=settings) as running:
        yield running


@pytest.fixture
def log_of_test(server: RunningServer) -> Callable[[], str]:
    """What the server logged since the test began."""
    start = len(server.log())
    return lambda: server.log()[start:]


@pytest.fixture(scope="module")
def api_key(server: RunningServer) -> str:
    result = run_cli(
        "create-business",
        f"Faults {uuid.uuid4().hex[:8]}",
        "--json",
        database_url=server.database_url,
        cwd=server.log_path.parent,
    )
    assert result.returncode == 0, describe(result)
    key: str = json.loads(result.stdout)["api_key"]
    return key


@pytest_asyncio.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as client:
        yield client


async def timed(request: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


def graphql(client: httpx.AsyncClient, api_key: str, query: str, **variables: str) -> Any:
    return client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {api_key}"},
    )


def assert_database_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    errors = response.json()["errors"]
    assert errors, response.text
    for error in errors:
        assert error["extensions"]["code"] == "DATABASE_UNAVAILABLE", response.text
        assert error["message"] == (
            "The database is unavailable right now; try again in a few seconds."
        )


def assert_log_shows_the_outage_plainly(log: str) -> None:
    """Outages are warnings: one line each, no traceback, no SQL parameter."""
    assert "database unavailable" in log, log
    assert "Traceback" not in log, log
    assert PARAMETER_MARKER not in log, log


async def assert_served(client: httpx.AsyncClient, api_key: str) -> None:
    response = await graphql(client, api_key, VIEWER)
    assert response.status_code == 200, response.text
    assert "errors" not in response.json(), response.text
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text


async def test_requests_pass_through_the_proxy(
    client: httpx.AsyncClient, api_key: str, proxy: TcpProxy
) -> None:
    await assert_served(client, api_key)

    assert proxy.connections >= 1


async def test_a_frozen_database_is_503_within_seconds_and_served_again_without_restart(
    client: httpx.AsyncClient, api_key: str, proxy: TcpProxy, log_of_test: Callable[[], str]
) -> None:
    await assert_served(client, api_key)  # The pool holds connections the freeze strands.
    proxy.freeze()

    frozen_at = time.monotonic()
    first, first_took = await timed(graphql(client, api_key, EVENT, eventId=PARAMETER_MARKER))
    second, second_took = await timed(graphql(client, api_key, LATEST))
    ready, ready_took = await timed(client.get("/readyz"))
    # Once the key cache can no longer hear of revocations, even a query that reads
    # nothing but the key's business waits for the database.
    await asyncio.sleep(max(0.0, KEY_CACHE_TRUSTED_FOR + 0.5 - (time.monotonic() - frozen_at)))
    third, third_took = await timed(graphql(client, api_key, VIEWER))
    proxy.restore()
    after, after_took = await timed(graphql(client, api_key, VIEWER))

    assert_database_unavailable(first)
    assert_database_unavailable(second)
    assert_database_unavailable(third)
    assert first_took < OUTAGE_ANSWER_WITHIN
    assert second_took < OUTAGE_ANSWER_WITHIN
    assert third_took < OUTAGE_ANSWER_WITHIN
    assert ready.status_code == 503, ready.text
    assert ready_took < CONNECT_TIMEOUT + MARGIN
    # The first request after the freeze is served: no restart, no failed first try.
    assert after.status_code == 200, after.text
    assert after.json() == {"data": {"viewer": {"id": after.json()["data"]["viewer"]["id"]}}}
    assert after_took < MARGIN
    await assert_served(client, api_key)
    assert_log_shows_the_outage_plainly(log_of_test())


async def test_no_request_hangs_when_more_arrive_during_a_freeze_than_the_pool_holds(
    client: httpx.AsyncClient, api_key: str, proxy: TcpProxy
) -> None:
    await assert_served(client, api_key)
    proxy.freeze()

    started = time.monotonic()
    responses = await asyncio.gather(
        *(graphql(client, api_key, LATEST) for _ in range(POOL_SIZE + 2))
    )
    took = time.monotonic() - started
    proxy.restore()

    for response in responses:
        assert_database_unavailable(response)
    # Those beyond the pool wait for a connection first, at most the pool timeout.
    assert took < POOL_TIMEOUT + OUTAGE_ANSWER_WITHIN
    await assert_served(client, api_key)


async def test_a_dropped_database_is_503_at_once_and_served_again_without_restart(
    client: httpx.AsyncClient, api_key: str, proxy: TcpProxy, log_of_test: Callable[[], str]
) -> None:
    await assert_served(client, api_key)
    proxy.drop()

    first, first_took = await timed(graphql(client, api_key, EVENT, eventId=PARAMETER_MARKER))
    ready, ready_took = await timed(client.get("/readyz"))
    proxy.restore()
    after = await graphql(client, api_key, VIEWER)

    assert_database_unavailable(first)
    assert first_took < MARGIN
    assert ready.status_code == 503, ready.text
    assert ready_took < MARGIN
    assert after.status_code == 200, after.text
    await assert_served(client, api_key)
    assert_log_shows_the_outage_plainly(log_of_test())


async def test_the_first_request_after_postgresql_restarted_is_served(
    client: httpx.AsyncClient, api_key: str, proxy: TcpProxy
) -> None:
    await assert_served(client, api_key)
    proxy.drop()  # Every pooled connection is closed…
    proxy.restore()  # …and PostgreSQL is back before the next request.

    response = await graphql(client, api_key, VIEWER)

    assert response.status_code == 200, response.text


async def test_a_request_in_flight_when_the_database_freezes_ends_503(
    client: httpx.AsyncClient,
    api_key: str,
    proxy: TcpProxy,
    log_of_test: Callable[[], str],
    postgres_database_url: str,
) -> None:
    await assert_served(client, api_key)
    # Reading an event waits for this lock, so the request is in PostgreSQL's hands when
    # the freeze begins (and its own statement_timeout's cancel cannot get through).
    locker = create_async_engine(postgres_database_url)
    try:
        async with locker.connect() as lock:
            await lock.execute(sa.text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            in_flight = asyncio.create_task(
                graphql(client, api_key, EVENT, eventId=PARAMETER_MARKER)
            )
            await wait_for_lock_waiter(lock)
            proxy.freeze()
            response = await in_flight
            took = time.monotonic() - started
            await lock.rollback()
    finally:
        await locker.dispose()
    proxy.restore()

    assert_database_unavailable(response)
    assert took < STATEMENT_TIMEOUT + MARGIN
    await assert_served(client, api_key)
    assert_log_shows_the_outage_plainly(log_of_test())


async def wait_for_lock_waiter(lock: AsyncConnection) -> None:
    """Until a session of the server waits for the test's lock (within a few seconds)."""
    for _ in range(50):
        waiting = await lock.execute(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        )
        if waiting.scalar_one():
            return
        await asyncio.sleep(0.05)
    pytest.fail("the server's request never waited for the lock")
