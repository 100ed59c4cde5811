"""Apply the Alembic migrations programmatically (`usage-events migrate`, `serve`, tests)."""

from pathlib import Path

from alembic import command
from alembic.config import Config

from db.database import check_available

MIGRATIONS_DIRECTORY = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str) -> None:
    """Bring the database at `database_url` to the newest schema. Blocking; not for a loop.

    Raises UnsupportedDatabaseError or DatabaseUnavailableError, with a message for the
    person who set the database up, when it cannot be used at all.
    """
    check_available(database_url)
    command.upgrade(alembic_config(database_url), "head")
