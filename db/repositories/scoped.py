"""The base of every repository of a business's rows: tenant scope in one place (SPEC §7, T2).

A repository derives each of its statements from this base, and each carries the business:
`readable`, `update_of` and `delete_of` add the condition on `business_id`,
`insert_values` sets the column, `execute_text` binds `:business_id` of hand-written SQL,
and `page_of` issues cursors that only this business can use. A table without a business
id of its own (event_revisions) is reached through its parent row (events): reads join the
parent, inserts copy the key from this business's parent row, so another business's key
reads and writes nothing.

The business condition comes in the two flavours of db.lookups: by default the value
itself, so that PostgreSQL plans listings by the business's real size; with `lookup=True`
the value hidden from the planner, for lookups by a unique key that must stay index
lookups however much the business grew since the last ANALYZE.
"""

import functools
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from db import lookups
from db.database import Reading, dialect_of
from db.driver_reads import driver_rows, row_value
from db.pagination import Keyset, Page, PageRequest, fetch_page
from db.settings import Settings
from db.tables import businesses, event_revisions, events
from db.upsert import dialect_insert, insert_or_ignore

Item = TypeVar("Item")

BUSINESS_COLUMN = "business_id"


@dataclass(frozen=True, slots=True)
class Parent:
    """How the rows of a table without a business id belong to rows of one that has it."""

    table: sa.Table
    key: sa.Column[Any]
    link: sa.Column[Any]


# Revisions are keyed by their event's sequence and belong to the event's business.
PARENTS: dict[sa.Table, Parent] = {
    event_revisions: Parent(events, events.c.sequence, event_revisions.c.event_sequence),
}


