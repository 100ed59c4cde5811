"""The synthetic data set and every request the scenarios send.

Events are spread over the customers of a business (skewed: a few big customers, many
small ones), about ten event names of different frequency, each with a few typed metadata
keys (strings, integers, floats, booleans), and timestamps over the last 30 days. Events of
customers that have an externalId are sent half by `customerId`, half by
`externalCustomerId`; a few are sent with an externalCustomerId no customer has (yet).
"""

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from db.rules.meters import AggregationType, MeterDraft

SEED_SPAN = timedelta(days=30)
# Seeded events end an hour before the run starts, so nothing seeded is "now".
SEED_END_OFFSET = timedelta(hours=1)

EVENT_NAMES: list[tuple[str, int]] = [
    ("api.request", 30),
    ("llm.tokens", 20),
    ("storage.snapshot", 10),
    ("compute.seconds", 10),
    ("email.sent", 8),
    ("file.upload", 6),
    ("sms.sent", 5),
    ("db.query", 5),
    ("webhook.delivered", 4),
    ("login", 2),
]

METER_DRAFTS = [
    MeterDraft(
        name="Successful API calls",
        event_name="api.request",
        aggregation_type=AggregationType.COUNT,
        measurement_unit="calls",
        filter={"clauses": [{"key": "status", "operator": "LESS_THAN", "value": 400}]},
    ),
    MeterDraft(
        name="Billable LLM tokens",
        event_name="llm.tokens",
        aggregation_type=AggregationType.SUM,
        aggregation_key="tokens",
        measurement_unit="tokens",
        # The usage scenario groups by model (SPEC §13): a dimension of the meter.
        dimensions=("model",),
        filter={
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
        },
    ),
]

ENDPOINTS = ["/v1/search", "/v1/render", "/v1/export", "/v1/import", "/v1/users", "/v1/orders"]
STATUSES = [200] * 12 + [201, 204, 400, 404, 429, 500]
MODELS = ["small-1", "small-2", "large-1", "large-2"]
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1"]


def _metadata(name: str, rng: random.Random) -> dict[str, Any]:
    r = rng.random
    if name == "api.request":
        return {
            "endpoint": ENDPOINTS[int(r() * 6)],
            "status": STATUSES[int(r() * len(STATUSES))],
            "latency_ms": round(3 + r() * 900, 1),
            "cached": r() < 0.2,
        }
    if name == "llm.tokens":
        return {
            "model": MODELS[int(r() * 4)],
            "tokens": 10 + int(r() * 8000),
            "cached": r() < 0.3,
        }
    if name == "storage.snapshot":
        return {"region": REGIONS[int(r() * 5)], "gigabytes": 1 + int(r() * 500)}
    if name == "compute.seconds":
        return {
            "region": REGIONS[int(r() * 5)],
            "instance": rng.choice(["c6.large", "c6.xlarge", "m6.large"]),
            "seconds": round(r() * 3600, 3),
        }
    if name == "email.sent":
        return {
            "template": rng.choice(["welcome", "invoice", "reset"]),
            "recipients": 1 + int(r() * 20),
        }
    if name == "file.upload":
        return {
            "bytes": int(r() * 50_000_000),
            "content_type": rng.choice(["image/png", "text/csv"]),
        }
    if name == "sms.sent":
        return {"country": rng.choice(["DE", "FR", "US", "IN"]), "segments": 1 + int(r() * 4)}
    if name == "db.query":
        return {
            "table": rng.choice(["orders", "users", "items"]),
            "rows": int(r() * 10_000),
            "duration_ms": round(r() * 250, 2),
        }
    if name == "webhook.delivered":
        return {
            "attempt": 1 + int(r() * 3),
            "status": rng.choice([200, 200, 500]),
            "success": r() < 0.9,
        }
    return {"method": rng.choice(["password", "sso", "passkey"]), "mfa": r() < 0.5}


@dataclass(frozen=True, slots=True)
class SeedCustomer:
    id: str
    external_id: str | None


@dataclass(frozen=True, slots=True)
class SeedEvent:
    event_id: str
    customer_id: str | None
    external_customer_id: str | None
    event_name: str
    timestamp: datetime
    metadata: dict[str, Any]
    ingested_at: datetime


def customer_external_ids(count: int, prefix: str) -> list[str | None]:
    """externalIds of the customers to create: one in ten has none."""
    return [None if index % 10 == 9 else f"{prefix}-{index:05d}" for index in range(count)]


