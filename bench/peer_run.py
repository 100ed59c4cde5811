"""`python -m bench peer` (`make bench-peer`): the service beside PostGraphile 5, same rows.

One throw-away PostgreSQL database is seeded as for `make bench` (bench/seed.py); then
`usage-events serve` and PostGraphile 5 (bench/peer/server.mjs, on the Node.js of the
npm package `node`, installed from bench/peer/package-lock.json by `npm ci` when missing
or stale) serve it side by side, one process each (`--workers` for the service). Six
queries are asked of both, and before anything is timed both must answer the very same
rows — eventIds in order, and eventName, customerId, externalCustomerId, timestamp (as
an instant) and metadata (as parsed JSON) — and so must the bare asyncpg floor, or the
run stops.

Per query and server: wrk (1 thread, 8 connections) for `--duration` seconds: requests/s,
p50, p99, and the CPU time of the server's processes (utime + stime of the process and
its descendants, /proc/<pid>/stat) per request; then 1 connection: p50. The floor runs the
service's page (its filter and order, every column) or point read by hand through a
plain asyncpg pool (8 connections, 8 tasks): statements/s and this process's CPU per
statement. PostgreSQL's own CPU is in none of the figures.
"""

import asyncio
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import orjson
from rich.console import Console
from rich.table import Table

from bench.config import configured
from bench.databases import BenchDatabase, postgres_database, postgres_reachable
from bench.report import machine
from bench.seed import Seeded, SeededBusiness, seed
from bench.servers import (
    Server,
    free_port,
    start_server,
    stop_server,
    usage_events_command,
    wait_ready,
    wait_until,
)
from bench.workload import EVENT_NAMES, iso
from bench.wrk import WrkResult, run_wrk, wrk_executable

PEER_DIRECTORY = Path(__file__).parent / "peer"
RESULTS_DIRECTORY = Path(__file__).parent / "results"
# The binary of the npm package `node` (PostGraphile 5 needs Node.js ≥ 22), not the machine's.
NODE = PEER_DIRECTORY / "node_modules" / "node" / "bin" / "node"
POSTGRAPHILE_PACKAGE = PEER_DIRECTORY / "node_modules" / "postgraphile" / "package.json"
# Written after a successful `npm ci`: the digest of package.json and package-lock.json.
INSTALL_STAMP = PEER_DIRECTORY / "node_modules" / ".usage-events-bench-peer"
MIN_NODE_MAJOR = 22

GRAPHQL_PATH = "/graphql"
PAGE_SIZE = 100
# Query 5 reads the page after this many rows (fewer on a small data set).
DEEP_ROWS = 10_000
# Query 6 rotates over this many eventIds, spread over the whole data set.
POINT_READ_IDS = 100
RANGE = timedelta(hours=24)
RANGE_EVENT_NAME = EVENT_NAMES[0][0]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The six fields both servers expose, asked of both.
FIELDS = "eventId eventName customerId externalCustomerId timestamp metadata"

TYPENAME = "{ __typename }"
SERVICE_LIST = (
    "query PeerList($filter: EventFilter, $first: Int, $after: String) {"
    " events(filter: $filter, first: $first, after: $after) {"
    f" nodes {{ {FIELDS} }} }} }}"
)
# The latest 100 as Apollo Client and urql send it: `__typename` in every selection set.
APOLLO_LIST = (
    "query List($first: Int) { events(first: $first) {"
    f" nodes {{ {FIELDS} __typename }} pageInfo {{ endCursor hasNextPage __typename }}"
    " __typename } }"
)
SERVICE_PAGES = (
    "query PeerPages($first: Int, $after: String) { events(first: $first, after: $after) {"
    f" pageInfo {{ endCursor }} nodes {{ {FIELDS} }} }} }}"
)
# The latest 100 as Relay asks for a page: edges, each with its cursor and node.
SERVICE_EDGES = (
    "query PeerEdges($first: Int) { events(first: $first) {"
    f" edges {{ cursor node {{ {FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
)
SERVICE_EVENT = f"query PeerEvent($eventId: String!) {{ event(eventId: $eventId) {{ {FIELDS} }} }}"

