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
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement


def same_business(
    column: sa.Column[str], business_id: "str | sa.BindParameter[str]", dialect: str
) -> ColumnElement[bool]:
    """`column = business_id` (a value, or a parameter bound later), planned as if the
    business were of average size."""
    if dialect == "postgresql":
        value = (
            business_id
            if isinstance(business_id, sa.BindParameter)
            else sa.literal(business_id, sa.String())
        )
        return column == sa.select(value).scalar_subquery()
    return column == business_id


def one_of(column: sa.Column[Any], values: Collection[Any], dialect: str) -> ColumnElement[bool]:
    """`column IN values`, searched value by value through the column's index."""
    if dialect == "sqlite":
        listed = sa.func.json_each(orjson.dumps(list(values)).decode()).table_valued("value")
        return column.in_(sa.select(listed.c.value))
    # One array parameter rather than one parameter per value: a 1000-event batch's
    # eventIds are bound, sent and planned as one value (ScalarArrayOp on the index).
    return column == sa.any_(sa.bindparam(None, list(values), type_=ARRAY(column.type)))
