"""U9: UsageRepository answers exactly what db.usage.reference answers, on both databases;
VolumeRepository likewise answers what the reference counter counts (V1, V2).

Hypothesis draws a history — customers created, batches ingested, events amended and
deprecated, backfills created, filled, closed and reverted, each step at a moment of its
own — and writes it through the real repositories
with that moment as `now`, so that the rows (events, event_revisions with created_at,
deprecated_at, ingested_at, customers' created_at) are the ones the service itself would
have written. The stored history is read back and handed to the reference; the query goes
to the repository. As in test_filters_sql, the database work runs on one event loop per
database kept for all examples, and every example writes under a business of its own.
"""

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from db.database import Database
from db.errors import RuleViolations
from db.filters import Clause, Conjunction, Filter, FilterOperator, ScalarValue
from db.records import BackfillRecord, EventDraft, MeterRecord
from db.repositories import rollups
from db.repositories.backfills import BackfillRepository
from db.repositories.corrections import EventCorrectionRepository
from db.repositories.customers import CustomerRepository
from db.repositories.events import EventRepository
from db.repositories.meters import MeterRepository
from db.repositories.rollups import RollupRepository
from db.repositories.usage import UsageRepository, rollup_span
from db.repositories.volume import VolumeRepository
from db.rules.backfills import BackfillDraft
from db.rules.corrections import Amendment
from db.rules.meters import AggregationType, MeterDraft
from db.settings import Settings
from db.tables import (
    backfill_replacements,
    backfills,
    businesses,
    customers,
    event_revisions,
    events,
)
from db.usage import reference
from db.usage.buckets import bucket_edges, time_zone
from db.usage.decimals import format_decimal
from db.usage.plan import UsagePlan, check_usage_query, plan_volume
from db.usage.query import (
    EventVolume,
    Granularity,
    MeterUsage,
    UsageQuery,
    VolumeBasis,
    VolumeQuery,
)

# Plain keys, and one that no SQLite JSON path finds (SQLite then reads whole documents).
KEYS = ["tokens", "model", 'say "hi"']
EXTERNAL_IDS = ["acme", "beta", "ghost"]
EVENT_NAMES = ["llm", "llm", "llm", "other"]
NUMBERS: list[int | float] = [0, 1, 2, 3, -1, 7, 100, 0.1, 0.2, 0.3, 2.25, -3.5, 1.5, 2.0, 10.75]
STRINGS = ["a", "b", "1", ""]
VALUES: list[ScalarValue] = [*NUMBERS, *STRINGS, True, False]

# A zone and a moment near which its calendar is interesting: DST changes in Berlin
# (spring and autumn) and St. John's, :30 and :45 offsets in Kolkata and Kathmandu.
ZONES = [
    ("UTC", datetime(2026, 1, 10, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2026, 3, 28, 20, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2026, 10, 24, 20, tzinfo=UTC)),
    ("Asia/Kolkata", datetime(2026, 1, 10, tzinfo=UTC)),
    ("Asia/Kathmandu", datetime(2026, 1, 10, tzinfo=UTC)),
    ("America/St_Johns", datetime(2026, 3, 7, 20, tzinfo=UTC)),
]
# The longest range drawn for each granularity: a few hundred buckets at most.
LONGEST = {
    None: timedelta(days=10),
    Granularity.MINUTE: timedelta(hours=3),
    Granularity.HOUR: timedelta(days=4),
    Granularity.DAY: timedelta(days=20),
    Granularity.WEEK: timedelta(days=70),
    Granularity.MONTH: timedelta(days=200),
}
MICROSECOND = timedelta(microseconds=1)
ORDERING = {
    FilterOperator.GREATER_THAN,
    FilterOperator.GREATER_THAN_OR_EQUALS,
    FilterOperator.LESS_THAN,
    FilterOperator.LESS_THAN_OR_EQUALS,
}
SUBSTRING = {FilterOperator.CONTAINS, FilterOperator.DOES_NOT_CONTAIN}


@dataclass(frozen=True)
class NewCustomer:
    external_id: str | None


