"""`serve --workers N` against one worker, and against what the machine can give:
`python -m bench workers` (make bench-workers).

Issue 14 asks for N workers to serve close to N times one worker's reads. On a machine
with fewer cores than the workers plus PostgreSQL plus the load generator, req/s cannot
show that: PostgreSQL and wrk take their share of the same cores. So beside req/s this
reports where every core's time went during each run, from /proc: the service's
processes, PostgreSQL's, and the rest (wrk above all); and the machine's ceiling, the
req/s its cores would give if every one were busy at one worker's machine CPU per
request. N workers that serve near that ceiling spend no more per request than one; a
service that serialized its workers would leave cores idle, or spend more per request,
and fall short of it.
"""

import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.config import configured
from bench.databases import postgres_database, postgres_reachable
from bench.peer_run import (
    CLOCK_TICKS,
    PAGE_SIZE,
    POINT_READ_IDS,
    RESULTS_DIRECTORY,
    SERVICE_EVENT,
    SERVICE_LIST,
    TYPENAME,
    Client,
    _body,
    cpu_by_pid,
)
from bench.report import machine
from bench.seed import seed
from bench.servers import (
    Server,
    free_port,
    start_server,
    stop_server,
    usage_events_command,
    wait_ready,
)
from bench.wrk import WrkResult, run_wrk, wrk_executable


@dataclass(frozen=True)
class WorkersSettings:
    """What `python -m bench workers` was asked for."""

    quick: bool
    events: int
    workers: int
    seconds: int
    warmup_seconds: int
    connections: int


@dataclass
class RunFigures:
    """One query at one number of workers, over one wrk run."""

    requests_per_second: float
    service_cpu_ms: float  # per request, the server's processes
    postgres_cpu_ms: float  # per request, every PostgreSQL process
    machine_cpu_ms: float  # per request, every process of the machine
    busy: float  # the machine's cores busy, 0-1
    requests: int
    errors: int
    # PostgreSQL processes seen: none when it runs elsewhere (then its CPU is in no figure).
    postgres_processes: int

    def ceiling(self) -> float | None:
        """req/s with every core busy at this run's machine CPU per request."""
        if not self.machine_cpu_ms:
            return None
        return (os.cpu_count() or 1) * 1000 / self.machine_cpu_ms


