"""End-to-end: slow and excess connections against a real `usage-events serve` process.

The clients are raw TCP sockets that stop mid-request, as a slow or hostile client does:
half a request head (on a new connection, and on a kept-alive one), a body that stops
arriving, hundreds of such connections under a low `ulimit -n`, and connections beyond
USAGE_EVENTS_MAX_CONNECTIONS. Timeouts are set to a second or two; the bounds asserted
are several seconds wider, since what matters is that a connection ends at all.
"""

import asyncio
import json
import resource
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from db.database import Database
from db.settings import Settings
from graph.serving import connection_limit
from tests.e2e.server import RunningServer, running_server
from tests.support import make_tenant

HEADER_READ_TIMEOUT = 1.0
BODY_READ_TIMEOUT = 1.0
# How much later than its timeout a connection may end: generous, for a loaded machine.
SLACK = 10.0
VIEWER = "{ viewer { id } }"
HALF_A_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
LOW_FILE_LIMIT = 256
# What the server runs with: the defaults (running_server drops this shell's USAGE_EVENTS_*).
SERVER_SETTINGS = Settings.model_construct()


@contextmanager
def inherited_file_limit(limit: int | None) -> Iterator[None]:
    """Processes started inside run under `ulimit -n` LIMIT (None: this process's own).

    They inherit this process's soft limit, which is what the server reads and what its
    accept() is held to; this process gets its own back when the block ends.
    """
    if limit is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextmanager
def serving(
    database_url: str, directory: Path, *, file_limit: int | None = None, **settings: str
) -> Iterator[RunningServer]:
    """One server process, with these USAGE_EVENTS_* settings, under `ulimit -n` FILE_LIMIT."""
    with ExitStack() as stack:
        with inherited_file_limit(file_limit):
            server = stack.enter_context(
                running_server(database_url, directory, workers=1, settings=settings)
            )
        yield server


async def api_key_of_new_business(server: RunningServer) -> str:
    """A business made directly in the server's database: quicker than the CLI's process."""
    database = Database.from_settings(Settings(database_url=server.database_url))
    try:
        return (await make_tenant(database, name="Slow clients")).api_key
    finally:
        await database.dispose()


async def connect(server: RunningServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines if line)
    lengths = [value for name, value in headers.items() if name.lower() == "content-length"]
    return int(status_line.split()[1]), await reader.readexactly(int(lengths[0]))


async def until_closed(reader: asyncio.StreamReader, *, within: float) -> tuple[bytes, float]:
    """What the server sends before it closes the connection, and when it closed it."""
    received = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(65536):
            received += chunk
    return received, time.monotonic()


def client_name(writer: asyncio.StreamWriter) -> str:
    host, port = writer.get_extra_info("sockname")[:2]
    return f"{host}:{port}"


def header_timeout_line(client: str, seconds: float) -> str:
    return (
        f"Connection from {client} closed: no complete request head within {seconds:g} s "
        "(USAGE_EVENTS_HEADER_READ_TIMEOUT)."
    )


