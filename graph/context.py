"""What every resolver of one request shares: the caller's business, its reads, loaders."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
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
    # The request's reads share one connection of the read engine, taken on first use.
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

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Reading]:
        """The request's read connection, taken on first use and held by one resolver at a
        time: a bare connection (Database.read_connection) rather than an ORM session,
        which would cost every request its Session and session transaction."""
        async with self._lock:
            if self._closed:
                # A read after the response was made (none is known): the connection may
                # already serve another request (db.warm_connections).
                raise RuntimeError("the request's reads are over")
            with self._noting_outage():
                if self._connection is None:
                    self._connection = await self.database.read_connection()
                yield self._connection

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
                with self._noting_outage():
                    async with self.database.unit_of_work(long_running=long_running) as session:
                        yield session
            finally:
                await self._end_read_transaction()
                self.loaders = Loaders(self)

    @contextmanager
    def _noting_outage(self) -> Iterator[None]:
        if self._outage is not None:
            raise self._outage
        try:
            yield
        except Exception as error:
            if is_database_unavailable(error):
                self._outage = error
            raise

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


Info = StrawberryInfo[RequestContext, None]
