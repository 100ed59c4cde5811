"""A statement that SQLAlchemy builds and compiles, sent by asyncpg itself.

A page of events is one statement; SQLAlchemy's execution of it — the execution context,
the cursor adapter, the Result and its Row objects — cost more than asyncpg's own
reading of the hundred rows (issue 14's profiles). For a statement whose rows need no
conversion by SQLAlchemy's result types — plain text, integers, UTC instants, and jsonb,
which the codec SQLAlchemy's asyncpg dialect installs on every connection decodes with
the engine's json_deserializer — this compiles the statement through SQLAlchemy's own
compiled cache, binds its parameters as SQLAlchemy would, and reads the rows with
asyncpg on the session's connection: the same SQL and the same values, asyncpg Records
instead of Rows. SQLite, a session in a
transaction, and an engine whose statements someone observes through SQLAlchemy's cursor
events go the usual way.

This is the one module that reaches into SQLAlchemy beyond its public API
(`_compile_w_cache`, `construct_params`' collected parameters, `_bind_processors`, the
engine's `_compiled_cache`, the `_has_events` flags its events are fired by), pinned by
the lock file; tests/db/test_driver_reads.py compares its rows with SQLAlchemy's for
every kind of parameter the service binds, and checks that a listener on an engine, a
connection or either's class is heard, so an upgrade that moves any of it fails there.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import WARN_LINTING, SQLCompiler

from db.database import Reading, abort_if_cut_off, connection_of, sync_is_autocommit
from db.kept import Kept


async def driver_rows(
    session: Reading,
    statement: sa.Executable,
    parameters: Mapping[str, Any] | None = None,
    *,
    kept: bool = False,
) -> Sequence[Any]:
    """The rows of `statement` (with the values of its bound `parameters`, if any):
    asyncpg Records on PostgreSQL where the statement allows (see `_driver_form`), else
    SQLAlchemy's Rows. Either is read by position or by column name (`row_value`).

    `kept`: the statement is an object built once and sent again and again with only
    `parameters` changing (a point read's): its SQL and its own values are then worked
    out once per process, not at each call. So its own values must be constants: no
    `bindparam(callable_=…)`, no list or other value that may change in place."""
    # A request's reads hold a connection already: no coroutine to ask for it.
    connection = session if isinstance(session, AsyncConnection) else await connection_of(session)
    sync_connection = connection.sync_connection
    assert sync_connection is not None
    # In a transaction SQLAlchemy sends its BEGIN lazily, before its own first statement;
    # and an engine whose statements are observed (tracing, a test capturing them) hears
    # of each through SQLAlchemy's cursor events, which asyncpg alone would not fire: both
    # go the usual way. SQLAlchemy's echo (its engine logger at INFO) does not show the
    # statements sent on asyncpg. The questions are asked of the sync connection's own
    # attributes, the cheap ones first: through AsyncConnection's properties they cost a
    # point read 0.7 % of its instructions more.
    form = None
    if (
        sync_connection.dialect.name == "postgresql"
        and sync_is_autocommit(sync_connection)
        and not _observed(sync_connection)
    ):
        driver_form = _kept_driver_form if kept else _driver_form
        form = driver_form(statement, parameters, sync_connection)
    if form is None:
        return (await session.execute(statement, parameters)).all()
    sql, bound = form
    # The pooled connection it already holds, read without a trip through a greenlet
    # (AsyncConnection.get_raw_connection spawns one for what is then an attribute read);
    # a connection invalidated or closed meanwhile goes the way that may reconnect.
    if sync_connection.closed or sync_connection.invalidated:
        raw = await connection.get_raw_connection()
    else:
        raw = sync_connection.connection
    driver = raw.driver_connection
    assert driver is not None
    try:
        rows: Sequence[Any] = await driver.fetch(sql, *bound)
    except BaseException as error:
        await abort_if_cut_off(connection, driver, error)
        raise
    return rows


def _observed(connection: sa.Connection) -> bool:
    """Whether anyone listens to the connection's cursor events (its own or its engine's).

    SQLAlchemy fires a connection's events only when it or its engine has a listener of
    them (their `_has_events`, set by every `event.listen` on either or on their
    classes): without one, nobody can observe its statements, and the listener
    collections (a dozen calls through the event system) need not be asked."""
    if not (connection._has_events or connection.engine._has_events):
        return False
    events = connection.dispatch
    return bool(events.before_cursor_execute or events.after_cursor_execute)


def row_value(row: Any, key: str) -> Any:
    """The column `key` of a row of either kind `driver_rows` gives."""
    mapping = getattr(row, "_mapping", row)  # a Row's mapping view; a Record is one itself
    return mapping[key]


# A parameter of a kept statement given at each call: its position, its name, and its
# bind processor if it has one.
_GivenSlot = tuple[int, str, Callable[[Any], Any] | None]


@dataclass(frozen=True, slots=True)
class _KeptForm:
    # Both held so that their ids, in the key, are never another statement's or dialect's.
    statement: sa.Executable
    dialect: sa.Dialect
    sql: str
    # Every positional value, the statement's own processed and those given at each call
    # None; then where the given ones go. (A page's JSON keys are the statement's own
    # values: filled in once, not looked at again at each call.)
    own_values: tuple[Any, ...]
    given_slots: tuple[_GivenSlot, ...]

    def bound(self, parameters: Mapping[str, Any]) -> list[Any]:
        values = list(self.own_values)
        for position, name, process in self.given_slots:
            value = parameters[name]
            values[position] = process(value) if process else value
        return values


# By (statement id, names of the parameters given in their order, dialect id): each engine
# has a dialect of its own, and the SQL and bind processors are the dialect's.
_kept_forms: Kept[tuple[int, tuple[str, ...], int], _KeptForm] = Kept(256)


def _kept_driver_form(
    statement: sa.Executable, parameters: Mapping[str, Any] | None, connection: sa.Connection
) -> tuple[str, list[Any]] | None:
    """`_driver_form` of a statement sent again with only `parameters` changing."""
    given = parameters or {}
    # The names in the order given: a kept statement's callers give them alike each time
    # (another order is only another entry), and sorting them cost a point read 0.2 %.
    key = (id(statement), tuple(given), id(connection.dialect))
    kept = _kept_forms.get(key)
    if kept is None:
        found = _compiled_form(statement, given or None, connection)
        if found is None:
            return None
        compiled, values = found
        processors = _processors(compiled)
        assert compiled.positiontup is not None
        own_values: list[Any] = []
        given_slots: list[_GivenSlot] = []
        for position, name in enumerate(compiled.positiontup):
            process = processors.get(name)
            if name in given:
                own_values.append(None)
                given_slots.append((position, name, process))
            else:
                own_values.append(process(values[name]) if process else values[name])
        kept = _KeptForm(
            statement, connection.dialect, compiled.string, tuple(own_values), tuple(given_slots)
        )
        _kept_forms.keep(key, kept)
    return kept.sql, kept.bound(given)


def _driver_form(
    statement: sa.Executable, parameters: Mapping[str, Any] | None, connection: sa.Connection
) -> tuple[str, list[Any]] | None:
    """The SQL and positional parameters SQLAlchemy itself would send, or None where it
    would rewrite the statement at execution (expanding IN lists, literal parameters, a
    schema map): those go the usual way."""
    found = _compiled_form(statement, parameters, connection)
    if found is None:
        return None
    compiled, values = found
    processors = _processors(compiled)
    assert compiled.positiontup is not None
    bound = [
        processors[name](values[name]) if name in processors else values[name]
        for name in compiled.positiontup
    ]
    return compiled.string, bound


def _processors(compiled: SQLCompiler) -> Mapping[str, Callable[[Any], Any]]:
    # Without expanding parameters (refused by _compiled_form) each is one function.
    processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors  # type: ignore[assignment]
    return processors


def _compiled_form(
    statement: sa.Executable, parameters: Mapping[str, Any] | None, connection: sa.Connection
) -> tuple[SQLCompiler, Mapping[str, Any]] | None:
    """The statement compiled through SQLAlchemy's cache, and its parameters' values."""
    dialect = connection.dialect
    if not isinstance(statement, sa.ClauseElement):
        return None
    compiled, extracted, collected, _cache_hit = statement._compile_w_cache(
        dialect=dialect,
        compiled_cache=connection.engine._compiled_cache,
        column_keys=sorted(parameters) if parameters else [],
        for_executemany=False,
        schema_translate_map=None,
        linting=dialect.compiler_linting | WARN_LINTING,
    )
    if (
        not isinstance(compiled, SQLCompiler)
        or not compiled.positional
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.schema_translate_map
    ):
        return None
    values = compiled.construct_params(
        dict(parameters) if parameters else None,
        extracted_parameters=extracted,
        escape_names=False,
        _collected_params=collected,
    )
    assert values is not None
    return compiled, values
