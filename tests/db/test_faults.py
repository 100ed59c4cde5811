"""Which failures are a database outage (503, retry) and which are bugs (500, traceback)."""

import socket
import sqlite3

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import pytest
import sqlalchemy as sa

from db.faults import describe_fault, is_database_unavailable


def wrapped(driver_error: Exception, *, invalidated: bool = False) -> sa.exc.DBAPIError:
    """A driver's error as SQLAlchemy raises it, with the parameters hidden."""
    error = sa.exc.DBAPIError.instance(
        "SELECT * FROM api_keys WHERE secret_hash = $1",
        ("secret-hash",),
        driver_error,
        sqlite3.Error,
        hide_parameters=True,
        connection_invalidated=invalidated,
    )
    assert isinstance(error, sa.exc.DBAPIError)
    return error


def caused_by(cause: Exception) -> Exception:
    try:
        raise RuntimeError("wrapper") from cause
    except RuntimeError as error:
        return error


OUTAGES = {
    "pool checkout timed out": sa.exc.TimeoutError("QueuePool limit of size 10 reached"),
    "connection found dead at checkout": sa.exc.DisconnectionError("no answer to a ping"),
    "connection invalidated": wrapped(sqlite3.InterfaceError("closed"), invalidated=True),
    "connect or command timeout": TimeoutError(),
    "refused": ConnectionRefusedError(111, "Connection refused"),
    "reset": ConnectionResetError(104, "Connection reset by peer"),
    "unknown host": socket.gaierror(-2, "Name or service not known"),
    "closed mid-statement": asyncpg.ConnectionDoesNotExistError("connection was closed"),
    "statement_timeout": asyncpg.QueryCanceledError("canceling statement due to timeout"),
    "server shutting down": asyncpg.AdminShutdownError("terminating connection"),
    "server starting up": asyncpg.CannotConnectNowError("the database system is starting up"),
    "too many connections": asyncpg.TooManyConnectionsError("too many clients already"),
    "sqlite write lock": wrapped(sqlite3.OperationalError("database is locked")),
    "timeout as a cause": caused_by(TimeoutError()),
}

NOT_OUTAGES = {
    "a bug": RuntimeError("boom"),
    "unique violation": asyncpg.UniqueViolationError("duplicate key"),
    "syntax error": asyncpg.PostgresSyntaxError("syntax error at or near"),
    "sqlite syntax": wrapped(sqlite3.OperationalError("near 'SELCT': syntax error")),
    "no such table": wrapped(sqlite3.OperationalError("no such table: events")),
    "integrity": wrapped(sqlite3.IntegrityError("UNIQUE constraint failed")),
    "nothing": None,
}


@pytest.mark.parametrize("error", OUTAGES.values(), ids=OUTAGES.keys())
def test_outages_are_recognised(error: Exception) -> None:
    assert is_database_unavailable(error)


@pytest.mark.parametrize("error", NOT_OUTAGES.values(), ids=NOT_OUTAGES.keys())
def test_everything_else_is_not_an_outage(error: Exception | None) -> None:
    assert not is_database_unavailable(error)


def test_an_outage_is_described_by_the_driver_without_sql_or_parameters() -> None:
    error = wrapped(sqlite3.OperationalError("database is locked"))

    assert describe_fault(error) == "OperationalError: database is locked"
    assert describe_fault(TimeoutError()) == "TimeoutError"
    assert "secret" not in describe_fault(error)
    assert "SELECT" not in describe_fault(error)