def generate_events(
    count: int,
    customers: list[SeedCustomer],
    *,
    rng: random.Random,
    now: datetime,
    event_id_prefix: str,
    chunk_size: int = 50_000,
) -> Iterator[list[SeedEvent]]:
    """`count` events in timestamp order (as they would arrive), in chunks."""
    end = now - SEED_END_OFFSET
    start = end - SEED_SPAN
    step = SEED_SPAN.total_seconds() / max(count, 1)
    # Skewed customer sizes: lognormal weights give a few large customers, many small ones.
    weights = [rng.lognormvariate(0, 1) for _ in customers]
    names = [name for name, _ in EVENT_NAMES]
    name_weights = [weight for _, weight in EVENT_NAMES]
    offset = 0.0
    produced = 0
    while produced < count:
        size = min(chunk_size, count - produced)
        chosen_customers = rng.choices(customers, weights=weights, k=size)
        chosen_names = rng.choices(names, weights=name_weights, k=size)
        suffixes = os.urandom(8 * size).hex()
        chunk: list[SeedEvent] = []
        for index in range(size):
            offset += rng.expovariate(1.0) * step
            moment = min(start + timedelta(seconds=offset), end)
            customer = chosen_customers[index]
            ghost = rng.random() < 0.01
            by_external = customer.external_id is not None and rng.random() < 0.5
            name = chosen_names[index]
            chunk.append(
                SeedEvent(
                    event_id=f"{event_id_prefix}-{suffixes[16 * index : 16 * index + 16]}",
                    customer_id=None if ghost or by_external else customer.id,
                    external_customer_id=(
                        f"ghost-{int(rng.random() * 50)}"
                        if ghost
                        else customer.external_id
                        if by_external
                        else None
                    ),
                    event_name=name,
                    timestamp=moment,
                    metadata=_metadata(name, rng),
                    ingested_at=moment + timedelta(seconds=rng.random() * 5),
                )
            )
        produced += size
        yield chunk


# ---------------------------------------------------------------------------------------
# Requests. The floor server takes the very same bodies (it reads only `variables`), so
# both servers parse the same bytes and are asked for the same rows.

EVENT_FIELDS = (
    "id eventId businessId customerId externalCustomerId eventName timestamp metadata "
    "ingestedAt deprecated deprecatedAt deprecationReason revision"
)

LIST_QUERY = (
    "query ListEvents($filter: EventFilter, $first: Int, $after: String) {"
    " events(filter: $filter, first: $first, after: $after) {"
    " pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
    f" nodes {{ {EVENT_FIELDS} }} }} }}"
)

EVENT_QUERY = (
    f"query OneEvent($eventId: String!) {{ event(eventId: $eventId) {{ {EVENT_FIELDS} }} }}"
)

INGEST_MUTATION = (
    "mutation Ingest($input: IngestEventsInput!) { ingestEvents(input: $input) {"
    " ingestedCount duplicateCount userErrors { code message field eventId } } }"
)

# The concurrency scenario also asks which eventIds each request stored.
INGEST_MUTATION_WITH_IDS = (
    "mutation Ingest($input: IngestEventsInput!) { ingestEvents(input: $input) {"
    " ingestedCount duplicateCount ingested duplicates"
    " userErrors { code message field eventId } } }"
)


def list_body(filter_: dict[str, Any] | None, first: int, after: str | None = None) -> bytes:
    variables: dict[str, Any] = {"first": first}
    if filter_:
        variables["filter"] = filter_
    if after is not None:
        variables["after"] = after
    return orjson.dumps({"query": LIST_QUERY, "variables": variables})


def event_body(event_id: str) -> bytes:
    return orjson.dumps({"query": EVENT_QUERY, "variables": {"eventId": event_id}})


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def ingest_events(
    event_ids: list[str], rng: random.Random, now: datetime, customers: int = 1000
) -> list[dict[str, Any]]:
    """One batch of ingest input: timestamps are `now`, customers by externalCustomerId."""
    stamp = iso(now)
    names = [name for name, _ in EVENT_NAMES]
    name_weights = [weight for _, weight in EVENT_NAMES]
    chosen = rng.choices(names, weights=name_weights, k=len(event_ids))
    return [
        {
            "eventId": event_id,
            "externalCustomerId": f"ingest-{int(rng.random() * customers):05d}",
            "eventName": name,
            "timestamp": stamp,
            "metadata": _metadata(name, rng),
        }
        for event_id, name in zip(event_ids, chosen, strict=True)
    ]


def ingest_body(
    events: list[dict[str, Any]], *, with_ids: bool = False, backfill_id: str | None = None
) -> bytes:
    """ingestEvents' body; with `backfill_id`, into that PENDING backfill."""
    query = INGEST_MUTATION_WITH_IDS if with_ids else INGEST_MUTATION
    input_: dict[str, Any] = {"events": events}
    if backfill_id is not None:
        input_["backfillId"] = backfill_id
    return orjson.dumps({"query": query, "variables": {"input": input_}})


