"""`python -m bench run` (what `make bench` and `make bench-quick` call) and `… report`."""

import asyncio
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg  # type: ignore[import-untyped]
import typer
from rich.console import Console

from bench.config import QUICK, configured
from bench.databases import (
    DEFAULT_POSTGRES_ADMIN_URL,
    BenchDatabase,
    postgres_database,
    postgres_reachable,
    sqlite_database,
)
from bench.report import machine, markdown, print_results
from bench.scenarios import run_database
from bench.seed import seed
from bench.servers import MemorySampler
from bench.wrk import wrk_executable

RESULTS_DIRECTORY = Path(__file__).parent / "results"

app = typer.Typer(
    help="The usage-events benchmark (SPEC §13).", no_args_is_help=True, add_completion=False
)
# Wide enough for the tables when the output goes to a pipe or a file.
console = Console(width=None if sys.stdout.isatty() else 150)

# Options several commands take.
PostgresAdminUrl = Annotated[
    str, typer.Option(envvar="BENCH_POSTGRES_URL", help="A database to CREATE DATABASE from.")
]
SeedValue = Annotated[int, typer.Option("--seed", help="Random seed of the data set.")]
QuickDataSet = Annotated[
    bool, typer.Option(help="20 000 events and 3 s per measurement (unless given).")
]
MainEvents = Annotated[
    int | None, typer.Option(help="Events of the main business (default 1 000 000).")
]
WarmupSeconds = Annotated[
    int | None, typer.Option(help="Seconds of warm-up before each (default 2; quick 1).")
]