@dataclass(frozen=True)
class NewEvent:
    # ("id", n): the n-th customer created so far (modulo), sent by its id;
    # ("external", name): sent with that externalCustomerId.
    sender: tuple[str, Any]
    event_name: str
    timestamp: datetime
    metadata: dict[str, ScalarValue]


@dataclass(frozen=True)
class Ingest:
    events: list[NewEvent]


@dataclass(frozen=True)
class Amend:
    pick: int  # an event ingested so far (modulo)
    event_name: str
    metadata: dict[str, ScalarValue]


@dataclass(frozen=True)
class Deprecate:
    pick: int


@dataclass(frozen=True)
class CreateBackfill:
    # The timeframe, in thousandths of the history's range from its start (the span at
    # most BACKFILL_MAX_SPAN): the same choices give the same backfill in every range.
    start: int
    span: int
    # None: every customer; else as NewEvent.sender.
    scope: tuple[str, Any] | None
    replace: bool
    deprecation_filter: Filter | None


@dataclass(frozen=True)
class IngestIntoBackfill:
    """Into the latest backfill created so far; timestamps are folded into its timeframe."""

    events: list[NewEvent]


@dataclass(frozen=True)
class CloseBackfill:
    pick: int  # a backfill created so far, counted from the latest (modulo)


@dataclass(frozen=True)
class RevertBackfill:
    pick: int


Step = (
    NewCustomer
    | Ingest
    | Amend
    | Deprecate
    | CreateBackfill
    | IngestIntoBackfill
    | CloseBackfill
    | RevertBackfill
)


@dataclass(frozen=True)
class Range:
    zone: str
    start: datetime
    end: datetime
    granularity: Granularity | None


@dataclass(frozen=True)
class History:
    range: Range
    # Each step with the moment it happens at, in time order.
    steps: list[tuple[datetime, Step]]


@dataclass(frozen=True)
class Question:
    aggregation: AggregationType
    key: str | None
    meter_filter: Filter | None
    query_filter: Filter | None
    customer_picks: list[int] | None
    external_customer_ids: list[str] | None
    group_by: list[str]
    group_by_customer: bool
    # (a step, and how far from its moment), or None for now.
    as_of: tuple[int, timedelta] | None
    # The meter's dimensions.
    dimensions: tuple[str, ...] = ()


metadata_documents = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)


def clauses() -> st.SearchStrategy[Clause]:
    def clause_for(operator: FilterOperator) -> st.SearchStrategy[Clause]:
        values: list[ScalarValue] = VALUES
        if operator in ORDERING:
            values = [*NUMBERS]
        elif operator in SUBSTRING:
            values = [*STRINGS]
        return st.builds(Clause, st.sampled_from(KEYS), st.just(operator), st.sampled_from(values))

    return st.sampled_from(FilterOperator).flatmap(clause_for)


filters = st.builds(
    Filter,
    conjunction=st.sampled_from(Conjunction),
    clauses=st.lists(clauses(), min_size=1, max_size=2).map(tuple),
    groups=st.lists(
        st.builds(
            Filter,
            conjunction=st.sampled_from(Conjunction),
            clauses=st.lists(clauses(), min_size=1, max_size=2).map(tuple),
        ),
        max_size=1,
    ).map(tuple),
)


# What a replacing backfill deprecates: everything in scope (None, most often), or some.
DEPRECATION_FILTERS: list[Filter | None] = [
    None,
    None,
    Filter(
        Conjunction.AND,
        (Clause("model", FilterOperator.EQUALS, "a"),),
    ),
    Filter(
        Conjunction.OR,
        (
            Clause("tokens", FilterOperator.GREATER_THAN, 2),
            Clause('say "hi"', FilterOperator.EQUALS, True),
        ),
    ),
]


@st.composite
def ranges(draw: st.DrawFn) -> Range:
    zone, anchor = draw(st.sampled_from(ZONES))
    granularity = draw(st.sampled_from([None, *Granularity]))
    longest = LONGEST[granularity]
    start = anchor + timedelta(
        seconds=draw(st.integers(-86_400, 86_400)),
        microseconds=draw(st.sampled_from([0, 0, 0, 250_000, 999_999])),
    )
    span = timedelta(seconds=draw(st.integers(1, int(longest.total_seconds()))))
    return Range(zone, start, start + span, granularity)