# meterUsage and eventVolume (SPEC §13's usage and volume rows): the SUM meter below, by
# DAY in a zone with daylight saving, over the whole Berlin days that hold the seeded span.

USAGE_METER_NAME = "Billable LLM tokens"
USAGE_TIME_ZONE = "Europe/Berlin"
USAGE_GROUP_BY_KEY = "model"
# An ad-hoc meterUsage filter that changes nothing (a clause the meter has already): the
# whole business's answer, read from the events (bench/scenarios.py).
USAGE_REPEATED_FILTER = {"clauses": [{"key": "cached", "operator": "EQUALS", "value": False}]}

USAGE_QUERY = (
    "query Usage($input: MeterUsageInput!) { meterUsage(input: $input) {"
    " total eventCount"
    " series { groupValues total eventCount buckets { start end value eventCount } } } }"
)

VOLUME_QUERY = (
    "query Volume($input: EventVolumeInput!) { eventVolume(input: $input) {"
    " total buckets { start end count } } }"
)


def usage_meter_index() -> int:
    """The position of the usage meter in METER_DRAFTS (and so in SeededBusiness.meter_ids)."""
    return next(index for index, draft in enumerate(METER_DRAFTS) if draft.name == USAGE_METER_NAME)


def usage_range(now: datetime) -> tuple[datetime, datetime]:
    """[from, to): from the Berlin midnight before the seeded span to the one after it.

    Whole local days, as a dashboard or an invoice asks: 31 DAY buckets holding the 30
    seeded days, and whole hours for eventVolume's HOUR buckets.
    """
    zone = ZoneInfo(USAGE_TIME_ZONE)
    first = (now - SEED_END_OFFSET - SEED_SPAN).astimezone(zone).date()
    last = (now - SEED_END_OFFSET).astimezone(zone).date() + timedelta(days=1)
    return (
        datetime.combine(first, time(), zone).astimezone(UTC),
        datetime.combine(last, time(), zone).astimezone(UTC),
    )


def usage_body(
    meter_id: str,
    start: datetime,
    end: datetime,
    *,
    customer_ids: list[str] | None = None,
    group_by: list[str] | None = None,
    as_of: datetime | None = None,
    filter: dict[str, Any] | None = None,
    time_zone: str = USAGE_TIME_ZONE,
) -> bytes:
    variables: dict[str, Any] = {
        "meterId": meter_id,
        "from": iso(start),
        "to": iso(end),
        "granularity": "DAY",
        "timeZone": time_zone,
    }
    if customer_ids is not None:
        variables["customerIds"] = customer_ids
    if group_by is not None:
        variables["groupBy"] = group_by
    if as_of is not None:
        variables["asOf"] = iso(as_of)
    if filter is not None:
        variables["filter"] = filter
    return orjson.dumps({"query": USAGE_QUERY, "variables": {"input": variables}})


def volume_body(start: datetime, end: datetime) -> bytes:
    variables = {"from": iso(start), "to": iso(end), "granularity": "HOUR"}
    return orjson.dumps({"query": VOLUME_QUERY, "variables": {"input": variables}})


# Backfills (README "Loading history"): ingestion into a PENDING backfill, and the close of
# one that replaces a business's whole history of a timeframe, with a meter over it.

# Ingestion into a backfill: the 24 hours ending this long before the seed's `now`.
BACKFILL_INGEST_SPAN = timedelta(hours=24)
BACKFILL_INGEST_END_OFFSET = timedelta(hours=2)
# The close: this many whole Berlin days ending at the last Berlin midnight at least
# BACKFILL_INGEST_END_OFFSET before `now` (a backfill spans at most 31 days).
BACKFILL_CLOSE_DAYS = 30
BACKFILL_CLOSE_CUSTOMERS = 200
BACKFILL_METER_KEY = "tokens"
BACKFILL_METER_DIMENSION = "model"
BACKFILL_METER_INPUT: dict[str, Any] = {
    "name": "Backfilled LLM tokens",
    "eventName": "llm.tokens",
    "aggregation": {"type": "SUM", "key": BACKFILL_METER_KEY},
    "measurementUnit": "tokens",
    "dimensions": [BACKFILL_METER_DIMENSION],
}

