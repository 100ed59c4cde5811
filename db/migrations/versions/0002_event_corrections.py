"""Event corrections: the log that the per-customer correction limits count (C5).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.column_types import BigIntegerKey, UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_corrections",
        sa.Column("id", BigIntegerKey, autoincrement=True, nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("event_sequence", BigIntegerKey, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_event_corrections_business_id_businesses"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_event_corrections_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["event_sequence"],
            ["events.sequence"],
            name=op.f("fk_event_corrections_event_sequence_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_corrections")),
    )
    op.create_index(
        "ix_event_corrections_customer_id_kind_created_at",
        "event_corrections",
        ["customer_id", "kind", "created_at"],
    )


def downgrade() -> None:
    op.drop_table("event_corrections")
