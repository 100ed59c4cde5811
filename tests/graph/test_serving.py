"""graph/serving.py: request heads have a deadline, connections a hard cap (in process).

The first test checks what HttpProtocol relies on in uvicorn, by name: a failure there means
an upgrade of uvicorn moved it; see graph/serving.py. The others run the protocol on real
sockets of this event loop; tests/e2e/test_slow_clients.py runs it in `usage-events serve`.
"""

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from uvicorn._types import ASGIApplication, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from db.settings import Settings, get_settings
from graph.serving import (
    BODY_RECEIVED,
    MAX_LINGERING_REFUSALS,
    HttpProtocol,
    connection_limit,
    limit_concurrency,
)

UPGRADE = "an upgrade of uvicorn changed it; see graph/serving.py"
HEADER_READ_TIMEOUT = 0.3
# Generous: what is measured is that a connection is closed at all, not how promptly.
CLOSED_WITHIN = HEADER_READ_TIMEOUT + 5
HALF_A_HEAD = b"GET / HTTP/1.1\r\nHost: test\r\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


def test_uvicorn_still_has_what_http_protocol_overrides_and_reads() -> None:
    overridden = {
        name
        for name, value in vars(HttpProtocol).items()
        if callable(value) and not name.startswith("_")
    } | {"__init__"}

    assert overridden == {
        "__init__",
        "connection_made",
        "data_received",
        "on_message_begin",
        "on_headers_complete",
        "on_message_complete",
        "connection_lost",
    }
    for name in overridden:
        assert name in vars(HttpToolsProtocol), f"HttpToolsProtocol.{name} is gone: {UPGRADE}"
    parameters = list(inspect.signature(HttpToolsProtocol.__init__).parameters)
    assert parameters == ["self", "config", "server_state", "app_state", "_loop"], (
        f"HttpToolsProtocol now takes {parameters}: {UPGRADE}"
    )
    loop = asyncio.new_event_loop()
    try:
        protocol = HttpToolsProtocol(Config(app=_hello, log_config=None), ServerState(), {}, loop)
    finally:
        loop.close()
    attributes = ("limit_concurrency", "connections", "client", "logger", "loop", "url", "headers")
    protocol.on_message_begin()  # Sets url and headers, which HttpProtocol measures a head by.
    for attribute in attributes:
        assert hasattr(protocol, attribute), f"HttpToolsProtocol.{attribute} is gone: {UPGRADE}"
    # A refused connection is closed when the client closes its end: eof_received says so.
    keeps_half_closed = protocol.eof_received()  # type: ignore[func-returns-value]
    assert not keeps_half_closed, f"uvicorn keeps half-closed connections open: {UPGRADE}"
    # limit_concurrency() adds one for this rule, which connection_made applies earlier.
    assert "len(self.connections) >= self.limit_concurrency" in inspect.getsource(
        HttpToolsProtocol.on_headers_complete
    ), f"uvicorn counts connections against limit_concurrency differently: {UPGRADE}"


def test_the_connection_limit_leaves_the_process_its_own_descriptors() -> None:
    settings = Settings(max_connections=1000, database_pool_size=10)

    assert connection_limit(settings, None) == 1000
    assert connection_limit(settings, 1_048_576) == 1000
    assert connection_limit(settings, 256) == 256 - 24 - MAX_LINGERING_REFUSALS - 3 * 10
    assert connection_limit(settings, 40) == 1
    assert limit_concurrency(194) == 195


