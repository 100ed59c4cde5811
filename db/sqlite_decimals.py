"""Exact decimal arithmetic inside SQLite, which has no decimal type.

The rollups keep sums, minima and maxima as decimal text (db.column_types.ExactNumber).
Merging a new partial into a stored row in SQL — INSERT … ON CONFLICT DO UPDATE — needs
to add and compare them exactly, so every SQLite connection of the service gets these
functions (db.database registers them), written with Python's decimal module:

- exact_add(a, b): a + b
- exact_least(a, b), exact_greatest(a, b): the smaller, the larger, skipping NULL as
  PostgreSQL's LEAST and GREATEST do
"""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from db.usage.decimals import add


def _add(left: str | None, right: str | None) -> str | None:
    if left is None or right is None:
        return left if right is None else right
    return str(add(Decimal(left), Decimal(right)))


def _least(left: str | None, right: str | None) -> str | None:
    if left is None or right is None:
        return left if right is None else right
    return left if Decimal(left) <= Decimal(right) else right


def _greatest(left: str | None, right: str | None) -> str | None:
    if left is None or right is None:
        return left if right is None else right
    return left if Decimal(left) >= Decimal(right) else right


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "exact_add": _add,
    "exact_least": _least,
    "exact_greatest": _greatest,
}


def register(connection: Any) -> None:
    """Give a DB-API SQLite connection (sqlite3's or SQLAlchemy's aiosqlite adapter) the
    functions above."""
    for name, function in FUNCTIONS.items():
        connection.create_function(name, 2, function, deterministic=True)