# PostGraphile 5, Amber preset: `allEvents` with the business as a condition, newest first.
PEER_LIST = (
    "query PeerList($condition: EventCondition, $first: Int, $after: Cursor) {"
    " allEvents(condition: $condition, orderBy: [TIMESTAMP_DESC, SEQUENCE_DESC],"
    f" first: $first, after: $after) {{ nodes {{ {FIELDS} }} }} }}"
)
PEER_EDGES = (
    "query PeerEdges($condition: EventCondition, $first: Int) {"
    " allEvents(condition: $condition, orderBy: [TIMESTAMP_DESC, SEQUENCE_DESC],"
    f" first: $first) {{ edges {{ cursor node {{ {FIELDS} }} }}"
    " pageInfo { hasNextPage endCursor } } }"
)
PEER_PAGES = (
    "query PeerPages($condition: EventCondition, $first: Int, $after: Cursor) {"
    " allEvents(condition: $condition, orderBy: [TIMESTAMP_DESC, SEQUENCE_DESC],"
    f" first: $first, after: $after) {{ pageInfo {{ endCursor }} nodes {{ {FIELDS} }} }} }}"
)
# bench_events_in_range: bench/peer/setup.sql.
PEER_RANGE = (
    "query PeerRange($businessId: String!, $eventName: String!, $startAt: Datetime!,"
    " $endAt: Datetime!, $first: Int) { benchEventsInRange(businessId: $businessId,"
    " eventName: $eventName, startAt: $startAt, endAt: $endAt,"
    f" orderBy: [TIMESTAMP_DESC, SEQUENCE_DESC], first: $first) {{ nodes {{ {FIELDS} }} }} }}"
)
PEER_EVENT = (
    "query PeerEvent($businessId: String!, $eventId: String!) {"
    f" eventByBusinessIdAndEventId(businessId: $businessId, eventId: $eventId) {{ {FIELDS} }} }}"
)

# The floor: what the service sends for the page (the log of a request shows it), by hand.
EVENT_COLUMNS = (
    "sequence, id, business_id, event_id, customer_id, external_customer_id, event_name,"
    ' "timestamp", metadata, ingested_at, revision, deprecated_at, deprecation_reason,'
    " backfill_id, counted_from"
)
LISTED = (
    f"SELECT {EVENT_COLUMNS} FROM events"
    " WHERE business_id = $1 AND deprecated_at IS NULL AND counted_from IS NOT NULL"
)
NEWEST_FIRST = f'ORDER BY "timestamp" DESC, sequence DESC LIMIT {PAGE_SIZE + 1}'
FLOOR_LATEST = f"{LISTED} {NEWEST_FIRST}"
FLOOR_CUSTOMER = f"{LISTED} AND customer_id = $2 {NEWEST_FIRST}"
FLOOR_RANGE = (
    f'{LISTED} AND "timestamp" >= $2 AND "timestamp" < $3 AND event_name = $4 {NEWEST_FIRST}'
)
FLOOR_AFTER = f'{LISTED} AND ("timestamp", sequence) < ($2, $3) {NEWEST_FIRST}'
# The business as a value the planner cannot see (db.lookups.same_business), as the service.
FLOOR_EVENT = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE business_id = (SELECT $1::varchar) AND event_id = $2"
)
DEEP_POSITION = (
    'SELECT "timestamp", sequence FROM events WHERE business_id = $1'
    " AND deprecated_at IS NULL AND counted_from IS NOT NULL"
    ' ORDER BY "timestamp" DESC, sequence DESC OFFSET $2 LIMIT 1'
)


class RowsDiffer(RuntimeError):
    """The servers (or the floor) answered a query with different rows: nothing is timed."""


@dataclass(frozen=True)
class PeerSettings:
    quick: bool
    events: int
    seconds: int
    warmup_seconds: int
    connections: int
    workers: int


@dataclass(frozen=True)
class Floor:
    sql: str
    # One argument tuple per rotated request.
    arguments: list[tuple[Any, ...]]


@dataclass(frozen=True)
class PeerQuery:
    name: str
    service_bodies: list[bytes]
    peer_bodies: list[bytes]
    # Where the rows are in each answer's data: a list of nodes, or one node (or null).
    service_path: tuple[str, ...]
    peer_path: tuple[str, ...]
    floor: Floor | None = None
    # Rows each request must answer (a full page, or the one event): checked.
    rows_each: int = PAGE_SIZE
    graphql: dict[str, str] = field(default_factory=dict)


@dataclass
class ServerFigures:
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    p50_1_connection_ms: float
    cpu_seconds: float
    cpu_ms_per_request: float
    errors: dict[str, int]
    errors_1_connection: dict[str, int]


@dataclass
class FloorFigures:
    statements: int
    statements_per_second: float
    cpu_ms_per_statement: float


@dataclass
class QueryResult:
    name: str
    postgraphile: ServerFigures
    service: ServerFigures
    floor: FloorFigures | None
    rows_checked: int
    requests_rotated: int

    @property
    def cpu_ratio(self) -> float | None:
        peer = self.postgraphile.cpu_ms_per_request
        return self.service.cpu_ms_per_request / peer if peer else None


@dataclass
class Runtime:
    node: str
    postgraphile: str


# ---------------------------------------------------------------------------------------
# PostGraphile: installed from the lock, started on the `node` package's binary.


def _lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((PEER_DIRECTORY / name).read_bytes())
    return digest.hexdigest()


