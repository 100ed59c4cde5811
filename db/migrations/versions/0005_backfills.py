"""Backfills (SPEC §16): the backfills, their events, and what their closes replaced.

`events.backfill_id` names the backfill an event was sent into. `events.counted_from` is
when the event began to count — its ingestion, or its backfill's reflection — and is NULL
while its backfill is pending (or was reverted before it was reflected): the one column
that says whether an event counts now, and whether it did at any earlier moment (U8).
Every event stored before this migration counted from its ingestion.

`backfill_replacements` holds the events each close deprecated; with the backfill's
reflection and revert moments, it is the history of those deprecations and restorations.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.column_types import BigIntegerKey, JSONDocument, UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backfills",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("timeframe_start", UTCDateTime(), nullable=False),
        sa.Column("timeframe_end", UTCDateTime(), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("external_customer_id", sa.String(length=255), nullable=True),
        sa.Column("replace_existing_events", sa.Boolean(), nullable=False),
        sa.Column("deprecation_filter", JSONDocument, nullable=True),
        sa.Column("close_time", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("reflected_at", UTCDateTime(), nullable=True),
        sa.Column("reverted_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["business_id"], ["businesses.id"], name=op.f("fk_backfills_business_id_businesses")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_backfills_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backfills")),
    )
    op.create_index("ix_backfills_business_id_id", "backfills", ["business_id", "id"])
    op.create_index("ix_backfills_status_close_time", "backfills", ["status", "close_time"])

    op.create_table(
        "backfill_replacements",
        sa.Column("backfill_id", sa.String(length=40), nullable=False),
        sa.Column("event_sequence", BigIntegerKey, autoincrement=False, nullable=False),
        sa.Column("business_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["backfill_id"],
            ["backfills.id"],
            name=op.f("fk_backfill_replacements_backfill_id_backfills"),
        ),
        sa.ForeignKeyConstraint(
            ["event_sequence"],
            ["events.sequence"],
            name=op.f("fk_backfill_replacements_event_sequence_events"),
        ),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_backfill_replacements_business_id_businesses"),
        ),
        sa.PrimaryKeyConstraint(
            "backfill_id", "event_sequence", name=op.f("pk_backfill_replacements")
        ),
    )
    op.create_index(
        "ix_backfill_replacements_event_sequence", "backfill_replacements", ["event_sequence"]
    )

    with op.batch_alter_table("events") as events:
        events.add_column(sa.Column("backfill_id", sa.String(length=40), nullable=True))
        events.add_column(sa.Column("counted_from", UTCDateTime(), nullable=True))
    op.execute("UPDATE events SET counted_from = ingested_at")
    # A backfill's events, in listing order (EventFilter.backfillId, Backfill.events).
    op.create_index(
        "ix_events_backfill_id_timestamp_sequence",
        "events",
        ["backfill_id", "timestamp", "sequence"],
    )


def downgrade() -> None:
    op.drop_index("ix_events_backfill_id_timestamp_sequence", "events")
    with op.batch_alter_table("events") as events:
        events.drop_column("counted_from")
        events.drop_column("backfill_id")
    op.drop_table("backfill_replacements")
    op.drop_table("backfills")
