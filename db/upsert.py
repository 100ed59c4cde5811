"""`INSERT … ON CONFLICT` for the dialect at hand."""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def dialect_insert(dialect_name: str, table: sa.Table) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_*` and `excluded`."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no ON CONFLICT support for {dialect_name}")


def insert_or_ignore(dialect_name: str, table: sa.Table, conflict_columns: list[str]) -> Any:
    """An INSERT that skips rows whose `conflict_columns` clash with a unique index."""
    return dialect_insert(dialect_name, table).on_conflict_do_nothing(
        index_elements=conflict_columns
    )
