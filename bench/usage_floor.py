"""The raw floor of SPEC §13's usage and volume rows, and the check that answers are right.

The floor is the bare driver (asyncpg / sqlite3, no service code) running ONE SQL
aggregate over the raw `events` rows that computes the same answer as the service's
`meterUsage` / `eventVolume`, as closely as that database allows:

  usage, PostgreSQL: the "Billable LLM tokens" meter of bench/workload.py written out by
      hand (its event name, its filter with M4's type tests, the numeric sum of
      metadata->>'tokens'), grouped by the day of each timestamp in Europe/Berlin
      (`AT TIME ZONE`), and by metadata->'model' (jsonb) for the groupBy shape.
  usage, SQLite: the same with json_type / ->>; SQLite has no decimal type (tokens are
      integers, whose sum it keeps exact) and no time zones, so the day is
      date(timestamp, <the zone's UTC offset>) with the offset switched by a CASE at each
      of the zone's transitions inside the range.
  volume: count(*) of the business's events that are not deprecated, grouped by the UTC
      hour (date_trunc / the hour prefix of SQLite's fixed-width timestamp text).

Each aggregate also serves as the reference answer: the service's answer is turned into
the same cells ((group, local day) → event count and exact total; UTC hour → count) and
must equal the aggregate's, total and every cell, before anything is timed.
"""

import asyncio
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg  # type: ignore[import-untyped]
import orjson

from bench.databases import BenchDatabase
from bench.workload import METER_DRAFTS, usage_meter_index

# The meter the SQL below writes out; checked against METER_DRAFTS when it is built.
_EVENT_NAME = "llm.tokens"
_KEY = "tokens"
_FILTER = {
    "conjunction": "AND",
    "clauses": [{"key": "cached", "operator": "EQUALS", "value": False}],
    "groups": [
        {
            "conjunction": "OR",
            "clauses": [
                {"key": "model", "operator": "CONTAINS", "value": "large"},
                {"key": "tokens", "operator": "GREATER_THAN", "value": 1000},
            ],
        }
    ],
}

_POSTGRES_METER = """
  AND event_name = 'llm.tokens'
  AND metadata -> 'cached' = 'false'::jsonb
  AND ((jsonb_typeof(metadata -> 'model') = 'string'
        AND strpos(metadata ->> 'model', 'large') > 0)
       OR (jsonb_typeof(metadata -> 'tokens') = 'number'
           AND metadata -> 'tokens' > '1000'::jsonb))
"""

_SQLITE_METER = """
  AND event_name = 'llm.tokens'
  AND json_type(metadata, '$.cached') = 'false'
  AND ((json_type(metadata, '$.model') = 'text'
        AND instr(metadata ->> '$.model', 'large') > 0)
       OR (json_type(metadata, '$.tokens') IN ('integer', 'real')
           AND metadata ->> '$.tokens' > 1000))
"""

# (group value as JSON text or None, local day or UTC hour) → (event count, exact total).
Cells = dict[tuple[str | None, str], tuple[int, Decimal]]


class WrongAnswer(RuntimeError):
    """The service answered something other than the raw aggregate: nothing is measured."""


@dataclass(frozen=True)
class RawAggregate:
    """One SQL statement for the bare driver, with its parameters and how to read its rows."""

    sql: str
    parameters: tuple[Any, ...]
    # Turns the rows into cells comparable with the service's answer.
    cells: Callable[[list[tuple[Any, ...]]], Cells]
    driver: str


@dataclass
class RawRun:
    timings: list[float] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)


def _customer_condition(
    customer: tuple[str, str | None] | None,
    parameters: list[Any],
    placeholder: Callable[[int], str],
) -> str:
    """Q4's customer condition (its id, or its externalId), its values appended to
    `parameters`; `placeholder(n)` writes the n-th parameter (1-based) as the driver does."""
    if customer is None:
        return ""
    customer_id, external_id = customer
    parameters.append(customer_id)
    condition = f"  AND (customer_id = {placeholder(len(parameters))}"
    if external_id is not None:
        parameters.append(external_id)
        condition += f" OR external_customer_id = {placeholder(len(parameters))}"
    return condition + ")\n"


def _check_meter() -> None:
    draft = METER_DRAFTS[usage_meter_index()]
    if (draft.event_name, draft.aggregation_key, draft.filter) != (_EVENT_NAME, _KEY, _FILTER):
        raise RuntimeError(
            "the usage meter of bench/workload.py changed: write its filter out again in "
            "bench/usage_floor.py"
        )


