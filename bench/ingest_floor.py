"""The ingest floor of SPEC §13: (a) the bare driver writing the rows + (b) graphql-core alone.

(a) The same rows a batch stores — 1000 `events` rows and their 1000 revision-1
`event_revisions` rows — written by the bare driver into the real tables (all their
indexes, the unique (business_id, eventId) index deciding with ON CONFLICT DO NOTHING), in
one transaction per batch. Timed from the parsed request's event list to the commit,
including turning it into rows (server ids, timestamp parsing, metadata JSON).

  PostgreSQL: asyncpg, one INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING
              RETURNING, with the revisions inserted from it in the same statement.
  SQLite:     sqlite3 (the driver under aiosqlite) with the server's PRAGMAs:
              executemany INSERT … ON CONFLICT DO NOTHING, then the revisions of the rows
              that went in, in one INSERT … SELECT.

(b) graphql-core alone on the service's own SDL (schema.graphql) with pass-through JSON
and DateTime scalars and a no-op resolver: orjson-parse the request body, parse the
document, validate it, execute it (which coerces the 1000-event variables against the
input types), and serialize the result. No parse or validation cache.
"""

import asyncio
import sqlite3
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import graphql
import orjson

from db import ids

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema.graphql"

_POSTGRES_INSERT = """
WITH new_events AS (
    INSERT INTO events (id, business_id, event_id, customer_id, external_customer_id,
                        event_name, "timestamp", metadata, ingested_at, revision,
                        counted_from)
    SELECT batch.id, $1, batch.event_id, batch.customer_id, batch.external_customer_id,
           batch.event_name, batch.ts, batch.metadata::jsonb, $2, 1, $2
    FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::timestamptz[], $9::text[])
         AS batch(id, event_id, customer_id, external_customer_id, event_name, ts, metadata)
    ON CONFLICT (business_id, event_id) DO NOTHING
    RETURNING sequence, event_id, event_name, "timestamp", customer_id,
              external_customer_id, metadata
), first_revisions AS (
    INSERT INTO event_revisions (event_sequence, revision, event_name, "timestamp",
                                 customer_id, external_customer_id, metadata, created_at)
    SELECT sequence, 1, event_name, "timestamp", customer_id, external_customer_id,
           metadata, $2
    FROM new_events
)
SELECT event_id, sequence FROM new_events
"""

_SQLITE_INSERT_EVENTS = """
INSERT INTO events (id, business_id, event_id, customer_id, external_customer_id,
                    event_name, timestamp, metadata, ingested_at, revision, counted_from)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?9)
ON CONFLICT (business_id, event_id) DO NOTHING
"""

_SQLITE_INSERT_REVISIONS = """
INSERT INTO event_revisions (event_sequence, revision, event_name, timestamp, customer_id,
                             external_customer_id, metadata, created_at)
SELECT sequence, 1, event_name, timestamp, customer_id, external_customer_id, metadata,
       ingested_at
FROM events WHERE id IN (SELECT value FROM json_each(?))
"""


def _parse_timestamp(value: str | None, now: datetime) -> datetime:
    if value is None:
        return now
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _sqlite_text(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


async def _postgres_batches(
    dsn: str, business_id: str, batches: list[list[dict[str, Any]]]
) -> list[float]:
    connection = await asyncpg.connect(dsn)
    timings: list[float] = []
    try:
        for events in batches:
            started = time.perf_counter()
            now = datetime.now(UTC)
            server_ids = ids.new_ids(ids.EVENT_PREFIX, len(events))
            async with connection.transaction():
                rows = await connection.fetch(
                    _POSTGRES_INSERT,
                    business_id,
                    now,
                    server_ids,
                    [event["eventId"] for event in events],
                    [event.get("customerId") for event in events],
                    [event.get("externalCustomerId") for event in events],
                    [event["eventName"] for event in events],
                    [_parse_timestamp(event.get("timestamp"), now) for event in events],
                    [orjson.dumps(event.get("metadata") or {}).decode() for event in events],
                )
            timings.append(time.perf_counter() - started)
            assert len(rows) == len(events), "the floor writes fresh eventIds only"
    finally:
        await connection.close()
    return timings


def _sqlite_batches(
    path: str, business_id: str, batches: list[list[dict[str, Any]]]
) -> list[float]:
    connection = sqlite3.connect(path, isolation_level=None)
    timings: list[float] = []
    try:
        # What db.database configures on every connection of the service.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=30000")
        for events in batches:
            started = time.perf_counter()
            now = datetime.now(UTC)
            stamp = _sqlite_text(now)
            server_ids = ids.new_ids(ids.EVENT_PREFIX, len(events))
            rows = [
                (
                    server_id,
                    business_id,
                    event["eventId"],
                    event.get("customerId"),
                    event.get("externalCustomerId"),
                    event["eventName"],
                    _sqlite_text(_parse_timestamp(event.get("timestamp"), now)),
                    orjson.dumps(event.get("metadata") or {}).decode(),
                    stamp,
                )
                for event, server_id in zip(events, server_ids, strict=True)
            ]
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(_SQLITE_INSERT_EVENTS, rows)
            connection.execute(_SQLITE_INSERT_REVISIONS, (orjson.dumps(server_ids).decode(),))
            connection.execute("COMMIT")
            timings.append(time.perf_counter() - started)
    finally:
        connection.close()
    return timings


def driver_floor(kind: str, target: str, business_id: str, bodies: list[bytes]) -> list[float]:
    """Seconds per batch of writing each body's events with the bare driver."""
    batches = [orjson.loads(body)["variables"]["input"]["events"] for body in bodies]
    if kind == "postgresql":
        return asyncio.run(_postgres_batches(target, business_id, batches))
    return _sqlite_batches(target, business_id, batches)


def _passthrough(value: Any) -> Any:
    return value


def graphql_core_schema() -> graphql.GraphQLSchema:
    schema = graphql.build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
    for name in ("JSON", "DateTime"):
        scalar = schema.type_map[name]
        assert isinstance(scalar, graphql.GraphQLScalarType)
        scalar.parse_value = _passthrough  # type: ignore[method-assign]
        scalar.serialize = _passthrough  # type: ignore[method-assign]

    def no_op(_root: Any, _info: Any, **arguments: Any) -> dict[str, Any]:
        return {
            "ingestedCount": len(arguments["input"]["events"]),
            "duplicateCount": 0,
            "ingested": [],
            "duplicates": [],
            "userErrors": [],
        }

    mutation = schema.mutation_type
    assert mutation is not None
    mutation.fields["ingestEvents"].resolve = no_op
    return schema


def graphql_core_floor(bodies: list[bytes]) -> list[float]:
    """Seconds per request body of parse + validate + execute (coercion) with graphql-core."""
    schema = graphql_core_schema()
    timings: list[float] = []
    for body in bodies:
        started = time.perf_counter()
        payload = orjson.loads(body)
        document = graphql.parse(payload["query"])
        errors = graphql.validate(schema, document)
        assert not errors, errors
        result = graphql.execute(schema, document, variable_values=payload["variables"])
        assert isinstance(result, graphql.ExecutionResult), "the no-op resolver is synchronous"
        assert result.errors is None, result.errors
        orjson.dumps({"data": result.data})
        timings.append(time.perf_counter() - started)
    return timings


def median_ms(timings: list[float]) -> float:
    return statistics.median(timings) * 1000 if timings else float("nan")
