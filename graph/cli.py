"""The `usage-events` command line (SPEC §11)."""

import asyncio
import errno
import json
import math
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import quote

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy import make_url

from db import ids
from db.database import (
    Database,
    DatabaseUnavailableError,
    UnsupportedDatabaseError,
    sqlite_file,
)
from db.demo import DEMO_CUSTOMERS, DEMO_EVENT_COUNT, DEMO_METERS, DemoSetUp, seed_demo
from db.migrate import upgrade_to_head
from db.records import ApiKeyRecord
from db.repositories.businesses import BusinessRepository
from db.rollup_builds import build_pending_meter_rollups
from db.rules.ingestion import utc_now
from db.settings import Settings, get_settings
from graph.logs import logging_config
from graph.scalars import serialize_datetime
from graph.schema import build_schema
from graph.serving import HttpProtocol, connection_limit, limit_concurrency, open_file_limit

app = typer.Typer(
    help="usage-events: a GraphQL service for usage events.",
    no_args_is_help=True,
    add_completion=False,
)
# Human-readable messages go to stderr, so that --json output on stdout stays clean.
console = Console(stderr=True)

Result = TypeVar("Result")
MAX_BUSINESS_NAME_LENGTH = 255


class PortUnavailableError(Exception):
    """The server cannot listen where it was asked to; the message says what to do."""


def _migrated(settings: Settings, *, create: bool = True) -> None:
    """Say which database this is, then bring it to the newest schema.

    The SQLite file is named by its absolute path: the default is relative to the working
    directory, and a command run from elsewhere would otherwise use another file unnoticed.
    With `create=False` a SQLite file that does not exist is refused, not made empty.
    """
    console.print(
        f"Database: {describe_database(settings.database_url)}", markup=False, soft_wrap=True
    )
    path = sqlite_file(settings.database_url)
    if not create and path is not None and not path.exists():
        raise DatabaseUnavailableError(
            f"There is no SQLite database at {path}. Run this command where `make run` or "
            "`usage-events serve` runs, or set USAGE_EVENTS_DATABASE_URL to that file "
            "(sqlite:////an/absolute/path.db works from anywhere)."
        )
    upgrade_to_head(settings.database_url)
    built = asyncio.run(_build_pending_rollups(settings))
    if built:
        console.print(f"Built the usage rollups of {built} meter(s) made before rollups existed.")


async def _build_pending_rollups(settings: Settings) -> int:
    # Part of migrating: a build over a long history takes what it takes.
    database = Database.from_settings(settings, maintenance=True)
    try:
        return await build_pending_meter_rollups(database)
    finally:
        await database.dispose()


def _with_database(work: Callable[[Database], Awaitable[Result]], *, create: bool = True) -> Result:
    """Migrate, then run `work` against the configured database."""
    settings = get_settings()
    _migrated(settings, create=create)

    async def run() -> Result:
        database = Database.from_settings(settings)
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(run())


def describe_database(database_url: str) -> str:
    """The SQLite file's absolute path, or the URL without its password."""
    path = sqlite_file(database_url)
    if path is not None:
        return f"SQLite file {path}"
    return make_url(database_url).render_as_string(hide_password=True)


def check_port_free(host: str, port: int) -> None:
    """Refuse, before any work is done, a port that another program listens on."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise PortUnavailableError(f"Cannot listen on {host}:{port}: {error.strerror}.") from None
    bound_any = False
    not_here: OSError | None = None
    for family, kind, protocol, _name, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            # As uvicorn binds: a port whose old connections linger in TIME_WAIT is free,
            # and an IPv6 address does not claim the IPv4 one too.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise PortUnavailableError(
                        f"Port {port} on {host} is taken: another program (perhaps another "
                        f"usage-events) listens there. Stop it, or choose another port: "
                        f"make run PORT={port + 1}, or usage-events serve --port {port + 1}."
                    ) from None
                if error.errno != errno.EADDRNOTAVAIL:  # e.g. a port below 1024
                    raise PortUnavailableError(
                        f"Cannot listen on {host}:{port}: {error.strerror}."
                    ) from None
                # An address of a family this machine lacks (IPv6) is skipped, as asyncio
                # skips it, as long as another address of the host can be bound.
                not_here = error
            else:
                bound_any = True
    if not bound_any and not_here is not None:
        raise PortUnavailableError(f"Cannot listen on {host}:{port}: {not_here.strerror}.")


def graphiql_link(host: str, port: int, api_key: str | None) -> str:
    url = f"http://{host}:{port}/graphql"
    if api_key is None:
        return url
    headers = json.dumps({"Authorization": f"Bearer {api_key}"})
    return f"{url}?headers={quote(headers)}"


WORKER_HEALTHCHECK_SECONDS = 30


@app.command()
def migrate() -> None:
    """Apply the database migrations."""
    _migrated(get_settings())
    console.print("The database is up to date.")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
) -> None:
    """Apply migrations, then serve GraphQL on http://HOST:PORT/graphql."""
    check_port_free(host, port)
    _migrated(get_settings())
    _serve(host, port, workers)


