"""Initial schema: businesses, API keys, customers, events and event revisions.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.column_types import BigIntegerKey, JSONDocument, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "businesses",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_businesses")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["business_id"], ["businesses.id"], name=op.f("fk_api_keys_business_id_businesses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_keys_secret_hash")),
    )
    op.create_index("ix_api_keys_business_id", "api_keys", ["business_id"])

    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["business_id"], ["businesses.id"], name=op.f("fk_customers_business_id_businesses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint(
            "business_id", "external_id", name=op.f("uq_customers_business_id_external_id")
        ),
    )
    op.create_index("ix_customers_business_id_id", "customers", ["business_id", "id"])

    op.create_table(
        "events",
        sa.Column("sequence", BigIntegerKey, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("external_customer_id", sa.String(length=255), nullable=True),
        sa.Column("event_name", sa.String(length=255), nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("metadata", JSONDocument, nullable=False),
        sa.Column("ingested_at", UTCDateTime(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("deprecated_at", UTCDateTime(), nullable=True),
        sa.Column("deprecation_reason", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["business_id"], ["businesses.id"], name=op.f("fk_events_business_id_businesses")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_events_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_events")),
        sa.UniqueConstraint("business_id", "event_id", name=op.f("uq_events_business_id_event_id")),
        sa.UniqueConstraint("id", name=op.f("uq_events_id")),
    )
    for columns in (
        ["business_id", "timestamp", "sequence"],
        ["business_id", "customer_id", "timestamp", "sequence"],
        ["business_id", "external_customer_id", "timestamp", "sequence"],
        ["business_id", "event_name", "timestamp", "sequence"],
    ):
        op.create_index(f"ix_events_{'_'.join(columns)}", "events", columns)

    op.create_table(
        "event_revisions",
        sa.Column("event_sequence", BigIntegerKey, autoincrement=False, nullable=False),
        sa.Column("revision", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("event_name", sa.String(length=255), nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("external_customer_id", sa.String(length=255), nullable=True),
        sa.Column("metadata", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_sequence"],
            ["events.sequence"],
            name=op.f("fk_event_revisions_event_sequence_events"),
        ),
        sa.PrimaryKeyConstraint("event_sequence", "revision", name=op.f("pk_event_revisions")),
    )


def downgrade() -> None:
    op.drop_table("event_revisions")
    op.drop_table("events")
    op.drop_table("customers")
    op.drop_table("api_keys")
    op.drop_table("businesses")
