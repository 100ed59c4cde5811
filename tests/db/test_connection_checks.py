"""When a pooled PostgreSQL connection is handed out without a ping (db.connection_checks)."""

import socket
from collections.abc import Iterator

import pytest

from db.connection_checks import TRUSTED_FOR_SECONDS, needs_ping, note_opened, note_returned


class Driver:
    """What note_opened reads of an asyncpg connection: its transport."""

    def __init__(self, sock: socket.socket | None) -> None:
        self._transport = Transport(sock) if sock is not None else None


class Transport:
    """An asyncio transport as the checks use it: whether it is closing, and its socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> socket.socket:
        assert name == "socket"
        return self.sock


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, servers = socket.socketpair()
    try:
        yield ours, servers
    finally:
        ours.close()
        servers.close()


def opened_at(sock: socket.socket | None, when: float) -> dict[str, object]:
    info: dict[str, object] = {}
    note_opened(Driver(sock), info)
    info["answered_at"] = when
    return info


def test_a_connection_that_answered_within_the_window_and_has_no_news_is_not_pinged(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    info = opened_at(pair[0], 100.0)

    assert not needs_ping(info, now=100.0)
    assert not needs_ping(info, now=100.0 + TRUSTED_FOR_SECONDS * 0.9)


def test_a_connection_idle_for_the_window_is_pinged(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    info = opened_at(pair[0], 100.0)

    assert needs_ping(info, now=100.0 + TRUSTED_FOR_SECONDS)
    assert needs_ping(info, now=100.0 + 60)


def test_returning_a_connection_to_the_pool_starts_its_window_again(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    info = opened_at(pair[0], 0.0)
    assert needs_ping(info)

    note_returned(info)

    assert not needs_ping(info)


@pytest.mark.parametrize("news", ["bytes", "end of stream"])
def test_news_on_the_socket_of_a_trusted_connection_has_it_pinged(
    pair: tuple[socket.socket, socket.socket], news: str
) -> None:
    ours, servers = pair
    info = opened_at(ours, 100.0)
    assert not needs_ping(info, now=100.0)

    if news == "bytes":
        servers.sendall(b"E")  # A server's goodbye (an ErrorResponse) not read yet.
    else:
        servers.close()  # A server restarted: its end closed.

    assert needs_ping(info, now=100.0)
    assert ours.recv(1, socket.MSG_PEEK) in (b"E", b"")  # Left for the driver to read.


def test_a_trusted_connection_whose_transport_is_closing_is_pinged(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # Over TLS asyncio closes the socket a turn before asyncpg hears of it, and its number
    # may be another connection's by then: the transport is what knows at once.
    driver = Driver(pair[0])
    info: dict[str, object] = {}
    note_opened(driver, info)
    assert not needs_ping(info)

    assert driver._transport is not None
    driver._transport.closing = True

    assert needs_ping(info)


def test_a_trusted_connection_whose_socket_was_closed_is_pinged(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    info = opened_at(pair[0], 100.0)
    assert not needs_ping(info, now=100.0)

    pair[0].close()  # Its number is freed (-1 from then on), whoever takes it next.

    assert needs_ping(info, now=100.0)


def test_a_connection_whose_transport_is_unknown_is_always_pinged() -> None:
    info = opened_at(None, 100.0)

    assert needs_ping(info, now=100.0)


def test_a_connection_never_noted_is_pinged() -> None:
    assert needs_ping({}, now=100.0)