def _serve(host: str, port: int, workers: int) -> None:
    settings = get_settings()
    file_limit = open_file_limit()
    connections = connection_limit(settings, file_limit)
    if connections < settings.max_connections:
        console.print(
            f"At most {connections} connections per server process, not "
            f"USAGE_EVENTS_MAX_CONNECTIONS={settings.max_connections}: `ulimit -n` is "
            f"{file_limit}; raise it to serve more.",
            markup=False,
            soft_wrap=True,
        )
    console.print(f"GraphiQL: [bold]{graphiql_link(host, port, None)}[/bold]")
    console.print("Send your API key as the header  Authorization: Bearer uek_…")
    uvicorn.run(
        "graph.app:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        # One JSON object per line (graph.logs); graph.request_log writes the access lines.
        log_config=logging_config(),
        access_log=False,
        # No `server: uvicorn` on every answer: it tells a client nothing it needs, and
        # each header is one more that uvicorn checks and writes per answer.
        server_header=False,
        # uvicorn kills a worker that does not answer its health check within this many
        # seconds, and a worker answers only once its imports are done: on a busy machine
        # that took over uvicorn's 5 s, and workers were killed and restarted in a loop.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        # Slow and excess connections (graph.serving): a deadline for request heads, an
        # idle limit between requests, and 503 beyond the connection limit.
        http=HttpProtocol,
        timeout_keep_alive=math.ceil(settings.keep_alive_timeout.total_seconds()),
        limit_concurrency=limit_concurrency(connections),
    )


