"""`INSERT … ON CONFLICT DO NOTHING` for the dialect at hand."""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def insert_or_ignore(dialect_name: str, table: sa.Table, conflict_columns: list[str]) -> Any:
    """An INSERT that skips rows whose `conflict_columns` clash with a unique index."""
    if dialect_name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict_columns)
    if dialect_name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict_columns)
    raise NotImplementedError(f"no ON CONFLICT support for {dialect_name}")
