"""Whether a pooled PostgreSQL connection may be handed to a request without a ping.

A ping is a round trip: on a busy process it was a tenth of a point read's CPU (issue 14),
spent to learn what is almost always known already. A connection returned to the pool
moments ago is trusted, as HikariCP trusts one used within its `aliveBypassWindowMs`
(500 ms), unless there is news of it:

- asyncpg has seen its socket close (`is_closed`, checked by the caller): the server
  ended the connection;
- its transport is closing, or its socket has bytes or an end of stream waiting that the
  event loop has not read yet (a server restarted a moment ago sends its goodbye and
  closes; on a connection at rest nothing else arrives): the connection is pinged, which
  then fails at once, and the pool opens a new one.

What this gives up: a server that froze (or a network that went silent) less than the
window before the connection is taken is not noticed at checkout, so such a request
waits for its statement timeout as one in flight at the freeze does; from the window on,
every checkout pings again and fails within the ping timeout.

`transport_of` is the one place that reaches into asyncpg beyond its public API (its
connection's `_transport`); tests/db/test_database.py fails if an upgrade moves it.
"""

import select
import time
from typing import Any

# A connection returned to the pool (or opened) less than this long ago is not pinged.
TRUSTED_FOR_SECONDS = 0.5

# Kept in the pool's record of each connection (`ConnectionPoolEntry.info`); SQLAlchemy
# clears it when it opens a new connection for the record.
_ANSWERED_AT = "answered_at"
_TRANSPORT = "transport"


def transport_of(driver_connection: Any) -> Any | None:
    """The asyncio transport of an asyncpg connection (with TLS, the TLS layer's), or None
    if it cannot be had (then the connection is always pinged)."""
    transport = getattr(driver_connection, "_transport", None)
    return transport if callable(getattr(transport, "is_closing", None)) else None


def note_opened(driver_connection: Any, info: dict[str, Any]) -> None:
    """A new connection: it has just answered (its handshake)."""
    info[_TRANSPORT] = transport_of(driver_connection)
    info[_ANSWERED_AT] = time.monotonic()


def note_returned(info: dict[str, Any]) -> None:
    """A connection back in the pool: the request that held it is done with it. (One whose
    statement was cut off or timed out never comes back: it is aborted and invalidated.)"""
    info[_ANSWERED_AT] = time.monotonic()


def needs_ping(info: dict[str, Any], now: float | None = None) -> bool:
    """True unless the connection was returned (or opened) within TRUSTED_FOR_SECONDS and
    nothing has happened to its socket since. (One asyncpg knows is closed is the caller's
    to refuse.)"""
    answered_at = info.get(_ANSWERED_AT)
    if answered_at is None:
        return True
    if (time.monotonic() if now is None else now) - answered_at >= TRUSTED_FOR_SECONDS:
        return True
    transport = info.get(_TRANSPORT)
    # Closing: the socket is gone or going. Over TLS asyncio closes the socket a turn of
    # the event loop before asyncpg hears of it, and its number may be another's by then;
    # the transport knows at once, and the socket is asked for afresh, never remembered.
    if transport is None or transport.is_closing():
        return True
    sock = transport.get_extra_info("socket")
    descriptor = sock.fileno() if sock is not None else -1
    return descriptor < 0 or _has_news(descriptor)


def _has_news(descriptor: int) -> bool:
    """Bytes, an end of stream or an error waiting on an idle connection's socket. One
    system call; poll, not select, so a descriptor number above 1023 is fine."""
    poller = select.poll()
    poller.register(descriptor, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))
