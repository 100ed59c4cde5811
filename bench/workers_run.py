"""`serve --workers N` against one worker, and against what the machine can give:
`python -m bench workers` (make bench-workers).

Issue 14 asks for N workers to serve close to N times one worker's reads. On a machine
with fewer cores than the workers plus PostgreSQL plus the load generator, req/s cannot
show that: PostgreSQL and wrk take their share of the same cores. So beside req/s this
reports where every core's time went during each run, from /proc: the service's
processes, PostgreSQL's, and the rest (wrk above all); and the machine's ceiling, the
req/s that the cores would give if every one were busy at that run's CPU per request.
A service that scales serves near the ceiling once the machine is busy, with its own CPU
per request no higher than one worker's; one that serializes its workers would leave
cores idle, or spend more per request.
"""

import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.config import configured
from bench.databases import postgres_database
from bench.peer_run import (
    PAGE_SIZE,
    POINT_READ_IDS,
    RESULTS_DIRECTORY,
    SERVICE_EVENT,
    SERVICE_LIST,
    TYPENAME,
    Client,
    _body,
    cpu_seconds,
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
from bench.wrk import run_wrk, wrk_executable

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class WorkersSettings:
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
    errors: int

    @property
    def ceiling(self) -> float:
        """req/s with every core busy at this run's CPU per request."""
        cores = os.cpu_count() or 1
        return cores * 1000 / self.machine_cpu_ms if self.machine_cpu_ms else 0.0


def _machine_ticks() -> tuple[int, int]:
    """(busy, busy + idle) jiffies of every core since boot, from /proc/stat. Time a
    virtual machine's host took (steal) is in neither: no process of this machine ran."""
    with open("/proc/stat") as stat:
        user, nice, system, idle, iowait, irq, softirq = (
            int(value) for value in stat.readline().split()[1:8]
        )
    busy = user + nice + system + irq + softirq  # guest time is inside user
    return busy, busy + idle + iowait


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
    lines = [body.decode() for body in bodies]

    def wrk(seconds: int) -> Any:
        return run_wrk(
            server.url,
            method="POST",
            lines=lines,
            authorization=authorization,
            path="/graphql",
            connections=settings.connections,
            seconds=seconds,
        )

    wrk(settings.warmup_seconds)
    service, postgres = server.pids(), postgres_pids()  # backends are open after the warm-up
    service_before, postgres_before = cpu_seconds(service), cpu_seconds(postgres)
    busy_before, all_before = _machine_ticks()
    result = wrk(settings.seconds)
    busy_after, all_after = _machine_ticks()
    service_used = cpu_seconds(service) - service_before
    postgres_used = cpu_seconds(postgres) - postgres_before
    requests = max(result.requests, 1)
    return RunFigures(
        requests_per_second=result.requests_per_second,
        service_cpu_ms=service_used * 1000 / requests,
        postgres_cpu_ms=postgres_used * 1000 / requests,
        machine_cpu_ms=(busy_after - busy_before) / CLOCK_TICKS * 1000 / requests,
        busy=(busy_after - busy_before) / max(all_after - all_before, 1),
        errors=result.error_count,
    )


def run_workers(
    settings: WorkersSettings, postgres_url: str, seed_value: int, console: Console
) -> dict[str, Any]:
    started = time.perf_counter()
    wrk_executable()
    config = configured(settings.quick, settings.events)
    log_directory = Path(tempfile.mkdtemp(prefix="usage-events-bench-workers-"))
    results: dict[str, Any] = {
        "command": os.environ.get("BENCH_COMMAND") or "python -m bench workers",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": asdict(settings),
        "queries": {},
    }
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
        authorization = client.authorization
        for workers in sorted({1, settings.workers}):
            port = free_port()
            command = [*usage_events_command(), "serve", "--port", str(port)]
            if workers > 1:
                command += ["--workers", str(workers)]
            server = start_server(f"service-{workers}", command, database.url, log_directory, port)
            try:
                wait_ready(server, workers=workers)
                for bodies in queries.values():  # each answers, without errors, first
                    client.data(server, bodies[0])
                for name, bodies in queries.items():
                    figures = measure(server, bodies, authorization, settings)
                    console.print(
                        f"  {workers} worker(s), {name}: {figures.requests_per_second:,.0f} "
                        f"req/s, machine {figures.busy:.0%} busy"
                    )
                    results["queries"].setdefault(name, {})[str(workers)] = asdict(figures) | {
                        "ceiling": figures.ceiling
                    }
            finally:
                stop_server(server)
        client.close()
    shutil.rmtree(log_directory, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


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
        "included). Ceiling: the req/s that the machine's cores would serve if all were "
        "busy at that run's machine CPU per request.",
        "",
        f"| query | req/s, 1 worker | req/s, {n} workers | ratio | machine busy, 1 / {n} "
        f"| service CPU ms/req, 1 / {n} | PostgreSQL CPU ms/req, 1 / {n} "
        f"| machine CPU ms/req, 1 / {n} | ceiling req/s at {n} | share of the ceiling |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_workers in results["queries"].items():
        one, many = by_workers["1"], by_workers[str(n)]
        out.append(
            f"| {name} | {one['requests_per_second']:,.0f} | {many['requests_per_second']:,.0f}"
            f" | {many['requests_per_second'] / one['requests_per_second']:.2f}×"
            f" | {one['busy']:.0%} / {many['busy']:.0%}"
            f" | {one['service_cpu_ms']:.3f} / {many['service_cpu_ms']:.3f}"
            f" | {one['postgres_cpu_ms']:.3f} / {many['postgres_cpu_ms']:.3f}"
            f" | {one['machine_cpu_ms']:.3f} / {many['machine_cpu_ms']:.3f}"
            f" | {many['ceiling']:,.0f} | {many['requests_per_second'] / many['ceiling']:.0%} |"
        )
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
    RESULTS_DIRECTORY.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = markdown(results)
    path = RESULTS_DIRECTORY / f"workers-{stamp}.md"
    path.write_text(text)
    return path, text
