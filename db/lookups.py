"""Conditions for looking rows up by key that stay index lookups whatever the statistics say.

Two planner traps, both measured on this project's tables:

- PostgreSQL estimates `business_id = 'bus_…'` from its statistics. A business that grew
  since the last ANALYZE (a new tenant sending its first million events) is estimated at
  one row, and the planner then prefers any business-leading index and filters the whole
  business: 77 ms instead of 0.1 ms for one eventId among 200 000 events, and 0.7 s per
  1000-event batch at 1 000 000. Compared with a value the planner cannot see (an
  InitPlan), the business is estimated at the average size, and the unique
  (business_id, event_id) index wins as it should.
- SQLite plans `IN (?, ?, …)` with a few hundred bound values as a scan of the whole table
  (70 ms for 1000 eventIds among 200 000 events); the same values as a json_each subquery
  are searched one by one through the index (2.4 ms).

Repositories reach both through their base, db.repositories.scoped
(`readable(…, lookup=True)` and `one_of`).
"""

from collections.abc import Collection
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression


def same_business(
    column: sa.Column[str], business_id: str, dialect: str, *, by_primary_key: bool = False
) -> ColumnElement[bool]:
    """`column = business_id`, planned as if the business were of average size.

    `by_primary_key`: the rows are found by primary key, which SQLite must not trade for
    an index led by the business: its `+column` keeps the condition off every index.
    """
    if dialect == "postgresql":
        hidden = sa.select(sa.literal(business_id, sa.String())).scalar_subquery()
        return column == hidden
    if by_primary_key:
        return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type) == (
            business_id
        )
    return column == business_id


def one_of(column: sa.Column[Any], values: Collection[Any], dialect: str) -> ColumnElement[bool]:
    """`column IN values`, searched value by value through the column's index."""
    if dialect == "sqlite":
        listed = sa.func.json_each(orjson.dumps(list(values)).decode()).table_valued("value")
        return column.in_(sa.select(listed.c.value))
    return column.in_(values)