async def _hello(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        await asyncio.sleep(HEADER_READ_TIMEOUT * 3)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
def header_read_timeout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """HttpProtocol reads its deadline from the settings, as in each server process."""
    monkeypatch.setenv("USAGE_EVENTS_HEADER_READ_TIMEOUT", str(HEADER_READ_TIMEOUT))
    get_settings.cache_clear()
    assert get_settings().header_read_timeout == timedelta(seconds=HEADER_READ_TIMEOUT)
    yield
    get_settings.cache_clear()


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    """What HttpProtocol logs: through uvicorn's logger, as uvicorn's own warnings."""
    handler = Warnings()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@asynccontextmanager
async def serving(
    *,
    connections: int | None = None,
    keep_alive: int = 5,
    state: ServerState | None = None,
    app: ASGIApplication | None = None,
) -> AsyncIterator[int]:
    """HttpProtocol on a free port of this event loop, as uvicorn's server makes it."""
    config = Config(
        app=app or _hello,
        http=HttpProtocol,
        log_config=None,
        timeout_keep_alive=keep_alive,
        limit_concurrency=None if connections is None else limit_concurrency(connections),
    )
    state = state or ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpProtocol(config=config, server_state=state, app_state={}, _loop=loop),
        "127.0.0.1",
        0,
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for protocol in list(state.connections):
            protocol.transport.close()
        server.close()
        await server.wait_closed()


async def seconds_until_closed(reader: asyncio.StreamReader, since: float) -> float:
    """Read (and drop) what the server sends until it closes the connection."""
    async with asyncio.timeout(CLOSED_WITHIN):
        while await reader.read(65536):
            pass
    return time.monotonic() - since


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.usefixtures("header_read_timeout")
async def test_half_a_request_head_is_closed_after_the_header_timeout(
    warnings: Warnings,
) -> None:
    async with serving() as port:
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = ":".join(map(str, writer.get_extra_info("sockname")[:2]))
        writer.write(HALF_A_HEAD)

        waited = await seconds_until_closed(reader, opened)
        writer.close()

    assert waited >= HEADER_READ_TIMEOUT
    assert warnings.lines == [
        f"Connection from {client} closed: no complete request head within "
        f"{HEADER_READ_TIMEOUT:g} s (USAGE_EVENTS_HEADER_READ_TIMEOUT)."
    ]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.usefixtures("header_read_timeout")
async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    warnings: Warnings,
) -> None:
    async with serving() as port:
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        waited = await seconds_until_closed(reader, opened)
        writer.close()

    assert waited >= HEADER_READ_TIMEOUT
    assert len(warnings.lines) == 1


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.usefixtures("header_read_timeout")
async def test_a_complete_head_stops_the_clock_for_a_slow_answer(warnings: Warnings) -> None:
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")

        async with asyncio.timeout(CLOSED_WITHIN):
            answer = await reader.readuntil(b"hello")
        writer.close()

    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert warnings.lines == []


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.usefixtures("header_read_timeout")
async def test_on_a_kept_alive_connection_the_clock_starts_at_the_next_heads_first_byte(
    warnings: Warnings,
) -> None:
    async with serving(keep_alive=30) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        async with asyncio.timeout(CLOSED_WITHIN):
            await reader.readuntil(b"hello")

        # Idle for several header timeouts: the keep-alive timeout's to end, not theirs.
        await asyncio.sleep(HEADER_READ_TIMEOUT * 3)
        writer.write(REQUEST)
        async with asyncio.timeout(CLOSED_WITHIN):
            second = await reader.readuntil(b"hello")
        started = time.monotonic()
        writer.write(HALF_A_HEAD)
        waited = await seconds_until_closed(reader, started)
        writer.close()

    assert second.startswith(b"HTTP/1.1 200 OK\r\n")
    assert waited >= HEADER_READ_TIMEOUT
    assert len(warnings.lines) == 1
    assert "USAGE_EVENTS_HEADER_READ_TIMEOUT" in warnings.lines[0]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.usefixtures("header_read_timeout")
