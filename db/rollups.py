"""UTC quarter-hours: the unit of the rollups, and when a bucket's edges fall on them.

Every UTC offset in use today is a whole number of quarter-hours, so the edges of any
zone's hours, days, weeks and months fall on quarter-hour edges, and a bucket is a union of
whole quarters. A few historical offsets are not (local mean time before a zone adopted
standard time, e.g. Europe/Amsterdam's +00:19:32 until 1937): a query whose edges fall
off the quarter-hour grid is answered from the raw events instead.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

QUARTER = timedelta(minutes=15)
QUARTER_SECONDS = 900
QUARTER_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def quarter_of(moment: datetime) -> int:
    """The quarter-hour holding `moment`: whole quarters since 1970-01-01T00:00Z (floor)."""
    return (moment - QUARTER_EPOCH) // QUARTER


def first_whole_quarter(moment: datetime) -> int:
    """The first quarter-hour starting at or after `moment`."""
    return -(-(moment - QUARTER_EPOCH) // QUARTER)


def quarter_start(quarter: int) -> datetime:
    return QUARTER_EPOCH + quarter * QUARTER


def on_quarter_edge(moment: datetime) -> bool:
    return (moment - QUARTER_EPOCH) % QUARTER == timedelta(0)


def quarter_column(moment: sa.ColumnElement[Any], dialect_name: str) -> sa.ColumnElement[int]:
    """quarter_of in SQL, for a stored moment (UTCDateTime)."""
    if dialect_name == "postgresql":
        epoch = sa.extract("epoch", moment)
        return sa.cast(sa.func.floor(epoch / QUARTER_SECONDS), sa.BigInteger)
    # SQLite stores the moment as UTC text, "YYYY-MM-DD HH:MM:SS.ffffff". Its date functions
    # round the fraction to milliseconds (59.9999995 s becomes the next minute), so only
    # the whole seconds are read; stored events are after 1970, where integer division
    # (which truncates) is the floor.
    whole_seconds = sa.func.substr(moment, 1, 19)
    seconds = sa.func.unixepoch(whole_seconds, type_=sa.BigInteger)
    return sa.type_coerce(seconds // QUARTER_SECONDS, sa.BigInteger)


def inner_quarters(edges: Sequence[datetime]) -> list[int] | None:
    """The quarters at which buckets 1… start, or None if an edge is off the grid."""
    inner = edges[1:-1]
    if not all(on_quarter_edge(edge) for edge in inner):
        return None
    return [quarter_of(edge) for edge in inner]
