"""Keyset (seek) pagination with Relay semantics, shared by every connection.

A cursor is the position of a row in the connection's order — the values of its
keyset columns — sealed with the key of the business it was issued for (AES-SIV,
RFC 5297), the connection kind and the business id being its associated data. A client
reads nothing in it (not the global insertion sequence of events, which would tell other
businesses' volume), and a cursor of another connection or another business, or one
changed by a single bit, fails authentication and is refused instead of silently meaning
something else. No OFFSET anywhere: every page is an index range scan that stops after
`size + 1` rows, whatever its depth.
"""

import base64
import binascii
import struct
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from db.database import Reading, dialect_of
from db.driver_reads import driver_rows
from db.errors import BadUserInput, UserErrorCode
from db.kept import Kept
from db.settings import Settings

Item = TypeVar("Item")
Position = tuple[Any, ...]

# Cursors are short; anything longer is refused before it is decoded.
MAX_CURSOR_LENGTH = 512
# Integers and instants are sealed as 8 bytes, whatever their size: a cursor's length
# must not tell the magnitude of a sequence. Strings (ids) carry a 2-byte length.
_INTEGER = struct.Struct(">q")
_LENGTH = struct.Struct(">H")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# base64 → base64url, as base64.urlsafe_b64encode translates.
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