async def test_a_head_that_arrives_whole_arms_no_deadline(
    warnings: Warnings, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    armed: list[str] = []
    call_later = loop.call_later

    def noting_call_later(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        armed.append(getattr(callback, "__name__", ""))
        return call_later(delay, callback, *args)

    state = ServerState()
    async with serving(keep_alive=30, state=state) as port:
        monkeypatch.setattr(loop, "call_later", noting_call_later)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(REQUEST)
            async with asyncio.timeout(CLOSED_WITHIN):
                answer = await reader.readuntil(b"hello")
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            [protocol] = state.connections
            # Kept alive between requests: no head deadline armed (and none was needed).
            assert isinstance(protocol, HttpProtocol)
            assert protocol.deadline is None
            assert protocol.head_began_at is None
        writer.close()

    # The connection's own clock, armed when it opened; none for each head after it.
    assert armed.count("_head_timed_out") == 1
    assert "timeout_keep_alive_handler" in armed  # uvicorn's own, between requests
    assert warnings.lines == []


@pytest.mark.asyncio(loop_scope="session")
async def test_the_app_is_told_when_the_whole_body_has_been_read() -> None:
    """graph.http reads a body the server has whole without arming its deadline."""
    told: list[object] = []  # BODY_RECEIVED when the app starts, and once it is let go
    let_go = asyncio.Event()

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        told.append(scope.get(BODY_RECEIVED, False))
        await let_go.wait()
        told.append(scope.get(BODY_RECEIVED, False))
        await _hello(scope, receive, send)

    async def request(reader: asyncio.StreamReader, *parts: bytes) -> list[object]:
        told.clear()
        let_go.clear()
        for part in parts:
            writer.write(part)
            await asyncio.sleep(0.05)  # each part read on its own
        let_go.set()
        async with asyncio.timeout(CLOSED_WITHIN):
            await reader.readuntil(b"hello")
        return list(told)

    head = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\n"
    async with serving(app=app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        arriving = await request(reader, head + b"ab", b"cd")
        whole = await request(reader, head + b"abcd")
        writer.close()

    assert arriving == [False, True]
    assert whole == [True, True]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.usefixtures("header_read_timeout")
async def test_a_connection_beyond_the_limit_is_answered_503_at_once(warnings: Warnings) -> None:
    async with serving(connections=2) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        # Before the header timeout, and without a byte sent: at once.
        async with asyncio.timeout(HEADER_READ_TIMEOUT * 0.9):
            answer = await reader.read()
        writer.close()
        for _, held_writer in held:
            held_writer.close()

    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert answer.endswith(b"\r\n\r\nService Unavailable")
    assert len(warnings.lines) == 1
    assert "answered 503" in warnings.lines[0]
    assert "USAGE_EVENTS_MAX_CONNECTIONS" in warnings.lines[0]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.usefixtures("header_read_timeout")
async def test_a_flood_of_refusals_is_answered_without_keeping_more_than_a_few_open() -> None:
    async with serving(connections=1) as port:
        held = await asyncio.open_connection("127.0.0.1", port)
        # Clients that send their request at once and never close their end.
        refused = []
        for _ in range(MAX_LINGERING_REFUSALS * 2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            refused.append((reader, writer))

        # Each reads its 503: the request it sent is not answered with a reset.
        async with asyncio.timeout(CLOSED_WITHIN):
            answers = [await reader.read() for reader, _ in refused]
        lingering = len(HttpProtocol.lingering)
        for _, writer in [held, *refused]:
            writer.close()
        async with asyncio.timeout(CLOSED_WITHIN):
            while HttpProtocol.lingering:
                await asyncio.sleep(0.05)

    assert all(answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") for answer in answers)
    assert 0 < lingering <= MAX_LINGERING_REFUSALS


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.usefixtures("header_read_timeout")
async def test_a_request_head_over_its_bound_is_answered_431_and_closed(
    warnings: Warnings,
) -> None:
    async with serving(connections=4) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # A query string far longer than any head: sent in pieces, as a client streams it.
        writer.write(b"GET /?q=")
        for _ in range(20):
            writer.write(b"x" * 8192)
        async with asyncio.timeout(HEADER_READ_TIMEOUT * 0.9):
            answer = await reader.read()
        writer.close()
        # The next connection is served as usual.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        async with asyncio.timeout(CLOSED_WITHIN):
            served = await reader.readuntil(b"hello")
        writer.close()

    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert answer.endswith(b"use POST.\r\n\r\n")
    assert served.startswith(b"HTTP/1.1 200 OK\r\n")
    assert len(warnings.lines) == 1
    assert "request head passed 65536 bytes" in warnings.lines[0]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.usefixtures("header_read_timeout")
async def test_the_rest_of_a_body_answered_early_is_not_counted_as_the_next_head(
    warnings: Warnings,
) -> None:
    # As a 413 is answered before its body has arrived: the client goes on sending it on a
    # connection kept alive, and only then sends its next request.
    body_length = 4 * 65536
    async with serving(keep_alive=30) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % body_length)
        async with asyncio.timeout(CLOSED_WITHIN):
            first = await reader.readuntil(b"hello")
        for _ in range(body_length // 8192):
            writer.write(b"x" * 8192)
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(REQUEST)
        async with asyncio.timeout(CLOSED_WITHIN):
            second = await reader.readuntil(b"hello")
        writer.close()

    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert second.startswith(b"HTTP/1.1 200 OK\r\n")
    assert warnings.lines == []


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.usefixtures("header_read_timeout")
async def test_a_deadline_timer_that_wakes_early_waits_out_the_rest(
    warnings: Warnings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvloop's timers count whole milliseconds, so one may fire before its delay has
    passed; the head's deadline is kept by time.monotonic() and waits out the rest. Here
    every timer of the loop fires 50 ms early."""
    loop = asyncio.get_running_loop()
    call_later = loop.call_later

    def early_call_later(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        return call_later(max(0.0, delay - 0.05), callback, *args)

    async with serving() as port:
        monkeypatch.setattr(loop, "call_later", early_call_later)
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF_A_HEAD)

        waited = await seconds_until_closed(reader, opened)
        writer.close()

    assert waited >= HEADER_READ_TIMEOUT
    assert len(warnings.lines) == 1