class BusinessScopedRepository:
    def __init__(self, session: Reading, business_id: str) -> None:
        self.session = session
        self.business_id = business_id
        self.dialect_name = dialect_of(session)

    def owns(self, table: sa.Table, *, lookup: bool = False) -> sa.ColumnElement[bool]:
        """The condition that a row of `table`, which has a business id, is this business's."""
        return self._owned_by(table, self.business_id, lookup=lookup)

    def _owned_by(
        self, table: sa.Table, business: "str | sa.BindParameter[str]", *, lookup: bool
    ) -> sa.ColumnElement[bool]:
        if BUSINESS_COLUMN not in table.c:
            raise TypeError(f"{table.name} has no business id; reach it through its parent")
        column = table.c[BUSINESS_COLUMN]
        if lookup:
            return lookups.same_business(column, business, self.dialect_name)
        return column == business

    async def lock_business(self, *, exclusive: bool) -> None:
        """On PostgreSQL, lock this business's row: FOR KEY SHARE, as every writer of its
        events and rollups holds it (an event INSERT through its foreign key), or, with
        `exclusive`, FOR UPDATE, which waits for all of them and holds new ones until
        this transaction ends (a meter's build, a backfill's close or revert). SQLite's
        single writer already serializes them all."""
        if self.dialect_name != "postgresql":
            return
        await self.session.execute(
            sa.select(businesses.c.id)
            .where(businesses.c.id == self.business_id)
            .with_for_update(read=not exclusive, key_share=not exclusive)
        )

    def one_of(self, column: sa.Column[Any], values: Collection[Any]) -> sa.ColumnElement[bool]:
        """`column IN values`, searched value by value through the column's index."""
        return lookups.one_of(column, values, self.dialect_name)

    def readable(self, table: sa.Table, *columns: Any, lookup: bool = False) -> sa.Select[Any]:
        """SELECT `columns` (every column of `table` if none) of this business's rows."""
        return self._readable(table, columns, self.business_id, lookup=lookup)

    def readable_by_parameter(
        self, table: sa.Table, *columns: Any, lookup: bool = False
    ) -> sa.Select[Any]:
        """`readable`, with the business a bound parameter rather than this business's id:
        a statement that may be built once and kept for every business, whose pages
        `page_of(…, template=…)` reads with this business bound (the SQL is the same, the
        id having been sent as a bound parameter anyway)."""
        business = sa.bindparam(_BUSINESS_PARAMETER, type_=sa.String())
        return self._readable(table, columns, business, lookup=lookup)

    def _readable(
        self,
        table: sa.Table,
        columns: Sequence[Any],
        business: "str | sa.BindParameter[str]",
        *,
        lookup: bool,
    ) -> sa.Select[Any]:
        query = sa.select(*columns) if columns else sa.select(table)
        query = query.select_from(table)
        parent = PARENTS.get(table)
        if parent is None:
            return query.where(self._owned_by(table, business, lookup=lookup))
        return query.join(parent.table, parent.key == parent.link).where(
            self._owned_by(parent.table, business, lookup=lookup)
        )

    async def row_by_key(
        self, table: sa.Table, key: sa.Column[Any], value: Any, *, by_driver: bool = False
    ) -> Any | None:
        """The business's row of `table` whose unique `key` is `value` (a lookup: see
        `readable(lookup=True)`), or None. The statement is built once per table and key,
        the business and the value bound at each call: a point read pays for neither
        building it nor SQLAlchemy's cache key of it again. `by_driver`: read by asyncpg
        where it can be (db.driver_reads); its values are then as asyncpg reads them."""
        statement = _row_by_key(table, key.key, self.dialect_name)
        parameters = {_BUSINESS_PARAMETER: self.business_id, _KEY_PARAMETER: value}
        if by_driver:
            rows = await driver_rows(self.session, statement, parameters, kept=True)
            return rows[0] if rows else None
        return (await self.session.execute(statement, parameters)).first()

    async def value_by_key(
        self, table: sa.Table, key: sa.Column[Any], value: Any, column: sa.ColumnElement[Any]
    ) -> Any | None:
        """`column` (an expression over `table`) of the business's row of `table` whose
        unique `key` is `value`, read by asyncpg where it can be (db.driver_reads); None
        when there is no such row. The statement is built once per (table, key, column)."""
        statement = _value_by_key(table, key.key, self.dialect_name, column)
        parameters = {_BUSINESS_PARAMETER: self.business_id, _KEY_PARAMETER: value}
        rows = await driver_rows(self.session, statement, parameters, kept=True)
        return row_value(rows[0], _VALUE_LABEL) if rows else None

    def update_of(self, table: sa.Table, *, lookup: bool = False) -> sa.Update:
        """UPDATE of this business's rows of `table`; the caller narrows it further."""
        return sa.update(table).where(self.owns(table, lookup=lookup))

    def delete_of(self, table: sa.Table, *, lookup: bool = False) -> sa.Delete:
        """DELETE of this business's rows of `table`; the caller narrows it further."""
        return sa.delete(table).where(self.owns(table, lookup=lookup))

    def insert_values(
        self,
        table: sa.Table,
        values: Mapping[str, Any],
        *,
        ignoring_conflicts_on: Sequence[str] = (),
    ) -> Any:
        """INSERT of one row of this business (`ON CONFLICT DO NOTHING` on the columns given).

        A row of a table without a business id is inserted only if its parent row is this
        business's: the key is copied from that row (INSERT … SELECT), so a wrong key
        inserts nothing.
        """
        if BUSINESS_COLUMN in values:
            raise ValueError("the business of a scoped insert is the repository's own")
        parent = PARENTS.get(table)
        if parent is None:
            insert = (
                insert_or_ignore(self.dialect_name, table, list(ignoring_conflicts_on))
                if ignoring_conflicts_on
                else sa.insert(table)
            )
            return insert.values(**values, **{BUSINESS_COLUMN: self.business_id})
        if ignoring_conflicts_on:
            raise NotImplementedError("no ON CONFLICT for rows inserted through their parent")
        names = list(values)
        selected = [
            parent.key if name == parent.link.key else sa.literal(value, table.c[name].type)
            for name, value in values.items()
        ]
        parent_row = sa.select(*selected).where(
            self.owns(parent.table, lookup=True), parent.key == values[parent.link.key]
        )
        return sa.insert(table).from_select(names, parent_row)

    def insert_from_select(self, table: sa.Table, rows: sa.Select[Any]) -> Any:
        """INSERT … SELECT of this business's rows: `rows` (built from `readable`) names
        every column but the business id."""
        selected = rows.subquery("inserted_rows")
        names = [column.name for column in selected.c]
        if BUSINESS_COLUMN in names:
            raise ValueError("the business of a scoped insert is the repository's own")
        return sa.insert(table).from_select(
            [*names, BUSINESS_COLUMN],
            sa.select(*selected.c, sa.literal(self.business_id, sa.String)),
        )

    def merge_from_select(
        self,
        table: sa.Table,
        rows: sa.Select[Any] | sa.CompoundSelect[Any],
        conflict_columns: Sequence[str],
        merged: Callable[[Any], Mapping[str, Any]],
    ) -> Any:
        """INSERT … SELECT of this business's rows; a row whose `conflict_columns` clash
        with a stored one is merged into it: `merged(excluded)` gives the SET clause.

        `rows` names every column but the business id, and must be built from `readable`.
        Rows are inserted in conflict-column order, so that two transactions merging into
        overlapping rows lock them in the same order (no deadlock).
        """
        selected = rows.subquery("merged_rows")
        names = [column.name for column in selected.c]
        if BUSINESS_COLUMN in names:
            raise ValueError("the business of a scoped insert is the repository's own")
        ordered = sa.select(
            *selected.c, sa.literal(self.business_id, sa.String).label(BUSINESS_COLUMN)
        ).order_by(*(selected.c[name] for name in conflict_columns if name in names))
        insert = dialect_insert(self.dialect_name, table)
        return insert.from_select([*names, BUSINESS_COLUMN], ordered).on_conflict_do_update(
            index_elements=list(conflict_columns), set_=dict(merged(insert.excluded))
        )

    async def merge_rows(
        self,
        table: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        conflict_columns: Sequence[str],
        merged: Callable[[Any], Mapping[str, Any]],
    ) -> None:
        """Insert these rows of this business (executemany), each merged into the stored
        row its `conflict_columns` clash with, as `merged(excluded)` says."""
        if not rows:
            return
        if any(BUSINESS_COLUMN in row for row in rows):
            raise ValueError("the business of a scoped insert is the repository's own")
        insert = dialect_insert(self.dialect_name, table)
        statement = insert.on_conflict_do_update(
            index_elements=list(conflict_columns), set_=dict(merged(insert.excluded))
        )
        await self.session.execute(
            statement, [{**row, BUSINESS_COLUMN: self.business_id} for row in rows]
        )

    async def execute_text(
        self, statement: sa.TextClause, parameters: Mapping[str, Any]
    ) -> sa.Result[Any]:
        """A hand-written statement, its `:business_id` bound to this repository's business."""
        if BUSINESS_COLUMN in parameters:
            raise ValueError("the business of a scoped statement is the repository's own")
        if f":{BUSINESS_COLUMN}" not in statement.text:
            raise ValueError("hand-written SQL of a business's rows must use :business_id")
        return await self.session.execute(
            statement, {**parameters, BUSINESS_COLUMN: self.business_id}
        )

    async def page_of(
        self,
        query: sa.Select[Any],
        keyset: Keyset,
        request: PageRequest,
        settings: Settings,
        to_item: Callable[[Any], Item],
        branches: Sequence[sa.ColumnElement[bool]] = (),
        by_driver: bool = False,
        parameters: Mapping[str, Any] | None = None,
        template: Hashable | None = None,
    ) -> Page[Item]:
        """A page of `query` (from `readable`, or `readable_by_parameter` with `parameters`
        and, to keep its page statements, a `template` key: see db.pagination.fetch_page),
        with cursors valid for this business only."""
        if parameters and _BUSINESS_PARAMETER in parameters:
            raise ValueError("the business of a scoped statement is the repository's own")
        return await fetch_page(
            self.session,
            query,
            keyset,
            request,
            scope=self.business_id,
            settings=settings,
            to_item=to_item,
            branches=branches,
            by_driver=by_driver,
            parameters={**(parameters or {}), _BUSINESS_PARAMETER: self.business_id},
            template=template,
        )


