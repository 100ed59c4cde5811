"""A key per business that seals its pagination cursors (db.pagination.Cursors).

Every business stored before this migration gets fresh random bytes of its own, drawn
here in Python (neither database has a portable source of them); the column is NOT NULL
afterwards. Cursors issued before the migration, which were not sealed, are refused from
then on: a client starts its listing again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As db.ids.CURSOR_KEY_BYTES, spelled out so that this migration never changes.
CURSOR_KEY_BYTES = 32


def upgrade() -> None:
    with op.batch_alter_table("businesses") as businesses:
        businesses.add_column(sa.Column("cursor_key", sa.LargeBinary(), nullable=True))
    connection = op.get_bind()
    business_ids = connection.execute(sa.text("SELECT id FROM businesses")).scalars().all()
    if business_ids:
        connection.execute(
            sa.text("UPDATE businesses SET cursor_key = :cursor_key WHERE id = :id").bindparams(
                sa.bindparam("cursor_key", type_=sa.LargeBinary())
            ),
            [
                {"id": business_id, "cursor_key": secrets.token_bytes(CURSOR_KEY_BYTES)}
                for business_id in business_ids
            ],
        )
    # On SQLite this rebuilds the table (no ALTER COLUMN there); the migration's connection
    # has foreign keys off, so the tables that refer to businesses are left as they are.
    with op.batch_alter_table("businesses") as businesses:
        businesses.alter_column("cursor_key", existing_type=sa.LargeBinary(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("businesses") as businesses:
        businesses.drop_column("cursor_key")