CREATE_METER_MUTATION = (
    "mutation CreateMeter($input: CreateMeterInput!) { createMeter(input: $input) {"
    " meter { id } userErrors { code message field } } }"
)
BACKFILL_FIELDS = "id status eventsIngested eventsToDeprecate"
CREATE_BACKFILL_MUTATION = (
    "mutation CreateBackfill($input: CreateBackfillInput!) { createBackfill(input: $input) {"
    f" backfill {{ {BACKFILL_FIELDS} }} userErrors {{ code message field }} }} }}"
)
CLOSE_BACKFILL_MUTATION = (
    "mutation CloseBackfill($input: BackfillIdInput!) { closeBackfill(input: $input) {"
    " backfill { id status } userErrors { code message field } } }"
)
REVERT_BACKFILL_MUTATION = (
    "mutation RevertBackfill($input: BackfillIdInput!) { revertBackfill(input: $input) {"
    " backfill { id status } userErrors { code message field } } }"
)
BACKFILL_QUERY = f"query Backfill($id: ID!) {{ backfill(id: $id) {{ {BACKFILL_FIELDS} }} }}"


def create_meter_body(input_: dict[str, Any]) -> bytes:
    return orjson.dumps({"query": CREATE_METER_MUTATION, "variables": {"input": input_}})


def create_backfill_body(start: datetime, end: datetime, *, replace: bool) -> bytes:
    """A whole-business backfill of [start, end)."""
    input_ = {
        "timeframeStart": iso(start),
        "timeframeEnd": iso(end),
        "replaceExistingEvents": replace,
    }
    return orjson.dumps({"query": CREATE_BACKFILL_MUTATION, "variables": {"input": input_}})


def close_backfill_body(backfill_id: str) -> bytes:
    return orjson.dumps(
        {"query": CLOSE_BACKFILL_MUTATION, "variables": {"input": {"id": backfill_id}}}
    )


def revert_backfill_body(backfill_id: str) -> bytes:
    return orjson.dumps(
        {"query": REVERT_BACKFILL_MUTATION, "variables": {"input": {"id": backfill_id}}}
    )


def backfill_body(backfill_id: str) -> bytes:
    return orjson.dumps({"query": BACKFILL_QUERY, "variables": {"id": backfill_id}})


def backfill_ingest_timeframe(now: datetime) -> tuple[datetime, datetime]:
    end = now - BACKFILL_INGEST_END_OFFSET
    return end - BACKFILL_INGEST_SPAN, end


def backfill_batch_moment(start: datetime, end: datetime, batch: int, batches: int) -> datetime:
    """The timestamp of batch `batch` of `batches` spread over [start, end): its middle."""
    return start + (end - start) * ((batch + 0.5) / max(batches, 1))


def backfill_close_timeframe(now: datetime) -> tuple[datetime, datetime]:
    """[start, end): BACKFILL_CLOSE_DAYS whole days in USAGE_TIME_ZONE, in the past."""
    zone = ZoneInfo(USAGE_TIME_ZONE)
    last = (now - BACKFILL_INGEST_END_OFFSET).astimezone(zone).date()
    first = last - timedelta(days=BACKFILL_CLOSE_DAYS)
    return (
        datetime.combine(first, time(), zone).astimezone(UTC),
        datetime.combine(last, time(), zone).astimezone(UTC),
    )


@dataclass(frozen=True, slots=True)
class BackfillEvent:
    """One event sent into the close scenario's backfills, as the exact check needs it."""

    event_id: str
    external_customer_id: str
    timestamp: datetime
    model: str
    tokens: int | float

    def as_input(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "externalCustomerId": self.external_customer_id,
            "eventName": "llm.tokens",
            "timestamp": iso(self.timestamp),
            "metadata": {
                BACKFILL_METER_DIMENSION: self.model,
                BACKFILL_METER_KEY: self.tokens,
                "cached": False,
            },
        }


def backfill_events(
    count: int,
    rng: random.Random,
    start: datetime,
    end: datetime,
    *,
    event_id_prefix: str,
    fractional: bool,
) -> list[BackfillEvent]:
    """`count` llm.tokens events spread at random over [start, end) (whole microseconds).

    Integers of tokens, or (`fractional`) floats with up to three decimals: their exact
    sum is the sum of the decimals their reprs stand for (what the service sums, U3).
    """
    span_us = int((end - start) / timedelta(microseconds=1))
    events: list[BackfillEvent] = []
    for index in range(count):
        tokens: int | float = (
            round(rng.random() * 8000, 3) if fractional else 10 + int(rng.random() * 8000)
        )
        events.append(
            BackfillEvent(
                event_id=f"{event_id_prefix}-{index:07d}",
                external_customer_id=(
                    f"backfill-{int(rng.random() * BACKFILL_CLOSE_CUSTOMERS):05d}"
                ),
                timestamp=start + timedelta(microseconds=int(rng.random() * span_us)),
                model=MODELS[int(rng.random() * len(MODELS))],
                tokens=tokens,
            )
        )
    return events
