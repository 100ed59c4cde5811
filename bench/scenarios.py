"""The scenarios of SPEC §13 and the scale checks of issue 5, on one seeded database.

Every figure is measured beside its floor in the same run, against real server processes
(`usage-events serve` and the floor server of bench/floor_app.py), by load generators in
processes of their own (wrk for reads, bench/ingest_client.py for ingestion).
"""

import asyncio
import decimal
import json
import math
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg  # type: ignore[import-untyped]
import httpx
import orjson
import sqlalchemy as sa
from rich.console import Console

from bench.config import BenchConfig
from bench.databases import BenchDatabase
from bench.ingest_client import distinct_event_ids
from bench.ingest_floor import driver_floor, graphql_core_floor, median_ms
from bench.seed import Seeded, SeededBusiness
from bench.servers import (
    MemorySampler,
    Server,
    free_port,
    hwm_mib,
    rss_mib,
    start_server,
    stop_server,
    usage_events_command,
    wait_ready,
)
from bench.usage_floor import (
    Cells,
    RawAggregate,
    WrongAnswer,
    compare,
    decimal_text,
    raw_totals,
    run_raw,
    usage_aggregate,
    usage_answer_cells,
    volume_aggregate,
    volume_answer_cells,
)
from bench.workload import (
    BACKFILL_METER_DIMENSION,
    BACKFILL_METER_INPUT,
    EVENT_NAMES,
    USAGE_GROUP_BY_KEY,
    USAGE_REPEATED_FILTER,
    USAGE_TIME_ZONE,
    BackfillEvent,
    backfill_body,
    backfill_close_timeframe,
    backfill_events,
    backfill_ingest_timeframe,
    close_backfill_body,
    create_backfill_body,
    create_meter_body,
    event_body,
    ingest_body,
    ingest_events,
    iso,
    list_body,
    revert_backfill_body,
    usage_body,
    usage_meter_index,
    usage_range,
    volume_body,
)
from bench.wrk import WrkResult, run_wrk
from db.database import Database
from db.pagination import Cursors
from db.repositories.event_listing import NEWEST_FIRST
from db.settings import Settings
from db.tables import businesses, events

GRAPHQL_PATH = "/graphql"
FLOOR_LIST_PATH = "/floor/events"
FLOOR_EVENT_PATH = "/floor/event"
# How many customers / eventIds the list and point-read requests rotate over.
ROTATE_CUSTOMERS = 20
# The scale check calls a listing flat when the big data set costs at most this much more.
FLAT_RATIO = 1.5
# Memory is "flat" under sustained ingestion when it grows at most this much after warm-up.
FLAT_MEMORY_GROWTH = 0.10
# Usage and volume (SPEC §13): the main business's p50 at most this many times the small
# business's, and below the raw aggregate's.
USAGE_FLAT_RATIO = 2.0
# Usage / volume p50s over several requests however slow each is: wrk's time is stretched
# to (this + 1) times the query's first request; the raw aggregate runs at least this often.
AGGREGATE_SAMPLES = 5
# ... but no single measurement runs longer than this (wrk gives up on a request at 60 s).
AGGREGATE_MAX_SECONDS = 120
# Ingestion into a backfill costs at most this many times normal ingestion (per batch).
BACKFILL_INGEST_RATIO = 1.1
# One close or revert of a backfill is one request, however long it takes: the client waits
# this long for it (the client's default, 120 s, is for everything else).
BACKFILL_REQUEST_TIMEOUT_SECONDS = 3600
# Sums of the backfilled values, exactly: wide enough never to round, raising if it would.
EXACT = decimal.Context(prec=decimal.MAX_PREC, traps=[decimal.Inexact, decimal.Rounded])


@dataclass
class Row:
    """One line of the results table: a figure beside its floor."""

    scenario: str
    figure: float
    # None: a figure without a floor to compare it with (printed —, and its ratio too).
    floor: float | None
    unit: str
    ratio: float | None
    target: str
    # None: a figure reported without a target (a query shape the SPEC sets none for).
    passed: bool | None
    figure_label: str = "service"
    floor_label: str = "floor"
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatabaseResults:
    kind: str
    seed: dict[str, Any] = field(default_factory=dict)
    ceiling: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    scale: list[dict[str, Any]] = field(default_factory=list)
    # meterUsage and eventVolume: both floors and the exactness check of each query.
    usage: list[dict[str, Any]] = field(default_factory=list)
    soak: dict[str, Any] = field(default_factory=dict)
    concurrency: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [asdict(row) for row in self.rows]
        return data


@dataclass(frozen=True)
class AggregateQuery:
    """A meterUsage or eventVolume request to the service and the raw aggregate answering it."""

    business: SeededBusiness
    operation: str  # "meterUsage" or "eventVolume"
    body: bytes
    raw: RawAggregate
    group_by_key: str | None = None


