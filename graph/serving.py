"""How `usage-events serve` bounds slow and excess connections, below the ASGI app.

uvicorn waits without limit for a request head: a connection that sends nothing, or half a
head, stays open until the client leaves, and a few hundred of them use up the process's
file descriptors; accept() then fails and every request fails with it. Its
`limit_concurrency` answers 503 only once a head is complete, so slow connections beyond
the limit hold descriptors too.

This is the one module that relies on uvicorn beyond its documented options: `HttpProtocol`
subclasses uvicorn's httptools protocol (documented: `--http` takes a protocol class) and
overrides the methods that tests/graph/test_serving.py checks by name, so an upgrade that
moves them fails there. uvicorn is pinned to its patch series (pyproject.toml).
"""

import asyncio
import resource
import time
from collections import deque
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from db.settings import Settings, get_settings

# uvicorn's own answer beyond limit_concurrency (flow_control.service_unavailable), with
# the Retry-After of the service's other 503s.
SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 19\r\n"
    b"connection: close\r\n"
    b"retry-after: 1\r\n"
    b"\r\n"
    b"Service Unavailable"
)

# Set in a request's scope once the server has read its whole body: graph.http then
# reads the body without arming its deadline, since reading it cannot wait (left out
# altogether, that deadline's timer was 8 % of `{ __typename }`'s CPU under load).
BODY_RECEIVED = "usage_events.body_received"

# The largest request head (request line and headers) read: a GET's query travels in it.
# Larger: 431 and the connection closed (send long queries with POST).
MAX_HEAD_BYTES = 64 * 1024
HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 51\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"The request head is over 65536 bytes; use POST.\r\n\r\n"
)

# How long a refused connection is kept, half-closed, for the client to close its end, and
# how many are kept so at once (in a flood, the oldest is closed for the newest).
REFUSAL_LINGER = 1.0
MAX_LINGERING_REFUSALS = 16