@app.command("create-business")
def create_business(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Create a business and its first API key."""
    if not 1 <= len(name) <= MAX_BUSINESS_NAME_LENGTH:
        console.print(f"[red]NAME must be 1 to {MAX_BUSINESS_NAME_LENGTH} characters long.[/red]")
        raise typer.Exit(2)

    async def work(database: Database) -> tuple[str, str, str]:
        async with database.unit_of_work() as session:
            repository = BusinessRepository(session)
            business = await repository.create(name)
            key, secret = await repository.create_api_key(business.id)
        return business.id, key.id, secret

    business_id, key_id, secret = _with_database(work)
    if as_json:
        print(json.dumps({"business_id": business_id, "key_id": key_id, "api_key": secret}))
    else:
        print(f"Business {name!r} created: {business_id}")
        print(f"Its API key {key_id} (revoke it by this id; the secret is shown only now):")
        print(secret)


@app.command("create-api-key")
def create_api_key(
    business_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """Create another API key for a business."""

    async def work(database: Database) -> tuple[str, str] | None:
        async with database.unit_of_work() as session:
            repository = BusinessRepository(session)
            if await repository.get(business_id) is None:
                return None
            key, secret = await repository.create_api_key(business_id)
        return key.id, secret

    created = _with_database(work, create=False)
    if created is None:
        console.print(f"[red]No business {business_id!r}.[/red]")
        raise typer.Exit(1)
    key_id, secret = created
    if as_json:
        print(json.dumps({"key_id": key_id, "api_key": secret}))
    else:
        print(f"API key {key_id} created (the secret is shown only now):")
        print(secret)


@app.command("list-api-keys")
def list_api_keys(
    business_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
) -> None:
    """List a business's API keys: ids, when created and revoked (secrets are never stored)."""

    async def work(database: Database) -> list[ApiKeyRecord] | None:
        async with database.session() as session:
            repository = BusinessRepository(session)
            if await repository.get(business_id) is None:
                return None
            return await repository.api_keys_of(business_id)

    keys = _with_database(work, create=False)
    if keys is None:
        console.print(f"[red]No business {business_id!r}.[/red]")
        raise typer.Exit(1)
    listed = [
        {
            "key_id": key.id,
            "created_at": serialize_datetime(key.created_at),
            "revoked_at": serialize_datetime(key.revoked_at) if key.revoked_at else None,
        }
        for key in keys
    ]
    if as_json:
        print(json.dumps({"business_id": business_id, "api_keys": listed}))
        return
    print(f"API keys of {business_id} ({sum(key.revoked_at is None for key in keys)} live):")
    for key in listed:
        revoked = f"revoked {key['revoked_at']}" if key["revoked_at"] else "live"
        print(f"  {key['key_id']}  created {key['created_at']}  {revoked}")


@app.command("revoke-api-key")
def revoke_api_key(key_id: str) -> None:
    """Revoke an API key by its id (key_…); it stops working at once, in every server process."""
    if key_id.startswith(ids.API_KEY_SECRET_PREFIX):
        _refuse_secret(key_id)

    async def work(database: Database) -> bool:
        async with database.unit_of_work() as session:
            return await BusinessRepository(session).revoke_api_key(key_id, utc_now())

    if not _with_database(work, create=False):
        console.print(f"[red]No live API key {key_id!r}.[/red]")
        raise typer.Exit(1)
    print(f"API key {key_id} revoked.")


def _refuse_secret(secret: str) -> None:
    """A secret given where a key id belongs: name the key's id, never echo the secret."""

    async def work(database: Database) -> ApiKeyRecord | None:
        async with database.session() as session:
            return await BusinessRepository(session).api_key_of_secret(secret)

    key = _with_database(work, create=False)
    said = "That is an API key's secret (uek_…), not its id (key_…). "
    if key is None:
        said += (
            "No key of this database has that secret; "
            "`usage-events list-api-keys BUSINESS_ID` shows the ids of a business's keys."
        )
    else:
        said += f"Its key is {key.id}: usage-events revoke-api-key {key.id}"
    console.print(said, style="red", markup=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Host that `serve` will listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port that `serve` will listen on.")] = 8000,
    then_serve: Annotated[
        bool,
        typer.Option("--serve", help="Then serve on HOST:PORT; the port is checked first."),
    ] = False,
) -> None:
    """Ensure the demo business and its data (made once); print a fresh key, revoking older ones."""
    if then_serve:
        check_port_free(host, port)
    settings = get_settings()

    async def work(database: Database) -> DemoSetUp:
        return await seed_demo(database, settings)

    set_up = _with_database(work)
    if set_up.created:
        print(
            f"Demo business: {set_up.business_id}, created with {len(DEMO_CUSTOMERS)} customers, "
            f"{len(DEMO_METERS)} meters and {DEMO_EVENT_COUNT} events"
        )
    else:
        print(f"Demo business: {set_up.business_id} (made before; nothing added)")
    revoked = (
        f" ({set_up.revoked_key_count} older demo key(s) revoked)"
        if set_up.revoked_key_count
        else ""
    )
    print(f"API key: {set_up.api_key}{revoked}")
    print(f"Open GraphiQL with the key filled in:\n  {graphiql_link(host, port, set_up.api_key)}")
    print(f"Or send the header yourself:  Authorization: Bearer {set_up.api_key}")
    print("Then try:  { meters { nodes { id name } } events(first: 5) { nodes { eventId } } }")
    if then_serve:
        sys.stdout.flush()
        _serve(host, port, workers=1)


@app.command("export-schema")
def export_schema(
    path: Annotated[Path, typer.Option(help="Where the SDL goes.")] = Path("schema.graphql"),
    check: Annotated[
        bool, typer.Option("--check", help="Fail if the file differs from the code.")
    ] = False,
) -> None:
    """Write the schema as SDL, or with --check fail when the file is stale."""
    sdl = build_schema().as_str() + "\n"
    if check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != sdl:
            console.print(f"[red]{path} is out of date; run `usage-events export-schema`.[/red]")
            raise typer.Exit(1)
        console.print(f"{path} is up to date.")
        return
    path.write_text(sdl, encoding="utf-8")
    console.print(f"Wrote {path}.")


def _configuration_problem(error: ValidationError) -> str:
    """One line per bad setting, named as it is set: USAGE_EVENTS_<NAME>."""
    lines = ["The configuration is invalid:"]
    for problem in error.errors():
        name = "_".join(str(part) for part in problem["loc"]).upper()
        # pydantic prefixes the message of a ValueError raised by a validator.
        message = problem["msg"].removeprefix("Value error, ")
        # A rule over several settings (no location) names them itself.
        lines.append(f"  USAGE_EVENTS_{name}: {message}" if name else f"  {message}")
    return "\n".join(lines)


# Set-up mistakes the user can correct: one line saying what to do, exit code 2.
SET_UP_ERRORS = (UnsupportedDatabaseError, DatabaseUnavailableError, PortUnavailableError)


def main() -> None:
    """The `usage-events` command: set-up mistakes are one clear message, not a traceback."""
    try:
        app()
    except ValidationError as error:
        console.print(_configuration_problem(error), style="red", markup=False, soft_wrap=True)
        sys.exit(2)
    except SET_UP_ERRORS as error:
        console.print(str(error), style="red", markup=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover - `python -m graph.cli`
    main()
