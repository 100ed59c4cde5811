"""Keyset (seek) pagination with Relay semantics, shared by every connection.

A cursor is the position of a row in the connection's order — the values of its
keyset columns — plus the connection kind and the business it was issued for, so that
a cursor of another connection or another business is refused instead of silently
meaning something else. No OFFSET anywhere: every page is an index range scan that
stops after `size + 1` rows, whatever its depth.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.errors import BadUserInput, UserErrorCode
from db.settings import Settings

Item = TypeVar("Item")
Position = tuple[Any, ...]

# Cursors are short; anything longer is refused before it is decoded.
MAX_CURSOR_LENGTH = 512
# Keyset integers are BIGINT columns; a forged larger one would overflow in the database.
MIN_CURSOR_INTEGER = -(2**63)
MAX_CURSOR_INTEGER = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PageRequest:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None


@dataclass(frozen=True, slots=True)
class Keyset:
    """The columns that order a connection, all ascending or all descending."""

    kind: str
    columns: tuple[sa.Column[Any], ...]
    value_types: tuple[type, ...]
    descending: bool = False

    def position_of(self, row: Any) -> Position:
        return tuple(getattr(row, column.key) for column in self.columns)

    def is_beyond(self, position: Position) -> sa.ColumnElement[bool]:
        """Rows that come after `position` in the connection's order."""
        columns, values = sa.tuple_(*self.columns), sa.tuple_(*position)
        return columns < values if self.descending else columns > values

    def is_before(self, position: Position) -> sa.ColumnElement[bool]:
        """Rows that come before `position` in the connection's order."""
        columns, values = sa.tuple_(*self.columns), sa.tuple_(*position)
        return columns > values if self.descending else columns < values

    def order(self, *, reverse: bool = False, columns: Any = None) -> list[sa.UnaryExpression[Any]]:
        """ORDER BY terms; `columns` (a subquery's `.c`) stands in for the table's columns."""
        descending = self.descending != reverse
        ordered = [
            columns[column.key] if columns is not None else column for column in self.columns
        ]
        return [column.desc() if descending else column.asc() for column in ordered]


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    edges: list[tuple[str, Item]]
    has_next_page: bool
    has_previous_page: bool
    # Counting is a separate query, run only when a client asks for totalCount (Q7).
    count_total: Callable[[], Awaitable[int]]

    @property
    def start_cursor(self) -> str | None:
        return self.edges[0][0] if self.edges else None

    @property
    def end_cursor(self) -> str | None:
        return self.edges[-1][0] if self.edges else None


def encode_cursor(keyset: Keyset, scope: str, position: Position) -> str:
    values = [value.isoformat() if isinstance(value, datetime) else value for value in position]
    payload = orjson.dumps([keyset.kind, scope, *values])
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def decode_cursor(keyset: Keyset, scope: str, cursor: str) -> Position:
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(payload, list) or len(payload) != 2 + len(keyset.value_types):
            raise ValueError("wrong shape")
        kind, cursor_scope, *values = payload
        if kind != keyset.kind or cursor_scope != scope:
            raise ValueError("issued for another connection")
        return tuple(
            _decode_value(value, value_type)
            for value, value_type in zip(values, keyset.value_types, strict=True)
        )
    except (
        ValueError,
        TypeError,
        OverflowError,
        UnicodeError,
        binascii.Error,
        orjson.JSONDecodeError,
    ) as error:
        raise BadUserInput(
            UserErrorCode.INVALID_CURSOR,
            f"The cursor {cursor[:64]!r} is not a cursor of this connection.",
        ) from error


def _decode_value(value: Any, value_type: type) -> Any:
    if value_type is datetime:
        if not isinstance(value, str):
            raise TypeError("timestamp expected")
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("aware timestamp expected")
        # A forged offset on year 1 or 9999 overflows here rather than in the driver.
        return parsed.astimezone(UTC)
    # bool is an int in Python; a cursor never holds one.
    if type(value) is not value_type:
        raise TypeError(f"{value_type.__name__} expected")
    if isinstance(value, int) and not MIN_CURSOR_INTEGER <= value <= MAX_CURSOR_INTEGER:
        raise ValueError("integer out of range")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL character")
    return value


def page_size(request: PageRequest, settings: Settings) -> int:
    """The validated page size; Q3: first/last 1–MAX_PAGE_SIZE, not both."""
    if request.first is not None and request.last is not None:
        raise BadUserInput(UserErrorCode.PAGE_SIZE_INVALID, "Give first or last, not both.")
    size = request.first if request.first is not None else request.last
    if size is None:
        return settings.default_page_size
    if not 1 <= size <= settings.max_page_size:
        name = "first" if request.first is not None else "last"
        raise BadUserInput(
            UserErrorCode.PAGE_SIZE_INVALID,
            f"{name} must be between 1 and {settings.max_page_size}, not {size}.",
        )
    return size


async def fetch_page(
    session: AsyncSession,
    query: sa.Select[Any],
    keyset: Keyset,
    request: PageRequest,
    *,
    scope: str,
    settings: Settings,
    to_item: Callable[[Any], Item],
    branches: Sequence[sa.ColumnElement[bool]] = (),
) -> Page[Item]:
    """One page of `query` (already filtered and scoped) in the keyset's order.

    Implements the Relay Cursor Connections algorithm: cursors narrow the set, then
    `first` takes from its start or `last` from its end, and hasNextPage /
    hasPreviousPage look one row past the page or beyond the cursors.

    `branches` are disjoint conditions of which a row must meet one (an OR). Each branch
    is paged on its own index and the pages are merged, because an OR in one query
    cannot be read from an index in order and would sort every matching row.
    """
    size = page_size(request, settings)
    backward = request.last is not None
    after = decode_cursor(keyset, scope, request.after) if request.after is not None else None
    before = decode_cursor(keyset, scope, request.before) if request.before is not None else None
    matching = query.where(sa.or_(*branches)) if branches else query

    narrowed = query
    if after is not None:
        narrowed = narrowed.where(keyset.is_beyond(after))
    if before is not None:
        narrowed = narrowed.where(keyset.is_before(before))
    order = keyset.order(reverse=backward)
    if branches:
        parts = [
            sa.select(narrowed.where(branch).order_by(*order).limit(size + 1).subquery())
            for branch in branches
        ]
        merged = sa.union_all(*parts).subquery()
        merged_order = keyset.order(reverse=backward, columns=merged.c)
        page_query = sa.select(merged).order_by(*merged_order).limit(size + 1)
    else:
        page_query = narrowed.order_by(*order).limit(size + 1)
    rows: Sequence[Any] = (await session.execute(page_query)).all()
    has_more = len(rows) > size
    rows = list(rows[:size])
    if backward:
        rows.reverse()

    async def exists(condition: sa.ColumnElement[bool]) -> bool:
        probe = sa.select(sa.literal(1)).select_from(matching.where(condition).subquery()).limit(1)
        return (await session.execute(probe)).first() is not None

    has_next_page = (not backward and has_more) or (
        before is not None and await exists(sa.not_(keyset.is_before(before)))
    )
    has_previous_page = (backward and has_more) or (
        after is not None and await exists(sa.not_(keyset.is_beyond(after)))
    )

    async def count_total() -> int:
        counted = sa.select(sa.func.count()).select_from(matching.order_by(None).subquery())
        return int((await session.execute(counted)).scalar_one())

    edges = [(encode_cursor(keyset, scope, keyset.position_of(row)), to_item(row)) for row in rows]
    return Page(edges, has_next_page, has_previous_page, count_total)