def _machine_ticks() -> tuple[int, int]:
    """(busy, busy + idle) jiffies of every core since boot, from /proc/stat. Time a
    virtual machine's host took (steal) is in neither: no process of this machine ran."""
    with open("/proc/stat") as stat:
        user, nice, system, idle, iowait, irq, softirq = (
            int(value) for value in stat.readline().split()[1:8]
        )
    busy = user + nice + system + irq + softirq  # guest time is inside user
    return busy, busy + idle + iowait


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two readings: a process that began meanwhile counts in
    full; one that ended meanwhile is lost (a few ticks at most, nothing under load)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def postgres_pids() -> list[int]:
    """Every process named postgres (the server and its backends)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def measure(
    server: Server, bodies: list[bytes], authorization: str, settings: WorkersSettings
) -> RunFigures:
    """One query against `server`: a warm-up, then the run that is measured."""
    lines = [body.decode() for body in bodies]

    def wrk(seconds: int) -> WrkResult:
        return run_wrk(
            server.url,
            method="POST",
            lines=lines,
            authorization=authorization,
            path="/graphql",
            connections=settings.connections,
            seconds=seconds,
        )

    if settings.warmup_seconds:
        wrk(settings.warmup_seconds)
    service_before = cpu_by_pid(server.pids())
    postgres_before = cpu_by_pid(postgres_pids())
    busy_before, all_before = _machine_ticks()
    result = wrk(settings.seconds)
    busy_after, all_after = _machine_ticks()
    # Read again: a worker restarted or a backend opened during the run counts too.
    service_used = _cpu_used(service_before, cpu_by_pid(server.pids()))
    postgres_after = cpu_by_pid(postgres_pids())
    postgres_used = _cpu_used(postgres_before, postgres_after)
    machine_used = (busy_after - busy_before) / CLOCK_TICKS

    def per_request(seconds: float) -> float:
        return seconds * 1000 / result.requests if result.requests else 0.0

    return RunFigures(
        requests_per_second=result.requests_per_second,
        service_cpu_ms=per_request(service_used),
        postgres_cpu_ms=per_request(postgres_used),
        machine_cpu_ms=per_request(machine_used),
        busy=(busy_after - busy_before) / max(all_after - all_before, 1),
        requests=result.requests,
        errors=result.error_count,
        postgres_processes=len(postgres_after),
    )


def run_workers(
    settings: WorkersSettings, postgres_url: str, seed_value: int, console: Console
) -> dict[str, Any]:
    started = time.perf_counter()
    wrk_executable()
    if problem := asyncio.run(postgres_reachable(postgres_url)):
        raise RuntimeError(f"PostgreSQL at {postgres_url} is not reachable: {problem}")
    config = configured(settings.quick, settings.events)
    log_directory = Path(tempfile.mkdtemp(prefix="usage-events-bench-workers-"))
    results: dict[str, Any] = {
        "command": os.environ.get("BENCH_COMMAND")
        or "python -m bench workers " + " ".join(sys.argv[1:]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": asdict(settings),
        "queries": {},
    }
    console.print(
        f"`serve --workers {settings.workers}` against one worker; logs in {log_directory}"
    )
    try:
        with postgres_database(postgres_url) as database:
            console.print(f"seeding {config.events:,} events")
            seeded = seed(database, config, random.Random(seed_value)).main
            step = max(1, len(seeded.sample_event_ids) // POINT_READ_IDS)
            queries = {
                "{ __typename }": [_body(TYPENAME)],
                "latest 100": [_body(SERVICE_LIST, {"first": PAGE_SIZE})],
                "point read": [
                    _body(SERVICE_EVENT, {"eventId": event_id})
                    for event_id in seeded.sample_event_ids[::step][:POINT_READ_IDS]
                ],
            }
            client = Client(seeded.api_key)
            try:
                for workers in sorted({1, settings.workers}):
                    _measure_workers(
                        workers,
                        queries,
                        client,
                        database.url,
                        log_directory,
                        settings,
                        console,
                        results,
                    )
            finally:
                client.close()
    except Exception:
        console.print(f"[red]failed[/red]; server logs kept in {log_directory}")
        raise
    shutil.rmtree(log_directory, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def _measure_workers(
    workers: int,
    queries: dict[str, list[bytes]],
    client: Client,
    database_url: str,
    log_directory: Path,
    settings: WorkersSettings,
    console: Console,
    results: dict[str, Any],
) -> None:
    port = free_port()
    command = [*usage_events_command(), "serve", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    server = start_server(f"service-{workers}", command, database_url, log_directory, port)
    try:
        wait_ready(server, workers=workers)
        for bodies in queries.values():  # each answers, without errors, first
            client.data(server, bodies[0])
        for name, bodies in queries.items():
            figures = measure(server, bodies, client.authorization, settings)
            console.print(
                f"  {workers} worker(s), {name}: {figures.requests_per_second:,.0f} req/s, "
                f"machine {figures.busy:.0%} busy"
            )
            if not figures.postgres_processes:
                console.print(
                    "  [yellow]no PostgreSQL process on this machine: its CPU is in no "
                    "figure[/yellow]"
                )
            results["queries"].setdefault(name, {})[str(workers)] = asdict(figures)
    finally:
        stop_server(server)


def _percent(share: float) -> str:
    return f"{share * 100:.0f} %"


def _row(name: str, one: dict[str, Any], many: dict[str, Any]) -> str:
    one_figures, many_figures = RunFigures(**one), RunFigures(**many)
    ceiling = one_figures.ceiling()
    cells = [
        name,
        f"{one_figures.requests_per_second:,.0f}",
        f"{many_figures.requests_per_second:,.0f}",
        f"{many_figures.requests_per_second / one_figures.requests_per_second:.2f}×"
        if one_figures.requests_per_second
        else "—",
        f"{_percent(one_figures.busy)} / {_percent(many_figures.busy)}",
        f"{one_figures.service_cpu_ms:.3f} / {many_figures.service_cpu_ms:.3f}",
        f"{one_figures.postgres_cpu_ms:.3f} / {many_figures.postgres_cpu_ms:.3f}",
        f"{one_figures.machine_cpu_ms:.3f} / {many_figures.machine_cpu_ms:.3f}",
        "—" if ceiling is None else f"{ceiling:,.0f}",
        "—" if ceiling is None else _percent(many_figures.requests_per_second / ceiling),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(results: dict[str, Any]) -> str:
    m, s = results["machine"], results["settings"]
    n = s["workers"]
    out = [
        f"### `--workers {n}` against one worker: {s['events']:,} events",
        "",
        f"`{results['command']}`, {results['started']}, commit {m['commit']}: "
        f"{results['seconds'] / 60:.1f} minutes. Machine: {m['nproc']} cores "
        f"({m['cpu_model']}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}, {m['wrk']}.",
        "",
        f"Per query and number of workers: {s['warmup_seconds']} s of warm-up, then wrk, "
        f"1 thread × {s['connections']} connections for {s['seconds']} s. CPU per request "
        "from /proc: the service's processes (the workers and their parent), every "
        "PostgreSQL process, and the whole machine (every core's busy time, wrk's "
        "included; not what a virtual machine's host took). Ceiling: the req/s that the "
        "machine's cores would serve if all were busy at one worker's machine CPU per "
        f"request; share: {n} workers' req/s against it.",
        "",
        f"| query | req/s, 1 worker | req/s, {n} workers | ratio | machine busy, 1 / {n} "
        f"| service CPU ms/req, 1 / {n} | PostgreSQL CPU ms/req, 1 / {n} "
        f"| machine CPU ms/req, 1 / {n} | ceiling req/s | {n} workers' share of it |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    out += [
        _row(name, by_workers["1"], by_workers[str(n)])
        for name, by_workers in results["queries"].items()
    ]
    errors = [
        f"{name} ({workers} workers: {figures['errors']})"
        for name, by_workers in results["queries"].items()
        for workers, figures in by_workers.items()
        if figures["errors"]
    ]
    if errors:
        out += ["", "wrk reported errors: " + "; ".join(errors) + "."]
    return "\n".join(out) + "\n"


def save(results: dict[str, Any]) -> tuple[Path, str]:
    """The results as JSON, then as Markdown, in bench/results/."""
    RESULTS_DIRECTORY.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIRECTORY / f"workers-{stamp}.json").write_text(json.dumps(results, indent=2))
    text = markdown(results)
    path = RESULTS_DIRECTORY / f"workers-{stamp}.md"
    path.write_text(text)
    return path, text
