"""Rollups: meter usage and event volume pre-aggregated in UTC quarter-hours.

Volume rollups are counted here from the events already stored (plain SQL: counts need no
decimal arithmetic). Meter rollups are not: an exact sum needs the service's decimal code,
which a migration must not import, so existing meters get `rollups_built_at` NULL and are
answered from the raw events until `usage-events migrate` (run by `serve` too) builds
their rollups (db.rollups.build_pending_meter_rollups).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.column_types import ExactNumber, JSONDocument, UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# floor(epoch seconds / 900) of a stored moment, as db.rollups.quarter_column computes it:
# on SQLite from the whole seconds of the stored text (its date functions round fractions
# to milliseconds); stored events are after 1970, where integer division is the floor.
_QUARTER = {
    "postgresql": "CAST(floor(extract(epoch FROM {column}) / 900) AS BIGINT)",
    "sqlite": "(unixepoch(substr({column}, 1, 19)) / 900)",
}

_COUNT_VOLUME = """
INSERT INTO volume_rollups (business_id, basis, event_name, quarter, part, event_count,
                            deprecated_count)
SELECT moments.business_id, moments.basis,
       CASE WHEN levels.by_name = 1 THEN moments.event_name ELSE '' END,
       moments.quarter, 0, count(*), count(moments.deprecated_at)
FROM (
    SELECT business_id, 'event' AS basis, {event_quarter} AS quarter, event_name,
           deprecated_at
    FROM events
    UNION ALL
    SELECT business_id, 'ingestion', {ingestion_quarter}, event_name, deprecated_at
    FROM events
) AS moments
CROSS JOIN (SELECT 0 AS by_name UNION ALL SELECT 1) AS levels
GROUP BY 1, 2, 3, 4
"""


def upgrade() -> None:
    op.add_column("meters", sa.Column("rollups_built_at", UTCDateTime(), nullable=True))
    op.add_column(
        "meters",
        sa.Column("dimensions", JSONDocument, nullable=False, server_default=sa.text("'[]'")),
    )
    op.create_table(
        "meter_rollups",
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("external_customer_id", sa.String(length=255), nullable=False),
        sa.Column("span", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("quarter", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("group_values", sa.String(), nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("numbers", sa.BigInteger(), nullable=False),
        sa.Column("total", ExactNumber(), nullable=False),
        sa.Column("minimum", ExactNumber(), nullable=True),
        sa.Column("maximum", ExactNumber(), nullable=True),
        sa.Column("last_value", ExactNumber(), nullable=True),
        sa.Column("last_timestamp", UTCDateTime(), nullable=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_meter_rollups_business_id_businesses"),
        ),
        sa.PrimaryKeyConstraint(
            "meter_id",
            "customer_id",
            "external_customer_id",
            "span",
            "quarter",
            "group_values",
            name=op.f("pk_meter_rollups"),
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "volume_rollups",
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("basis", sa.String(length=10), nullable=False),
        sa.Column("event_name", sa.String(length=255), nullable=False),
        sa.Column("quarter", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("part", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("deprecated_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_volume_rollups_business_id_businesses"),
        ),
        sa.PrimaryKeyConstraint(
            "business_id",
            "basis",
            "event_name",
            "quarter",
            "part",
            name=op.f("pk_volume_rollups"),
        ),
        sqlite_with_rowid=False,
    )
    quarter = _QUARTER[op.get_bind().dialect.name]
    op.execute(
        _COUNT_VOLUME.format(
            event_quarter=quarter.format(column='"timestamp"'),
            ingestion_quarter=quarter.format(column="ingested_at"),
        )
    )


def downgrade() -> None:
    op.drop_table("volume_rollups")
    op.drop_table("meter_rollups")
    with op.batch_alter_table("meters") as meters:
        meters.drop_column("rollups_built_at")
        meters.drop_column("dimensions")