def sqlite_text(moment: datetime) -> str:
    """What db.column_types.UTCDateTime stores on SQLite: naive UTC, fixed width."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _offset_minutes(moment: datetime, zone: ZoneInfo) -> int:
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() // 60)


def zone_offsets(start: datetime, end: datetime, zone: ZoneInfo) -> list[tuple[datetime, int]]:
    """[(from this UTC instant on, the zone's offset in minutes)] over [start, end)."""
    segments = [(start, _offset_minutes(start, zone))]
    step = timedelta(hours=1)
    moment = start
    while moment < end:
        following = min(moment + step, end)
        if _offset_minutes(following, zone) != segments[-1][1]:
            # The offset changes in (low, high], at a whole second (tz data has no less).
            low, high = math.floor(moment.timestamp()), math.ceil(following.timestamp())
            while high - low > 1:
                middle = (low + high) // 2
                if _offset_minutes(datetime.fromtimestamp(middle, UTC), zone) == segments[-1][1]:
                    low = middle
                else:
                    high = middle
            change = max(datetime.fromtimestamp(high, UTC), start)
            segments.append((change, _offset_minutes(change, zone)))
        moment = following
    return segments


def _sqlite_local_day(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    """SQL for the local date of `timestamp`, with the zone's offsets over the range."""
    segments = zone_offsets(start, end, zone)
    if len(segments) == 1:
        return f"date(\"timestamp\", '{segments[0][1]:+d} minutes')"
    cases = " ".join(
        f"WHEN \"timestamp\" < '{sqlite_text(following)}' THEN '{offset:+d} minutes'"
        for (_, offset), (following, _) in pairwise(segments)
    )
    return f"date(\"timestamp\", CASE {cases} ELSE '{segments[-1][1]:+d} minutes' END)"


def _usage_cells(rows: list[tuple[Any, ...]]) -> Cells:
    """Rows of (day, group JSON or None, count, sum) → cells."""
    cells: Cells = {}
    for day, group, count, total in rows:
        key = (
            None if group is None else orjson.dumps(orjson.loads(group)).decode(),
            day.isoformat() if isinstance(day, date) else str(day),
        )
        cells[key] = (int(count), Decimal(0) if total is None else Decimal(str(total)))
    return cells


def _volume_cells(rows: list[tuple[Any, ...]]) -> Cells:
    """Rows of (hour, count) → cells."""
    return {
        (None, hour.strftime("%Y-%m-%d %H") if isinstance(hour, datetime) else str(hour)): (
            int(count),
            Decimal(count),
        )
        for hour, count in rows
    }


def usage_aggregate(
    kind: str,
    business_id: str,
    start: datetime,
    end: datetime,
    zone_name: str,
    *,
    customer: tuple[str, str | None] | None = None,
    group_by_key: str | None = None,
) -> RawAggregate:
    """The meter's SUM by local day (and by one metadata key), as one SQL aggregate."""
    _check_meter()
    if group_by_key is not None and not group_by_key.isidentifier():
        raise ValueError(f"{group_by_key!r}: only plain keys are written into the SQL")
    if kind == "postgresql":
        parameters: list[Any] = [business_id, start, end, zone_name]
        customer_sql = _customer_condition(customer, parameters, lambda index: f"${index}")
        group = "NULL::text" if group_by_key is None else f"(metadata -> '{group_by_key}')::text"
        sql = (
            f'SELECT ("timestamp" AT TIME ZONE $4)::date AS day, {group} AS grp,\n'
            f"       count(*), sum((metadata ->> '{_KEY}')::numeric)\n"
            "FROM events\n"
            "WHERE business_id = $1 AND deprecated_at IS NULL\n"
            '  AND "timestamp" >= $2 AND "timestamp" < $3\n'
            f"{customer_sql}{_POSTGRES_METER}"
            "GROUP BY day, grp"
        )
        return RawAggregate(sql, tuple(parameters), _usage_cells, "asyncpg")
    day = _sqlite_local_day(start, end, ZoneInfo(zone_name))
    parameters = [business_id, sqlite_text(start), sqlite_text(end)]
    customer_sql = _customer_condition(customer, parameters, lambda _: "?")
    group = "NULL" if group_by_key is None else f"metadata -> '$.{group_by_key}'"
    sql = (
        f"SELECT {day} AS day, {group} AS grp,\n"
        f"       count(*), sum(metadata ->> '$.{_KEY}')\n"
        "FROM events\n"
        "WHERE business_id = ? AND deprecated_at IS NULL\n"
        '  AND "timestamp" >= ? AND "timestamp" < ?\n'
        f"{customer_sql}{_SQLITE_METER}"
        "GROUP BY day, grp"
    )
    return RawAggregate(sql, tuple(parameters), _usage_cells, "sqlite3")


def volume_aggregate(kind: str, business_id: str, start: datetime, end: datetime) -> RawAggregate:
    """count(*) by UTC hour of the business's counted events, as one SQL aggregate."""
    if kind == "postgresql":
        sql = (
            "SELECT date_trunc('hour', \"timestamp\" AT TIME ZONE 'UTC') AS hour, count(*)\n"
            "FROM events\n"
            "WHERE business_id = $1 AND deprecated_at IS NULL\n"
            '  AND "timestamp" >= $2 AND "timestamp" < $3\n'
            "GROUP BY hour"
        )
        return RawAggregate(sql, (business_id, start, end), _volume_cells, "asyncpg")
    sql = (
        'SELECT substr("timestamp", 1, 13) AS hour, count(*)\n'
        "FROM events\n"
        "WHERE business_id = ? AND deprecated_at IS NULL\n"
        '  AND "timestamp" >= ? AND "timestamp" < ?\n'
        "GROUP BY hour"
    )
    return RawAggregate(
        sql, (business_id, sqlite_text(start), sqlite_text(end)), _volume_cells, "sqlite3"
    )


async def _run_postgres(
    dsn: str, aggregate: RawAggregate, seconds: float, minimum_runs: int
) -> RawRun:
    connection = await asyncpg.connect(dsn)
    run = RawRun()
    try:
        # Not timed: the first run prepares the statement and is the reference answer.
        run.rows = [
            tuple(row) for row in await connection.fetch(aggregate.sql, *aggregate.parameters)
        ]
        began = time.perf_counter()
        while len(run.timings) < minimum_runs or time.perf_counter() - began < seconds:
            started = time.perf_counter()
            await connection.fetch(aggregate.sql, *aggregate.parameters)
            run.timings.append(time.perf_counter() - started)
    finally:
        await connection.close()
    return run


def _run_sqlite(path: str, aggregate: RawAggregate, seconds: float, minimum_runs: int) -> RawRun:
    connection = sqlite3.connect(path, isolation_level=None)
    run = RawRun()
    try:
        # What db.database configures on every connection of the service.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=30000")
        run.rows = connection.execute(aggregate.sql, aggregate.parameters).fetchall()
        began = time.perf_counter()
        while len(run.timings) < minimum_runs or time.perf_counter() - began < seconds:
            started = time.perf_counter()
            connection.execute(aggregate.sql, aggregate.parameters).fetchall()
            run.timings.append(time.perf_counter() - started)
    finally:
        connection.close()
    return run


def run_raw(
    database: BenchDatabase, aggregate: RawAggregate, *, seconds: float = 0, minimum_runs: int = 0
) -> RawRun:
    """The aggregate's rows (first run, untimed), then its timings over `seconds` and at
    least `minimum_runs` runs, one connection, results fetched in full."""
    if database.kind == "postgresql":
        assert database.postgres_dsn is not None
        return asyncio.run(_run_postgres(database.postgres_dsn, aggregate, seconds, minimum_runs))
    assert database.sqlite_path is not None
    return _run_sqlite(str(database.sqlite_path), aggregate, seconds, minimum_runs)


# -- the service's answers as cells ---------------------------------------------------------


def usage_answer_cells(answer: dict[str, Any], zone_name: str, group_by_key: str | None) -> Cells:
    """meterUsage's non-empty buckets as cells keyed by the local day of their start."""
    zone = ZoneInfo(zone_name)
    cells: Cells = {}
    for series in answer["series"]:
        group = None
        if group_by_key is not None:
            value = series["groupValues"].get(group_by_key)
            group = None if value is None else orjson.dumps(value).decode()
        for bucket in series["buckets"]:
            if bucket["eventCount"] == 0:
                continue
            day = datetime.fromisoformat(bucket["start"]).astimezone(zone).date().isoformat()
            value = Decimal(bucket["value"]) if bucket["value"] is not None else Decimal(0)
            cells[(group, day)] = (bucket["eventCount"], value)
    return cells


def volume_answer_cells(answer: dict[str, Any]) -> Cells:
    cells: Cells = {}
    for bucket in answer["buckets"]:
        if bucket["count"]:
            hour = datetime.fromisoformat(bucket["start"]).astimezone(UTC)
            cells[(None, hour.strftime("%Y-%m-%d %H"))] = (
                bucket["count"],
                Decimal(bucket["count"]),
            )
    return cells


def decimal_text(value: Decimal) -> str:
    """U3's form: no exponent, no trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def compare(what: str, service: Cells, raw: Cells, service_total: str, raw_total: str) -> None:
    """Raise WrongAnswer unless the totals (as decimal strings) and every cell agree."""
    problems = []
    if service_total != raw_total:
        problems.append(f"total {service_total} (service) ≠ {raw_total} (raw aggregate)")
    differing = sorted(
        key for key in service.keys() | raw.keys() if service.get(key) != raw.get(key)
    )
    for key in differing[:5]:
        problems.append(f"{key}: {service.get(key)} (service) ≠ {raw.get(key)} (raw aggregate)")
    if len(differing) > 5:
        problems.append(f"… {len(differing) - 5} more cells differ")
    if problems:
        raise WrongAnswer(f"{what}: the service's answer is wrong: " + "; ".join(problems))


def raw_totals(cells: Cells) -> tuple[int, Decimal]:
    """(event count, exact total) over every cell."""
    return sum(count for count, _ in cells.values()), sum(
        (total for _, total in cells.values()), Decimal(0)
    )