def ensure_installed(console: Console) -> Runtime:
    """`npm ci` in bench/peer/ when node_modules is missing or installed from another lock."""
    wanted = _lock_digest()
    installed = INSTALL_STAMP.read_text().strip() if INSTALL_STAMP.exists() else None
    if installed != wanted or not NODE.exists() or not POSTGRAPHILE_PACKAGE.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                "npm is needed once to install PostGraphile into bench/peer/ (npm ci); "
                "any Node.js with npm will do, the benchmark runs its own Node.js"
            )
        console.print("installing PostGraphile and Node.js into bench/peer/node_modules (npm ci)")
        completed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PEER_DIRECTORY,
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"npm ci failed:\n{completed.stdout}\n{completed.stderr}")
        if not NODE.exists():
            raise RuntimeError(
                "npm ci left no node binary in bench/peer/node_modules/node/bin: the `node` "
                "package installs it in its preinstall script; are install scripts disabled "
                "(ignore-scripts, or allowScripts)?"
            )
        INSTALL_STAMP.write_text(wanted + "\n")
    completed = subprocess.run(
        [str(NODE), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    version = completed.stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if completed.returncode != 0 or major < MIN_NODE_MAJOR:
        raise RuntimeError(f"PostGraphile 5 needs Node.js ≥ {MIN_NODE_MAJOR}; got {version!r}")
    postgraphile = json.loads(POSTGRAPHILE_PACKAGE.read_text())["version"]
    return Runtime(node=version, postgraphile=str(postgraphile))


def start_postgraphile(database: BenchDatabase, log_directory: Path) -> Server:
    assert database.postgres_dsn is not None
    port = free_port()
    return start_server(
        "postgraphile",
        [str(NODE), str(PEER_DIRECTORY / "server.mjs")],
        database.url,
        log_directory,
        port,
        settings={
            "PEER_DATABASE_URL": database.postgres_dsn,
            "PEER_PORT": str(port),
            "NODE_ENV": "production",
            "GRAPHILE_ENV": "production",
            "DEBUG": "",
        },
    )


def wait_graphql(server: Server) -> None:
    """Until `{ __typename }` is answered (PostGraphile has no /healthz)."""

    def answered() -> bool:
        response = httpx.post(server.url + GRAPHQL_PATH, json={"query": TYPENAME}, timeout=2)
        return response.status_code == 200

    wait_until(server, answered, pause=0.2)


# ---------------------------------------------------------------------------------------
# The queries, and the check that both servers (and the floor) answer the same rows.


def _body(query: str, variables: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps({"query": query, **({"variables": variables} if variables else {})})


class Client:
    def __init__(self, api_key: str) -> None:
        self.http = httpx.Client(timeout=120)
        self.authorization = f"Bearer {api_key}"

    def close(self) -> None:
        self.http.close()

    def data(self, server: Server, body: bytes) -> dict[str, Any]:
        response = self.http.post(
            server.url + GRAPHQL_PATH,
            content=body,
            headers={"Authorization": self.authorization, "Content-Type": "application/json"},
        )
        payload = orjson.loads(response.content) if response.content else {}
        if response.status_code != 200 or not isinstance(payload, dict) or payload.get("errors"):
            raise RuntimeError(
                f"{server.name} answered {response.status_code}: {response.text[:800]}\n"
                f"to {body.decode()[:800]}"
            )
        data: dict[str, Any] = payload["data"]
        return data


Row = tuple[Any, ...]


def _instant(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime), value
    assert moment.tzinfo is not None, value
    return moment.astimezone(UTC)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def node_row(node: dict[str, Any]) -> Row:
    return (
        node["eventId"],
        node["eventName"],
        node["customerId"],
        node["externalCustomerId"],
        _instant(node["timestamp"]),
        _json(node["metadata"]),
    )


def record_row(record: Any) -> Row:
    return (
        record["event_id"],
        record["event_name"],
        record["customer_id"],
        record["external_customer_id"],
        _instant(record["timestamp"]),
        _json(record["metadata"]),
    )


def rows_at(data: dict[str, Any], path: tuple[str, ...]) -> list[Row]:
    """The rows at `path`: one node (none if null), or a list of them; a list met on the
    way is followed item by item (edges, then each edge's node)."""
    values: list[Any] = [data]
    for key in path:
        found: list[Any] = []
        for value in values:
            if value is None:
                continue
            item = value[key]
            if isinstance(item, list):
                found.extend(item)
            else:
                found.append(item)
        values = found
    return [node_row(node) for node in values if node is not None]


def _first_difference(one: list[Row], other: list[Row]) -> str:
    for index, (a, b) in enumerate(zip(one, other, strict=False)):
        if a != b:
            return f"row {index}: {a!r}\n    against {b!r}"
    return f"{len(one)} rows against {len(other)}"


async def _floor_rows(dsn: str, floor: Floor) -> list[list[Row]]:
    connection = await asyncpg.connect(dsn)
    try:
        answers = []
        for arguments in floor.arguments:
            records = await connection.fetch(floor.sql, *arguments)
            answers.append([record_row(record) for record in records[:PAGE_SIZE]])
        return answers
    finally:
        await connection.close()


def check_same_rows(
    query: PeerQuery, client: Client, service: Server, peer: Server, dsn: str
) -> int:
    """Every request of `query` against both servers (and the floor): the same rows, or raise."""
    if not query.service_path:
        for service_body, peer_body in zip(query.service_bodies, query.peer_bodies, strict=True):
            answer, peer_answer = client.data(service, service_body), client.data(peer, peer_body)
            if answer != peer_answer:
                raise RowsDiffer(f"{query.name}: service {answer!r}, PostGraphile {peer_answer!r}")
        return 0
    floor_answers = asyncio.run(_floor_rows(dsn, query.floor)) if query.floor else None
    checked = 0
    for index, (service_body, peer_body) in enumerate(
        zip(query.service_bodies, query.peer_bodies, strict=True)
    ):
        mine = rows_at(client.data(service, service_body), query.service_path)
        theirs = rows_at(client.data(peer, peer_body), query.peer_path)
        if len(mine) != query.rows_each:
            raise RowsDiffer(
                f"{query.name}: the service answered {len(mine)} rows, not {query.rows_each}"
            )
        if mine != theirs:
            raise RowsDiffer(
                f"{query.name}: the service and PostGraphile differ at "
                f"{_first_difference(mine, theirs)}"
            )
        if floor_answers is not None and floor_answers[index] != mine:
            raise RowsDiffer(
                f"{query.name}: the asyncpg floor and the servers differ at "
                f"{_first_difference(floor_answers[index], mine)}"
            )
        checked += len(mine)
    return checked


async def _scalar(dsn: str, sql: str, *arguments: Any) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchrow(sql, *arguments)
    finally:
        await connection.close()


def _customer_without_external_id(business: SeededBusiness) -> str:
    """The business's largest customer that has no externalId and at least a page of events.

    The service's customerId filter matches events sent with the customer's id OR with its
    externalId (two index scans merged); PostGraphile's condition is equality only. For a
    customer without an externalId both are exactly `customer_id = …`.
    """
    without = {customer.id for customer in business.customers if customer.external_id is None}
    for customer, count in business.customer_sizes:
        if customer in without and count >= PAGE_SIZE:
            return customer
    raise RuntimeError(
        f"no customer without an externalId has {PAGE_SIZE} events; seed more (--events)"
    )


def deep_cursors(
    client: Client, service: Server, peer: Server, business: SeededBusiness, rows: int
) -> tuple[str, str]:
    """Each server's own cursor of row `rows`, paging through both; the rows on the way match."""
    service_after: str | None = None
    peer_after: str | None = None
    condition = {"businessId": business.id, "deprecatedAt": None}
    for page in range(rows // PAGE_SIZE):
        mine = client.data(
            service, _body(SERVICE_PAGES, {"first": PAGE_SIZE, "after": service_after})
        )["events"]
        theirs = client.data(
            peer,
            _body(PEER_PAGES, {"condition": condition, "first": PAGE_SIZE, "after": peer_after}),
        )["allEvents"]
        mine_rows = [node_row(node) for node in mine["nodes"]]
        theirs_rows = [node_row(node) for node in theirs["nodes"]]
        if mine_rows != theirs_rows or len(mine_rows) != PAGE_SIZE:
            raise RowsDiffer(
                f"paging to row {rows}: page {page + 1} differs at "
                f"{_first_difference(mine_rows, theirs_rows)}"
            )
        service_after = mine["pageInfo"]["endCursor"]
        peer_after = theirs["pageInfo"]["endCursor"]
    assert service_after is not None
    assert peer_after is not None
    return service_after, peer_after


def build_queries(
    client: Client, service: Server, peer: Server, dsn: str, seeded: Seeded, console: Console
) -> list[PeerQuery]:
    main = seeded.main
    business = main.id
    listed = {"businessId": business, "deprecatedAt": None}
    queries = [
        PeerQuery(
            "__typename",
            [_body(TYPENAME)],
            [_body(TYPENAME)],
            (),
            (),
            rows_each=0,
            graphql={"service": TYPENAME, "postgraphile": TYPENAME},
        ),
        PeerQuery(
            "latest 100",
            [_body(SERVICE_LIST, {"first": PAGE_SIZE})],
            [_body(PEER_LIST, {"condition": listed, "first": PAGE_SIZE})],
            ("events", "nodes"),
            ("allEvents", "nodes"),
            Floor(FLOOR_LATEST, [(business,)]),
            graphql={"service": SERVICE_LIST, "postgraphile": PEER_LIST},
        ),
    ]

    customer = _customer_without_external_id(main)
    queries.append(
        PeerQuery(
            "one customer 100",
            [_body(SERVICE_LIST, {"filter": {"customerId": customer}, "first": PAGE_SIZE})],
            [
                _body(
                    PEER_LIST,
                    {"condition": {**listed, "customerId": customer}, "first": PAGE_SIZE},
                )
            ],
            ("events", "nodes"),
            ("allEvents", "nodes"),
            Floor(FLOOR_CUSTOMER, [(business, customer)]),
            graphql={"service": SERVICE_LIST, "postgraphile": PEER_LIST},
        )
    )

    newest = (
        (
            asyncio.run(
                _scalar(dsn, 'SELECT max("timestamp") FROM events WHERE business_id = $1', business)
            )
        )[0]
    ).astimezone(UTC)
    # The 24 hours up to and including the newest event (the end is exclusive).
    end = newest + timedelta(microseconds=1)
    start = end - RANGE
    queries.append(
        PeerQuery(
            "name + 24 h 100",
            [
                _body(
                    SERVICE_LIST,
                    {
                        "filter": {
                            "eventName": RANGE_EVENT_NAME,
                            "start": iso(start),
                            "end": iso(end),
                        },
                        "first": PAGE_SIZE,
                    },
                )
            ],
            [
                _body(
                    PEER_RANGE,
                    {
                        "businessId": business,
                        "eventName": RANGE_EVENT_NAME,
                        "startAt": iso(start),
                        "endAt": iso(end),
                        "first": PAGE_SIZE,
                    },
                )
            ],
            ("events", "nodes"),
            ("benchEventsInRange", "nodes"),
            Floor(FLOOR_RANGE, [(business, start, end, RANGE_EVENT_NAME)]),
            graphql={"service": SERVICE_LIST, "postgraphile": PEER_RANGE},
        )
    )

    rows = min(DEEP_ROWS, (main.events // PAGE_SIZE - 1) * PAGE_SIZE)
    console.print(f"  paging both servers to row {rows:,} for their cursors")
    service_cursor, peer_cursor = deep_cursors(client, service, peer, main, rows)
    position = asyncio.run(_scalar(dsn, DEEP_POSITION, business, rows - 1))
    queries.append(
        PeerQuery(
            f"100 after row {rows:,}",
            [_body(SERVICE_LIST, {"first": PAGE_SIZE, "after": service_cursor})],
            [_body(PEER_LIST, {"condition": listed, "first": PAGE_SIZE, "after": peer_cursor})],
            ("events", "nodes"),
            ("allEvents", "nodes"),
            Floor(FLOOR_AFTER, [(business, position[0], position[1])]),
            graphql={"service": SERVICE_LIST, "postgraphile": PEER_LIST},
        )
    )

    step = max(1, len(main.sample_event_ids) // POINT_READ_IDS)
    event_ids = main.sample_event_ids[::step][:POINT_READ_IDS]
    queries.append(
        PeerQuery(
            "point read",
            [_body(SERVICE_EVENT, {"eventId": event_id}) for event_id in event_ids],
            [
                _body(PEER_EVENT, {"businessId": business, "eventId": event_id})
                for event_id in event_ids
            ],
            ("event",),
            ("eventByBusinessIdAndEventId",),
            Floor(FLOOR_EVENT, [(business, event_id) for event_id in event_ids]),
            rows_each=1,
            graphql={"service": SERVICE_EVENT, "postgraphile": PEER_EVENT},
        )
    )
    queries.append(
        PeerQuery(
            "latest 100, edges",
            [_body(SERVICE_EDGES, {"first": PAGE_SIZE})],
            [_body(PEER_EDGES, {"condition": listed, "first": PAGE_SIZE})],
            ("events", "edges", "node"),
            ("allEvents", "edges", "node"),
            Floor(FLOOR_LATEST, [(business,)]),
            graphql={"service": SERVICE_EDGES, "postgraphile": PEER_EDGES},
        )
    )
    return queries


# ---------------------------------------------------------------------------------------
# Measurements.


def cpu_by_pid(pids: Iterable[int]) -> dict[int, float]:
    """utime + stime of each of these processes still running (all its threads), seconds."""
    seconds = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it has exited
        # After the command's closing parenthesis: state is field 3; utime 14, stime 15.
        seconds[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads), seconds."""
    return sum(cpu_by_pid(pids).values())


def _wrk(
    server: Server, bodies: list[bytes], authorization: str, connections: int, seconds: int
) -> WrkResult:
    return run_wrk(
        server.url,
        method="POST",
        lines=[body.decode() for body in bodies],
        authorization=authorization,
        path=GRAPHQL_PATH,
        connections=connections,
        seconds=seconds,
    )


def measure_server(
    server: Server, bodies: list[bytes], authorization: str, settings: PeerSettings
) -> ServerFigures:
    if settings.warmup_seconds:
        _wrk(server, bodies, authorization, settings.connections, settings.warmup_seconds)
    pids = server.pids()
    before = cpu_seconds(pids)
    loaded = _wrk(server, bodies, authorization, settings.connections, settings.seconds)
    used = cpu_seconds(pids) - before
    single = _wrk(server, bodies, authorization, 1, settings.seconds)
    return ServerFigures(
        requests=loaded.requests,
        requests_per_second=loaded.requests_per_second,
        p50_ms=loaded.p50_ms,
        p99_ms=loaded.p99_ms,
        p50_1_connection_ms=single.p50_ms,
        cpu_seconds=used,
        cpu_ms_per_request=used * 1000 / loaded.requests if loaded.requests else 0.0,
        errors=loaded.errors,
        errors_1_connection=single.errors,
    )


async def _floor_run(
    dsn: str, floor: Floor, seconds: float, warmup_seconds: float, concurrency: int
) -> FloorFigures:
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    try:

        async def task(first: int, deadline: float) -> int:
            done, index, count = 0, first, len(floor.arguments)
            while time.monotonic() < deadline:
                await pool.fetch(floor.sql, *floor.arguments[index % count])
                done += 1
                index += 1
            return done

        async def run(duration: float) -> int:
            deadline = time.monotonic() + duration
            counts = await asyncio.gather(*(task(k, deadline) for k in range(concurrency)))
            return sum(counts)

        if warmup_seconds:
            await run(warmup_seconds)
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        statements = await run(seconds)
        cpu = time.process_time() - cpu_before
        wall = time.perf_counter() - wall_before
    finally:
        await pool.close()
    return FloorFigures(
        statements=statements,
        statements_per_second=statements / wall,
        cpu_ms_per_statement=cpu * 1000 / statements if statements else 0.0,
    )


# ---------------------------------------------------------------------------------------
# The run.


@contextmanager
def _servers(
    database: BenchDatabase, settings: PeerSettings, log_directory: Path
) -> Iterator[tuple[Server, Server]]:
    port = free_port()
    command = [*usage_events_command(), "serve", "--port", str(port)]
    if settings.workers > 1:
        command += ["--workers", str(settings.workers)]
    service = start_server("service", command, database.url, log_directory, port)
    peer = start_postgraphile(database, log_directory)
    try:
        wait_ready(service, workers=settings.workers)
        wait_graphql(peer)
        yield service, peer
    finally:
        stop_server(peer)
        stop_server(service)


async def _setup(dsn: str) -> str:
    """bench/peer/setup.sql in the benchmark database; returns PostgreSQL's version."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute((PEER_DIRECTORY / "setup.sql").read_text())
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def run_peer(
    settings: PeerSettings, postgres_url: str, seed_value: int, console: Console
) -> dict[str, Any]:
    started = time.perf_counter()
    wrk_executable()
    runtime = ensure_installed(console)
    if problem := asyncio.run(postgres_reachable(postgres_url)):
        raise RuntimeError(f"PostgreSQL at {postgres_url} is not reachable: {problem}")
    config = configured(settings.quick, settings.events)
    log_directory = Path(tempfile.mkdtemp(prefix="usage-events-bench-peer-"))
    results: dict[str, Any] = {
        "command": os.environ.get("BENCH_COMMAND") or "python -m bench " + " ".join(sys.argv[1:]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine() | {"node": runtime.node, "postgraphile": runtime.postgraphile},
        "settings": asdict(settings),
        "queries": [],
    }
    console.print(
        f"[bold]usage-events beside PostGraphile {runtime.postgraphile}[/bold] "
        f"(Node.js {runtime.node}): {config.events:,} events; logs in {log_directory}"
    )
    try:
        with postgres_database(postgres_url) as database:
            assert database.postgres_dsn is not None
            dsn = database.postgres_dsn
            console.print(f"seeding {config.events:,} + {config.small_events:,} events")
            seeded = seed(database, config, random.Random(seed_value))
            console.print(f"  seeded in {seeded.seconds:.1f} s")
            results["seed"] = {"events": seeded.main.events, "seconds": round(seeded.seconds, 1)}
            results["machine"]["postgresql"] = asyncio.run(_setup(dsn))
            with _servers(database, settings, log_directory) as (service, peer):
                results["queries"] = _measure_all(
                    settings, seeded, service, peer, dsn, console, results
                )
    except Exception:
        console.print(f"[red]failed[/red]; server logs kept in {log_directory}")
        raise
    shutil.rmtree(log_directory, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def _measure_all(
    settings: PeerSettings,
    seeded: Seeded,
    service: Server,
    peer: Server,
    dsn: str,
    console: Console,
    results: dict[str, Any],
) -> list[dict[str, Any]]:
    client = Client(seeded.main.api_key)
    try:
        console.print("checking that both servers and the floor answer the same rows")
        queries = build_queries(client, service, peer, dsn, seeded, console)
        checked = [check_same_rows(query, client, service, peer, dsn) for query in queries]
    finally:
        client.close()
    counts = ", ".join(f"{q.name} ({n})" for q, n in zip(queries, checked, strict=True))
    console.print(f"  same rows: {counts}")
    results["graphql"] = {query.name: query.graphql for query in queries}
    measured = []
    for query, rows in zip(queries, checked, strict=True):
        console.print(f"measuring {query.name}")
        authorization = client.authorization
        peer_figures = measure_server(peer, query.peer_bodies, authorization, settings)
        service_figures = measure_server(service, query.service_bodies, authorization, settings)
        floor_figures = (
            asyncio.run(
                _floor_run(
                    dsn,
                    query.floor,
                    settings.seconds,
                    settings.warmup_seconds,
                    settings.connections,
                )
            )
            if query.floor
            else None
        )
        result = QueryResult(
            query.name,
            peer_figures,
            service_figures,
            floor_figures,
            rows,
            len(query.service_bodies),
        )
        for who, figures in (("PostGraphile", peer_figures), ("service", service_figures)):
            if figures.errors and sum(figures.errors.values()):
                console.print(f"  [yellow]wrk errors against {who}: {figures.errors}[/yellow]")
        console.print(
            f"  PostGraphile {peer_figures.requests_per_second:,.0f} req/s "
            f"{peer_figures.cpu_ms_per_request:.2f} CPU ms/req; service "
            f"{service_figures.requests_per_second:,.0f} req/s "
            f"{service_figures.cpu_ms_per_request:.2f} CPU ms/req"
        )
        measured.append(asdict(result) | {"cpu_ratio": result.cpu_ratio})
    return measured


# ---------------------------------------------------------------------------------------
# Output.

QUERY_NOTES = [
    "`{ __typename }`, of both.",
    "Latest 100: service `events(first: 100)` (newest first: timestamp, then insertion "
    "sequence, descending); PostGraphile `allEvents(condition: {businessId: …, deprecatedAt: "
    "null}, orderBy: [TIMESTAMP_DESC, SEQUENCE_DESC], first: 100)`.",
    "One customer's 100: service `events(filter: {customerId: …}, first: 100)`; PostGraphile "
    "the same `allEvents` with `customerId` in its condition. The customer is the main "
    "business's largest without an externalId: the service's customerId filter also matches "
    "events sent with the customer's externalId, which an equality condition cannot say.",
    f"`{RANGE_EVENT_NAME}` in the 24 h up to and including the newest event, 100: service "
    "`events(filter: {eventName, start, end}, first: 100)`; PostGraphile "
    "`benchEventsInRange(businessId, eventName, startAt, endAt, orderBy: [TIMESTAMP_DESC, "
    "SEQUENCE_DESC], first: 100)`, a STABLE SQL function made in the benchmark database "
    "(bench/peer/setup.sql) that PostgreSQL inlines: PostGraphile 5's core has no range "
    "filter.",
    f"Keyset page: each server's own cursor of row {DEEP_ROWS:,} (paged to, 100 rows a "
    "request, by `pageInfo { endCursor }`), then `first: 100, after:` that cursor.",
    "Point read: service `event(eventId:)`; PostGraphile `eventByBusinessIdAndEventId("
    f"businessId:, eventId:)`; both rotate over {POINT_READ_IDS} eventIds spread over the "
    "data set.",
    "Latest 100 as Relay asks for a page: query 2 with `edges { cursor node { … } }` and "
    "`pageInfo { hasNextPage endCursor }` in place of `nodes`. Each server makes a cursor "
    "for every row: PostGraphile's is the row's position in base64 JSON, the service's is "
    "sealed (AES-SIV) with the business's key. The cursors are not compared (each "
    "server's are its own), the rows under them are; PostgreSQL's log was not read for "
    "this query.",
]
STATEMENT_NOTES = [
    "Both get the service's `Authorization: Bearer` header (PostGraphile ignores it); "
    "PostGraphile is told the business in its arguments. PostgreSQL's log of one request "
    "each: PostGraphile sends one prepared statement selecting the six columns asked for, "
    "outside a transaction; the service sends the page's statement (the keyset columns "
    "and each node's JSON object written by PostgreSQL, LIMIT 101; for query 3 the "
    "customer's id and externalId read by subqueries within it), outside a transaction "
    "too, preceded by `SELECT 1` (the pool's ping) only on a connection idle for 0.5 s or "
    "more, which none is under this load; the point read selects the event's JSON object "
    "written by PostgreSQL (a kept document's plan, graph/plans.py, as the pages'). The floor "
    "runs the page's filter by hand selecting every column, as the "
    "service's pages did before they were written as JSON. PostGraphile's allEvents has no "
    "`counted_from IS NOT NULL` (a condition cannot say it; every seeded event counts), the "
    "rest of each WHERE is the service's; `deprecatedAt: null` works once the column may "
    "be a condition (setup.sql: PostGraphile 5 offers conditions on indexed columns only).",
]

COLUMNS = [
    "query",
    "PostGraphile req/s",
    "service req/s",
    "PostGraphile CPU ms/req",
    "service CPU ms/req",
    "CPU ratio (service/PostGraphile)",
    "PostGraphile p50 / p99 ms (8)",
    "service p50 / p99 ms (8)",
    "PostGraphile p50 ms (1)",
    "service p50 ms (1)",
    "asyncpg floor q/s",
    "floor CPU ms/statement",
]
# The same, narrow enough for a terminal (PG: PostGraphile, svc: the service).
SHORT_COLUMNS = [
    "query",
    "PG req/s",
    "svc req/s",
    "PG CPU ms",
    "svc CPU ms",
    "CPU svc/PG",
    "PG p50/p99 (8)",
    "svc p50/p99 (8)",
    "PG p50 (1)",
    "svc p50 (1)",
    "floor q/s",
    "floor CPU ms",
]


def _cells(row: dict[str, Any]) -> list[str]:
    peer, service, floor = row["postgraphile"], row["service"], row["floor"]
    ratio = row["cpu_ratio"]
    return [
        row["name"],
        f"{peer['requests_per_second']:,.0f}",
        f"{service['requests_per_second']:,.0f}",
        f"{peer['cpu_ms_per_request']:.2f}",
        f"{service['cpu_ms_per_request']:.2f}",
        "—" if ratio is None else f"{ratio:.2f}×",
        f"{peer['p50_ms']:.2f} / {peer['p99_ms']:.2f}",
        f"{service['p50_ms']:.2f} / {service['p99_ms']:.2f}",
        f"{peer['p50_1_connection_ms']:.2f}",
        f"{service['p50_1_connection_ms']:.2f}",
        "—" if floor is None else f"{floor['statements_per_second']:,.0f}",
        "—" if floor is None else f"{floor['cpu_ms_per_statement']:.3f}",
    ]


def print_table(console: Console, results: dict[str, Any]) -> None:
    s = results["settings"]
    table = Table(
        title=f"PostGraphile {results['machine']['postgraphile']} beside usage-events "
        f"({s['workers']} worker{'s' if s['workers'] > 1 else ''}), "
        f"{results['seed']['events']:,} events",
        caption="PG: PostGraphile, svc: the service; CPU ms per request (floor: per statement); "
        "latencies in ms at 8 and 1 connections",
    )
    for column in SHORT_COLUMNS:
        table.add_column(column, justify="left" if column == "query" else "right")
    for row in results["queries"]:
        table.add_row(*_cells(row))
    console.print(table)


def markdown(results: dict[str, Any]) -> str:
    m, s = results["machine"], results["settings"]
    workers = f"{s['workers']} worker{'s' if s['workers'] > 1 else ''}"
    out = [
        f"### PostGraphile {m['postgraphile']} beside usage-events: "
        f"{results['seed']['events']:,} events",
        "",
        f"`{results['command']}`, {results['started']}, commit {m['commit']}: "
        f"{results['seconds'] / 60:.1f} minutes.",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}, PostgreSQL {m.get('postgresql', 'n/a')}, "
        f"Node.js {m['node']} (npm package `node`), PostGraphile {m['postgraphile']}, {m['wrk']}.",
        "",
        f"Per query and server: {s['warmup_seconds']} s of warm-up, then wrk, 1 thread × "
        f"{s['connections']} connections for {s['seconds']} s (req/s, p50 / p99, CPU), then 1 "
        f"connection for {s['seconds']} s (p50). Service: `usage-events serve` ({workers}); "
        "PostGraphile: one Node.js process (Amber preset, NODE_ENV=production, no GraphiQL, "
        "watch or explain; pool of 20 connections, as the service's). CPU ms/req: user + "
        "system CPU of the server's processes (descendants included) during the "
        f"{s['connections']}-connection run ÷ its requests; PostgreSQL's CPU is in no figure. "
        f"Floor: the service's main statement, by hand, through a bare asyncpg pool "
        f"({s['connections']} connections, {s['connections']} tasks) for {s['seconds']} s; "
        "CPU is the benchmark process's own.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    out += ["| " + " | ".join(_cells(row)) + " |" for row in results["queries"]]
    checked = ", ".join(
        f"{row['rows_checked']:,} ({row['name']})"
        for row in results["queries"]
        if row["rows_checked"]
    )
    out += [
        "",
        "Before anything was timed, every request of every query was asked of both servers "
        "and (every query but the first) of the floor, and all answered the same rows: "
        "eventIds in order, and eventName, customerId, externalCustomerId, timestamp (as an "
        f"instant) and metadata (as parsed JSON); rows compared: {checked}. Paging both "
        "servers to the keyset query's cursor compared every row on the way.",
        "",
    ]
    out += ["Queries (each asks for the same six fields of each event:", f"`{FIELDS}`):", ""]
    out += [f"{index}. {text}" for index, text in enumerate(QUERY_NOTES, start=1)]
    out += ["", *STATEMENT_NOTES, ""]
    errors = [
        f"{row['name']} ({who}: {row[key]['errors']})"
        for row in results["queries"]
        for who, key in (("PostGraphile", "postgraphile"), ("service", "service"))
        if sum(row[key]["errors"].values())
    ]
    if errors:
        out += ["wrk reported errors: " + "; ".join(errors) + ".", ""]
    return "\n".join(out)


def save(results: dict[str, Any]) -> tuple[Path, str]:
    RESULTS_DIRECTORY.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = markdown(results)
    path = RESULTS_DIRECTORY / f"peer-{stamp}.md"
    path.write_text(text)
    (RESULTS_DIRECTORY / f"peer-{stamp}.json").write_text(
        json.dumps(results, indent=2, default=str)
    )
    return path, text
