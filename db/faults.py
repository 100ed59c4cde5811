"""Which failures mean "the database cannot answer now" (an outage), not a bug.

Requests that meet one are answered 503 with Retry-After (graph.http) and logged as one
warning line; everything else stays a masked internal error with its traceback.
"""

import sqlite3

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa

# SQLSTATEs of a server that is away or refusing work for now: class 08 (connection
# exception), too_many_connections, query_canceled (statement_timeout, or a cancel of a
# statement the client stopped waiting for), and the server shutting down or starting up.
_UNAVAILABLE_SQLSTATE_CLASS = "08"
QUERY_CANCELED = "57014"
_UNAVAILABLE_SQLSTATES = frozenset({"53300", QUERY_CANCELED, "57P01", "57P02", "57P03"})

# SQLite's writer that waited busy_timeout for the write lock in vain.
_SQLITE_LOCKED = ("database is locked", "database table is locked")

# Causes followed at most: SQLAlchemy's error → the adapted driver error → the driver's own.
_MAX_CAUSES = 6


def is_database_unavailable(error: BaseException | None) -> bool:
    """True when `error`, or what caused it, is the database being away, slow or full."""
    return _outage_in(error) is not None


def is_statement_timeout(error: BaseException | None) -> bool:
    """True when PostgreSQL cancelled a statement for its statement_timeout: the server
    answers, the work was too long (or waited too long for a lock)."""
    for _ in range(_MAX_CAUSES):
        if error is None:
            return False
        if getattr(error, "sqlstate", None) == QUERY_CANCELED:
            return True
        error = getattr(error, "orig", None) or error.__cause__
    return False


def describe_fault(error: BaseException) -> str:
    """One line naming the outage by the driver's words: no SQL and no parameters."""
    cause = _outage_in(error) or error
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {message}" if message else type(cause).__name__


def _outage_in(error: BaseException | None) -> BaseException | None:
    for _ in range(_MAX_CAUSES):
        if error is None:
            return None
        if _is_outage(error):
            # The driver's own exception names the fault better than SQLAlchemy's wrapper.
            inner = getattr(error, "orig", None)
            return inner if isinstance(inner, BaseException) else error
        error = getattr(error, "orig", None) or error.__cause__
    return None


def _is_outage(error: BaseException) -> bool:
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    # The pool's checkout timeout and a connection found dead at checkout.
    if isinstance(error, sa.exc.TimeoutError | sa.exc.DisconnectionError):
        return True
    # A server-side cursor read after its connection was lost: asyncpg's own guard says so,
    # unwrapped by SQLAlchemy.
    if isinstance(error, asyncpg.InterfaceError) and "connection is closed" in str(error):
        return True
    # asyncio's timeouts (connect, command_timeout) are TimeoutError, an OSError; refused,
    # reset and unresolvable hosts are OSErrors too.
    if isinstance(error, OSError):
        return True
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and (
        sqlstate.startswith(_UNAVAILABLE_SQLSTATE_CLASS) or sqlstate in _UNAVAILABLE_SQLSTATES
    ):
        return True
    return isinstance(error, sqlite3.OperationalError) and str(error).startswith(_SQLITE_LOCKED)