async def viewer(server: RunningServer, api_key: str) -> httpx.Response:
    """An ordinary authenticated request, on a connection of its own."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=SLACK) as client:
        return await client.post(
            "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {api_key}"}
        )


# (a) and (b): a request head that stops arriving


@pytest.mark.asyncio(loop_scope="session")
async def test_half_a_request_head_is_disconnected_after_the_header_timeout(
    database_url: str, tmp_path: Path
) -> None:
    with serving(database_url, tmp_path, HEADER_READ_TIMEOUT=str(HEADER_READ_TIMEOUT)) as server:
        # Given a client that sends half a request head and stops
        opened = time.monotonic()  # The server's clock starts when it accepts.
        reader, writer = await connect(server)
        writer.write(HALF_A_HEAD)

        # When it waits, then the server closes the connection after the header timeout
        received, closed = await until_closed(reader, within=HEADER_READ_TIMEOUT + SLACK)
        writer.close()

        assert received == b""
        assert closed - opened >= HEADER_READ_TIMEOUT
        assert header_timeout_line(client_name(writer), HEADER_READ_TIMEOUT) in server.log()


@pytest.mark.asyncio(loop_scope="session")
async def test_half_a_head_on_a_kept_alive_connection_is_disconnected_after_the_header_timeout(
    database_url: str, tmp_path: Path
) -> None:
    with serving(database_url, tmp_path, HEADER_READ_TIMEOUT=str(HEADER_READ_TIMEOUT)) as server:
        # Given a connection kept alive after one whole request
        reader, writer = await connect(server)
        writer.write(HEALTHZ)
        status, body = await read_response(reader)
        assert (status, json.loads(body)) == (200, {"status": "ok"})

        # When half of the next request head follows, and no more
        sent = time.monotonic()
        writer.write(HALF_A_HEAD)
        received, closed = await until_closed(reader, within=HEADER_READ_TIMEOUT + SLACK)
        writer.close()

        # Then the server closes the connection after the header timeout
        assert received == b""
        assert closed - sent >= HEADER_READ_TIMEOUT
        assert header_timeout_line(client_name(writer), HEADER_READ_TIMEOUT) in server.log()


# (c): a request body that stops arriving


@pytest.mark.asyncio(loop_scope="session")
async def test_a_body_that_stops_arriving_gets_408_after_the_body_timeout(
    database_url: str, tmp_path: Path
) -> None:
    with serving(database_url, tmp_path, BODY_READ_TIMEOUT=str(BODY_READ_TIMEOUT)) as server:
        api_key = await api_key_of_new_business(server)
        body = json.dumps({"query": VIEWER}).encode()
        reader, writer = await connect(server)

        # Given an authenticated request whose body stops halfway
        sent = time.monotonic()
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {api_key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )

        # When the client waits, then the answer is 408 once the body timeout has passed
        async with asyncio.timeout(BODY_READ_TIMEOUT + SLACK):
            status, answer = await read_response(reader)
        answered = time.monotonic()
        writer.close()

        assert status == 408, answer
        [error] = json.loads(answer)["errors"]
        assert error["extensions"]["code"] == "REQUEST_TIMEOUT"
        assert "USAGE_EVENTS_BODY_READ_TIMEOUT" in error["message"]
        assert answered - sent >= BODY_READ_TIMEOUT
        # And the server goes on serving
        assert (await viewer(server, api_key)).status_code == 200


@pytest.mark.asyncio(loop_scope="session")
async def test_a_client_that_leaves_while_sending_the_body_is_not_logged_as_an_error(
    database_url: str, tmp_path: Path
) -> None:
    with serving(database_url, tmp_path) as server:
        api_key = await api_key_of_new_business(server)
        body = json.dumps({"query": VIEWER}).encode()
        _, writer = await connect(server)
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {api_key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        await writer.drain()

        writer.close()
        await writer.wait_closed()
        # Requests on another connection are answered after the server has seen it leave.
        for _ in range(3):
            assert (await viewer(server, api_key)).status_code == 200
            await asyncio.sleep(0.2)

        log = server.log()
        assert "Traceback" not in log, log
        assert "ERROR" not in log, log


# (d): many slow connections under a low `ulimit -n`


@pytest.mark.asyncio(loop_scope="session")
async def test_ordinary_requests_are_served_while_many_slow_connections_are_open(
    database_url: str, tmp_path: Path
) -> None:
    slow_connections = 150
    limit = connection_limit(SERVER_SETTINGS, LOW_FILE_LIMIT)
    assert slow_connections < limit
    with serving(
        database_url, tmp_path, file_limit=LOW_FILE_LIMIT, HEADER_READ_TIMEOUT="60"
    ) as server:
        api_key = await api_key_of_new_business(server)
        assert f"At most {limit} connections per server process" in server.log()

        # Given 150 connections that each sent half a head, under `ulimit -n` 256
        slow = await asyncio.gather(*(connect(server) for _ in range(slow_connections)))
        for _, writer in slow:
            writer.write(HALF_A_HEAD)
        await asyncio.gather(*(writer.drain() for _, writer in slow))

        # When another client sends an ordinary authenticated request
        started = time.monotonic()
        response = await viewer(server, api_key)
        took = time.monotonic() - started

        # Then it is answered promptly, while every slow connection is still open
        assert response.status_code == 200, response.text
        assert "viewer" in response.json()["data"]
        assert took < SLACK
        assert sum(server.connections_per_process().values()) >= slow_connections
        assert not any(reader.at_eof() for reader, _ in slow)
        for _, writer in slow:
            writer.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_more_slow_connections_than_descriptors_get_503_or_the_header_timeout(
    database_url: str, tmp_path: Path
) -> None:
    # The incident: 300 connections that never finished their heads, under `ulimit -n`
    # 256, made every request fail (accept() failed), and nothing was logged. These send
    # nothing at all: in a flood a refused connection is closed soon after its 503, and
    # bytes written to it later would draw a reset, which asyncio reports instead of it.
    slow_connections = 300
    header_read_timeout = 5.0
    limit = connection_limit(SERVER_SETTINGS, LOW_FILE_LIMIT)
    with serving(
        database_url,
        tmp_path,
        file_limit=LOW_FILE_LIMIT,
        HEADER_READ_TIMEOUT=str(header_read_timeout),
    ) as server:
        api_key = await api_key_of_new_business(server)
        started = time.monotonic()
        slow = await asyncio.gather(*(connect(server) for _ in range(slow_connections)))
        # All of them open at once: none has reached its header timeout yet.
        assert time.monotonic() - started < header_read_timeout

        # Each connection is either answered 503 at once (beyond the limit) or held until
        # the header timeout; none is dropped unanswered, as a failed accept() would be.
        ended = await asyncio.gather(
            *(until_closed(reader, within=header_read_timeout + SLACK) for reader, _ in slow)
        )
        refused = [(received, closed - started) for received, closed in ended if received]
        timed_out = [closed - started for received, closed in ended if not received]
        for _, writer in slow:
            writer.close()

        assert len(refused) == slow_connections - limit
        assert all(received.startswith(b"HTTP/1.1 503 ") for received, _ in refused)
        assert max(took for _, took in refused) < header_read_timeout
        assert len(timed_out) == limit
        assert min(timed_out) >= header_read_timeout
        log = server.log()
        assert log.count("answered 503") == len(refused)
        assert log.count("(USAGE_EVENTS_HEADER_READ_TIMEOUT)") == len(timed_out)
        # And an ordinary request is served once they are gone
        response = await viewer(server, api_key)
        assert response.status_code == 200, response.text


# (e): connections beyond the limit


@pytest.mark.asyncio(loop_scope="session")
async def test_connections_beyond_the_limit_get_503_at_once_rather_than_hanging(
    database_url: str, tmp_path: Path
) -> None:
    max_connections = 20
    with serving(
        database_url, tmp_path, MAX_CONNECTIONS=str(max_connections), HEADER_READ_TIMEOUT="60"
    ) as server:
        api_key = await api_key_of_new_business(server)
        # Given as many open connections as the limit, each waiting in its request head
        held = [await connect(server) for _ in range(max_connections)]
        for _, writer in held:
            writer.write(HALF_A_HEAD)
        await asyncio.gather(*(writer.drain() for _, writer in held))

        # When one more client sends an ordinary request, then it gets 503 at once
        started = time.monotonic()
        refused = await viewer(server, api_key)
        took = time.monotonic() - started
        # (A silent one is answered too, before it has sent anything.)
        silent_reader, silent_writer = await connect(server)
        silent_answer, _ = await until_closed(silent_reader, within=SLACK)
        silent_writer.close()

        assert refused.status_code == 503, refused.text
        assert refused.text == "Service Unavailable"
        assert took < SLACK
        assert silent_answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")

        # And once the held connections are closed, requests are served again
        for _, writer in held:
            writer.close()
        deadline = time.monotonic() + SLACK
        while (response := await viewer(server, api_key)).status_code == 503:
            assert time.monotonic() < deadline, "still 503 after the held connections closed"
            await asyncio.sleep(0.1)
        assert response.status_code == 200, response.text