_BUSINESS_PARAMETER = "scoped_business_id"
_KEY_PARAMETER = "scoped_key"
_VALUE_LABEL = "value"


@functools.cache
def _row_by_key(table: sa.Table, key: str, dialect_name: str) -> sa.Select[Any]:
    """SELECT every column of `table` WHERE it is the bound business's and `key` is the
    bound value; one object per (table, key, dialect), so its cache key is computed once."""
    return _by_key(sa.select(table), table, key, dialect_name)


# Bounded: the columns asked for are expressions made per selection (db.event_json).
@functools.lru_cache(maxsize=256)
def _value_by_key(
    table: sa.Table, key: str, dialect_name: str, column: sa.ColumnElement[Any]
) -> sa.Select[Any]:
    """`_row_by_key`, selecting `column` alone, labelled _VALUE_LABEL."""
    return _by_key(sa.select(column.label(_VALUE_LABEL)), table, key, dialect_name)


def _by_key(query: sa.Select[Any], table: sa.Table, key: str, dialect_name: str) -> sa.Select[Any]:
    business = sa.bindparam(_BUSINESS_PARAMETER, type_=sa.String())
    return query.select_from(table).where(
        lookups.same_business(table.c[BUSINESS_COLUMN], business, dialect_name),
        table.c[key] == sa.bindparam(_KEY_PARAMETER, type_=table.c[key].type),
    )
