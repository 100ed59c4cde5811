"""Where a request's time goes: `python -m bench profile` (`make bench-profile`).

The scenarios' requests — a 1000-event ingest batch, `events(first: 100)` with every
scalar field, `event(eventId:)` — run in process through the real application (httpx's
ASGI transport, no sockets) on the quick data set, under pyinstrument's sampling
profiler. Each sample's own time is charged to the layer whose code was running: the
GraphQL libraries, the ORM, the driver, the service's own modules. That is the measured
"where the time goes" of BENCHMARKS.md; the HTTP server (uvicorn) is not in it, since
the floor server pays the same.
"""

import asyncio
import random
import time
from collections import defaultdict
from dataclasses import dataclass

import httpx
from pyinstrument import Profiler
from pyinstrument.frame import AWAIT_FRAME_IDENTIFIER, SELF_TIME_FRAME_IDENTIFIER, Frame

from bench.databases import BenchDatabase
from bench.seed import Seeded
from bench.workload import EVENT_NAMES, event_body, ingest_body, ingest_events, list_body
from db.database import Database
from db.settings import Settings
from graph.app import create_app

# The first path fragment that matches names the layer; order matters (most specific first).
LAYERS: list[tuple[str, str]] = [
    ("/strawberry/", "strawberry"),
    ("/graphql/", "graphql-core"),
    ("/sqlalchemy/", "sqlalchemy"),
    ("/sqlmodel/", "sqlalchemy"),
    ("/asyncpg/", "driver (asyncpg)"),
    ("/aiosqlite/", "driver (aiosqlite + sqlite3)"),
    ("sqlite3", "driver (aiosqlite + sqlite3)"),
    ("/starlette/", "starlette"),
    ("/httpx/", "test transport (httpx)"),
    ("/httpcore/", "test transport (httpx)"),
    ("/anyio/", "asyncio + anyio"),
    ("/asyncio/", "asyncio + anyio"),
    ("/graph/", "service: graph/"),
    ("/db/", "service: db/"),
    ("/bench/", "benchmark driver"),
]


def layer_of(file_path: str | None) -> str:
    if not file_path:
        return "other Python"
    for fragment, layer in LAYERS:
        if fragment in file_path:
            return layer
    # Anything else by its package or standard-library module, so nothing hides in "other".
    if "site-packages/" in file_path:
        return "library: " + file_path.split("site-packages/")[1].split("/")[0].split(".")[0]
    if "/lib/python3" in file_path:
        module = file_path.split("/lib/python3")[1].split("/", 2)[1]
        return "standard library: " + module.removesuffix(".py")
    return "other Python"


WAITING = "waiting: database server, event loop"


def self_time_by_layer(root: Frame | None) -> dict[str, float]:
    """Seconds of samples charged to the layer of the innermost Python frame running.

    Time in C code (orjson, sqlite3, regular expressions) counts for the layer of the
    Python code that called it. "[await]" time is the coroutine suspended: the database
    working, or the event loop.
    """
    totals: defaultdict[str, float] = defaultdict(float)
    stack: list[tuple[Frame, str]] = [(root, "other Python")] if root is not None else []
    while stack:
        frame, parent_layer = stack.pop()
        if frame.identifier == AWAIT_FRAME_IDENTIFIER:
            totals[WAITING] += frame.time
            continue
        if frame.identifier == SELF_TIME_FRAME_IDENTIFIER:
            totals[parent_layer] += frame.time
            continue
        # Built-in functions ("<built-in>") and generated code ("<string>": dataclass
        # methods) count for the layer that called them.
        own_code = not frame.is_synthetic and not (frame.file_path or "<").startswith("<")
        layer = layer_of(frame.file_path) if own_code else parent_layer
        if not frame.children:
            totals[layer] += frame.time
        stack.extend((child, layer) for child in frame.children)
    return totals


@dataclass
class ProfileResult:
    scenario: str
    database: str
    requests: int
    milliseconds_per_request: float
    shares: list[tuple[str, float]]  # (layer, ms per request), largest first


async def _profile_requests(
    settings: Settings, key: str, bodies: list[bytes], warm_up: list[bytes]
) -> tuple[float, dict[str, float]]:
    """Bodies are made beforehand, so the profile holds the service's work alone."""
    database = Database.from_settings(settings)
    transport = httpx.ASGITransport(app=create_app(settings, database))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for body in warm_up:  # the caches and pool as a running server has them
                (await client.post("/graphql", content=body, headers=headers)).json()
            profiler = Profiler(interval=0.0005, async_mode="enabled")
            started = time.perf_counter()
            profiler.start()
            for body in bodies:
                payload = (await client.post("/graphql", content=body, headers=headers)).json()
                if "errors" in payload:
                    raise RuntimeError(f"profiled request failed: {payload['errors']}")
            profiler.stop()
            elapsed = time.perf_counter() - started
    finally:
        await database.dispose()
    session = profiler.last_session
    assert session is not None, "the profiler ran"
    return elapsed, self_time_by_layer(session.root_frame())


def profile_database(database: BenchDatabase, seeded: Seeded, requests: int) -> list[ProfileResult]:
    settings = Settings(database_url=database.url)
    main = seeded.main
    rng = random.Random(7)
    names = [name for name, _ in EVENT_NAMES]

    def ingest(index: int) -> bytes:
        event_ids = [f"profile-{index}-{number:04d}" for number in range(1000)]
        return ingest_body(ingest_events(event_ids, rng, seeded.now))

    def listing(index: int) -> bytes:
        return list_body({"eventName": names[index % len(names)]}, 100)

    def point_read(index: int) -> bytes:
        return event_body(main.sample_event_ids[index % len(main.sample_event_ids)])

    results = []
    for scenario, make_body, count in (
        ("ingest (1000-event batch)", ingest, max(5, requests // 10)),
        ("list events(first: 100)", listing, requests),
        ("point read event(eventId:)", point_read, requests),
    ):
        bodies = [make_body(index) for index in range(count)]
        warm_up = [make_body(-1 - index) for index in range(3)]
        elapsed, totals = asyncio.run(_profile_requests(settings, main.api_key, bodies, warm_up))
        scale = 1000 / count
        shares = sorted(
            ((layer, seconds * scale) for layer, seconds in totals.items()),
            key=lambda pair: -pair[1],
        )
        results.append(ProfileResult(scenario, database.kind, count, elapsed * scale, shares))
    return results


def markdown(results: list[ProfileResult]) -> str:
    lines: list[str] = []
    for result in results:
        profiled = sum(ms for _, ms in result.shares)
        lines.append(
            f"**{result.database}, {result.scenario}**: {result.milliseconds_per_request:.2f} ms "
            f"per request in process ({result.requests} requests, profiler on)."
        )
        lines.append("")
        lines.append("| layer | ms per request | share |")
        lines.append("|---|---:|---:|")
        for layer, ms in result.shares:
            if ms / profiled >= 0.005:
                lines.append(f"| {layer} | {ms:.2f} | {ms / profiled:.0%} |")
        lines.append("")
    return "\n".join(lines)
