"""The command line in process: set-up mistakes are one clear message (SPEC §11)."""

import sqlite3
from pathlib import Path

import pytest

from db.settings import get_settings
from graph.cli import main


@pytest.fixture
def old_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))


@pytest.mark.usefixtures("old_sqlite")
def test_a_too_old_sqlite_is_one_line_naming_the_minimum(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("USAGE_EVENTS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setattr("sys.argv", ["usage-events", "migrate"])
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        get_settings.cache_clear()

    assert exited.value.code == 2
    said = capsys.readouterr().err
    assert "needs SQLite 3.38.0 or newer" in said
    assert "SQLite 3.31.1." in said
    assert "Traceback" not in said
