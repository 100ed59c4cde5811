"""End-to-end: the `usage-events` command line (SPEC §11, T3), run as real subprocesses.

Each command runs against the test database (SQLite and PostgreSQL) through
USAGE_EVENTS_DATABASE_URL. Whether a printed key works is checked the way a client sees
it: a GraphQL request through the real ASGI app on the same database.
"""

import asyncio
import json
import re
import sqlite3
import subprocess
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from db.database import Database
from db.migrate import alembic_config
from db.settings import Settings
from graph.app import create_app
from tests.e2e.server import (
    REPO_ROOT,
    cli_environment,
    describe,
    run_cli,
    usage_events_executable,
)

BUSINESS_ID = re.compile(r"bus_[0-9A-HJKMNP-TV-Z]{26}")
API_KEY_ID = re.compile(r"key_[0-9A-HJKMNP-TV-Z]{26}")
API_KEY = re.compile(r"uek_[A-Za-z0-9_-]{43}")
COMMITTED_SCHEMA = REPO_ROOT / "schema.graphql"

VIEWER = "{ viewer { id name } }"


def unique_name(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


async def cli(*arguments: str, database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """run_cli off the event loop."""
    return await asyncio.to_thread(run_cli, *arguments, database_url=database_url, cwd=cwd)


async def cli_json(*arguments: str, database_url: str, cwd: Path) -> dict[str, Any]:
    """The one JSON object a successful `… --json` command prints, and nothing else."""
    result = await cli(*arguments, "--json", database_url=database_url, cwd=cwd)
    assert result.returncode == 0, describe(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, describe(result)
    printed: dict[str, Any] = json.loads(lines[0])
    return printed


async def graphql_as(database_url: str, api_key: str, query: str) -> httpx.Response:
    """POST `query` with `api_key` to the real app serving `database_url`."""
    database = Database.from_settings(Settings(database_url=database_url))
    try:
        transport = httpx.ASGITransport(
            app=create_app(Settings(database_url=database_url), database)
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.post(
                "/graphql",
                json={"query": query},
                headers={"Authorization": f"Bearer {api_key}"},
            )
    finally:
        await database.dispose()


async def viewer_of(database_url: str, api_key: str) -> dict[str, Any]:
    response = await graphql_as(database_url, api_key, VIEWER)
    assert response.status_code == 200, response.text
    viewer: dict[str, Any] = response.json()["data"]["viewer"]
    return viewer


async def assert_unauthenticated(database_url: str, api_key: str) -> None:
    response = await graphql_as(database_url, api_key, VIEWER)
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def count_rows_of(database_url: str, table: str, business_id: str) -> int:
    database = Database.from_settings(Settings(database_url=database_url))
    try:
        async with database.session() as session:
            result = await session.execute(
                sa.text(f"SELECT count(*) FROM {table} WHERE business_id = :business_id"),
                {"business_id": business_id},
            )
            return int(result.scalar_one())
    finally:
        await database.dispose()


# create-business


@pytest.mark.asyncio(loop_scope="session")
async def test_t3_create_business_json_prints_only_business_id_and_api_key(
    database_url: str, tmp_path: Path
) -> None:
    name = unique_name("Json Business")

    printed = await cli_json("create-business", name, database_url=database_url, cwd=tmp_path)

    assert set(printed) == {"business_id", "api_key"}
    assert BUSINESS_ID.fullmatch(printed["business_id"]), printed
    assert API_KEY.fullmatch(printed["api_key"]), printed
    assert await viewer_of(database_url, printed["api_key"]) == {
        "id": printed["business_id"],
        "name": name,
    }


@pytest.mark.asyncio(loop_scope="session")
async def test_t3_create_business_plain_output_ends_with_the_api_key(
    database_url: str, tmp_path: Path
) -> None:
    name = unique_name("Plain Business")

    result = await cli("create-business", name, database_url=database_url, cwd=tmp_path)

    assert result.returncode == 0, describe(result)
    lines = result.stdout.splitlines()
    api_key = lines[-1]
    assert API_KEY.fullmatch(api_key), describe(result)
    business_ids = BUSINESS_ID.findall(result.stdout)
    assert len(business_ids) == 1, describe(result)
    assert await viewer_of(database_url, api_key) == {"id": business_ids[0], "name": name}


# create-api-key


@pytest.mark.asyncio(loop_scope="session")
async def test_t3_create_api_key_json_prints_key_id_and_a_second_working_key(
    database_url: str, tmp_path: Path
) -> None:
    business = await cli_json(
        "create-business", unique_name("Two Keys"), database_url=database_url, cwd=tmp_path
    )

    created = await cli_json(
        "create-api-key", business["business_id"], database_url=database_url, cwd=tmp_path
    )

    assert set(created) == {"key_id", "api_key"}
    assert API_KEY_ID.fullmatch(created["key_id"]), created
    assert API_KEY.fullmatch(created["api_key"]), created
    assert created["api_key"] != business["api_key"]
    for api_key in (business["api_key"], created["api_key"]):
        assert (await viewer_of(database_url, api_key))["id"] == business["business_id"]


@pytest.mark.asyncio(loop_scope="session")
async def test_t3_create_api_key_for_unknown_business_fails_and_prints_no_key(
    database_url: str, tmp_path: Path
) -> None:
    unknown = "bus_01ARZ3NDEKTSV4RRFFQ69G5FAV"

    result = await cli("create-api-key", unknown, "--json", database_url=database_url, cwd=tmp_path)

    assert result.returncode != 0, describe(result)
    assert result.stdout == "", describe(result)
    assert "uek_" not in result.stderr


# revoke-api-key


@pytest.mark.asyncio(loop_scope="session")
async def test_t3_revoked_key_stops_working_at_once(database_url: str, tmp_path: Path) -> None:
    business = await cli_json(
        "create-business", unique_name("Revoking"), database_url=database_url, cwd=tmp_path
    )
    second = await cli_json(
        "create-api-key", business["business_id"], database_url=database_url, cwd=tmp_path
    )
    assert (await viewer_of(database_url, second["api_key"]))["id"] == business["business_id"]

    result = await cli("revoke-api-key", second["key_id"], database_url=database_url, cwd=tmp_path)

    assert result.returncode == 0, describe(result)
    await assert_unauthenticated(database_url, second["api_key"])
    # Only that key: the business's first key goes on working.
    assert (await viewer_of(database_url, business["api_key"]))["id"] == business["business_id"]


@pytest.mark.asyncio(loop_scope="session")
async def test_t3_revoking_a_revoked_or_unknown_key_fails(
    database_url: str, tmp_path: Path
) -> None:
    business = await cli_json(
        "create-business", unique_name("Revoke Twice"), database_url=database_url, cwd=tmp_path
    )
    key = await cli_json(
        "create-api-key", business["business_id"], database_url=database_url, cwd=tmp_path
    )
    first = await cli("revoke-api-key", key["key_id"], database_url=database_url, cwd=tmp_path)
    assert first.returncode == 0, describe(first)

    again = await cli("revoke-api-key", key["key_id"], database_url=database_url, cwd=tmp_path)
    unknown = await cli(
        "revoke-api-key", "key_01ARZ3NDEKTSV4RRFFQ69G5FAV", database_url=database_url, cwd=tmp_path
    )

    assert again.returncode != 0, describe(again)
    assert unknown.returncode != 0, describe(unknown)
    await assert_unauthenticated(database_url, key["api_key"])


# migrate


def test_migrate_builds_a_fresh_sqlite_file_up_to_the_newest_revision(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    url = f"sqlite+aiosqlite:///{path}"
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()

    first = run_cli("migrate", database_url=url, cwd=tmp_path)
    again = run_cli("migrate", database_url=url, cwd=tmp_path)

    assert first.returncode == 0, describe(first)
    assert again.returncode == 0, describe(again)  # Migrating an up-to-date database is a no-op.
    with closing(sqlite3.connect(path)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        versions = [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
    assert {"businesses", "api_keys", "customers", "events", "event_revisions"} <= tables
    assert versions == [head]


# export-schema


def test_export_schema_check_passes_on_the_committed_schema(tmp_path: Path) -> None:
    if not COMMITTED_SCHEMA.exists():
        pytest.skip(f"{COMMITTED_SCHEMA} is not committed yet (`usage-events export-schema`)")

    # The default path, schema.graphql in the working directory: the repository root.
    result = run_cli(
        "export-schema",
        "--check",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db",
        cwd=REPO_ROOT,
    )

    assert result.returncode == 0, describe(result)


def test_export_schema_writes_a_schema_that_check_accepts(tmp_path: Path) -> None:
    path = tmp_path / "exported.graphql"
    database_url = f"sqlite+aiosqlite:///{tmp_path}/x.db"

    written = run_cli("export-schema", "--path", str(path), database_url=database_url, cwd=tmp_path)
    checked = run_cli(
        "export-schema", "--check", "--path", str(path), database_url=database_url, cwd=tmp_path
    )

    assert written.returncode == 0, describe(written)
    assert checked.returncode == 0, describe(checked)
    sdl = path.read_text(encoding="utf-8")
    assert "ingestEvents(input: IngestEventsInput!): IngestEventsPayload!" in sdl
    assert "viewer: Business!" in sdl


def test_export_schema_check_fails_on_a_stale_or_missing_file(tmp_path: Path) -> None:
    stale = tmp_path / "stale.graphql"
    stale.write_text("type Query {\n  viewer: String\n}\n", encoding="utf-8")
    missing = tmp_path / "missing.graphql"
    database_url = f"sqlite+aiosqlite:///{tmp_path}/x.db"

    on_stale = run_cli(
        "export-schema", "--check", "--path", str(stale), database_url=database_url, cwd=tmp_path
    )
    on_missing = run_cli(
        "export-schema", "--check", "--path", str(missing), database_url=database_url, cwd=tmp_path
    )

    assert on_stale.returncode != 0, describe(on_stale)
    assert on_missing.returncode != 0, describe(on_missing)
    # --check only reads: the stale file is left as it was, the missing one is not created.
    assert stale.read_text(encoding="utf-8") == "type Query {\n  viewer: String\n}\n"
    assert not missing.exists()


# demo


@pytest.mark.asyncio(loop_scope="session")
async def test_demo_prints_an_api_key_that_authenticates(database_url: str, tmp_path: Path) -> None:
    result = await cli("demo", database_url=database_url, cwd=tmp_path)

    assert result.returncode == 0, describe(result)
    keys = set(API_KEY.findall(result.stdout))
    assert len(keys) == 1, describe(result)
    business_ids = BUSINESS_ID.findall(result.stdout)
    assert business_ids, describe(result)
    assert (await viewer_of(database_url, keys.pop()))["id"] == business_ids[0]
    # "A few hundred recent events" for a handful of customers, all of the demo business.
    assert await count_rows_of(database_url, "events", business_ids[0]) >= 300
    assert await count_rows_of(database_url, "customers", business_ids[0]) >= 1


@pytest.mark.parametrize("name", ["", "x" * 256])
def test_create_business_refuses_a_bad_name(database_url: str, tmp_path: Path, name: str) -> None:
    result = run_cli("create-business", name, "--json", database_url=database_url, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "1 to 255 characters" in result.stderr


def test_create_business_plain_output_names_the_key_id(database_url: str, tmp_path: Path) -> None:
    result = run_cli("create-business", "Key id shown", database_url=database_url, cwd=tmp_path)
    assert result.returncode == 0
    assert re.search(r"API key key_[0-9A-Z]{26}", result.stdout)


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("USAGE_EVENTS_INGEST_PAST_WINDOW", "an hour", "USAGE_EVENTS_INGEST_PAST_WINDOW: "),
        ("USAGE_EVENTS_DEFAULT_PAGE_SIZE", "500", "must not exceed MAX_PAGE_SIZE (100)"),
        ("USAGE_EVENTS_MAX_BATCH_SIZE", "0", "USAGE_EVENTS_MAX_BATCH_SIZE: "),
    ],
)
def test_a_bad_setting_is_one_clear_message_not_a_traceback(
    tmp_path: Path, setting: str, value: str, said: str
) -> None:
    # Given a mistaken setting in the environment
    environment = cli_environment(f"sqlite+aiosqlite:///{tmp_path / 'events.db'}")
    environment[setting] = value

    # When any command starts
    result = subprocess.run(
        [usage_events_executable(), "migrate"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it stops before touching the database, saying which setting is wrong
    assert result.returncode == 2, describe(result)
    assert "The configuration is invalid:" in result.stderr, describe(result)
    assert said in result.stderr, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    assert not (tmp_path / "events.db").exists()


def test_durations_in_seconds_start_the_service(tmp_path: Path) -> None:
    environment = cli_environment(f"sqlite+aiosqlite:///{tmp_path / 'events.db'}")
    environment["USAGE_EVENTS_INGEST_PAST_WINDOW"] = "3600"
    environment["USAGE_EVENTS_CORRECTION_WINDOW"] = "8640000"

    result = subprocess.run(
        [usage_events_executable(), "migrate"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, describe(result)
    assert (tmp_path / "events.db").exists()
