"""Meters: an event name, an aggregation and an optional metadata filter.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.column_types import JSONDocument, UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "meters",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("event_name", sa.String(length=255), nullable=False),
        sa.Column("aggregation_type", sa.String(length=20), nullable=False),
        sa.Column("aggregation_key", sa.String(length=100), nullable=True),
        sa.Column("measurement_unit", sa.String(length=100), nullable=True),
        sa.Column("filter", JSONDocument, nullable=True),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"], ["businesses.id"], name=op.f("fk_meters_business_id_businesses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meters")),
    )
    op.create_index("ix_meters_business_id_id", "meters", ["business_id", "id"])


def downgrade() -> None:
    op.drop_table("meters")
