"""The command line in process: set-up mistakes are one clear message (SPEC §11)."""

import socket
import sqlite3
from pathlib import Path

import pytest

from db.settings import get_settings
from graph.cli import PortUnavailableError, check_port_free, main


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


def test_a_free_port_passes_the_check() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    check_port_free("127.0.0.1", port)


def test_a_taken_port_is_refused_naming_another_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        with pytest.raises(PortUnavailableError, match=f"Port {port} on 127.0.0.1 is taken"):
            check_port_free("127.0.0.1", port)


def test_a_host_that_is_not_here_is_refused() -> None:
    with pytest.raises(PortUnavailableError, match=r"^Cannot listen on nosuch\.invalid:8000: "):
        check_port_free("nosuch.invalid", 8000)


def test_a_port_error_is_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["usage-events", "serve", "--host", "nosuch.invalid"])

    with pytest.raises(SystemExit) as exited:
        main()

    assert exited.value.code == 2
    said = capsys.readouterr().err
    assert said.startswith("Cannot listen on nosuch.invalid:8000: ")
    assert len(said.splitlines()) == 1
