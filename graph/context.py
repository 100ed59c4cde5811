"""What every resolver of one request shares: the caller's business, its reads, loaders."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from strawberry.types import Info as StrawberryInfo

from db.database import Database, Reading
from db.faults import is_database_unavailable
from db.pagination import PageRequest
from db.records import BusinessRecord
from db.settings import Settings
from graph.dataloaders import Loaders

if TYPE_CHECKING:
    from graph.prepared import AcceptedQuery

Result = TypeVar("Result")


@dataclass
class RequestContext:
    database: Database
    settings: Settings
    business: BusinessRecord
    # Whether a page's plain nodes may come as JSON text (graph.serialized): for the HTTP
    # endpoint on PostgreSQL, which writes the result with orjson.
    serialized_rows: bool = False
    # The query whose execution Strawberry began (graph.prepared), for the endpoint to keep.
    accepted_query: "AcceptedQuery | None" = field(default=None, init=False)
    loaders: Loaders = field(init=False)
    # The request's reads share one read connection (Database.read_connection), taken on
    # first use.
    _connection: AsyncConnection | None = field(default=None, init=False)
    # Sibling fields resolve concurrently, and a connection serves one statement at a time.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    # A database outage met by one field: the fields after it fail with it at once, rather
    # than each wait out the database again (or meet the connection it left unusable).
    _outage: Exception | None = field(default=None, init=False)
    # Set by `close`: no read after it.
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self)

    def reading(self) -> "ReadingTurn":
        """The request's read connection, taken on first use and held by one resolver at a
        time (`async with context.reading() as connection:`): a bare connection
        (Database.read_connection) rather than an ORM session, which would cost every
        request its Session and session transaction."""
        return ReadingTurn(self)

    @asynccontextmanager
    async def writing(self, *, long_running: bool = False) -> AsyncIterator[AsyncSession]:
        """One write transaction (a mutation field): committed on success, rolled back on raise.

        Afterwards the read connection's transaction (SQLite's; PostgreSQL reads have none)
        ends and the loaders forget what they cached, so the rest of the response sees what
        the mutation wrote. The connection itself stays the request's: a page read before
        the write may still be asked for its totalCount or hasNextPage, and reads with it.
        `long_running`: see Database.unit_of_work.
        """
        async with self._lock:
            try:
                if self._outage is not None:
                    raise self._outage
                async with self.database.unit_of_work(long_running=long_running) as session:
                    yield session
            except Exception as error:
                self._note_outage(error)
                raise
            finally:
                await self._end_read_transaction()
                self.loaders = Loaders(self)

    def _note_outage(self, error: BaseException) -> None:
        if isinstance(error, Exception) and is_database_unavailable(error):
            self._outage = error

    def page_request(
        self, first: int | None, after: str | None, last: int | None, before: str | None
    ) -> PageRequest:
        """A connection's paging arguments, with the key that seals this business's cursors."""
        return PageRequest(
            first=first,
            after=after,
            last=last,
            before=before,
            cursor_key=self.business.cursor_key,
        )

    def locked(self, read: Callable[[], Awaitable[Result]]) -> Callable[[], Awaitable[Result]]:
        """`read` (which uses the read connection) wrapped to run while holding it."""

        async def run() -> Result:
            async with self.reading():
                return await read()

        return run

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            await self._close_read_connection()

    async def _end_read_transaction(self) -> None:
        connection = self._connection
        if connection is None or not connection.in_transaction():
            return
        try:
            await connection.rollback()
        except Exception:
            # Lost in an outage, say: given up; the next read meets the outage itself.
            self._connection = None
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()

    async def _close_read_connection(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await self.database.release_read_connection(connection)


class ReadingTurn:
    """A resolver's turn at the request's read connection (RequestContext.reading): the
    lock held, no read after the context closed, an outage met by an earlier field raised
    again and one met now noted. A class rather than an asynccontextmanager, whose entry
    and exit (with the lock's and a generator's) cost a point read 5 % of its instructions."""

    __slots__ = ("_context",)

    def __init__(self, context: RequestContext) -> None:
        self._context = context

    async def __aenter__(self) -> Reading:
        context = self._context
        await context._lock.acquire()
        try:
            if context._closed:
                # A read after the response was made (none is known): the connection may
                # already serve another request (db.warm_connections).
                raise RuntimeError("the request's reads are over")
            if context._outage is not None:
                raise context._outage
            if context._connection is None:
                context._connection = await context.database.read_connection()
        except BaseException as error:
            try:
                context._note_outage(error)
            finally:
                context._lock.release()
            raise
        return context._connection

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if error is not None:
                self._context._note_outage(error)
        finally:
            self._context._lock.release()


Info = StrawberryInfo[RequestContext, None]
