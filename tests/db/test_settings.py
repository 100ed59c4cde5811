"""Settings (SPEC §10): durations in seconds or ISO-8601, and bounds that fit together."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from db.settings import Settings

DURATIONS = ["ingest_past_window", "ingest_future_window", "correction_window"]


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("3600", timedelta(hours=1)),
        (" 90 ", timedelta(seconds=90)),
        ("0.5", timedelta(milliseconds=500)),
        ("0.000001", timedelta(microseconds=1)),
        ("0", timedelta(0)),
        ("PT1H", timedelta(hours=1)),
        ("P100D", timedelta(days=100)),
        ("PT5M", timedelta(minutes=5)),
    ],
)
def test_durations_from_the_environment_are_seconds_or_iso8601(
    monkeypatch: pytest.MonkeyPatch, name: str, written: str, meant: timedelta
) -> None:
    # Given the duration as an environment variable, which is always a string
    monkeypatch.setenv(f"USAGE_EVENTS_{name.upper()}", written)

    # When the settings are read, then it means what it says
    assert getattr(Settings(), name) == meant


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("written", ["-5", "-PT1H", "an hour", "1h", ""])
def test_durations_that_are_not_durations_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, written: str
) -> None:
    monkeypatch.setenv(f"USAGE_EVENTS_{name.upper()}", written)

    with pytest.raises(ValidationError) as raised:
        Settings()

    assert [problem["loc"] for problem in raised.value.errors()] == [(name,)]


def test_default_page_size_may_not_exceed_max_page_size() -> None:
    with pytest.raises(ValidationError, match=r"DEFAULT_PAGE_SIZE \(101\) must not exceed"):
        Settings(default_page_size=101, max_page_size=100)


def test_default_page_size_may_equal_max_page_size() -> None:
    settings = Settings(default_page_size=100, max_page_size=100)

    assert settings.default_page_size == settings.max_page_size == 100


def test_cors_origins_are_closed_by_default() -> None:
    assert Settings().cors_origins == []


def test_cors_origins_are_read_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "USAGE_EVENTS_CORS_ORIGINS", '["https://app.example.com", "http://127.0.0.1:5173"]'
    )

    assert Settings().cors_origins == ["https://app.example.com", "http://127.0.0.1:5173"]


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("https://App.Example.COM", "https://app.example.com"),
        ("HTTPS://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("http://app.example.com:8080", "http://app.example.com:8080"),
        ("http://[::1]:3000", "http://[::1]:3000"),
    ],
)
def test_cors_origins_are_written_as_browsers_send_them(written: str, meant: str) -> None:
    assert Settings(cors_origins=[written]).cors_origins == [meant]


def test_cors_origins_may_be_any_origin_alone() -> None:
    assert Settings(cors_origins=["*"]).cors_origins == ["*"]


@pytest.mark.parametrize(
    "origins",
    [
        ["https://app.example.com/"],
        ["https://app.example.com/app"],
        ["https://app.example.com?x=1"],
        ["https://app.example.com#top"],
        ["app.example.com"],
        ["ftp://app.example.com"],
        ["https://user@app.example.com"],
        ["https://app.example.com:"],
        ["https://app.example.com:99999"],
        ["https://app.example.com:port"],
        ["https://bücher.example"],
        ["*", "https://app.example.com"],
        [""],
    ],
)
def test_cors_origins_that_are_not_origins_are_refused(origins: list[str]) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(cors_origins=origins)

    assert [problem["loc"] for problem in raised.value.errors()] == [("cors_origins",)]


@pytest.mark.parametrize("written", ["https://app.example.com", "[https://app.example.com]", '"*"'])
def test_cors_origins_that_are_not_a_json_list_are_refused_with_an_example(
    monkeypatch: pytest.MonkeyPatch, written: str
) -> None:
    monkeypatch.setenv("USAGE_EVENTS_CORS_ORIGINS", written)

    with pytest.raises(ValidationError) as raised:
        Settings()

    assert [problem["loc"] for problem in raised.value.errors()] == [("cors_origins",)]


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("postgresql://app:p%40ss@db:5432/usage", "postgresql+asyncpg://app:p%40ss@db:5432/usage"),
        ("postgres://app@db/usage", "postgresql+asyncpg://app@db/usage"),
        ("PostgreSQL://db/usage", "postgresql+asyncpg://db/usage"),
        ("postgresql+asyncpg://db/usage", "postgresql+asyncpg://db/usage"),
        ("sqlite:///./usage-events.db", "sqlite+aiosqlite:///./usage-events.db"),
        ("sqlite:////var/lib/usage.db", "sqlite+aiosqlite:////var/lib/usage.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_urls_without_a_driver_get_the_services_own(
    monkeypatch: pytest.MonkeyPatch, written: str, meant: str
) -> None:
    monkeypatch.setenv("USAGE_EVENTS_DATABASE_URL", written)

    assert Settings().database_url == meant


def test_the_default_database_is_the_sqlite_file_of_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("USAGE_EVENTS_DATABASE_URL", raising=False)

    assert Settings().database_url == "sqlite+aiosqlite:///./usage-events.db"


@pytest.mark.parametrize(
    "written",
    [
        "mysql://app:secret@db/usage",
        "postgresql+psycopg2://app:secret@db/usage",
        "sqlite+pysqlite:///x.db",
        "usage-events.db",
    ],
)
def test_other_databases_and_drivers_are_refused_without_echoing_the_url(
    monkeypatch: pytest.MonkeyPatch, written: str
) -> None:
    monkeypatch.setenv("USAGE_EVENTS_DATABASE_URL", written)

    with pytest.raises(ValidationError) as raised:
        Settings()

    [problem] = raised.value.errors()
    assert problem["loc"] == ("database_url",)
    assert "postgresql://" in problem["msg"]
    assert "sqlite:///" in problem["msg"]
    assert "secret" not in problem["msg"]


def test_a_negative_number_of_seconds_says_durations_are_not_negative(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USAGE_EVENTS_INGEST_PAST_WINDOW", "-5")

    with pytest.raises(ValidationError, match="a duration may not be negative"):
        Settings()


def test_too_many_seconds_for_a_duration_is_refused_not_an_overflow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USAGE_EVENTS_CORRECTION_WINDOW", "99999999999999999")

    with pytest.raises(ValidationError, match="too long a duration"):
        Settings()


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_configuration_rows() -> list[tuple[str, str]]:
    """(variable, default as written) for each variable of the README's configuration table."""
    section = README.read_text(encoding="utf-8").split("\n## Configuration\n")[1].split("\n## ")[0]
    rows: list[tuple[str, str]] = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        names_cell, default_cell = line.strip("|").split("|", 1)
        names = re.findall(r"`([^`]+)`", names_cell)
        # `_MAX_QUERY_TOKENS` after `USAGE_EVENTS_MAX_QUERY_DEPTH` is short for its full name.
        names = [f"USAGE_EVENTS{name}" if name.startswith("_") else name for name in names]
        defaults = re.findall(r"`([^`]*)`", default_cell)[: len(names)]
        assert len(defaults) == len(names), line
        rows += zip(names, defaults, strict=True)
    return rows


def test_the_readme_configuration_table_is_every_setting_with_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = readme_configuration_rows()
    fields = {f"USAGE_EVENTS_{name.upper()}": name for name in Settings.model_fields}

    assert sorted(variable for variable, _ in rows) == sorted(fields)
    for variable, written in rows:
        monkeypatch.setenv(variable, written)
        field = fields[variable]
        assert getattr(Settings(), field) == Settings.model_fields[field].default, variable
        monkeypatch.delenv(variable)