async def _postgres_version(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


@app.command()
def run(
    quick: Annotated[
        bool, typer.Option(help="A small data set: done in under two minutes.")
    ] = False,
    events: Annotated[int | None, typer.Option(help="Events of the main business.")] = None,
    databases: Annotated[
        str, typer.Option(help="Comma-separated: sqlite, postgresql.")
    ] = "sqlite,postgresql",
    postgres_url: PostgresAdminUrl = DEFAULT_POSTGRES_ADMIN_URL,
    seed_value: SeedValue = 2026,
) -> None:
    """Seed, start the servers, run every scenario beside its floor, print and save the results."""
    config = configured(quick, events)
    wrk_executable()
    started = time.perf_counter()
    kinds = [kind.strip() for kind in databases.split(",") if kind.strip()]
    results: dict[str, Any] = {
        "mode": config.name,
        "command": os.environ.get("BENCH_COMMAND") or "python -m bench " + " ".join(sys.argv[1:]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {key: getattr(config, key) for key in config.__dataclass_fields__},
        "databases": {},
    }
    if "postgresql" in kinds and (problem := asyncio.run(postgres_reachable(postgres_url))):
        console.print(
            f"[yellow]PostgreSQL at {postgres_url} is not reachable ({problem}); skipped.[/yellow]"
        )
        results["databases"]["postgresql"] = {"error": f"not reachable: {problem}"}
        kinds.remove("postgresql")

    log_directory = Path(tempfile.mkdtemp(prefix="usage-events-bench-logs-"))
    console.print(
        f"[bold]usage-events benchmark[/bold] ({config.name}: {config.events:,} events); "
        f"logs in {log_directory}"
    )
    failed = False
    with MemorySampler() as sampler:
        for kind in kinds:
            context = sqlite_database() if kind == "sqlite" else postgres_database(postgres_url)
            try:
                with context as database:
                    results["databases"][kind] = _run_one(
                        database, config, seed_value, sampler, log_directory
                    )
            except Exception as error:  # one database failing still reports the other
                failed = True
                console.print(f"[red]{kind} failed:[/red]")
                console.print(traceback.format_exc())
                results["databases"][kind] = {"error": f"{type(error).__name__}: {error}"}
    results["seconds"] = time.perf_counter() - started
    for data in results["databases"].values():
        if "postgresql_version" in data:
            results["machine"]["postgresql"] = data["postgresql_version"]

    RESULTS_DIRECTORY.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIRECTORY / f"{stamp}-{config.name}.json"
    text = json.dumps(results, indent=2, default=str)
    path.write_text(text)
    (RESULTS_DIRECTORY / f"latest-{config.name}.json").write_text(text)
    (RESULTS_DIRECTORY / f"latest-{config.name}.md").write_text(markdown(results))
    print_results(console, results)
    console.print(f"results: {path} (Markdown: {RESULTS_DIRECTORY / f'latest-{config.name}.md'})")
    if not failed:
        shutil.rmtree(log_directory, ignore_errors=True)
    else:
        console.print(f"server logs kept in {log_directory}")
        raise typer.Exit(1)


def _run_one(
    database: BenchDatabase,
    config: Any,
    seed_value: int,
    sampler: MemorySampler,
    log_directory: Path,
) -> dict[str, Any]:
    console.print(
        f"[bold]{database.kind}[/bold]: seeding {config.events:,} + {config.small_events:,} events"
    )
    seeded = seed(database, config, random.Random(seed_value))
    console.print(
        f"  seeded in {seeded.seconds:.1f} s (rollups rebuilt in {seeded.rollup_seconds:.1f} s)"
    )
    results = run_database(database, config, seeded, sampler, log_directory, console)
    data = results.as_dict()
    if database.postgres_dsn:
        data["postgresql_version"] = asyncio.run(_postgres_version(database.postgres_dsn))
    return data


@app.command()
def report(
    path: Annotated[
        Path, typer.Argument(help="A results JSON of bench/results/.")
    ] = RESULTS_DIRECTORY / "latest-full.json",
) -> None:
    """Print the Markdown of a results file (the 'latest' part of BENCHMARKS.md)."""
    results = json.loads(path.read_text())
    for data in results["databases"].values():
        if "postgresql_version" in data:
            results["machine"]["postgresql"] = data["postgresql_version"]
    print(markdown(results))


@app.command()
def profile(
    databases: Annotated[
        str, typer.Option(help="Comma-separated: sqlite, postgresql.")
    ] = "sqlite,postgresql",
    requests: Annotated[int, typer.Option(help="Read requests per scenario.")] = 300,
    postgres_url: PostgresAdminUrl = DEFAULT_POSTGRES_ADMIN_URL,
    seed_value: SeedValue = 2026,
) -> None:
    """Where each scenario's time goes, by layer, on the quick data set (pyinstrument)."""
    from bench.profile import markdown, profile_database

    results = []
    for kind in [kind.strip() for kind in databases.split(",") if kind.strip()]:
        context = sqlite_database() if kind == "sqlite" else postgres_database(postgres_url)
        with context as database:
            seeded = seed(database, QUICK, random.Random(seed_value))
            console.print(f"[bold]{kind}[/bold]: profiling on {QUICK.events:,} events")
            results.extend(profile_database(database, seeded, requests))
    text = markdown(results)
    RESULTS_DIRECTORY.mkdir(exist_ok=True)
    (RESULTS_DIRECTORY / "latest-profile.md").write_text(text)
    print(text)


@app.command()
def instructions(
    requests: Annotated[int, typer.Option(help="Requests counted per query.")] = 400,
    served: Annotated[
        bool,
        typer.Option(
            "--served",
            help="Count `usage-events serve` itself over HTTP, uvicorn included, "
            "instead of the application in process.",
        ),
    ] = False,
    dumps: Annotated[
        Path | None,
        typer.Option(
            help="Keep each query's callgrind dump in this folder "
            "(for callgrind_annotate or KCachegrind).",
            file_okay=False,
        ),
    ] = None,
    postgres_url: PostgresAdminUrl = DEFAULT_POSTGRES_ADMIN_URL,
    seed_value: SeedValue = 2026,
) -> None:
    """Instructions per request (callgrind), on PostgreSQL and the quick data set:
    `{ __typename }`, a point read, the latest 100 and its edges, as the peer benchmark asks
    them, and the latest 100 with `__typename` in every selection set."""
    from bench.instructions import count_instructions, count_served_instructions, tools_missing
    from bench.peer_run import (
        APOLLO_LIST,
        SERVICE_EDGES,
        SERVICE_EVENT,
        SERVICE_LIST,
        TYPENAME,
        _body,
    )

    missing = tools_missing(served)
    if missing:
        needs = "valgrind" if served else "valgrind and a C compiler"
        console.print(f"[red]{missing}[/red]: install {needs}")
        raise typer.Exit(1)
    with postgres_database(postgres_url) as database:
        business = seed(database, QUICK, random.Random(seed_value)).main
        queries = {
            "{ __typename }": [_body(TYPENAME)],
            "point read": [
                _body(SERVICE_EVENT, {"eventId": event_id})
                for event_id in business.sample_event_ids[:100]
            ],
            "latest 100": [_body(SERVICE_LIST, {"first": 100})],
            # Apollo Client and urql add `__typename` to every selection set.
            "latest 100, as Apollo Client asks it": [_body(APOLLO_LIST, {"first": 100})],
            # Relay asks for edges, a cursor for each row.
            "latest 100, edges": [_body(SERVICE_EDGES, {"first": 100})],
        }
        count = count_served_instructions if served else count_instructions
        where = "served over HTTP" if served else "in process"
        console.print(
            f"| query | instructions per request ({where}, {requests} requests, callgrind) |"
        )
        console.print("|---|---:|")
        if dumps is not None:
            dumps.mkdir(parents=True, exist_ok=True)
        for name, bodies in queries.items():
            kept = None
            if dumps is not None:
                kept = dumps / f"callgrind.{re.sub(r'[^0-9A-Za-z_]+', '-', name).strip('-')}.out"
            counted = count(database, business.api_key, bodies, requests, kept)
            console.print(f"| {name} | {counted:,} |")


@app.command()
def workers(
    quick: QuickDataSet = False,
    events: MainEvents = None,
    processes: Annotated[
        int | None,
        typer.Option("--workers", min=2, help="Workers measured against one (default: cores)."),
    ] = None,
    duration: Annotated[
        int | None, typer.Option(help="Seconds of each wrk run (default 10).")
    ] = None,
    warmup: WarmupSeconds = None,
    connections: Annotated[int, typer.Option(help="wrk connections.")] = 8,
    postgres_url: PostgresAdminUrl = DEFAULT_POSTGRES_ADMIN_URL,
    seed_value: SeedValue = 2026,
) -> None:
    """`serve --workers N` against one worker, with where the machine's CPU went
    (make bench-workers)."""
    from bench.workers_run import WorkersSettings, run_workers, save

    config = configured(quick, events)
    settings = WorkersSettings(
        quick=quick,
        events=config.events,
        workers=processes or max(2, os.cpu_count() or 2),
        seconds=duration if duration is not None else 3 if quick else 10,
        warmup_seconds=warmup if warmup is not None else 1 if quick else 2,
        connections=connections,
    )
    results = run_workers(settings, postgres_url, seed_value, console)
    path, text = save(results)
    print(text)
    console.print(f"saved to {path}")


@app.command()
def peer(
    quick: QuickDataSet = False,
    events: MainEvents = None,
    duration: Annotated[
        int | None, typer.Option(help="Seconds of each wrk run and floor run (default 10).")
    ] = None,
    warmup: WarmupSeconds = None,
    connections: Annotated[int, typer.Option(help="wrk connections of the loaded run.")] = 8,
    workers: Annotated[int, typer.Option(min=1, help="Processes of the service.")] = 1,
    postgres_url: PostgresAdminUrl = DEFAULT_POSTGRES_ADMIN_URL,
    seed_value: SeedValue = 2026,
) -> None:
    """The service beside PostGraphile 5 on the same PostgreSQL rows (make bench-peer)."""
    from bench.peer_run import PeerSettings, print_table, run_peer, save

    config = configured(quick, events)
    settings = PeerSettings(
        quick=quick,
        events=config.events,
        seconds=duration if duration is not None else 3 if quick else 10,
        warmup_seconds=warmup if warmup is not None else 1 if quick else 2,
        connections=connections,
        workers=workers,
    )
    results = run_peer(settings, postgres_url, seed_value, console)
    print_table(console, results)
    path, text = save(results)
    print(text)
    console.print(f"results: {path}")