# Descriptors a server process needs besides the connections it serves: its own (17 at
# start-up, measured), those of lingering refusals, and per pooled database connection
# (a SQLite one holds its database and WAL files).
BASE_DESCRIPTORS = 24 + MAX_LINGERING_REFUSALS
DESCRIPTORS_PER_POOLED_CONNECTION = 3


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for request heads and a hard connection cap.

    A head must be complete within USAGE_EVENTS_HEADER_READ_TIMEOUT of the connection
    opening or, on a kept-alive connection, of its first byte: the idle wait before it is
    the keep-alive timeout's (a load balancer that reuses idle connections relies on it).
    A connection beyond USAGE_EVENTS_MAX_CONNECTIONS is answered 503 as soon as it is
    accepted, not once its head is complete, so slow ones never hold descriptors beyond it.
    """

    # Refused connections of this process kept half-closed right now, oldest first.
    lingering: ClassVar[deque["HttpProtocol"]] = deque()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Read in each worker process, as create_app reads the rest (0: no deadline).
        self.header_read_timeout = get_settings().header_read_timeout.total_seconds() or None
        # Between the first byte of a request and the end of its head (httptools' callbacks).
        self.in_head = False
        self.head_began = False  # During the read being parsed.
        self.head_bytes = 0
        # What will close the connection: the request head's deadline, or a refusal's end.
        self.deadline: asyncio.TimerHandle | None = None
        # When the head being read began, if its deadline is not armed yet: it is armed
        # only if the head is still incomplete once a read has been parsed, so a head that
        # arrives whole (nearly every one) costs no timer.
        self.head_began_at: float | None = None
        # When the armed deadline passes (time.monotonic()).
        self.head_deadline_at = 0.0
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn's own rule (on_headers_complete), applied before the head is read.
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            self.logger.warning(
                "Connection from %s answered 503: this process has %d connections open, "
                "its limit (USAGE_EVENTS_MAX_CONNECTIONS).",
                self._client_name(),
                len(self.connections) - 1,
            )
            self._refuse()
            return
        self._start_head_clock()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # The request of a refused connection, read and dropped (see _refuse).
        was_in_head = self.in_head
        self.head_began = False
        super().data_received(data)
        if self.in_head and self.head_began_at is not None and not self.transport.is_closing():
            self._start_head_clock(self.head_began_at)
        # httptools sets no bound on a head's size (h11 does), and a query string may be
        # megabytes. Only bytes known to be head are counted: after an answer given before
        # its request's body has arrived (a 413), the rest of that body is still parsed
        # (and dropped) as body, and a pipelined head may begin within `data`.
        if not self.in_head or self.transport.is_closing():
            return
        if was_in_head and not self.head_began:
            self.head_bytes += len(data)
        else:
            # The head began in `data` (after the end of a request before it, perhaps):
            # what httptools has handed over of it so far.
            self.head_bytes = len(self.url) + sum(len(n) + len(v) for n, v in self.headers)
        if self.head_bytes > MAX_HEAD_BYTES:
            self.logger.warning(
                "Connection from %s closed: its request head passed %d bytes.",
                self._client_name(),
                MAX_HEAD_BYTES,
            )
            self._stop_head_clock()
            self._refuse(HEAD_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_began = True
        self.head_bytes = 0
        # On a kept-alive connection the clock starts at the head's first byte: the idle
        # wait before it is the keep-alive timeout's. Armed after the read, if still needed.
        if self.deadline is None:
            self.head_began_at = time.monotonic()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._stop_head_clock()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.scope[BODY_RECEIVED] = True  # type: ignore[literal-required]

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        if self in self.lingering:
            self.lingering.remove(self)
        super().connection_lost(exc)

    def _refuse(self, answer: bytes = SERVICE_UNAVAILABLE) -> None:
        """Answer (503 by default) and close without reading a request, however slow the
        client is.

        The request the client sends meanwhile is read and dropped until it closes its end
        (at most REFUSAL_LINGER): closed at once, the connection would answer that request
        with a reset, which asyncio clients report instead of the 503 they have received.
        Only MAX_LINGERING_REFUSALS are kept so: in a flood the oldest, whose request has
        had the longest to arrive, is closed for the newest.
        """
        self.refused = True
        self.connections.discard(self)  # Not one of the connections the limit counts.
        self.transport.write(answer)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        if len(self.lingering) >= MAX_LINGERING_REFUSALS:
            self.lingering.popleft().transport.close()
        self.lingering.append(self)
        self.transport.write_eof()
        self.deadline = self.loop.call_later(REFUSAL_LINGER, self.transport.close)

    def _start_head_clock(self, since: float | None = None) -> None:
        """The head's deadline: the header timeout from `since` (time.monotonic(); default:
        now).

        Kept by time.monotonic(), not the event loop's clock: uvloop's counts whole
        milliseconds, as do its timers, so a deadline kept by it may pass up to a
        millisecond before the timeout has (a client measured 0.99991 s of a 1 s timeout).
        """
        self.head_began_at = None
        if self.header_read_timeout is not None:
            now = time.monotonic()
            self.head_deadline_at = (now if since is None else since) + self.header_read_timeout
            self.deadline = self.loop.call_later(
                max(0.0, self.head_deadline_at - now), self._head_timed_out
            )

    def _stop_head_clock(self) -> None:
        self.head_began_at = None
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _head_timed_out(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        early = self.head_deadline_at - time.monotonic()
        if early > 0:
            # Woken before the deadline (see _start_head_clock): wait out the rest, at
            # least the timers' millisecond.
            self.deadline = self.loop.call_later(max(early, 0.001), self._head_timed_out)
            return
        self.logger.warning(
            "Connection from %s closed: no complete request head within %g s "
            "(USAGE_EVENTS_HEADER_READ_TIMEOUT).",
            self._client_name(),
            self.header_read_timeout,
        )
        self.transport.close()

    def _client_name(self) -> str:
        if self.client is None:
            return "an unknown client"
        host, port = self.client
        return f"{host}:{port}"


def open_file_limit() -> int | None:
    """This process's `ulimit -n` (the soft limit), or None when there is none."""
    soft_limit, _hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft_limit == resource.RLIM_INFINITY else soft_limit


def connection_limit(settings: Settings, file_limit: int | None) -> int:
    """MAX_CONNECTIONS, lowered to what `ulimit -n` leaves once the process has its own files.

    Above that, accept() would fail before the limit is reached: the connection would be
    dropped without an answer, and so would every other until descriptors are freed.
    """
    if file_limit is None:
        return settings.max_connections
    needed = BASE_DESCRIPTORS + DESCRIPTORS_PER_POOLED_CONNECTION * settings.database_pool_size
    return max(1, min(settings.max_connections, file_limit - needed))


def limit_concurrency(connections: int) -> int:
    """uvicorn's `limit_concurrency` that lets `connections` connections be open at once.

    uvicorn answers 503 when the open connections, the new one included, reach it.
    """
    return connections + 1
