"""A throw-away database per run: a SQLite file in a temp dir, or a fresh PostgreSQL database."""

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa

DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class BenchDatabase:
    kind: str  # "sqlite" or "postgresql"
    # What the service is configured with (USAGE_EVENTS_DATABASE_URL).
    url: str
    sqlite_path: Path | None = None
    # A plain libpq DSN, for asyncpg used bare (seeding, the ingest floor, checks).
    postgres_dsn: str | None = None


@contextmanager
def sqlite_database() -> Iterator[BenchDatabase]:
    directory = Path(tempfile.mkdtemp(prefix="usage-events-bench-"))
    try:
        path = directory / "bench.db"
        yield BenchDatabase("sqlite", f"sqlite+aiosqlite:///{path}", sqlite_path=path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _plain_dsn(url: str) -> str:
    """postgresql+asyncpg://… → postgresql://… (asyncpg wants libpq's form)."""
    parsed = sa.make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def postgres_reachable(admin_url: str) -> str | None:
    """None when a database can be created from `admin_url`, else why not."""
    try:
        connection = await asyncpg.connect(_plain_dsn(admin_url), timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        return f"{type(error).__name__}: {error}"
    await connection.close()
    return None


@contextmanager
def postgres_database(admin_url: str) -> Iterator[BenchDatabase]:
    """A database of its own, created from `admin_url` and dropped afterwards, whatever happens."""
    admin_dsn = _plain_dsn(admin_url)
    name = f"usage_events_bench_{os.getpid()}_{secrets.token_hex(3)}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        target = sa.make_url(admin_dsn).set(database=name)
        yield BenchDatabase(
            "postgresql",
            target.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False),
            postgres_dsn=target.render_as_string(hide_password=False),
        )
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
