"""End-to-end: the `usage-events` command line (SPEC §11, T3), run as real subprocesses.

Each command runs against the test database (SQLite and PostgreSQL) through
USAGE_EVENTS_DATABASE_URL. Whether a printed key works is checked the way a client sees
it: a GraphQL request through the real ASGI app on the same database.
"""

import asyncio
import json
import re
import socket
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from db.database import Database
from db.demo import DEMO_CUSTOMERS, DEMO_HISTORY_DAYS, DEMO_HISTORY_EVENTS_PER_DAY
from db.migrate import alembic_config
from db.settings import Settings
from graph.app import create_app
from tests.e2e.server import (
    REPO_ROOT,
    describe,
    free_port,
    run_cli,
    running_server,
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
async def test_t3_create_business_json_prints_business_id_key_id_and_api_key(
    database_url: str, tmp_path: Path
) -> None:
    name = unique_name("Json Business")

    printed = await cli_json("create-business", name, database_url=database_url, cwd=tmp_path)

    assert set(printed) == {"business_id", "key_id", "api_key"}
    assert BUSINESS_ID.fullmatch(printed["business_id"]), printed
    assert API_KEY_ID.fullmatch(printed["key_id"]), printed
    assert API_KEY.fullmatch(printed["api_key"]), printed
    listed = await cli_json(
        "list-api-keys", printed["business_id"], database_url=database_url, cwd=tmp_path
    )
    assert [key["key_id"] for key in listed["api_keys"]] == [printed["key_id"]]
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


@pytest.mark.asyncio(loop_scope="session")
async def test_t3_revoke_api_key_given_a_secret_names_the_key_id_and_never_the_secret(
    database_url: str, tmp_path: Path
) -> None:
    business = await cli_json(
        "create-business", unique_name("Secret"), database_url=database_url, cwd=tmp_path
    )
    secret = business["api_key"]

    result = await cli("revoke-api-key", secret, database_url=database_url, cwd=tmp_path)

    assert result.returncode == 2, describe(result)
    assert secret not in result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == (
        "That is an API key's secret (uek_…), not its id (key_…). "
        f"Its key is {business['key_id']}: usage-events revoke-api-key {business['key_id']}"
    )
    # Nothing was revoked.
    assert (await viewer_of(database_url, secret))["id"] == business["business_id"]


@pytest.mark.asyncio(loop_scope="session")
async def test_t3_revoke_api_key_given_an_unknown_secret_says_so(
    database_url: str, tmp_path: Path
) -> None:
    await cli_json("create-business", unique_name("Any"), database_url=database_url, cwd=tmp_path)
    secret = "uek_" + "A" * 43

    result = await cli("revoke-api-key", secret, database_url=database_url, cwd=tmp_path)

    assert result.returncode == 2, describe(result)
    assert secret not in result.stdout + result.stderr
    assert "not its id (key_…). No key of this database has that secret" in result.stderr


# list-api-keys


@pytest.mark.asyncio(loop_scope="session")
async def test_t3_list_api_keys_shows_ids_and_times_never_secrets(
    database_url: str, tmp_path: Path
) -> None:
    # Given a business with a second key, the first of them revoked
    business = await cli_json(
        "create-business", unique_name("Listing"), database_url=database_url, cwd=tmp_path
    )
    second = await cli_json(
        "create-api-key", business["business_id"], database_url=database_url, cwd=tmp_path
    )
    revoked = await cli(
        "revoke-api-key", business["key_id"], database_url=database_url, cwd=tmp_path
    )
    assert revoked.returncode == 0, describe(revoked)

    # When its keys are listed, as JSON and as text
    listed = await cli_json(
        "list-api-keys", business["business_id"], database_url=database_url, cwd=tmp_path
    )
    plain = await cli(
        "list-api-keys", business["business_id"], database_url=database_url, cwd=tmp_path
    )

    # Then both keys are there, oldest first, with their times, and no secret anywhere
    assert listed["business_id"] == business["business_id"]
    first, last = listed["api_keys"]
    assert set(first) == {"key_id", "created_at", "revoked_at"}
    assert (first["key_id"], last["key_id"]) == (business["key_id"], second["key_id"])
    assert first["created_at"] <= last["created_at"]
    assert first["revoked_at"] is not None
    assert first["revoked_at"] >= first["created_at"]
    assert last["revoked_at"] is None
    assert plain.returncode == 0, describe(plain)
    assert plain.stdout.splitlines() == [
        f"API keys of {business['business_id']} (1 live):",
        f"  {first['key_id']}  created {first['created_at']}  revoked {first['revoked_at']}",
        f"  {last['key_id']}  created {last['created_at']}  live",
    ]
    for output in (json.dumps(listed), plain.stdout, plain.stderr):
        assert "uek_" not in output


@pytest.mark.asyncio(loop_scope="session")
async def test_t3_list_api_keys_of_an_unknown_business_fails(
    database_url: str, tmp_path: Path
) -> None:
    await cli_json("create-business", unique_name("Any"), database_url=database_url, cwd=tmp_path)
    unknown = "bus_01ARZ3NDEKTSV4RRFFQ69G5FAV"

    result = await cli("list-api-keys", unknown, "--json", database_url=database_url, cwd=tmp_path)

    assert result.returncode == 1, describe(result)
    assert result.stdout == ""
    assert f"No business '{unknown}'." in result.stderr


# Set-up mistakes: one line saying what to do, exit code 2, nothing written


def assert_one_clear_line(result: subprocess.CompletedProcess[str], said: str) -> None:
    """Exit code 2, the database named, then one line that starts with `said`."""
    assert result.returncode == 2, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, describe(result)
    assert lines[0].startswith("Database: "), describe(result)
    assert lines[1].startswith(said), describe(result)
    assert result.stdout == "", describe(result)


@pytest.mark.parametrize("command", [["serve"], ["demo"]])
def test_a_sqlite_file_in_a_missing_directory_is_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    result = run_cli(
        *command, database_url="sqlite+aiosqlite:///./missing/usage-events.db", cwd=tmp_path
    )

    assert_one_clear_line(
        result,
        f"The directory of the SQLite database {tmp_path / 'missing' / 'usage-events.db'} "
        "does not exist: create it",
    )
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_nothing_listening_on_the_database_port_is_one_line(tmp_path: Path, scheme: str) -> None:
    port = free_port()

    result = run_cli(
        "migrate", database_url=f"{scheme}://postgres@127.0.0.1:{port}/usage", cwd=tmp_path
    )

    assert_one_clear_line(result, f"Nothing listens on 127.0.0.1:{port}: is PostgreSQL running")


@pytest.mark.postgres
def test_a_postgresql_database_that_does_not_exist_is_one_line(
    postgres_database_url: str, tmp_path: Path
) -> None:
    url = sa.make_url(postgres_database_url).set(database="usage_events_never_created")

    result = run_cli(
        "create-business", "X", database_url=url.render_as_string(hide_password=False), cwd=tmp_path
    )

    assert_one_clear_line(
        result, 'The PostgreSQL database "usage_events_never_created" does not exist'
    )
    assert "createdb" in result.stderr


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_postgresql_urls_without_a_driver_use_asyncpg(
    postgres_database_url: str, tmp_path: Path
) -> None:
    # Given the URL as PostgreSQL's own tools write it
    plain = sa.make_url(postgres_database_url).set(drivername="postgresql")
    plain_url = plain.render_as_string(hide_password=False)

    # When a business is created through it
    created = await cli_json(
        "create-business", unique_name("No driver"), database_url=plain_url, cwd=tmp_path
    )

    # Then it is the same database, reached through asyncpg
    assert (await viewer_of(postgres_database_url, created["api_key"]))["id"] == (
        created["business_id"]
    )


def test_the_sqlite_file_is_named_by_its_absolute_path(tmp_path: Path) -> None:
    relative = "sqlite:///./usage-events.db"
    said = f"Database: SQLite file {tmp_path / 'usage-events.db'}"

    for command in (["migrate"], ["demo"], ["create-business", "Where"]):
        result = run_cli(*command, database_url=relative, cwd=tmp_path)
        assert result.returncode == 0, describe(result)
        assert said in result.stderr.splitlines(), describe(result)


def test_serve_names_the_sqlite_file_by_its_absolute_path(tmp_path: Path) -> None:
    with running_server("sqlite:///./usage-events.db", tmp_path, workers=1) as server:
        log = server.log()

    assert f"Database: SQLite file {tmp_path / 'usage-events.db'}" in log


@pytest.mark.parametrize(
    "command",
    [
        ["create-api-key", "bus_01ARZ3NDEKTSV4RRFFQ69G5FAV"],
        ["list-api-keys", "bus_01ARZ3NDEKTSV4RRFFQ69G5FAV"],
        ["revoke-api-key", "key_01ARZ3NDEKTSV4RRFFQ69G5FAV"],
    ],
)
def test_key_commands_elsewhere_do_not_make_a_new_empty_sqlite_file(
    tmp_path: Path, command: list[str]
) -> None:
    # Given a directory without the database, as when the CLI runs from the wrong place
    result = run_cli(*command, database_url="sqlite:///./usage-events.db", cwd=tmp_path)

    assert_one_clear_line(result, f"There is no SQLite database at {tmp_path / 'usage-events.db'}.")
    assert not (tmp_path / "usage-events.db").exists()


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


async def live_keys_of(database_url: str, business_id: str) -> int:
    database = Database.from_settings(Settings(database_url=database_url))
    try:
        async with database.session() as session:
            result = await session.execute(
                sa.text(
                    "SELECT count(*) FROM api_keys "
                    "WHERE business_id = :business_id AND revoked_at IS NULL"
                ),
                {"business_id": business_id},
            )
            return int(result.scalar_one())
    finally:
        await database.dispose()


async def demo_key(database_url: str, cwd: Path) -> tuple[str, str, str]:
    """Run `usage-events demo`: the business id, the one key it printed, and its output."""
    result = await cli("demo", database_url=database_url, cwd=cwd)
    assert result.returncode == 0, describe(result)
    keys = set(API_KEY.findall(result.stdout))
    assert len(keys) == 1, describe(result)
    business_ids = set(BUSINESS_ID.findall(result.stdout))
    assert len(business_ids) == 1, describe(result)
    return business_ids.pop(), keys.pop(), result.stdout


@pytest.mark.asyncio(loop_scope="session")
async def test_demo_prints_an_api_key_that_authenticates(database_url: str, tmp_path: Path) -> None:
    business_id, api_key, _ = await demo_key(database_url, tmp_path)

    assert (await viewer_of(database_url, api_key))["id"] == business_id
    # "A few hundred recent events" for a handful of customers, all of the demo business.
    assert await count_rows_of(database_url, "events", business_id) >= 300
    assert await count_rows_of(database_url, "customers", business_id) >= 1


@pytest.mark.asyncio(loop_scope="session")
async def test_demo_history_draws_a_month_of_daily_usage_per_customer(
    database_url: str, tmp_path: Path
) -> None:
    # Given the demo, as `make run` makes it
    _business_id, api_key, _ = await demo_key(database_url, tmp_path)
    meters = await graphql_as(database_url, api_key, "{ meters { nodes { id eventName } } }")
    tokens = next(
        meter["id"]
        for meter in meters.json()["data"]["meters"]["nodes"]
        if meter["eventName"] == "llm.tokens"
    )

    # When the README's usage example asks for the last 30 days, per day, in Berlin
    now = datetime.now(UTC).replace(microsecond=0)
    query = f"""{{ meterUsage(input: {{
        meterId: "{tokens}", from: "{(now - timedelta(days=30)).isoformat()}",
        to: "{now.isoformat()}", granularity: DAY, timeZone: "Europe/Berlin",
        groupByCustomer: true
    }}) {{ series {{ customer {{ externalId }} buckets {{ eventCount }} }} }} }}"""
    response = await graphql_as(database_url, api_key, query)

    # Then every customer has usage on most days of the month, not only in the last hour
    series = response.json()["data"]["meterUsage"]["series"]
    assert [one["customer"]["externalId"] for one in series] == sorted(
        external_id for external_id, _name, _email in DEMO_CUSTOMERS
    ), response.text
    for one in series:
        days_with_usage = sum(bucket["eventCount"] > 0 for bucket in one["buckets"])
        assert days_with_usage >= 25, one
    # And that month was loaded the way the README says: through one backfill, closed
    loaded = await graphql_as(
        database_url, api_key, "{ backfills { nodes { status eventsIngested } } }"
    )
    assert loaded.json()["data"]["backfills"]["nodes"] == [
        {"status": "REFLECTED", "eventsIngested": DEMO_HISTORY_DAYS * DEMO_HISTORY_EVENTS_PER_DAY}
    ]


@pytest.mark.asyncio(loop_scope="session")
async def test_demo_again_adds_nothing_and_leaves_one_live_key(
    database_url: str, tmp_path: Path
) -> None:
    # Given the demo, set up once
    business_id, first_key, _ = await demo_key(database_url, tmp_path)
    counts = {
        table: await count_rows_of(database_url, table, business_id)
        for table in ("events", "customers", "meters")
    }

    # When it runs again
    again_id, second_key, printed = await demo_key(database_url, tmp_path)

    # Then it is the same business with the same data, and only the new key works
    assert again_id == business_id
    assert "nothing added" in printed
    for table, count in counts.items():
        assert await count_rows_of(database_url, table, business_id) == count, table
    assert await live_keys_of(database_url, business_id) == 1
    await assert_unauthenticated(database_url, first_key)
    assert (await viewer_of(database_url, second_key))["id"] == business_id


@pytest.mark.asyncio(loop_scope="session")
async def test_demo_revokes_every_other_key_of_the_demo_business(
    database_url: str, tmp_path: Path
) -> None:
    business_id, _, _ = await demo_key(database_url, tmp_path)
    extra = await cli_json("create-api-key", business_id, database_url=database_url, cwd=tmp_path)

    _, fresh_key, _ = await demo_key(database_url, tmp_path)

    await assert_unauthenticated(database_url, extra["api_key"])
    assert await live_keys_of(database_url, business_id) == 1
    assert (await viewer_of(database_url, fresh_key))["id"] == business_id


@contextmanager
def port_taken() -> Iterator[int]:
    """A port another program listens on, for as long as the block runs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("command", [["demo", "--serve"], ["serve"]])
def test_a_taken_port_is_said_before_anything_is_written(
    tmp_path: Path, command: list[str]
) -> None:
    database = tmp_path / "usage-events.db"

    with port_taken() as port:
        result = run_cli(
            *command,
            "--port",
            str(port),
            database_url=f"sqlite+aiosqlite:///{database}",
            cwd=tmp_path,
        )

    assert result.returncode == 2, describe(result)
    assert result.stderr.splitlines() == [
        f"Port {port} on 127.0.0.1 is taken: another program (perhaps another usage-events) "
        f"listens there. Stop it, or choose another port: make run PORT={port + 1}, or "
        f"usage-events serve --port {port + 1}."
    ], describe(result)
    assert result.stdout == ""
    assert not database.exists()


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
        (
            "USAGE_EVENTS_DEFAULT_PAGE_SIZE",
            "500",
            "\n  USAGE_EVENTS_DEFAULT_PAGE_SIZE (500) must not exceed "
            "USAGE_EVENTS_MAX_PAGE_SIZE (100)",
        ),
        ("USAGE_EVENTS_INGEST_PAST_WINDOW", "-5", "PAST_WINDOW: a duration may not be negative"),
        ("USAGE_EVENTS_CORRECTION_WINDOW", "9" * 20, "seconds is too long a duration"),
        ("USAGE_EVENTS_MAX_BATCH_SIZE", "0", "USAGE_EVENTS_MAX_BATCH_SIZE: "),
    ],
)
def test_a_bad_setting_is_one_clear_message_not_a_traceback(
    tmp_path: Path, setting: str, value: str, said: str
) -> None:
    # Given a mistaken setting in the environment, when any command starts
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
    result = run_cli("migrate", database_url=database_url, cwd=tmp_path, settings={setting: value})

    # Then it stops before touching the database, saying which setting is wrong
    assert result.returncode == 2, describe(result)
    assert "The configuration is invalid:" in result.stderr, describe(result)
    assert said in result.stderr, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    assert not (tmp_path / "events.db").exists()


def test_durations_in_seconds_start_the_service(tmp_path: Path) -> None:
    result = run_cli(
        "migrate",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'events.db'}",
        cwd=tmp_path,
        settings={
            "USAGE_EVENTS_INGEST_PAST_WINDOW": "3600",
            "USAGE_EVENTS_CORRECTION_WINDOW": "8640000",
        },
    )

    assert result.returncode == 0, describe(result)
    assert (tmp_path / "events.db").exists()
