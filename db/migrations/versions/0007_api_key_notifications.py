"""PostgreSQL tells every server process when an API key or a business changes.

The servers keep the businesses of keys they have checked in memory (db.api_key_cache);
this trigger is how a revocation reaches each of them at once, whatever revoked the key:
the CLI, another server, or an UPDATE typed into psql. It notifies on the channel
`usage_events_api_keys`, once per statement and only when it commits. SQLite has no
notifications: its servers look every key up (no cache).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As db.api_key_cache.CHANNEL, spelled out so that this migration never changes.
CHANNEL = "usage_events_api_keys"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION notify_api_key_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
            RETURN NULL;
        END
        $$
        """
    )
    for table in ("api_keys", "businesses"):
        op.execute(
            f"""
            CREATE TRIGGER notify_{table}_change
            AFTER UPDATE OR DELETE OR TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION notify_api_key_change()
            """
        )
        # Also for writers in session_replication_role = replica (a logical replica's
        # apply, a data-only restore), which skip ordinary triggers.
        op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER notify_{table}_change")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ("api_keys", "businesses"):
        op.execute(f"DROP TRIGGER notify_{table}_change ON {table}")
    op.execute("DROP FUNCTION notify_api_key_change()")
