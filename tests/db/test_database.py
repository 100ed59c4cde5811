"""The engine of a process: a database that cannot be used is refused at start-up, clearly."""

import socket
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.database import (
    MINIMUM_SQLITE_VERSION,
    Database,
    DatabaseUnavailableError,
    UnsupportedDatabaseError,
    check_available,
    check_sqlite_version,
    sqlite_file,
)
from db.migrate import upgrade_to_head
from db.settings import Settings


def test_the_sqlite_of_this_python_is_supported() -> None:
    check_sqlite_version()

    assert sqlite3.sqlite_version_info >= MINIMUM_SQLITE_VERSION


@pytest.mark.parametrize("version", [(3, 37, 2), (3, 34, 1), (2, 99, 0)])
def test_an_older_sqlite_is_refused_naming_the_minimum(version: tuple[int, int, int]) -> None:
    found = ".".join(map(str, version))

    with pytest.raises(UnsupportedDatabaseError) as raised:
        check_sqlite_version(version)

    assert "SQLite 3.38.0 or newer" in str(raised.value)
    assert f"SQLite {found}." in str(raised.value)


@pytest.fixture
def old_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))


@pytest.mark.usefixtures("old_sqlite")
def test_an_old_sqlite_stops_the_engine_and_the_migrations(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"

    with pytest.raises(UnsupportedDatabaseError, match=r"3\.38\.0 or newer"):
        Database.from_settings(Settings(database_url=url))
    with pytest.raises(UnsupportedDatabaseError, match=r"3\.38\.0 or newer"):
        upgrade_to_head(url)

    assert not (tmp_path / "old.db").exists(), "nothing is created on a refused database"


@pytest.mark.usefixtures("old_sqlite")
def test_postgresql_does_not_depend_on_the_local_sqlite() -> None:
    # Building the engine connects to nothing, so no server is needed here.
    settings = Settings(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")

    assert Database.from_settings(settings).dialect_name == "postgresql"


# Set-up mistakes: each is one sentence saying what to do, and nothing is created.


def free_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_sqlite_file_in_a_missing_directory_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "usage-events.db"

    with pytest.raises(DatabaseUnavailableError) as raised:
        upgrade_to_head(f"sqlite+aiosqlite:///{path}")

    assert str(raised.value).startswith(f"The directory of the SQLite database {path} does not")
    assert f"mkdir -p {path.parent}" in str(raised.value)
    assert not path.parent.exists()


def test_a_sqlite_file_that_cannot_be_opened_is_refused_naming_it(tmp_path: Path) -> None:
    # A directory where the file should be: SQLite cannot open it as a database.
    (tmp_path / "usage-events.db").mkdir()

    with pytest.raises(DatabaseUnavailableError) as raised:
        check_available(f"sqlite+aiosqlite:///{tmp_path / 'usage-events.db'}")

    assert str(raised.value) == (
        f"Cannot open the SQLite database {tmp_path / 'usage-events.db'}: "
        "unable to open database file."
    )


def test_a_relative_sqlite_path_is_made_absolute_from_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)

    assert sqlite_file("sqlite+aiosqlite:///./usage-events.db") == tmp_path / "usage-events.db"
    assert sqlite_file("sqlite+aiosqlite:///data/../x.db") == tmp_path / "x.db"
    assert sqlite_file("sqlite+aiosqlite:////srv/usage.db") == Path("/srv/usage.db")
    assert sqlite_file("sqlite+aiosqlite://") is None
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file("postgresql+asyncpg://db/usage") is None


def test_nothing_listening_on_the_postgresql_port_is_one_sentence() -> None:
    port = free_port()

    with pytest.raises(DatabaseUnavailableError) as raised:
        upgrade_to_head(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/usage")

    assert str(raised.value) == (
        f"Nothing listens on 127.0.0.1:{port}: is PostgreSQL running there? "
        "Check the host and port of USAGE_EVENTS_DATABASE_URL."
    )


@pytest.mark.postgres
def test_a_postgresql_database_that_does_not_exist_says_how_to_create_it(
    postgres_database_url: str,
) -> None:
    url = sa.make_url(postgres_database_url).set(database="usage_events_never_created")
    host, port, user = url.host, url.port or 5432, url.username

    with pytest.raises(DatabaseUnavailableError) as raised:
        upgrade_to_head(url.render_as_string(hide_password=False))

    assert str(raised.value).startswith(
        f'The PostgreSQL database "usage_events_never_created" does not exist on {host}:{port}.'
    )
    assert str(raised.value).endswith(
        f"createdb -h {host} -p {port}{f' -U {user}' if user else ''} usage_events_never_created"
    )


@pytest.mark.postgres
def test_an_unknown_postgresql_user_is_one_sentence(postgres_database_url: str) -> None:
    url = sa.make_url(postgres_database_url).set(username="usage_events_nobody", password=None)

    with pytest.raises(DatabaseUnavailableError) as raised:
        check_available(url.render_as_string(hide_password=False))

    assert "refused the connection" in str(raised.value)
    assert "usage_events_nobody" in str(raised.value)