@st.composite
def moments(draw: st.DrawFn, chosen: Range) -> datetime:
    """Timestamps in and around the range, often on or next to a bucket edge."""
    span = chosen.end - chosen.start
    zone = time_zone(chosen.zone)
    assert zone is not None
    edges = bucket_edges(chosen.start, chosen.end, chosen.granularity, zone, 10_000)
    assert edges is not None
    if draw(st.booleans()):
        edge = draw(st.sampled_from(edges))
        return edge + draw(st.sampled_from([-MICROSECOND, timedelta(0), MICROSECOND]))
    whole = int(span / MICROSECOND)
    return chosen.start + draw(st.integers(-whole // 10, whole + whole // 10)) * MICROSECOND


# How often each kind of step is drawn, by repetition: a name, not a strategy, is
# repeated, since one_of drops branches that are the same object — and whether
# hypothesis's strategy cache hands out the same object for equal arguments depends on
# what ran before, which made generation differ between runs.
EVERY_KIND_OF_STEP = [
    *["ingest"] * 3,
    *["backfill", "into backfill", "close"] * 2,
    "customer",
    "amend",
    "deprecate",
    "revert",
]


@st.composite
def histories(draw: st.DrawFn, *, backfill_scenario: bool = False) -> History:
    """Random steps; or, with `backfill_scenario`, events ingested, then a backfill
    created, filled, and mostly closed (replacing some of them) and perhaps reverted,
    amid a few random steps."""
    chosen = draw(ranges())
    senders = st.one_of(
        st.tuples(st.just("id"), st.integers(0, 3)),
        st.tuples(st.just("external"), st.sampled_from(EXTERNAL_IDS)),
    )
    new_events = st.builds(
        NewEvent,
        sender=senders,
        event_name=st.sampled_from(EVENT_NAMES),
        timestamp=moments(chosen),
        metadata=metadata_documents,
    )
    batches = st.lists(new_events, min_size=1, max_size=6)
    step_kinds: dict[str, st.SearchStrategy[Step]] = {
        "customer": st.builds(NewCustomer, st.sampled_from(["acme", "beta", None])),
        "ingest": st.builds(Ingest, batches),
        "amend": st.builds(
            Amend, st.integers(0, 20), st.sampled_from(EVENT_NAMES), metadata_documents
        ),
        "deprecate": st.builds(Deprecate, st.integers(0, 20)),
        "backfill": st.builds(
            CreateBackfill,
            st.integers(-100, 1100),
            st.integers(1, 1000),
            st.none() | senders,
            st.booleans(),
            st.sampled_from(DEPRECATION_FILTERS),
        ),
        "into backfill": st.builds(IngestIntoBackfill, batches),
        "close": st.builds(CloseBackfill, st.integers(0, 3)),
        "revert": st.builds(RevertBackfill, st.integers(0, 3)),
    }
    # Steps happen from half a range before the range on, a quarter of a range apart at
    # most, so that ingestion times (INGESTION_TIME, asOf) fall before, in and after it.
    span = chosen.end - chosen.start
    moment = chosen.start - span / 2
    random_kinds = st.lists(st.sampled_from(EVERY_KIND_OF_STEP), max_size=12)
    kinds = draw(random_kinds.filter(bool))
    if backfill_scenario:
        ending = draw(st.sampled_from([["close"], ["close", "revert"], ["revert"], []]))
        kinds = [
            *["ingest"] * draw(st.integers(1, 2)),
            "backfill",
            *["into backfill"] * draw(st.integers(1, 3)),
            *ending,
        ]
        kinds[draw(st.integers(0, len(kinds))) : 0] = draw(random_kinds.map(lambda k: k[:3]))
    steps: list[tuple[datetime, Step]] = []
    for kind in kinds:
        step = draw(step_kinds[kind])
        moment += draw(st.integers(1, max(int(span / MICROSECOND) // 4, 1))) * MICROSECOND
        steps.append((moment, step))
    return History(chosen, steps)


def rarely(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """None three times in four: each narrowing drawn every time would leave little to count."""
    return st.one_of(st.none(), st.none(), st.none(), strategy)


questions = st.builds(
    Question,
    aggregation=st.sampled_from(AggregationType),
    key=st.sampled_from(KEYS),
    meter_filter=rarely(filters),
    query_filter=rarely(filters),
    customer_picks=rarely(st.lists(st.integers(0, 3), min_size=1, max_size=2)),
    external_customer_ids=rarely(
        st.lists(st.sampled_from([*EXTERNAL_IDS, "nobody"]), min_size=1, max_size=2, unique=True)
    ),
    group_by=st.lists(st.sampled_from(KEYS), max_size=2, unique=True),
    group_by_customer=st.booleans(),
    as_of=st.none()
    | st.tuples(st.integers(0, 9), st.sampled_from([-MICROSECOND, timedelta(0), MICROSECOND])),
)


@dataclass(frozen=True)
class Stored:
    """A history as the database holds it, in the reference's terms."""

    business_id: str
    events: list[reference.EventHistory]
    customers: list[reference.CustomerState]


def configured(url: str) -> Settings:
    """Wide ingest windows: a history is written at moments of its own choosing. No
    correction limit: C5 is not what these tests are about."""
    return Settings(
        database_url=url,
        ingest_past_window=timedelta(days=3650),
        ingest_future_window=timedelta(days=3650),
        correction_limit=0,
    )


@dataclass
class Backend:
    """A migrated database and the event loop its engine's connections live on."""

    runner: asyncio.Runner
    database: Database
    settings: Settings

    def write(self, history: History) -> Stored:
        return self.runner.run(self._write(history))

    def write_under_meter(self, history: History, question: Question) -> tuple[Stored, MeterRecord]:
        """The history written after the meter was created: every write keeps its rollups."""

        async def write() -> tuple[Stored, MeterRecord]:
            business_id = await self._business(history)
            meter = await self._create_meter(business_id, question, history.steps[0][0])
            return await self._write(history, business_id), meter

        return self.runner.run(write())

    async def _business(self, history: History) -> str:
        business_id = uuid.uuid4().hex
        async with self.database.unit_of_work() as session:
            await session.execute(
                businesses.insert().values(
                    id=business_id, name="U9", created_at=history.steps[0][0]
                )
            )
        return business_id

    async def _write(self, history: History, business_id: str | None = None) -> Stored:
        if business_id is None:
            business_id = await self._business(history)
        created: list[str] = []
        ingested: list[str] = []
        backfilled: list[BackfillRecord] = []
        for now, step in history.steps:
            try:
                async with self.database.unit_of_work() as session:
                    if isinstance(
                        step, CreateBackfill | IngestIntoBackfill | CloseBackfill | RevertBackfill
                    ):
                        await self._backfill(
                            session,
                            history.range,
                            business_id,
                            step,
                            now,
                            created,
                            ingested,
                            backfilled,
                        )
                    else:
                        await self._apply(session, business_id, step, now, created, ingested)
            except RuleViolations:
                pass  # refused as the service would refuse it; nothing was written
        return await self._read(business_id)

    async def _apply(
        self,
        session: Any,
        business_id: str,
        step: Step,
        now: datetime,
        created: list[str],
        ingested: list[str],
    ) -> None:
        if isinstance(step, NewCustomer):
            customer = await CustomerRepository(session, business_id).create(
                external_id=step.external_id, name=None, email=None, now=now
            )
            created.append(customer.id)
        elif isinstance(step, Ingest):
            drafts = [
                EventDraft(
                    event_id=f"e{len(ingested) + index}",
                    event_name=event.event_name,
                    timestamp=event.timestamp,
                    metadata=event.metadata,
                    **_sender(event.sender, created),
                )
                for index, event in enumerate(step.events)
            ]
            await EventRepository(session, business_id).ingest(drafts, self.settings, now)
            ingested.extend(draft.event_id for draft in drafts)
        elif isinstance(step, Amend | Deprecate) and ingested:
            event_id = ingested[step.pick % len(ingested)]
            corrections = EventCorrectionRepository(session, business_id)
            if isinstance(step, Amend):
                amendment = Amendment(event_id, step.event_name, step.metadata)
                await corrections.amend(amendment, self.settings, now)
            else:
                await corrections.deprecate(event_id, None, self.settings, now)

    async def _backfill(
        self,
        session: Any,
        chosen: Range,
        business_id: str,
        step: Step,
        now: datetime,
        created: list[str],
        ingested: list[str],
        backfilled: list[BackfillRecord],
    ) -> None:
        repository = BackfillRepository(session, business_id)
        if isinstance(step, CreateBackfill):
            scope = {} if step.scope is None else _sender(step.scope, created)
            whole = chosen.end - chosen.start
            start = chosen.start + whole * step.start / 1000
            span = min(whole * step.span / 1000, self.settings.backfill_max_span)
            draft = BackfillDraft(
                timeframe_start=start,
                timeframe_end=start + max(span, MICROSECOND),
                replace_existing_events=step.replace,
                deprecation_filter=(
                    step.deprecation_filter.to_document()
                    if step.deprecation_filter is not None and step.replace
                    else None
                ),
                close_time=now + timedelta(days=1),
                **scope,
            )
            backfilled.append(await repository.create(draft, self.settings, now))
        elif not backfilled:
            return
        elif isinstance(step, IngestIntoBackfill):
            backfill = backfilled[-1]
            span = backfill.timeframe_end - backfill.timeframe_start
            drafts = [
                EventDraft(
                    event_id=f"e{len(ingested) + index}",
                    event_name=event.event_name,
                    timestamp=backfill.timeframe_start
                    + (event.timestamp - backfill.timeframe_start) % span,
                    metadata=event.metadata,
                    **(
                        _sender(event.sender, created)
                        if backfill.customer_id is None and backfill.external_customer_id is None
                        else {"customer_id": backfill.customer_id}
                        if backfill.customer_id is not None
                        else {"external_customer_id": backfill.external_customer_id}
                    ),
                )
                for index, event in enumerate(step.events)
            ]
            await EventRepository(session, business_id).ingest(
                drafts, self.settings, now, backfill_id=backfill.id
            )
            ingested.extend(draft.event_id for draft in drafts)
        elif isinstance(step, CloseBackfill):
            await repository.close(backfilled[-1 - step.pick % len(backfilled)].id, now)
        elif isinstance(step, RevertBackfill):
            await repository.revert(backfilled[-1 - step.pick % len(backfilled)].id, now)

    async def _read(self, business_id: str) -> Stored:
        async with self.database.session() as session:
            rows = (
                await session.execute(sa.select(events).where(events.c.business_id == business_id))
            ).all()
            revision_rows = (
                await session.execute(
                    sa.select(event_revisions)
                    .join(events, events.c.sequence == event_revisions.c.event_sequence)
                    .where(events.c.business_id == business_id)
                    .order_by(event_revisions.c.event_sequence, event_revisions.c.revision)
                )
            ).all()
            customer_rows = (
                await session.execute(
                    sa.select(customers).where(customers.c.business_id == business_id)
                )
            ).all()
            replacement_rows = (
                await session.execute(
                    sa.select(
                        backfill_replacements.c.event_sequence,
                        backfills.c.reflected_at,
                        backfills.c.reverted_at,
                    )
                    .join(backfills, backfills.c.id == backfill_replacements.c.backfill_id)
                    .where(
                        backfills.c.business_id == business_id,
                        backfills.c.reverted_at.is_not(None),
                    )
                )
            ).all()
        replaced: dict[int, list[tuple[datetime, datetime]]] = {}
        for sequence, reflected_at, reverted_at in replacement_rows:
            replaced.setdefault(sequence, []).append((reflected_at, reverted_at))
        revisions: dict[int, list[reference.Revision]] = {}
        for row in revision_rows:
            revisions.setdefault(row.event_sequence, []).append(
                reference.Revision(row.revision, row.event_name, row.metadata, row.created_at)
            )
        return Stored(
            business_id,
            [
                reference.EventHistory(
                    sequence=row.sequence,
                    customer_id=row.customer_id,
                    external_customer_id=row.external_customer_id,
                    timestamp=row.timestamp,
                    ingested_at=row.ingested_at,
                    deprecated_at=row.deprecated_at,
                    revisions=revisions[row.sequence],
                    counted_from=row.counted_from,
                    replaced=replaced.get(row.sequence, ()),
                )
                for row in rows
            ],
            [
                reference.CustomerState(row.id, row.external_id, row.created_at)
                for row in customer_rows
            ],
        )

    def meter(self, business_id: str, question: Question, now: datetime) -> MeterRecord:
        return self.runner.run(self._create_meter(business_id, question, now))

    async def _create_meter(
        self, business_id: str, question: Question, now: datetime
    ) -> MeterRecord:
        draft = MeterDraft(
            name="meter",
            event_name="llm",
            aggregation_type=question.aggregation,
            aggregation_key=None if question.aggregation is AggregationType.COUNT else question.key,
            filter=question.meter_filter.to_document() if question.meter_filter else None,
            dimensions=question.dimensions,
        )
        async with self.database.unit_of_work() as session:
            return await MeterRepository(session, business_id).create(draft, now)

    def usage(self, business_id: str, query: UsageQuery) -> MeterUsage:
        async def answer() -> MeterUsage:
            async with self.database.session() as session:
                return await UsageRepository(session, business_id).meter_usage(query, self.settings)

        return self.runner.run(answer())

    def volume(self, business_id: str, query: VolumeQuery, now: datetime) -> EventVolume:
        async def answer() -> EventVolume:
            async with self.database.session() as session:
                return await VolumeRepository(session, business_id).event_volume(
                    query, self.settings, now
                )

        return self.runner.run(answer())


def _sender(sender: tuple[str, Any], created: list[str]) -> dict[str, str]:
    kind, which = sender
    if kind == "id" and created:
        return {"customer_id": created[which % len(created)]}
    return {"external_customer_id": which if kind == "external" else "ghost"}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("usage") / "usage.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    with asyncio.Runner() as runner:
        database_settings = configured(url)
        database = Database.from_settings(database_settings)
        try:
            yield Backend(runner, database, database_settings)
        finally:
            runner.run(database.dispose())


def usage_query(history: History, question: Question, stored: Stored, meter_id: str) -> UsageQuery:
    chosen = history.range
    created = sorted(stored.customers, key=lambda customer: customer.created_at)
    customer_ids = None
    if question.customer_picks is not None and created:
        picked = [created[pick % len(created)].id for pick in question.customer_picks]
        customer_ids = tuple(dict.fromkeys(picked))
    as_of = None
    if question.as_of is not None:
        step, delta = question.as_of
        as_of = history.steps[step % len(history.steps)][0] + delta
    return UsageQuery(
        meter_id=meter_id,
        start=chosen.start,
        end=chosen.end,
        granularity=chosen.granularity,
        time_zone=chosen.zone,
        customer_ids=customer_ids,
        external_customer_ids=(
            tuple(question.external_customer_ids)
            if question.external_customer_ids is not None
            else None
        ),
        filter=question.query_filter.to_document() if question.query_filter else None,
        group_by=tuple(question.group_by),
        group_by_customer=question.group_by_customer,
        as_of=as_of,
    )


def note_backfills(stored: Stored) -> None:
    """Labels for --hypothesis-show-statistics: how often backfills shaped the history."""
    if any(each.replaced for each in stored.events):
        event("a reverted backfill had replaced events")
    if any(
        each.counted_from is not None and each.counted_from > each.ingested_at
        for each in stored.events
    ):
        event("a reflected backfill's events")
    if any(each.counted_from is None for each in stored.events):
        event("events of a backfill not reflected")


def reference_plan(
    query: UsageQuery, meter: MeterRecord, stored: Stored, settings: Settings
) -> UsagePlan:
    """The plan the reference answers, built from the query as U1 reads it."""
    checked = check_usage_query(query, settings)
    customer_ids = external_ids = None
    if query.customer_ids is not None or query.external_customer_ids is not None:
        customer_ids = query.customer_ids or ()
        # Q4: a customer's events are those sent by its id and by its externalId.
        own = [
            customer.external_id
            for customer in stored.customers
            if customer.id in customer_ids and customer.external_id is not None
        ]
        external_ids = tuple(dict.fromkeys([*(query.external_customer_ids or ()), *own]))
    filters = [Filter.from_document(meter.filter)] if meter.filter is not None else []
    if checked.filter is not None:
        filters.append(checked.filter)
    return UsagePlan(
        meter=meter,
        start=query.start,
        end=query.end,
        granularity=query.granularity,
        time_zone=query.time_zone,
        edges=checked.edges,
        filters=tuple(filters),
        customer_ids=customer_ids,
        external_customer_ids=external_ids,
        group_by=query.group_by,
        group_by_customer=query.group_by_customer,
        as_of=query.as_of,
    )


def exactly(value: Decimal | None) -> tuple[Decimal, str] | None:
    """A value and the text the client sees: equal Decimals must also print alike."""
    return None if value is None else (value, format_decimal(value))


def as_answered(answer: MeterUsage) -> tuple[Any, ...]:
    """Every field of an answer, group values with their JSON type (1, 1.0 and true differ
    in type, though Python calls them equal)."""
    return (
        answer.start,
        answer.end,
        answer.granularity,
        answer.time_zone,
        exactly(answer.total),
        answer.event_count,
        [
            (
                [(key, type(value).__name__, value) for key, value in series.group_values.items()],
                series.customer_id,
                series.external_customer_id,
                exactly(series.total),
                series.event_count,
                [
                    (bucket.start, bucket.end, exactly(bucket.value), bucket.event_count)
                    for bucket in series.buckets
                ],
            )
            for series in answer.series
        ],
    )


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), question=questions)
def test_u9_repository_agrees_with_the_reference(
    backend: Backend, history: History, question: Question
) -> None:
    # Given a history written by the repositories at its own moments, and a meter
    stored = backend.write(history)
    meter = backend.meter(stored.business_id, question, history.steps[-1][0])
    query = usage_query(history, question, stored, meter.id)
    # When the repository answers the usage query
    answer = backend.usage(stored.business_id, query)
    # Then it answers exactly what the reference answers over the stored history
    note_backfills(stored)
    plan = reference_plan(query, meter, stored, backend.settings)
    expected = reference.usage(plan, stored.events, stored.customers)
    assert as_answered(answer) == as_answered(expected)


# The shapes the rollups answer (db.repositories.usage.rollup_span): no asOf, no ad-hoc
# filter, groupBy among the meter's dimensions, no UNIQUE_COUNT; MINUTE ranges and ranges
# without a whole quarter-hour still occur, and must then be read from the raw events.
@st.composite
def rollup_questions(draw: st.DrawFn) -> Question:
    dimensions = draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True))
    group_by = draw(st.lists(st.sampled_from(dimensions), unique=True)) if dimensions else []
    return Question(
        aggregation=draw(
            st.sampled_from(
                [each for each in AggregationType if each is not AggregationType.UNIQUE_COUNT]
            )
        ),
        key=draw(st.sampled_from(KEYS)),
        meter_filter=draw(rarely(filters)),
        query_filter=None,
        customer_picks=draw(rarely(st.lists(st.integers(0, 3), min_size=1, max_size=2))),
        external_customer_ids=draw(
            rarely(
                st.lists(
                    st.sampled_from([*EXTERNAL_IDS, "nobody"]), min_size=1, max_size=2, unique=True
                )
            )
        ),
        group_by=group_by,
        group_by_customer=draw(st.booleans()),
        as_of=None,
        dimensions=tuple(dimensions),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    question=rollup_questions(),
    meter_first=st.booleans(),
    sqlite_case_buckets=st.sampled_from([0, rollups.SQLITE_CASE_BUCKETS]),
)
def test_u9_rollups_agree_with_the_reference(
    backend: Backend,
    history: History,
    question: Question,
    meter_first: bool,
    sqlite_case_buckets: int,
) -> None:
    # Given a meter created before the history (its rollups kept by every ingestion,
    # amendment and deprecation) or after it (its rollups built from the stored events)
    if meter_first:
        stored, meter = backend.write_under_meter(history, question)
    else:
        stored = backend.write(history)
        meter = backend.meter(stored.business_id, question, history.steps[-1][0])
    query = usage_query(history, question, stored, meter.id)
    note_backfills(stored)
    plan = reference_plan(query, meter, stored, backend.settings)
    # When the repository answers the usage query
    # (SQLite numbers few buckets in SQL, many in Python: both ways are drawn.)
    with (
        mock.patch.object(rollups, "SQLITE_CASE_BUCKETS", sqlite_case_buckets),
        mock.patch.object(
            RollupRepository,
            "usage_partials",
            autospec=True,
            side_effect=RollupRepository.usage_partials,
        ) as read_rollups,
    ):
        answer = backend.usage(stored.business_id, query)
    # Then the rollups answered it whenever its shape allows, and exactly as the reference
    assert read_rollups.called == (rollup_span(plan) is not None)
    event("answered from the rollups" if read_rollups.called else "answered from raw events")
    expected = reference.usage(plan, stored.events, stored.customers)
    assert as_answered(answer) == as_answered(expected)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(backfill_scenario=True),
    question=st.one_of(rollup_questions(), questions),
)
def test_u9_backfill_closes_and_reverts_keep_usage_exact(
    backend: Backend, history: History, question: Question
) -> None:
    # Given a meter whose rollups every step kept — backfills created, filled, closed
    # over events ingested before (replacing them) and reverted — at their own moments
    stored, meter = backend.write_under_meter(history, question)
    note_backfills(stored)
    # When the repository answers (from the rollups, or from the raw events with asOf)
    query = usage_query(history, question, stored, meter.id)
    answer = backend.usage(stored.business_id, query)
    # Then it answers exactly what the reference answers
    plan = reference_plan(query, meter, stored, backend.settings)
    expected = reference.usage(plan, stored.events, stored.customers)
    assert as_answered(answer) == as_answered(expected)


volume_questions = st.fixed_dictionaries(
    {
        "granularity": st.sampled_from(Granularity),
        "basis": st.sampled_from(VolumeBasis),
        "customer_pick": rarely(st.integers(0, 3)),
        "event_name": st.sampled_from([None, None, "llm", "other"]),
        "include_deprecated": st.booleans(),
        "open_ended": st.booleans(),
    }
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories() | histories(backfill_scenario=True), question=volume_questions)
def test_v1_v2_volume_agrees_with_the_reference(
    backend: Backend, history: History, question: dict[str, Any]
) -> None:
    # Given a history written by the repositories at its own moments
    stored = backend.write(history)
    chosen = history.range
    now = history.steps[-1][0] + timedelta(minutes=1)
    granularity: Granularity = question["granularity"]
    latest = chosen.start + LONGEST[granularity]
    open_ended = question["open_ended"] and chosen.start < now <= latest
    end = None if open_ended else min(chosen.end, latest)
    created = sorted(stored.customers, key=lambda customer: customer.created_at)
    customer = None
    if question["customer_pick"] is not None and created:
        customer = created[question["customer_pick"] % len(created)]
    query = VolumeQuery(
        start=chosen.start,
        end=end,
        granularity=granularity,
        time_zone=chosen.zone,
        basis=question["basis"],
        customer_id=customer.id if customer is not None else None,
        event_name=question["event_name"],
        include_deprecated=question["include_deprecated"],
    )
    # When the repository counts the volume
    answer = backend.volume(stored.business_id, query, now)
    # Then it counts exactly what the reference counts, in the same buckets
    plan = plan_volume(query, backend.settings, now)
    expected = reference.volume(plan, query, stored.events, customer)
    assert answer == expected