class Bench:
    """The scenarios against one database, with both servers running."""

    def __init__(
        self,
        database: BenchDatabase,
        config: BenchConfig,
        seeded: Seeded,
        service: Server,
        floor: Server,
        sampler: MemorySampler,
        log_directory: Path,
        console: Console,
    ) -> None:
        self.database = database
        self.config = config
        self.seeded = seeded
        self.service = service
        self.floor = floor
        self.sampler = sampler
        self.log_directory = log_directory
        self.console = console
        self.results = DatabaseResults(database.kind)
        self.http = httpx.Client(timeout=120)
        # Service p50s already measured, by (business, filter name): reused by the scale check.
        # Service results by the exact bodies sent: the scale check reuses what it can.
        self.measured: dict[tuple[str, tuple[bytes, ...]], WrkResult] = {}
        # The median ms per batch of normal ingestion, once ingest_scenario has measured it.
        self.ingest_ms: float | None = None

    # -- helpers ---------------------------------------------------------------------------

    def say(self, message: str) -> None:
        self.console.print(f"  [dim]{self.database.kind}[/dim] {message}")

    def warn(self, message: str) -> None:
        self.results.warnings.append(message)
        self.console.print(f"  [yellow]warning ({self.database.kind}):[/yellow] {message}")

    def post(
        self, server: Server, path: str, body: bytes, key: str, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """POST one body; `timeout` (seconds) instead of the client's 120 s if given."""
        response = self.http.post(
            server.url + path,
            content=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )
        payload: dict[str, Any] = orjson.loads(response.content)
        if response.status_code != 200 or payload.get("errors"):
            raise RuntimeError(
                f"{server.name} {path} answered {response.status_code}: {response.text[:500]}"
            )
        return payload

    def probe(self, what: str, bodies: list[bytes], key: str, floor_path: str) -> list[Any]:
        """The service's data for each body, checked against the floor's (and warming both)."""
        answers = []
        differs = 0
        for body in bodies:
            service = self.post(self.service, GRAPHQL_PATH, body, key)["data"]
            floor = self.post(self.floor, floor_path, body, key)["data"]
            differs += service != floor
            answers.append(service)
        if differs:
            self.warn(
                f"{what}: the service and the floor answered {differs} of {len(bodies)} "
                "requests differently"
            )
        return answers

    def full_pages(self, what: str, bodies: list[bytes], key: str) -> list[bool]:
        answers = self.probe(what, bodies, key, FLOOR_LIST_PATH)
        return [len(answer["events"]["nodes"]) == self.config.page_size for answer in answers]

    def keep_full(self, what: str, bodies: list[bytes], full: list[bool]) -> list[bytes]:
        """Only requests whose answer is a full page: every request then serializes as much."""
        kept = [body for body, is_full in zip(bodies, full, strict=True) if is_full]
        if len(kept) < len(bodies):
            self.say(
                f"  {what}: {len(bodies) - len(kept)} of {len(bodies)} filters match less than "
                "a page; left out"
            )
        if not kept:
            self.warn(f"{what}: no filter matches a full page; measured anyway")
            return bodies
        return kept

    def wrk(
        self,
        server: Server,
        path: str,
        bodies: list[bytes],
        key: str,
        *,
        connections: int,
        seconds: int,
    ) -> WrkResult:
        result = run_wrk(
            server.url,
            method="POST",
            lines=[body.decode() for body in bodies],
            authorization=f"Bearer {key}",
            path=path,
            connections=connections,
            seconds=seconds,
        )
        if result.error_count:
            self.warn(f"wrk against {server.name}{path}: errors {result.errors}")
        return result

    def measure_pair(
        self, bodies: list[bytes], key: str, floor_path: str, *, connections: int, seconds: int
    ) -> tuple[WrkResult, WrkResult, dict[str, float]]:
        """Floor, then service, each in a memory window; returns (service, floor, peaks)."""
        if self.config.warmup_seconds:
            for server, path in ((self.floor, floor_path), (self.service, GRAPHQL_PATH)):
                self.wrk(
                    server,
                    path,
                    bodies,
                    key,
                    connections=connections,
                    seconds=self.config.warmup_seconds,
                )
        with self.sampler.window() as floor_window:
            floor = self.wrk(
                self.floor, floor_path, bodies, key, connections=connections, seconds=seconds
            )
        with self.sampler.window() as service_window:
            service = self.wrk(
                self.service, GRAPHQL_PATH, bodies, key, connections=connections, seconds=seconds
            )
        peaks = {
            "service": round(service_window.peaks.get(self.service.name, 0.0), 1),
            "floor": round(floor_window.peaks.get(self.floor.name, 0.0), 1),
        }
        return service, floor, peaks

    # -- filters ---------------------------------------------------------------------------

    def rotated_customers(self, business: SeededBusiness) -> list[str]:
        """Customers whose events fill a page, spread over the size ranking."""
        full = [
            customer
            for customer, count in business.customer_sizes
            if count >= self.config.page_size
        ]
        chosen = full or [customer for customer, _ in business.customer_sizes[:ROTATE_CUSTOMERS]]
        step = max(1, len(chosen) // ROTATE_CUSTOMERS)
        return chosen[::step][:ROTATE_CUSTOMERS]

    def window(self) -> dict[str, str]:
        """A seven-day window inside the seeded month."""
        now = self.seeded.now
        return {"start": iso(now - timedelta(days=20)), "end": iso(now - timedelta(days=13))}

    def filters(self, business: SeededBusiness, name: str) -> list[dict[str, Any] | None]:
        names = [event_name for event_name, _ in EVENT_NAMES]
        if name == "none":
            return [None]
        if name == "customerId":
            return [{"customerId": customer} for customer in self.rotated_customers(business)]
        if name == "externalCustomerId":
            by_id = {customer.id: customer.external_id for customer in business.customers}
            externals = [by_id[c] for c in self.rotated_customers(business) if by_id.get(c)]
            return [{"externalCustomerId": external} for external in externals]
        if name == "eventName":
            return [{"eventName": event_name} for event_name in names]
        if name == "eventName+range":
            return [{"eventName": event_name, **self.window()} for event_name in names]
        if name == "range":
            return [self.window()]
        if name == "meterId":
            return [{"meterId": meter_id} for meter_id in business.meter_ids]
        raise ValueError(name)

    def list_bodies(self, business: SeededBusiness, name: str) -> list[bytes]:
        return [list_body(f, self.config.page_size) for f in self.filters(business, name)]

    # -- scenarios ---------------------------------------------------------------------------

    def ceiling(self) -> None:
        """What the load generators manage against endpoints that do no work."""
        self.say("load generator ceilings")
        key = self.seeded.main.api_key
        ceiling: dict[str, Any] = {}
        for server in (self.floor, self.service):
            result = run_wrk(
                server.url,
                method="GET",
                lines=["/healthz"],
                authorization=f"Bearer {key}",
                connections=self.config.point_read_connections,
                seconds=self.config.ceiling_seconds,
            )
            ceiling[f"wrk_healthz_{server.name}"] = result.as_dict()
        result = run_wrk(
            self.floor.url,
            method="GET",
            lines=["/healthz"],
            authorization=f"Bearer {key}",
            connections=1,
            seconds=self.config.ceiling_seconds,
        )
        ceiling["wrk_healthz_floor_1_connection"] = result.as_dict()
        sink_batches = min(20, self.config.ingest_batches)
        one = self.ingest_client(self.floor, "/sink", key, sink_batches, 1, "fresh", "sink1")
        many = self.ingest_client(
            self.floor,
            "/sink",
            key,
            sink_batches * 2,
            self.config.concurrency_clients,
            "fresh",
            "sinkn",
        )
        ceiling["ingest_client_sink"] = {
            "ms_per_batch_median": round(statistics.median(one["latencies_ms"]), 2),
            "batches_per_second_1_connection": round(one["batches"] / one["wall_seconds"], 1),
            f"batches_per_second_{self.config.concurrency_clients}_connections": round(
                many["batches"] / many["wall_seconds"], 1
            ),
        }
        self.results.ceiling = ceiling

    def list_scenario(self) -> None:
        main = self.seeded.main
        for name in ("customerId", "eventName+range", "meterId"):
            self.say(f"list events(first: {self.config.page_size}) by {name}")
            bodies = self.list_bodies(main, name)
            bodies = self.keep_full(
                name, bodies, self.full_pages(f"list by {name}", bodies, main.api_key)
            )
            service, floor, peaks = self.measure_pair(
                bodies,
                main.api_key,
                FLOOR_LIST_PATH,
                connections=1,
                seconds=self.config.list_seconds,
            )
            self.measured[(main.api_key, tuple(bodies))] = service
            for percentile in ("p50", "p99"):
                figure = getattr(service, f"{percentile}_ms")
                floor_figure = getattr(floor, f"{percentile}_ms")
                ratio = figure / floor_figure
                self.results.rows.append(
                    Row(
                        scenario=f"list {name} {percentile}",
                        figure=figure,
                        floor=floor_figure,
                        unit="ms",
                        ratio=ratio,
                        target="≤ 2×",
                        passed=ratio <= 2.0,
                        floor_label="plain JSON endpoint",
                        peak_rss_mib=peaks,
                        details={
                            "service": service.as_dict(),
                            "floor": floor.as_dict(),
                            "requests_rotated": len(bodies),
                        },
                    )
                )

    def deep_cursor(self, business: SeededBusiness, page: int) -> str:
        """The `after` cursor of page `page` (1-based), from the row just before it."""

        async def cursor() -> str:
            database = Database.from_settings(Settings(database_url=self.database.url))
            try:
                async with database.session() as session:
                    cursor_key: bytes = (
                        await session.execute(
                            sa.select(businesses.c.cursor_key).where(businesses.c.id == business.id)
                        )
                    ).scalar_one()
                    row = (
                        await session.execute(
                            sa.select(events.c.timestamp, events.c.sequence)
                            .where(
                                events.c.business_id == business.id,
                                events.c.deprecated_at.is_(None),
                            )
                            .order_by(*NEWEST_FIRST.order())
                            .offset((page - 1) * self.config.page_size - 1)
                            .limit(1)
                        )
                    ).one()
                    position = (row.timestamp, row.sequence)
                    return Cursors(business.id, cursor_key).encode(NEWEST_FIRST, position)
            finally:
                await database.dispose()

        return asyncio.run(cursor())

    def deep_page_scenario(self) -> None:
        main = self.seeded.main
        deepest = main.events // self.config.page_size
        page = min(self.config.deep_page, deepest)
        self.say(
            f"deep page: page {page} vs page 1 (events(first: {self.config.page_size}), no filter)"
        )
        first_bodies = [list_body(None, self.config.page_size)]
        deep_bodies = [list_body(None, self.config.page_size, after=self.deep_cursor(main, page))]
        for bodies, what in ((first_bodies, "page 1"), (deep_bodies, f"page {page}")):
            if not all(self.full_pages(what, bodies, main.api_key)):
                self.warn(f"deep page: {what} is not a full page")
        first_service, first_floor, first_peaks = self.measure_pair(
            first_bodies,
            main.api_key,
            FLOOR_LIST_PATH,
            connections=1,
            seconds=self.config.deep_page_seconds,
        )
        deep_service, deep_floor, deep_peaks = self.measure_pair(
            deep_bodies,
            main.api_key,
            FLOOR_LIST_PATH,
            connections=1,
            seconds=self.config.deep_page_seconds,
        )
        self.measured[(main.api_key, tuple(first_bodies))] = first_service
        ratio = deep_service.p50_ms / first_service.p50_ms
        note = "" if page == self.config.deep_page else f" (deepest page of {main.events} events)"
        self.results.rows.append(
            Row(
                scenario=f"deep page {page} p50{note}",
                figure=deep_service.p50_ms,
                floor=first_service.p50_ms,
                unit="ms",
                ratio=ratio,
                target="≤ 1.5×",
                passed=ratio <= 1.5,
                figure_label=f"page {page}",
                floor_label="page 1",
                peak_rss_mib={
                    "service": max(first_peaks["service"], deep_peaks["service"]),
                    "floor": max(first_peaks["floor"], deep_peaks["floor"]),
                },
                details={
                    "page": page,
                    "requested_page": self.config.deep_page,
                    "service_page_1": first_service.as_dict(),
                    "service_deep": deep_service.as_dict(),
                    "floor_page_1": first_floor.as_dict(),
                    "floor_deep": deep_floor.as_dict(),
                    "floor_deep_over_page_1": round(deep_floor.p50_ms / first_floor.p50_ms, 3),
                },
            )
        )

    def point_read_scenario(self) -> None:
        main = self.seeded.main
        connections = self.config.point_read_connections
        self.say(f"point read event(eventId:), {connections} connections")
        bodies = [event_body(event_id) for event_id in main.sample_event_ids]

        answers = self.probe("point read", bodies[:20], main.api_key, FLOOR_EVENT_PATH)
        if any(answer["event"] is None for answer in answers):
            self.warn("a point read found no event")
        service, floor, peaks = self.measure_pair(
            bodies,
            main.api_key,
            FLOOR_EVENT_PATH,
            connections=connections,
            seconds=self.config.point_read_seconds,
        )
        ratio = service.requests_per_second / floor.requests_per_second
        self.results.rows.append(
            Row(
                scenario=f"point read ({connections} connections)",
                figure=service.requests_per_second,
                floor=floor.requests_per_second,
                unit="req/s",
                ratio=ratio,
                target="≥ 0.5×",
                passed=ratio >= 0.5,
                floor_label="plain JSON endpoint",
                peak_rss_mib=peaks,
                details={
                    "service": service.as_dict(),
                    "floor": floor.as_dict(),
                    "event_ids_rotated": len(bodies),
                },
            )
        )

    def scale_check(self) -> None:
        """List latency with each indexed filter: the small business vs the main one."""
        names = [
            "none",
            "customerId",
            "externalCustomerId",
            "eventName",
            "eventName+range",
            "range",
            "meterId",
        ]
        self.say(
            f"scale check: {self.seeded.small.events} vs {self.seeded.main.events} stored events, "
            f"{len(names)} filters"
        )
        small, main = self.seeded.small, self.seeded.main
        for name in names:
            bodies = {"small": self.list_bodies(small, name), "main": self.list_bodies(main, name)}
            full = {
                "small": self.full_pages(f"scale {name} (small)", bodies["small"], small.api_key),
                "main": self.full_pages(f"scale {name} (main)", bodies["main"], main.api_key),
            }
            if name not in ("customerId", "externalCustomerId"):
                # The same filters on both sides (event names, meters): those full on both.
                both = [a and b for a, b in zip(full["small"], full["main"], strict=True)]
                full = {"small": both, "main": both}
            measured: dict[str, WrkResult] = {}
            for label, business in (("small", small), ("main", main)):
                kept = self.keep_full(f"scale {name} ({label})", bodies[label], full[label])
                reused = self.measured.get((business.api_key, tuple(kept)))
                measured[label] = reused or self.wrk(
                    self.service,
                    GRAPHQL_PATH,
                    kept,
                    business.api_key,
                    connections=1,
                    seconds=self.config.scale_seconds,
                )
                self.measured[(business.api_key, tuple(kept))] = measured[label]
            ratio = measured["main"].p50_ms / measured["small"].p50_ms
            self.results.scale.append(
                {
                    "filter": name,
                    "small_events": self.seeded.small.events,
                    "main_events": self.seeded.main.events,
                    "small_p50_ms": round(measured["small"].p50_ms, 3),
                    "main_p50_ms": round(measured["main"].p50_ms, 3),
                    "small_p99_ms": round(measured["small"].p99_ms, 3),
                    "main_p99_ms": round(measured["main"].p99_ms, 3),
                    "ratio": round(ratio, 3),
                    "flat": ratio <= FLAT_RATIO,
                }
            )

    # -- usage and volume --------------------------------------------------------------------

    def usage_scenario(self) -> None:
        """SPEC §13's usage rows (meterUsage in three shapes) and its volume row, then two
        shapes read from the events (no target), each beside the same floors."""
        start, end = usage_range(self.seeded.now)
        for shape in ("whole business", "largest customer", f"groupBy {USAGE_GROUP_BY_KEY}"):
            queries = self.usage_queries(
                start,
                end,
                largest_customer=shape == "largest customer",
                group_by_key=USAGE_GROUP_BY_KEY if shape.startswith("groupBy") else None,
            )
            self.aggregate_rows(f"usage {shape}", queries)
        kind = self.database.kind
        self.aggregate_rows(
            "volume",
            {
                label: AggregateQuery(
                    business=business,
                    operation="eventVolume",
                    body=volume_body(start, end),
                    raw=volume_aggregate(kind, business.id, start, end),
                )
                for label, business in (("main", self.seeded.main), ("small", self.seeded.small))
            },
        )
        # The rollups know only the present, and only the meter's own filter: asOf the
        # seed's end, and an ad-hoc filter repeating a clause of the meter's, read the
        # events, and each answers what the whole-business query answers.
        shapes: list[tuple[str, dict[str, Any]]] = [
            ("asOf", {"as_of": self.seeded.now}),
            ("ad-hoc filter", {"filter": USAGE_REPEATED_FILTER}),
        ]
        for shape, extra in shapes:
            queries = self.usage_queries(start, end, **extra)
            self.aggregate_rows(f"usage whole business, {shape}", queries, targets=False)

    def usage_queries(
        self,
        start: datetime,
        end: datetime,
        *,
        largest_customer: bool = False,
        group_by_key: str | None = None,
        **extra: Any,
    ) -> dict[str, AggregateQuery]:
        """One meterUsage query on the main and the small business, with its raw aggregate
        (`extra`: usage_body's asOf or filter, which leave the answer as it is)."""
        queries: dict[str, AggregateQuery] = {}
        for label, business in (("main", self.seeded.main), ("small", self.seeded.small)):
            customer: tuple[str, str | None] | None = None
            if largest_customer:
                largest = business.customer_sizes[0][0]
                external_ids = {each.id: each.external_id for each in business.customers}
                customer = (largest, external_ids[largest])
            queries[label] = AggregateQuery(
                business=business,
                operation="meterUsage",
                body=usage_body(
                    business.meter_ids[usage_meter_index()],
                    start,
                    end,
                    customer_ids=[customer[0]] if customer is not None else None,
                    group_by=[group_by_key] if group_by_key is not None else None,
                    **extra,
                ),
                raw=usage_aggregate(
                    self.database.kind,
                    business.id,
                    start,
                    end,
                    USAGE_TIME_ZONE,
                    customer=customer,
                    group_by_key=group_by_key,
                ),
                group_by_key=group_by_key,
            )
        return queries

    def checked_answer(self, what: str, query: AggregateQuery) -> dict[str, Any]:
        """The service's answer, required non-empty and equal to the raw aggregate's (total
        as a decimal string, event count, every bucket); raises WrongAnswer otherwise."""
        what = f"{what} ({query.business.name} business, {query.business.events:,} events)"
        started = time.perf_counter()
        data = self.post(self.service, GRAPHQL_PATH, query.body, query.business.api_key)
        seconds = time.perf_counter() - started
        answer = data["data"][query.operation]
        cells: Cells
        if query.operation == "meterUsage":
            cells = usage_answer_cells(answer, USAGE_TIME_ZONE, query.group_by_key)
            total, event_count, series = answer["total"], answer["eventCount"], answer["series"]
            groups = {key[0] for key in cells}
            empty = event_count == 0 or not cells
            if query.group_by_key is not None and groups <= {None}:
                empty = True
        else:
            cells = volume_answer_cells(answer)
            total, event_count, series = str(answer["total"]), answer["total"], []
            empty = event_count == 0
        if empty:
            raise WrongAnswer(
                f"{what}: the service's answer is empty (total {total}, {event_count} events, "
                f"{len(series)} series): the query measures nothing"
            )
        raw = run_raw(self.database, query.raw)
        raw_cells = query.raw.cells(raw.rows)
        raw_count, raw_sum = raw_totals(raw_cells)
        compare(what, cells, raw_cells, total, decimal_text(raw_sum))
        if event_count != raw_count:
            raise WrongAnswer(
                f"{what}: the service counted {event_count} events, the raw aggregate {raw_count}"
            )
        return {
            "total": total,
            "event_count": event_count,
            "raw_total": decimal_text(raw_sum),
            "raw_event_count": raw_count,
            "series": len(series),
            "non_empty_buckets": len(cells),
            "exact": True,
            "first_request_seconds": round(seconds, 3),
        }

    def aggregate_seconds(self, request_seconds: float) -> int:
        """How long to measure: the configured time, stretched to AGGREGATE_SAMPLES requests."""
        needed = math.ceil(request_seconds * (AGGREGATE_SAMPLES + 1))
        return min(AGGREGATE_MAX_SECONDS, max(self.config.usage_seconds, needed))

    def aggregate_rows(
        self, name: str, queries: dict[str, AggregateQuery], *, targets: bool = True
    ) -> None:
        """The p50 of one query on the main business beside (a) the same query on the small
        business and (b) the bare driver's one SQL aggregate on the main business.

        `targets=False`: a shape that reads the events rather than the rollups (SPEC §13
        sets no target for it), reported beside the same floors for what it costs."""
        main, small = queries["main"], queries["small"]
        self.say(
            f"{name}: {main.business.events:,} vs {small.business.events:,} events, "
            f"and one SQL aggregate ({main.raw.driver})"
        )
        checks = {label: self.checked_answer(name, query) for label, query in queries.items()}
        measured: dict[str, WrkResult] = {}
        peaks: dict[str, float] = {}
        for label in ("small", "main"):
            query = queries[label]
            seconds = self.aggregate_seconds(checks[label]["first_request_seconds"])
            if self.config.warmup_seconds:
                self.wrk(
                    self.service,
                    GRAPHQL_PATH,
                    [query.body],
                    query.business.api_key,
                    connections=1,
                    seconds=self.config.warmup_seconds,
                )
            with self.sampler.window() as window:
                measured[label] = self.wrk(
                    self.service,
                    GRAPHQL_PATH,
                    [query.body],
                    query.business.api_key,
                    connections=1,
                    seconds=seconds,
                )
            peaks[label] = round(window.peaks.get(self.service.name, 0.0), 1)
            if measured[label].requests == 0:
                raise RuntimeError(f"{name} ({label}): no request completed in {seconds} s")
        raw = run_raw(
            self.database,
            main.raw,
            seconds=self.config.usage_seconds,
            minimum_runs=AGGREGATE_SAMPLES,
        )
        raw_p50 = median_ms(raw.timings)
        figure = measured["main"].p50_ms
        flat_ratio = figure / measured["small"].p50_ms
        raw_ratio = figure / raw_p50
        raw_details = {
            "driver": main.raw.driver,
            "sql": main.raw.sql,
            "runs": len(raw.timings),
            "p50_ms": round(raw_p50, 3),
            "p90_ms": round(_percentile(raw.timings, 90) * 1000, 3),
            "min_ms": round(min(raw.timings) * 1000, 3),
        }
        self.results.rows += [
            Row(
                scenario=f"{name} p50",
                figure=figure,
                floor=measured["small"].p50_ms,
                unit="ms",
                ratio=flat_ratio,
                target="≤ 2×" if targets else "none (reads events)",
                passed=flat_ratio <= USAGE_FLAT_RATIO if targets else None,
                figure_label=f"{main.business.events:,} events",
                floor_label=f"{small.business.events:,} events",
                peak_rss_mib={"service": max(peaks.values())},
                details={
                    "floor": "the same query on the small business",
                    "service_main": measured["main"].as_dict(),
                    "service_small": measured["small"].as_dict(),
                    "checks": checks,
                },
            ),
            Row(
                scenario=f"{name} p50",
                figure=figure,
                floor=raw_p50,
                unit="ms",
                ratio=raw_ratio,
                target="< 1×" if targets else "none (reads events)",
                passed=raw_ratio < 1.0 if targets else None,
                figure_label="service",
                floor_label=f"one SQL aggregate, {main.raw.driver}",
                peak_rss_mib={"service": peaks["main"]},
                details={
                    "floor": "the bare driver's one SQL aggregate on the main business",
                    "service_main": measured["main"].as_dict(),
                    "raw": raw_details,
                },
            ),
        ]
        self.results.usage.append(
            {
                "query": name,
                "operation": main.operation,
                "input": orjson.loads(main.body)["variables"]["input"],
                "main_events": main.business.events,
                "small_events": small.business.events,
                "main_p50_ms": round(figure, 3),
                "small_p50_ms": round(measured["small"].p50_ms, 3),
                "raw_p50_ms": round(raw_p50, 3),
                "main_requests": measured["main"].requests,
                "small_requests": measured["small"].requests,
                "raw_runs": len(raw.timings),
                "flat_ratio": round(flat_ratio, 3),
                "flat": flat_ratio <= USAGE_FLAT_RATIO,
                "raw_ratio": round(raw_ratio, 3),
                "faster_than_raw": raw_ratio < 1.0,
                "raw": raw_details,
                "checks": checks,
            }
        )

    # -- ingestion ---------------------------------------------------------------------------

    def ingest_client(
        self,
        server: Server,
        path: str,
        key: str,
        batches: int,
        connections: int,
        mode: str,
        prefix: str,
        *,
        with_ids: bool = False,
        backfill: tuple[str, datetime, datetime] | None = None,
    ) -> dict[str, Any]:
        """Run bench/ingest_client.py; `backfill`: (id, timeframe start, end) to send into."""
        command = [
            sys.executable, "-m", "bench.ingest_client",
            "--url", server.url + path,
            "--key", key,
            "--batches", str(batches),
            "--connections", str(connections),
            "--mode", mode,
            "--prefix", f"{self.database.kind}-{prefix}",
            "--batch-size", str(self.config.batch_size),
        ]  # fmt: skip
        if with_ids:
            command.append("--with-ids")
        if backfill is not None:
            backfill_id, start, end = backfill
            command += [
                "--backfill-id", backfill_id,
                "--timeframe-start", start.isoformat(),
                "--timeframe-end", end.isoformat(),
            ]  # fmt: skip
        completed = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=3600
        )
        if completed.returncode != 0:
            raise RuntimeError(f"ingest client failed:\n{completed.stderr[-3000:]}")
        report: dict[str, Any] = json.loads(completed.stdout)
        if report["failed_batches"]:
            self.warn(
                f"ingest against {server.name}{path}: {report['failed_batches']} failed "
                f"batches: {report['problems']}"
            )
        return report

    def ingest_scenario(self) -> None:
        batches = self.config.ingest_batches
        self.say(f"ingest: {batches} batches of {self.config.batch_size} over HTTP, one client")
        business = self.seeded.businesses["ingest"]
        with self.sampler.window() as window:
            report = self.ingest_client(
                self.service, GRAPHQL_PATH, business.api_key, batches, 1, "fresh", "ingest"
            )
        service_ms = statistics.median(report["latencies_ms"])
        self.ingest_ms = service_ms
        events_per_second = report["events_sent"] / (sum(report["latencies_ms"]) / 1000)

        self.say(
            f"ingest floor: bare driver + graphql-core, {self.config.ingest_floor_batches} batches"
        )
        floor_business = self.seeded.businesses["ingest-floor"]
        bodies = [
            ingest_body(
                ingest_events(
                    [f"floor-{batch:06d}-{index:04d}" for index in range(self.config.batch_size)],
                    random.Random(batch),
                    self.seeded.now,
                )
            )
            for batch in range(self.config.ingest_floor_batches)
        ]
        target = (
            self.database.postgres_dsn
            if self.database.kind == "postgresql"
            else str(self.database.sqlite_path)
        )
        assert target is not None
        driver = driver_floor(self.database.kind, target, floor_business.id, bodies)
        core = graphql_core_floor(bodies)
        floor_ms = median_ms(driver) + median_ms(core)
        ratio = service_ms / floor_ms
        self.results.rows.append(
            Row(
                scenario=f"ingest ({self.config.batch_size}-event batch)",
                figure=service_ms,
                floor=floor_ms,
                unit="ms/batch",
                ratio=ratio,
                target="≤ 2×",
                passed=ratio <= 2.0,
                floor_label="driver + graphql-core",
                peak_rss_mib={"service": round(window.peaks.get(self.service.name, 0.0), 1)},
                details={
                    "service_events_per_second": round(events_per_second, 1),
                    "floor_events_per_second": round(self.config.batch_size / floor_ms * 1000, 1),
                    "service_ms_p90": round(_percentile(report["latencies_ms"], 90), 2),
                    "service_ms_mean": round(statistics.fmean(report["latencies_ms"]), 2),
                    "driver_ms_median": round(median_ms(driver), 2),
                    "graphql_core_ms_median": round(median_ms(core), 2),
                    "batches": batches,
                    "floor_batches": len(bodies),
                    "ingested": report["ingested_count"],
                },
            )
        )

    # -- backfills ---------------------------------------------------------------------------

    def graphql(
        self, business: SeededBusiness, body: bytes, field: str, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """The service's answer to one request of `business`: data[field], which must exist
        and hold no userErrors."""
        payload = self.post(self.service, GRAPHQL_PATH, body, business.api_key, timeout=timeout)
        result: dict[str, Any] | None = payload["data"][field]
        if result is None or result.get("userErrors"):
            raise RuntimeError(f"{field} ({business.name} business) answered {result}")
        return result

    def create_backfill(
        self, business: SeededBusiness, start: datetime, end: datetime, *, replace: bool
    ) -> str:
        body = create_backfill_body(start, end, replace=replace)
        backfill: dict[str, Any] = self.graphql(business, body, "createBackfill")["backfill"]
        if backfill["status"] != "PENDING":
            raise RuntimeError(f"createBackfill made a backfill that is not PENDING: {backfill}")
        return str(backfill["id"])

    def send_into(
        self, business: SeededBusiness, backfill_id: str, sent: list[BackfillEvent]
    ) -> dict[str, Any]:
        """Every event into the backfill, in batches of batch_size, one request at a time."""
        size = self.config.batch_size
        latencies: list[float] = []
        ingested = 0
        for first in range(0, len(sent), size):
            chunk = sent[first : first + size]
            body = ingest_body([event.as_input() for event in chunk], backfill_id=backfill_id)
            started = time.perf_counter()
            result = self.graphql(business, body, "ingestEvents")
            latencies.append(time.perf_counter() - started)
            if result["ingestedCount"] != len(chunk):
                raise RuntimeError(
                    f"ingestEvents into {backfill_id} stored {result['ingestedCount']} of "
                    f"{len(chunk)} events ({result['duplicateCount']} duplicates)"
                )
            ingested += result["ingestedCount"]
        return {
            "events": ingested,
            "batches": len(latencies),
            "seconds": round(sum(latencies), 2),
            "ms_per_batch_median": round(statistics.median(latencies) * 1000, 2),
            "events_per_second": round(ingested / sum(latencies), 1),
        }

    def timed_backfill_step(
        self, business: SeededBusiness, body: bytes, field: str, status: str
    ) -> float:
        """Seconds of one closeBackfill / revertBackfill request, which must leave the
        backfill in `status`; never cut short by the client's timeout."""
        started = time.perf_counter()
        result = self.graphql(business, body, field, timeout=BACKFILL_REQUEST_TIMEOUT_SECONDS)
        seconds = time.perf_counter() - started
        if result["backfill"]["status"] != status:
            raise RuntimeError(f"{field} left the backfill {result['backfill']}, not {status}")
        return seconds

    def backfill_usage_check(
        self,
        what: str,
        business: SeededBusiness,
        meter_id: str,
        start: datetime,
        end: datetime,
        counted: list[BackfillEvent],
    ) -> dict[str, Any]:
        """meterUsage over [start, end) by DAY, whole and grouped by the meter's dimension,
        against the exact sums of the events that should count (`counted`, as sent):
        total, eventCount and every non-empty (group, day) cell must be equal."""
        zone = ZoneInfo(USAGE_TIME_ZONE)
        check: dict[str, Any] = {"exact": True, "problems": []}
        for group_by in (None, BACKFILL_METER_DIMENSION):
            expected: Cells = {}
            for event in counted:
                key = (
                    None if group_by is None else orjson.dumps(event.model).decode(),
                    event.timestamp.astimezone(zone).date().isoformat(),
                )
                count, total = expected.get(key, (0, Decimal(0)))
                expected[key] = (count + 1, EXACT.add(total, _exact_number(event.tokens)))
            expected_count = len(counted)
            expected_total = decimal_text(_exact_sum(total for _, total in expected.values()))
            body = usage_body(
                meter_id, start, end, group_by=[group_by] if group_by is not None else None
            )
            started = time.perf_counter()
            answer = self.graphql(business, body, "meterUsage")
            seconds = time.perf_counter() - started
            shape = "whole" if group_by is None else f"groupBy {group_by}"
            check[shape] = {
                "expected_total": expected_total,
                "total": answer["total"],
                "expected_event_count": expected_count,
                "event_count": answer["eventCount"],
                "series": len(answer["series"]),
                "seconds": round(seconds, 3),
            }
            try:
                compare(
                    f"{what}, meterUsage {shape}",
                    usage_answer_cells(answer, USAGE_TIME_ZONE, group_by),
                    expected,
                    answer["total"],
                    expected_total,
                )
                if answer["eventCount"] != expected_count:
                    raise WrongAnswer(
                        f"{what}, meterUsage {shape}: eventCount {answer['eventCount']}, "
                        f"{expected_count} events sent"
                    )
            except WrongAnswer as wrong:
                check["exact"] = False
                check["problems"].append(str(wrong))
                self.warn(str(wrong))
        return check

    def backfill_ingest_scenario(self) -> None:
        """Ingestion into a PENDING backfill beside normal ingestion, per 1000-event batch."""
        if self.ingest_ms is None:
            self.say("ingest into a backfill needs normal ingest's figure: measuring it first")
            report = self.ingest_client(
                self.service,
                GRAPHQL_PATH,
                self.seeded.businesses["ingest"].api_key,
                self.config.ingest_batches,
                1,
                "fresh",
                "ingest-baseline",
            )
            self.ingest_ms = statistics.median(report["latencies_ms"])
        floor_ms = self.ingest_ms
        batches = self.config.backfill_ingest_batches
        size = self.config.batch_size
        business = self.seeded.businesses["backfill-ingest"]
        start, end = backfill_ingest_timeframe(self.seeded.now)
        backfill_id = self.create_backfill(business, start, end, replace=False)
        self.say(
            f"ingest into a backfill: {batches} batches of {size} over HTTP, one client, "
            f"timestamps in [{iso(start)}, {iso(end)})"
        )
        with self.sampler.window() as window:
            report = self.ingest_client(
                self.service,
                GRAPHQL_PATH,
                business.api_key,
                batches,
                1,
                "fresh",
                "backfill-ingest",
                backfill=(backfill_id, start, end),
            )
        state = self.graphql(business, backfill_body(backfill_id), "backfill")
        figure = statistics.median(report["latencies_ms"])
        ratio = figure / floor_ms
        held = (
            report["failed_batches"] == 0
            and report["ingested_count"] == batches * size
            and state["eventsIngested"] == batches * size
            and state["status"] == "PENDING"
        )
        if not held:
            self.warn(
                f"ingest into a backfill: {report['ingested_count']} ingested, backfill holds "
                f"{state['eventsIngested']} ({state['status']}), "
                f"{report['failed_batches']} failed batches"
            )
        self.results.rows.append(
            Row(
                scenario=f"ingest into a backfill ({size}-event batch)",
                figure=figure,
                floor=floor_ms,
                unit="ms/batch",
                ratio=ratio,
                target=f"≤ {BACKFILL_INGEST_RATIO}×",
                passed=ratio <= BACKFILL_INGEST_RATIO and held,
                figure_label="into a backfill",
                floor_label="normal ingest",
                peak_rss_mib={"service": round(window.peaks.get(self.service.name, 0.0), 1)},
                details={
                    "backfill_events_per_second": round(
                        report["events_sent"] / (sum(report["latencies_ms"]) / 1000), 1
                    ),
                    "service_ms_p90": round(_percentile(report["latencies_ms"], 90), 2),
                    "service_ms_mean": round(statistics.fmean(report["latencies_ms"]), 2),
                    "batches": batches,
                    "ingested": report["ingested_count"],
                    "backfill_events_ingested": state["eventsIngested"],
                    "backfill_status": state["status"],
                    "timeframe": [iso(start), iso(end)],
                },
            )
        )

    def backfill_close_scenario(self) -> None:
        """A business's history of a timeframe loaded through a first backfill, replaced by a
        second one's events: its close (one request, one transaction) timed and the usage
        right after checked to the last digit; then its revert, and the usage again."""
        count = self.config.backfill_events
        business = self.seeded.businesses["backfill-close"]
        start, end = backfill_close_timeframe(self.seeded.now)
        rng = random.Random(f"{self.database.kind}-backfill-close")
        original = backfill_events(
            count, rng, start, end, event_id_prefix="history", fractional=False
        )
        replacement = backfill_events(
            count, rng, start, end, event_id_prefix="replacement", fractional=True
        )
        meter = self.graphql(business, create_meter_body(BACKFILL_METER_INPUT), "createMeter")
        meter_id = str(meter["meter"]["id"])

        self.say(
            f"backfill close: {count:,} events of history in [{iso(start)}, {iso(end)}) "
            "through a first backfill"
        )
        history = self.create_backfill(business, start, end, replace=False)
        history_ingest = self.send_into(business, history, original)
        history_close = self.timed_backfill_step(
            business, close_backfill_body(history), "closeBackfill", "REFLECTED"
        )
        checks = {
            "history": self.backfill_usage_check(
                "history", business, meter_id, start, end, original
            )
        }

        self.say(f"backfill close: {count:,} events replacing them, then close and revert")
        replacing = self.create_backfill(business, start, end, replace=True)
        replacement_ingest = self.send_into(business, replacing, replacement)
        started = time.perf_counter()
        preview = self.graphql(business, backfill_body(replacing), "backfill")
        preview_seconds = time.perf_counter() - started
        with self.sampler.window() as close_window:
            close_seconds = self.timed_backfill_step(
                business, close_backfill_body(replacing), "closeBackfill", "REFLECTED"
            )
        checks["after close"] = self.backfill_usage_check(
            "after the close", business, meter_id, start, end, replacement
        )
        with self.sampler.window() as revert_window:
            revert_seconds = self.timed_backfill_step(
                business, revert_backfill_body(replacing), "revertBackfill", "REVERTED"
            )
        checks["after revert"] = self.backfill_usage_check(
            "after the revert", business, meter_id, start, end, original
        )

        previewed = preview["eventsToDeprecate"] == count and preview["eventsIngested"] == count
        if not previewed:
            self.warn(
                f"backfill close: eventsToDeprecate {preview['eventsToDeprecate']} and "
                f"eventsIngested {preview['eventsIngested']}, {count} of each expected"
            )
        shown = f"{count:,}".replace(",", " ")
        common = {
            "events": count,
            "timeframe": [iso(start), iso(end)],
            "events_ingested": preview["eventsIngested"],
            "events_to_deprecate": preview["eventsToDeprecate"],
            "events_to_deprecate_seconds": round(preview_seconds, 3),
            "history_ingest": history_ingest,
            "history_close_seconds": round(history_close, 3),
            "replacement_ingest": replacement_ingest,
        }
        self.results.rows += [
            _backfill_step_row(
                f"backfill close ({shown} replacing {shown})",
                "closeBackfill",
                close_seconds,
                round(close_window.peaks.get(self.service.name, 0.0), 1),
                passed=previewed and checks["history"]["exact"] and checks["after close"]["exact"],
                usage=checks["after close"]["whole"],
                details={**common, "checks": checks},
            ),
            _backfill_step_row(
                "backfill revert",
                "revertBackfill",
                revert_seconds,
                round(revert_window.peaks.get(self.service.name, 0.0), 1),
                passed=checks["after revert"]["exact"],
                usage=checks["after revert"]["whole"],
                details={**common, "checks": {"after revert": checks["after revert"]}},
            ),
        ]

    def concurrency_scenario(self) -> None:
        """PostgreSQL: 2 server processes and N clients with overlapping eventIds vs 1 and 1."""
        clients = self.config.concurrency_clients
        one = self.seeded.businesses["concurrency-1"]
        many = self.seeded.businesses["concurrency-n"]
        self.say(
            f"concurrency baseline: 1 process, 1 client, "
            f"{self.config.concurrency_baseline_batches} overlapping batches"
        )
        with self.sampler.window() as baseline_window:
            baseline = self.ingest_client(
                self.service,
                GRAPHQL_PATH,
                one.api_key,
                self.config.concurrency_baseline_batches,
                1,
                "overlap",
                "conc1",
                with_ids=True,
            )
        self.say(
            f"concurrency: serve --workers 2, {clients} clients, "
            f"{self.config.concurrency_batches} overlapping batches"
        )
        port = free_port()
        server = start_server(
            "service-2-workers",
            [*usage_events_command(), "serve", "--workers", "2", "--port", str(port)],
            self.database.url, self.log_directory, port,
        )  # fmt: skip
        try:
            wait_ready(server, workers=2)
            self.sampler.track(server)
            with self.sampler.window() as window:
                report = self.ingest_client(
                    server,
                    GRAPHQL_PATH,
                    many.api_key,
                    self.config.concurrency_batches,
                    clients,
                    "overlap",
                    "concn",
                    with_ids=True,
                )
            workers_hwm = hwm_mib(server)
        finally:
            self.sampler.untrack(server)
            stop_server(server)
        checks = {
            "baseline": self.stored_once(one.id, baseline),
            "concurrent": self.stored_once(many.id, report),
        }
        baseline_eps = baseline["events_sent"] / baseline["wall_seconds"]
        concurrent_eps = report["events_sent"] / report["wall_seconds"]
        scaling = concurrent_eps / baseline_eps
        exactly_once = all(check["exactly_once"] for check in checks.values())
        self.results.concurrency = {"checks": checks, "scaling": round(scaling, 3)}
        self.results.rows.append(
            Row(
                scenario=f"concurrency (2 processes, {clients} clients)",
                figure=concurrent_eps,
                floor=baseline_eps,
                unit="events/s",
                ratio=scaling,
                target="> 1× and exactly once",
                passed=scaling > 1.0 and exactly_once,
                figure_label=f"2 processes, {clients} clients",
                floor_label="1 process, 1 client",
                peak_rss_mib={
                    "service (1 process)": round(
                        baseline_window.peaks.get(self.service.name, 0.0), 1
                    ),
                    "service (2 workers, whole tree)": round(window.peaks.get(server.name, 0.0), 1),
                },
                details={
                    "exactly_once": exactly_once,
                    "checks": checks,
                    "new_events_per_second": round(
                        report["ingested_count"] / report["wall_seconds"], 1
                    ),
                    "baseline_new_events_per_second": round(
                        baseline["ingested_count"] / baseline["wall_seconds"], 1
                    ),
                    "batch_ms_median": round(statistics.median(report["latencies_ms"]), 2),
                    "baseline_batch_ms_median": round(
                        statistics.median(baseline["latencies_ms"]), 2
                    ),
                    "workers_hwm_mib_sum": round(workers_hwm, 1),
                },
            )
        )

    def stored_once(self, business_id: str, report: dict[str, Any]) -> dict[str, Any]:
        """Every event stored exactly once, and listed as `ingested` by exactly one request."""
        assert self.database.postgres_dsn is not None

        async def count() -> tuple[int, int, int]:
            connection = await asyncpg.connect(self.database.postgres_dsn)
            try:
                row = await connection.fetchrow(
                    "SELECT count(*) AS rows, count(DISTINCT event_id) AS distinct_ids,"
                    " (SELECT count(*) FROM event_revisions r JOIN events e"
                    "   ON e.sequence = r.event_sequence WHERE e.business_id = $1) AS revisions"
                    " FROM events WHERE business_id = $1",
                    business_id,
                )
                assert row is not None
                return int(row["rows"]), int(row["distinct_ids"]), int(row["revisions"])
            finally:
                await connection.close()

        rows, distinct, revisions = asyncio.run(count())
        expected = distinct_event_ids("overlap", report["batches"], self.config.batch_size)
        exactly_once = (
            rows == distinct == expected == revisions
            and report["failed_batches"] == 0
            and report["ingested_count"] == rows
            and report.get("listed_distinct") == rows
            and report.get("listed_more_than_once") == 0
            and report["ingested_count"] + report["duplicate_count"] == report["events_sent"]
        )
        return {
            "rows": rows,
            "distinct_event_ids": distinct,
            "expected_distinct": expected,
            "revisions": revisions,
            "reported_ingested": report["ingested_count"],
            "reported_duplicates": report["duplicate_count"],
            "listed_more_than_once": report.get("listed_more_than_once"),
            "failed_batches": report["failed_batches"],
            "exactly_once": exactly_once,
        }

    def soak(self) -> None:
        """Server memory before, during and after a sustained ingest."""
        batches = self.config.soak_batches
        self.say(
            f"memory under sustained ingest: {batches} batches "
            f"({batches * self.config.batch_size} events)"
        )
        business = self.seeded.businesses["soak"]
        before = rss_mib(self.service)
        with self.sampler.window(keep_samples=True) as window:
            report = self.ingest_client(
                self.service, GRAPHQL_PATH, business.api_key, batches, 1, "fresh", "soak"
            )
        after = rss_mib(self.service)
        samples = [value for _moment, value in window.samples.get(self.service.name, [])]

        def at(fraction: float) -> float:
            return samples[min(len(samples) - 1, int(len(samples) * fraction))] if samples else 0.0

        warmed = at(0.1)
        growth = (after - warmed) / warmed if warmed else 0.0
        self.results.soak = {
            "batches": batches,
            "events": report["ingested_count"],
            "seconds": round(report["wall_seconds"], 1),
            "events_per_second": round(report["events_sent"] / report["wall_seconds"], 1),
            "rss_before_mib": round(before, 1),
            "rss_at_10_percent_mib": round(warmed, 1),
            "rss_at_50_percent_mib": round(at(0.5), 1),
            "rss_at_90_percent_mib": round(at(0.9), 1),
            "rss_after_mib": round(after, 1),
            "rss_peak_mib": round(window.peaks.get(self.service.name, 0.0), 1),
            "growth_after_warmup": round(growth, 3),
            "flat": growth <= FLAT_MEMORY_GROWTH,
            "batch_ms_first_10_median": round(statistics.median(report["latencies_ms"][:10]), 2),
            "batch_ms_last_10_median": round(statistics.median(report["latencies_ms"][-10:]), 2),
        }


def _exact_number(value: int | float) -> Decimal:
    """The decimal a JSON number sent stands for: an int exactly, a float as its repr."""
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def _exact_sum(values: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for value in values:
        total = EXACT.add(total, value)
    return total


def _backfill_step_row(
    scenario: str,
    mutation: str,
    seconds: float,
    peak_rss_mib: float,
    *,
    passed: bool,
    usage: dict[str, Any],
    details: dict[str, Any],
) -> Row:
    """A timed closeBackfill / revertBackfill: no floor; it passes when usage right after
    it is exact (`usage`: the whole-range check of backfill_usage_check)."""
    return Row(
        scenario=scenario,
        figure=seconds,
        floor=None,
        unit="s",
        ratio=None,
        target="usage exact right after",
        passed=passed,
        figure_label=f"{mutation}, one request",
        floor_label="none",
        peak_rss_mib={"service": peak_rss_mib},
        details={
            **details,
            "usage_expected_total": usage["expected_total"],
            "usage_total": usage["total"],
            "usage_expected_event_count": usage["expected_event_count"],
            "usage_event_count": usage["event_count"],
        },
    )


def _percentile(values: list[float], percentile: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * percentile / 100))]


def run_database(
    database: BenchDatabase,
    config: BenchConfig,
    seeded: Seeded,
    sampler: MemorySampler,
    log_directory: Path,
    console: Console,
) -> DatabaseResults:
    started = time.perf_counter()
    service_port, floor_port = free_port(), free_port()
    service = start_server(
        "service", [*usage_events_command(), "serve", "--port", str(service_port)],
        database.url, log_directory, service_port,
    )  # fmt: skip
    floor = start_server(
        "floor", [sys.executable, "-m", "bench.floor_app", "--port", str(floor_port)],
        database.url, log_directory, floor_port,
    )  # fmt: skip
    try:
        wait_ready(service)
        wait_ready(floor)
        sampler.track(service)
        sampler.track(floor)
        bench = Bench(database, config, seeded, service, floor, sampler, log_directory, console)
        bench.results.seed = {
            "events": seeded.main.events,
            "small_events": seeded.small.events,
            "customers": len(seeded.main.customers),
            "seconds": round(seeded.seconds, 1),
            "rollup_rebuild_seconds": round(seeded.rollup_seconds, 1),
        }
        bench.ceiling()
        bench.list_scenario()
        bench.deep_page_scenario()
        bench.point_read_scenario()
        bench.scale_check()
        bench.usage_scenario()
        bench.ingest_scenario()
        bench.backfill_ingest_scenario()
        bench.backfill_close_scenario()
        if database.kind == "postgresql":
            bench.concurrency_scenario()
        bench.soak()
        bench.results.seed["service_vmhwm_mib"] = round(hwm_mib(service), 1)
        bench.results.seed["floor_vmhwm_mib"] = round(hwm_mib(floor), 1)
        bench.results.seconds = time.perf_counter() - started
        return bench.results
    finally:
        sampler.untrack(service)
        sampler.untrack(floor)
        stop_server(service)
        stop_server(floor)
