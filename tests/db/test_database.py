"""The engine of a process: a SQLite too old for the service's SQL is refused at start-up."""

import sqlite3
from pathlib import Path

import pytest

from db.database import (
    MINIMUM_SQLITE_VERSION,
    Database,
    UnsupportedDatabaseError,
    check_sqlite_version,
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
