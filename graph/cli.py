"""The `usage-events` command line (SPEC §11)."""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import quote

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console

from db.database import Database, UnsupportedDatabaseError
from db.demo import seed_demo
from db.migrate import upgrade_to_head
from db.repositories.businesses import BusinessRepository
from db.rules.ingestion import utc_now
from db.settings import get_settings
from graph.schema import build_schema

app = typer.Typer(
    help="usage-events: a GraphQL service for usage events.",
    no_args_is_help=True,
    add_completion=False,
)
# Human-readable messages go to stderr, so that --json output on stdout stays clean.
console = Console(stderr=True)

Result = TypeVar("Result")
MAX_BUSINESS_NAME_LENGTH = 255


def _with_database(work: Callable[[Database], Awaitable[Result]]) -> Result:
    """Migrate, then run `work` against the configured database."""
    settings = get_settings()
    upgrade_to_head(settings.database_url)

    async def run() -> Result:
        database = Database.from_settings(settings)
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(run())


def graphiql_link(host: str, port: int, api_key: str | None) -> str:
    url = f"http://{host}:{port}/graphql"
    if api_key is None:
        return url
    headers = json.dumps({"Authorization": f"Bearer {api_key}"})
    return f"{url}?headers={quote(headers)}"


@app.command()
def migrate() -> None:
    """Apply the database migrations."""
    settings = get_settings()
    upgrade_to_head(settings.database_url)
    console.print(f"Database is up to date: {_shown_url(settings.database_url)}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
) -> None:
    """Apply migrations, then serve GraphQL on http://HOST:PORT/graphql."""
    settings = get_settings()
    upgrade_to_head(settings.database_url)
    console.print(f"Database: {_shown_url(settings.database_url)}")
    console.print(f"GraphiQL: [bold]{graphiql_link(host, port, None)}[/bold]")
    console.print("Send your API key as the header  Authorization: Bearer uek_…")
    uvicorn.run(
        "graph.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
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
        print(json.dumps({"business_id": business_id, "api_key": secret}))
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

    created = _with_database(work)
    if created is None:
        console.print(f"[red]No business {business_id!r}.[/red]")
        raise typer.Exit(1)
    key_id, secret = created
    if as_json:
        print(json.dumps({"key_id": key_id, "api_key": secret}))
    else:
        print(f"API key {key_id} created (the secret is shown only now):")
        print(secret)


@app.command("revoke-api-key")
def revoke_api_key(key_id: str) -> None:
    """Revoke an API key; it stops working at once, in every server process."""

    async def work(database: Database) -> bool:
        async with database.unit_of_work() as session:
            return await BusinessRepository(session).revoke_api_key(key_id, utc_now())

    if not _with_database(work):
        console.print(f"[red]No live API key {key_id!r}.[/red]")
        raise typer.Exit(1)
    print(f"API key {key_id} revoked.")


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Host that `serve` will listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port that `serve` will listen on.")] = 8000,
) -> None:
    """Ensure a demo business with customers, meters and recent events; print a fresh key."""
    settings = get_settings()

    async def work(database: Database) -> tuple[str, str, int]:
        return await seed_demo(database, settings)

    business_id, secret, new_events = _with_database(work)
    print(f"Demo business: {business_id} ({new_events} new events)")
    print(f"API key: {secret}")
    print(f"Open GraphiQL with the key filled in:\n  {graphiql_link(host, port, secret)}")
    print(f"Or send the header yourself:  Authorization: Bearer {secret}")
    print("Then try:  { meters { nodes { id name } } events(first: 5) { nodes { eventId } } }")


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
        setting = f"USAGE_EVENTS_{name}" if name else "settings"
        lines.append(f"  {setting}: {problem['msg']}")
    return "\n".join(lines)


def main() -> None:
    """The `usage-events` command: set-up mistakes are one clear message, not a traceback."""
    try:
        app()
    except ValidationError as error:
        console.print(_configuration_problem(error), style="red", markup=False, soft_wrap=True)
        sys.exit(2)
    except UnsupportedDatabaseError as error:
        console.print(str(error), style="red", markup=False, soft_wrap=True)
        sys.exit(2)


def _shown_url(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":  # pragma: no cover - `python -m graph.cli`
    main()
