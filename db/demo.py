"""Demo data for `usage-events demo`: a business, customers, meters, recent events and a
month of history, so that usage per day has something to show."""

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.records import EventDraft
from db.repositories.backfills import BackfillRepository
from db.repositories.businesses import BusinessRepository
from db.repositories.customers import CustomerRepository
from db.repositories.events import EventRepository
from db.repositories.meters import MeterRepository
from db.rules.backfills import BackfillDraft
from db.rules.ingestion import utc_now
from db.rules.meters import AggregationType, MeterDraft
from db.settings import Settings

DEMO_BUSINESS_NAME = "Demo business"
DEMO_CUSTOMERS = [
    ("acme", "Acme Corporation", "billing@acme.example"),
    ("globex", "Globex", "ap@globex.example"),
    ("initech", "Initech", "finance@initech.example"),
]
DEMO_RECENT_EVENT_COUNT = 300
# A month of history: daily usage in any zone draws a real series from the first run.
DEMO_HISTORY_DAYS = 30
DEMO_HISTORY_EVENTS_PER_DAY = 60
DEMO_EVENT_COUNT = DEMO_RECENT_EVENT_COUNT + DEMO_HISTORY_DAYS * DEMO_HISTORY_EVENTS_PER_DAY
DEMO_METERS = [
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
        filter={"clauses": [{"key": "cached", "operator": "EQUALS", "value": False}]},
        dimensions=("model",),
    ),
]


@dataclass(frozen=True, slots=True)
class DemoSetUp:
    business_id: str
    api_key: str
    # True on the first run, which creates the business and its customers, meters, events.
    created: bool
    # Live keys of the demo business that this run revoked: every run leaves one.
    revoked_key_count: int


async def seed_demo(database: Database, settings: Settings) -> DemoSetUp:
    """Create the demo business and its data once; revoke its keys and return a fresh one.

    Run again, it adds nothing but the new key, so `make run` can be repeated at will.
    """
    now = utc_now()
    async with database.unit_of_work() as session:
        businesses = BusinessRepository(session)
        business = await businesses.find_by_name(DEMO_BUSINESS_NAME)
        created = business is None
        if business is None:
            business = await businesses.create(DEMO_BUSINESS_NAME)
            await _create_demo_data(session, business.id, settings, now)
        revoked = await businesses.revoke_api_keys_of(business.id, now)
        _key, secret = await businesses.create_api_key(business.id)
    return DemoSetUp(business.id, secret, created, revoked)


async def _create_demo_data(
    session: AsyncSession, business_id: str, settings: Settings, now: datetime
) -> None:
    customers = CustomerRepository(session, business_id)
    for external_id, name, email in DEMO_CUSTOMERS:
        await customers.create(external_id=external_id, name=name, email=email, now=now)
    meters = MeterRepository(session, business_id)
    for draft in DEMO_METERS:
        await meters.create(draft, now)
    rng = random.Random()
    events = EventRepository(session, business_id)
    # Spread over the last 50 minutes: inside the ingestion window, so the real rules apply.
    recent = [
        _demo_event(rng, now - timedelta(minutes=50) * (index / DEMO_RECENT_EVENT_COUNT))
        for index in range(DEMO_RECENT_EVENT_COUNT)
    ]
    await events.ingest(recent, settings, now)
    # The month before, loaded the way the README tells a user to load history: through a
    # backfill of the 30 days before the ingestion window, closed once it is filled.
    end = now - settings.ingest_past_window
    span = min(timedelta(days=DEMO_HISTORY_DAYS), settings.backfill_max_span)
    count = DEMO_HISTORY_DAYS * DEMO_HISTORY_EVENTS_PER_DAY
    history = [_demo_event(rng, end - span * ((index + 1) / count)) for index in range(count)]
    backfills = BackfillRepository(session, business_id)
    backfill = await backfills.create(
        BackfillDraft(timeframe_start=end - span, timeframe_end=end, replace_existing_events=False),
        settings,
        now,
    )
    batch = settings.max_batch_size
    for start in range(0, len(history), batch):
        await events.ingest(history[start : start + batch], settings, now, backfill_id=backfill.id)
    await backfills.close(backfill.id, now)


def _demo_event(rng: random.Random, timestamp: datetime) -> EventDraft:
    external_id = rng.choice(DEMO_CUSTOMERS)[0]
    kind = rng.choice(["api.request", "llm.tokens", "storage.snapshot"])
    if kind == "api.request":
        metadata: dict[str, object] = {
            "endpoint": rng.choice(["/v1/search", "/v1/render", "/v1/export"]),
            "status": rng.choice([200, 200, 200, 404, 500]),
            "latency_ms": round(rng.uniform(3, 900), 1),
        }
    elif kind == "llm.tokens":
        metadata = {
            "model": rng.choice(["small", "large"]),
            "tokens": rng.randint(10, 8000),
            "cached": rng.random() < 0.3,
        }
    else:
        metadata = {"region": rng.choice(["eu-west", "us-east"]), "gigabytes": rng.randint(1, 500)}
    return EventDraft(
        event_id=f"demo-{uuid.uuid4()}",
        event_name=kind,
        external_customer_id=external_id,
        timestamp=timestamp,
        metadata=metadata,
    )