@dataclass(frozen=True, slots=True, kw_only=True)
class PageRequest:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None
    # The business's key (BusinessRecord.cursor_key) that seals and opens the cursors.
    cursor_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Keyset:
    """The columns that order a connection, all ascending or all descending."""

    kind: str
    columns: tuple[sa.Column[Any], ...]
    value_types: tuple[type, ...]
    descending: bool = False
    # Made once from the fields above: a page of edges seals a cursor for every row.
    _keys: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _associated_kind: bytes = field(init=False, repr=False, compare=False)
    _plaintext_of: Callable[[Position], bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keys", tuple(column.key for column in self.columns))
        object.__setattr__(self, "_associated_kind", self.kind.encode())
        object.__setattr__(self, "_plaintext_of", _packer(self.value_types))

    def position_of(self, row: Any) -> Position:
        # As db.driver_reads.row_value reads a row, inlined: this runs for every edge.
        mapping = getattr(row, "_mapping", row)
        return tuple([mapping[key] for key in self._keys])

    def is_beyond(self, position: str) -> sa.ColumnElement[bool]:
        """Rows that come after the position bound as `position` (see `bound`) in the
        connection's order."""
        columns, values = sa.tuple_(*self.columns), self._parameters(position)
        return columns < values if self.descending else columns > values

    def is_before(self, position: str) -> sa.ColumnElement[bool]:
        """Rows that come before the position bound as `position` in the connection's order."""
        columns, values = sa.tuple_(*self.columns), self._parameters(position)
        return columns > values if self.descending else columns < values

    def bound(self, position_name: str, position: Position) -> dict[str, Any]:
        """The parameters that bind `position` where `is_beyond`/`is_before` name it."""
        return {
            _position_parameter(position_name, column): value
            for column, value in zip(self.columns, position, strict=True)
        }

    def _parameters(self, position_name: str) -> sa.Tuple:
        # Typed as their columns, as values compared with the columns would be.
        return sa.tuple_(
            *(
                sa.bindparam(_position_parameter(position_name, column), type_=column.type)
                for column in self.columns
            )
        )

    def order(self, *, reverse: bool = False, columns: Any = None) -> list[sa.UnaryExpression[Any]]:
        """ORDER BY terms; `columns` (a subquery's `.c`) stands in for the table's columns."""
        descending = self.descending != reverse
        ordered = [
            columns[column.key] if columns is not None else column for column in self.columns
        ]
        return [column.desc() if descending else column.asc() for column in ordered]


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    """One page of a connection. What a client may not ask for is worked out only when
    it does: each row's cursor, and whether rows lie beyond the cursors it was given."""

    items: list[Item]
    # The rows the items were made of, in the same order: their positions make cursors.
    rows: Sequence[Any] = field(repr=False)
    keyset: Keyset = field(repr=False)
    cursors: "Cursors" = field(repr=False)
    has_next_page: Callable[[], Awaitable[bool]] = field(repr=False)
    has_previous_page: Callable[[], Awaitable[bool]] = field(repr=False)
    # Counting is a separate query, run only when a client asks for totalCount (Q7).
    count_total: Callable[[], Awaitable[int]] = field(repr=False)
    # Each row's cursor once sealed, else None: a response may ask for a row's under
    # several keys, and pageInfo for the first and last again; each is sealed once.
    _sealed: list[str | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sealed", [None] * len(self.rows))

    def cursor_at(self, index: int) -> str:
        cursor = self._sealed[index]
        if cursor is None:
            cursor = self.cursors.encode(self.keyset, self.keyset.position_of(self.rows[index]))
            self._sealed[index] = cursor
        return cursor

    def all_cursors(self) -> list[str]:
        """Every row's cursor, in the page's order."""
        # Looked up once, not for each of the page's rows.
        sealed, rows = self._sealed, self.rows
        position_of, encode, keyset = self.keyset.position_of, self.cursors.encode, self.keyset
        if not any(sealed):  # None sealed yet, as when a plan asks first: one pass.
            cursors = [encode(keyset, position_of(row)) for row in rows]
            sealed[:] = cursors
            return cursors
        cursors = []
        for index, cursor in enumerate(sealed):
            if cursor is None:
                cursor = sealed[index] = encode(keyset, position_of(rows[index]))
            cursors.append(cursor)
        return cursors

    @property
    def edges(self) -> list[tuple[str, Item]]:
        return list(zip(self.all_cursors(), self.items, strict=True))

    @property
    def start_cursor(self) -> str | None:
        return self.cursor_at(0) if self.items else None

    @property
    def end_cursor(self) -> str | None:
        return self.cursor_at(-1) if self.items else None


# The ciphers of the businesses that paged lately, by cursor key; one beyond them makes
# its cipher again.
_ciphers: Kept[bytes, AESSIV] = Kept(256)


class Cursors:
    """The cursors of one business: keyset positions sealed with its key, and opened.

    AES-SIV is deterministic — a position always gets the same cursor — so it needs no
    nonce: AES-GCM's random nonces would be exhausted (2³² per key) by a business that
    pages a lot, every row of every page getting a cursor. The same cursor for the same
    position tells a client nothing it did not know.
    """

    __slots__ = ("_key", "_made", "_scope")

    def __init__(self, scope: str, key: bytes) -> None:
        self._scope = scope.encode()
        self._key = key
        self._made: AESSIV | None = None

    @property
    def _cipher(self) -> AESSIV:
        # Made when a cursor is first sealed or opened: most pages never need one. Each
        # business's is kept: making one cost a page after a cursor a fiftieth of its CPU.
        if self._made is None:
            self._made = _ciphers.get(self._key)
            if self._made is None:
                self._made = AESSIV(self._key)
                _ciphers.keep(self._key, self._made)
        return self._made

    def encode(self, keyset: Keyset, position: Position) -> str:
        sealed = self._cipher.encrypt(
            keyset._plaintext_of(position), [keyset._associated_kind, self._scope]
        )
        return _base64url(sealed).decode("ascii")

    def decode(self, keyset: Keyset, cursor: str) -> Position:
        try:
            if len(cursor) > MAX_CURSOR_LENGTH:
                raise ValueError("too long")
            unpadded = cursor.rstrip("=").encode("ascii")
            sealed = base64.urlsafe_b64decode(unpadded + b"=" * (-len(unpadded) % 4))
            # urlsafe_b64decode skips what is not base64; only the canonical spelling counts.
            if _base64url(sealed) != unpadded:
                raise ValueError("not base64url")
            plaintext = self._cipher.decrypt(sealed, [keyset._associated_kind, self._scope])
            return _unpack(plaintext, keyset.value_types)
        except (
            ValueError,
            TypeError,
            OverflowError,
            UnicodeError,
            binascii.Error,
            struct.error,
            InvalidTag,
        ) as error:
            raise BadUserInput(
                UserErrorCode.INVALID_CURSOR,
                f"The cursor {cursor[:64]!r} is not a cursor of this connection.",
            ) from error


def _base64url(sealed: bytes) -> bytes:
    """base64url without padding: base64.urlsafe_b64encode without its two Python
    layers, as every edge's cursor is spelled."""
    return binascii.b2a_base64(sealed, newline=False).translate(_URL_SAFE).rstrip(b"=")


def _packer(value_types: tuple[type, ...]) -> Callable[[Position], bytes]:
    """The plaintext of a position of `value_types`, each value as `_pack` spells it: the
    events' keyset (an instant and an integer, 8 bytes each) with one struct call, as a
    page of edges seals a cursor for every row; any other value by value."""
    if value_types == (datetime, int):
        instant_and_integer = struct.Struct(">qq")

        def pack_instant_and_integer(position: Position) -> bytes:
            instant, integer = position
            return instant_and_integer.pack(_microseconds(instant), integer)

        return pack_instant_and_integer

    def pack_each(position: Position) -> bytes:
        # A list, not a generator: join is faster on one.
        return b"".join(
            [
                _pack(value, value_type)
                for value, value_type in zip(position, value_types, strict=True)
            ]
        )

    return pack_each


def _microseconds(instant: datetime) -> int:
    """Microseconds since the epoch of an aware instant (TypeError for anything else)."""
    if not isinstance(instant, datetime) or instant.tzinfo is None:
        raise TypeError("an aware datetime expected")
    return (instant - _EPOCH) // _MICROSECOND


def _pack(value: Any, value_type: type) -> bytes:
    if value_type is datetime:
        return _INTEGER.pack(_microseconds(value))
    if value_type is int:
        return _INTEGER.pack(value)
    if value_type is str:
        encoded: bytes = value.encode()
        return _LENGTH.pack(len(encoded)) + encoded
    raise TypeError(f"no cursor spelling for {value_type.__name__}")


def _unpack(plaintext: bytes, value_types: tuple[type, ...]) -> Position:
    values: list[Any] = []
    offset = 0
    for value_type in value_types:
        if value_type is str:
            (length,) = _LENGTH.unpack_from(plaintext, offset)
            offset += _LENGTH.size
            end = offset + length
            if end > len(plaintext):
                raise ValueError("truncated")
            value = plaintext[offset:end].decode()
            # What the server sealed never holds one (PostgreSQL's text cannot): a leaked key
            # must not let a forged cursor fail in the database instead of here.
            if "\x00" in value:
                raise ValueError("NUL character")
            values.append(value)
            offset = end
            continue
        (number,) = _INTEGER.unpack_from(plaintext, offset)
        offset += _INTEGER.size
        values.append(_EPOCH + number * _MICROSECOND if value_type is datetime else number)
    if offset != len(plaintext):
        raise ValueError("trailing bytes")
    return tuple(values)


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


# The names under which a page binds its cursors' positions and its row limit.
AFTER = "page_after"
BEFORE = "page_before"
LIMIT = "page_limit"
# Page statements kept for templates (see fetch_page): up to 16 per listing shape (the
# order's two directions, cursors given or not, `first` or `last`).
MAX_KEPT_PAGE_STATEMENTS = 512


def _position_parameter(position_name: str, column: sa.Column[Any]) -> str:
    return f"{position_name}_{column.key}"


@dataclass(frozen=True, slots=True)
class PageShape:
    """What a page statement's SQL depends on besides its query: its order, which cursors
    narrow it, its direction, and the database it is written for."""

    template: Hashable
    # The keyset by its kind and direction (comparing columns would build SQL).
    keyset: tuple[str, bool]
    after: bool
    before: bool
    backward: bool
    dialect: str


_page_statements: Kept[PageShape, sa.Select[Any] | sa.CompoundSelect[Any]] = Kept(
    MAX_KEPT_PAGE_STATEMENTS
)


async def fetch_page(
    session: Reading,
    query: sa.Select[Any],
    keyset: Keyset,
    request: PageRequest,
    *,
    scope: str,
    settings: Settings,
    to_item: Callable[[Any], Item],
    branches: Sequence[sa.ColumnElement[bool]] = (),
    by_driver: bool = False,
    parameters: Mapping[str, Any] | None = None,
    template: Hashable | None = None,
) -> Page[Item]:
    """One page of `query` (already filtered and scoped) in the keyset's order.

    Implements the Relay Cursor Connections algorithm: cursors narrow the set, then
    `first` takes from its start or `last` from its end, and hasNextPage /
    hasPreviousPage look one row past the page or beyond the cursors.

    `branches` are disjoint conditions of which a row must meet one (an OR). Each branch
    is paged on its own index and the pages are merged, because an OR in one query
    cannot be read from an index in order and would sort every matching row.

    `parameters`: the values of the parameters `query` and `branches` bind. The page's
    own values (the cursors' positions, the row limit) are bound parameters too, so a
    page statement depends only on its shape: with `template`, a key that stands for
    `query` and `branches` as they are built each time (every value in them bound, and
    the same for every request of that key: a request's own values come in `parameters`),
    the page statement is built once per shape and kept, and a request pays for
    neither building it nor SQLAlchemy's cache key of it (issue 14's profiles: a third of
    SQLAlchemy's share of a page).

    `by_driver`: the page's rows are read by asyncpg itself where they can be
    (db.driver_reads), for columns that need no conversion by SQLAlchemy's types.
    """
    size = page_size(request, settings)
    backward = request.last is not None
    cursors = Cursors(scope, request.cursor_key)
    after = cursors.decode(keyset, request.after) if request.after is not None else None
    before = cursors.decode(keyset, request.before) if request.before is not None else None
    bound = {**(parameters or {}), LIMIT: size + 1}
    if after is not None:
        bound |= keyset.bound(AFTER, after)
    if before is not None:
        bound |= keyset.bound(BEFORE, before)
    dialect = dialect_of(session)
    shape = PageShape(
        template,
        (keyset.kind, keyset.descending),
        after is not None,
        before is not None,
        backward,
        dialect,
    )
    page_query = _page_statements.get(shape) if template is not None else None
    if page_query is None:
        page_query = _page_statement(query, keyset, branches, shape)
        if template is not None:
            _page_statements.keep(shape, page_query)
    rows: Sequence[Any] = (
        # A kept statement's own values are the same at every request (see `template`).
        await driver_rows(session, page_query, bound, kept=template is not None)
        if by_driver
        else (await session.execute(page_query, bound)).all()
    )
    has_more = len(rows) > size
    rows = list(rows[:size])
    if backward:
        rows.reverse()

    def matching() -> sa.Select[Any]:
        return query.where(sa.or_(*branches)) if branches else query

    async def exists(condition: sa.ColumnElement[bool]) -> bool:
        probe = (
            sa.select(sa.literal(1)).select_from(matching().where(condition).subquery()).limit(1)
        )
        return (await session.execute(probe, bound)).first() is not None

    # Beyond the page's own end, one row more told; beyond a cursor given, a query tells,
    # run only if the client asks for that field.
    async def has_next_page() -> bool:
        if not backward and has_more:
            return True
        return before is not None and await exists(sa.not_(keyset.is_before(BEFORE)))

    async def has_previous_page() -> bool:
        if backward and has_more:
            return True
        return after is not None and await exists(sa.not_(keyset.is_beyond(AFTER)))

    async def count_total() -> int:
        counted = sa.select(sa.func.count()).select_from(matching().order_by(None).subquery())
        return int((await session.execute(counted, bound)).scalar_one())

    return Page(
        [to_item(row) for row in rows],
        rows,
        keyset,
        cursors,
        has_next_page,
        has_previous_page,
        count_total,
    )


def _page_statement(
    query: sa.Select[Any],
    keyset: Keyset,
    branches: Sequence[sa.ColumnElement[bool]],
    shape: PageShape,
) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """The statement of a page of `shape`: its positions and limit bound, never values."""
    narrowed = query
    if shape.after:
        narrowed = narrowed.where(keyset.is_beyond(AFTER))
    if shape.before:
        narrowed = narrowed.where(keyset.is_before(BEFORE))
    order = keyset.order(reverse=shape.backward)
    limit = sa.bindparam(LIMIT, type_=sa.Integer())
    if branches and shape.dialect == "postgresql":
        # (… LIMIT n) UNION ALL (… LIMIT n) ORDER BY … LIMIT n: no subqueries, whose
        # column proxies SQLAlchemy would build afresh for every request.
        by_name: dict[str, sa.ColumnElement[Any]] = {
            column.key: sa.literal_column(column.key) for column in keyset.columns
        }
        return (
            sa.union_all(
                *(narrowed.where(branch).order_by(*order).limit(limit) for branch in branches)
            )
            .order_by(*keyset.order(reverse=shape.backward, columns=by_name))
            .limit(limit)
        )
    if branches:
        # SQLite allows ORDER BY and LIMIT only at the end of a compound SELECT.
        parts = [
            sa.select(narrowed.where(branch).order_by(*order).limit(limit).subquery())
            for branch in branches
        ]
        merged = sa.union_all(*parts).subquery()
        merged_order = keyset.order(reverse=shape.backward, columns=merged.c)
        return sa.select(merged).order_by(*merged_order).limit(limit)
    return narrowed.order_by(*order).limit(limit)
