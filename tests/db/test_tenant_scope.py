"""T2: every repository method, called as one business with another's keys, sees nothing of it.

Two businesses share a database; A has customers, events (sent with a customer id, with an
external customer id, amended, deprecated, of a customer that does not exist) and meters
(one archived). Each public method of each scoped repository is called as B with A's
customer ids, external ids, event ids, eventIds, sequences, meter ids and cursors: nothing
of A may come back, and A's rows must be the same afterwards. The table of walks is checked
against the methods the repositories really have, so a new method needs a walk of its own.
"""

import ast
import importlib
import inspect
import pkgutil
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, is_dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeGuard

import pytest
import pytest_asyncio
import sqlalchemy as sa

import db.repositories
from db.database import Database
from db.errors import BadUserInput, RuleViolations, UserErrorCode
from db.event_filter import EventFilter, EventOrder
from db.pagination import Page, PageRequest
from db.records import EventDraft
from db.repositories.businesses import BusinessRepository
from db.repositories.corrections import EventCorrectionRepository
from db.repositories.customers import CustomerRepository
from db.repositories.event_inserts import NewEvent
from db.repositories.event_listing import EventListing
from db.repositories.events import EventRepository
from db.repositories.meters import MeterRepository
from db.repositories.rollups import RollupRepository
from db.repositories.scoped import BusinessScopedRepository
from db.repositories.usage import UsageRepository
from db.repositories.volume import VolumeRepository
from db.rollups import quarter_of, quarter_start
from db.rules.corrections import Amendment
from db.rules.meters import AggregationType, MeterDraft
from db.settings import Settings
from db.tables import (
    api_keys,
    businesses,
    customers,
    event_corrections,
    event_revisions,
    events,
    meter_rollups,
    meters,
    volume_rollups,
)
from db.usage.plan import UsagePlan
from db.usage.query import Granularity, UsageQuery, VolumeQuery
from tests.support import make_tenant, now_utc

# The one repository that is not scoped: businesses and API keys, for the CLI and sign-in.
UNSCOPED_REPOSITORIES = {BusinessRepository}

TOKENS_OVER_10 = {
    "conjunction": "AND",
    "clauses": [{"key": "tokens", "operator": "GREATER_THAN", "value": 10}],
    "groups": [],
}


@dataclass(frozen=True)
class BusinessA:
    """What business B is given to try: every key of A's rows."""

    business_id: str
    ids: frozenset[str]
    customer_ids: tuple[str, ...]
    external_ids: tuple[str, ...]
    event_ids: tuple[str, ...]
    event_server_ids: tuple[str, ...]
    sequences: tuple[int, ...]
    meter_ids: tuple[str, ...]
    cursors: dict[str, str]


@dataclass(frozen=True)
class Seeded:
    a: BusinessA
    b_business_id: str
    b_sequences: tuple[int, ...]


def draft(event_id: str, **fields: Any) -> EventDraft:
    return EventDraft(event_id=event_id, event_name="llm.tokens", metadata={"tokens": 42}, **fields)


@pytest_asyncio.fixture
async def seeded(database: Database, settings: Settings) -> Seeded:
    a = await make_tenant(database, name="Initech")
    b = await make_tenant(database, name="Globex")
    now = now_utc()
    async with database.unit_of_work() as session:
        a_customers = CustomerRepository(session, a.business_id)
        acme = await a_customers.create(external_id="acme", name="Acme", email=None, now=now)
        plain = await a_customers.create(external_id=None, name="Plain", email=None, now=now)
        shared = await a_customers.create(external_id="shared", name=None, email=None, now=now)
        await EventRepository(session, a.business_id).ingest(
            [
                draft("a-by-id", customer_id=plain.id),
                draft("a-by-external", external_customer_id="acme"),
                draft("a-amended", external_customer_id="acme"),
                draft("a-deprecated", external_customer_id="acme"),
                draft("a-of-nobody", external_customer_id="nobody"),
                draft("shared-event", external_customer_id="shared"),
            ],
            settings,
            now,
        )
        corrections = EventCorrectionRepository(session, a.business_id)
        await corrections.amend(
            Amendment("a-amended", "llm.tokens", {"tokens": 7}, reason="typo"), settings, now
        )
        await corrections.deprecate("a-deprecated", "duplicate", settings, now)
        a_meters = MeterRepository(session, a.business_id)
        meter = await a_meters.create(
            MeterDraft(
                "tokens", "llm.tokens", AggregationType.SUM, "tokens", filter=TOKENS_OVER_10
            ),
            now,
        )
        archived = await a_meters.create(
            MeterDraft("calls", "llm.tokens", AggregationType.COUNT), now
        )
        await a_meters.set_archived(archived.id, True, now)

        b_customer = await CustomerRepository(session, b.business_id).create(
            external_id="shared", name=None, email=None, now=now
        )
        await EventRepository(session, b.business_id).ingest(
            [
                draft("shared-event", external_customer_id="shared"),
                draft("b-by-id", customer_id=b_customer.id),
                # An external id that is a customer of A's, not of B's.
                draft("b-of-acme", external_customer_id="acme"),
            ],
            settings,
            now + timedelta(seconds=1),
        )
        await MeterRepository(session, b.business_id).create(
            MeterDraft("tokens", "llm.tokens", AggregationType.SUM, "tokens"), now
        )

    async with database.session() as session:
        a_events = (
            await session.execute(sa.select(events).where(events.c.business_id == a.business_id))
        ).all()
        b_sequences = (
            await session.execute(
                sa.select(events.c.sequence).where(events.c.business_id == b.business_id)
            )
        ).scalars()
        a_key_ids = (
            await session.execute(
                sa.select(api_keys.c.id).where(api_keys.c.business_id == a.business_id)
            )
        ).scalars()
        cursors = {
            "customers": await first_cursor(
                CustomerRepository(session, a.business_id).page(PageRequest(first=1), settings)
            ),
            "meters": await first_cursor(
                MeterRepository(session, a.business_id).page(
                    PageRequest(first=1), settings, include_archived=True
                )
            ),
            "events": await first_cursor(
                EventListing(session, a.business_id).page(
                    EventFilter(include_deprecated=True),
                    EventOrder.TIMESTAMP_DESC,
                    PageRequest(first=1),
                    settings,
                )
            ),
        }
        customer_ids = (acme.id, plain.id, shared.id)
        meter_ids = (meter.id, archived.id)
        event_server_ids = tuple(row.id for row in a_events)
        business_a = BusinessA(
            business_id=a.business_id,
            ids=frozenset(
                {a.business_id, *a_key_ids, *customer_ids, *meter_ids, *event_server_ids}
            ),
            customer_ids=customer_ids,
            external_ids=("acme", "shared", "nobody"),
            event_ids=tuple(row.event_id for row in a_events),
            event_server_ids=event_server_ids,
            sequences=tuple(row.sequence for row in a_events),
            meter_ids=meter_ids,
            cursors=cursors,
        )
    return Seeded(business_a, b.business_id, tuple(b_sequences))


async def first_cursor(page: Awaitable[Page[Any]]) -> str:
    cursor = (await page).end_cursor
    assert cursor is not None
    return cursor


async def rows_of(database: Database, business_id: str) -> dict[str, list[Any]]:
    """Every row of the business, in every table, in a comparable order."""
    owned = {
        table.name: sa.select(table).where(table.c.business_id == business_id)
        for table in (
            api_keys,
            customers,
            events,
            event_corrections,
            meters,
            meter_rollups,
            volume_rollups,
        )
    }
    owned["businesses"] = sa.select(businesses).where(businesses.c.id == business_id)
    owned["event_revisions"] = (
        sa.select(event_revisions)
        .join(events, events.c.sequence == event_revisions.c.event_sequence)
        .where(events.c.business_id == business_id)
    )
    async with database.session() as session:
        return {
            name: sorted((tuple(row) for row in await session.execute(query)), key=repr)
            for name, query in owned.items()
        }


class AsB:
    """Calls the method under test as business B, each call in a transaction of its own."""

    def __init__(self, database: Database, repository: type, method: str, seeded: Seeded) -> None:
        self.database = database
        self.repository = repository
        self.method = method
        self.seeded = seeded

    async def call(self, *args: Any, **kwargs: Any) -> Any:
        """The method's result, which holds nothing of A; A is unchanged afterwards."""
        before = await rows_of(self.database, self.seeded.a.business_id)
        async with self.database.unit_of_work() as session:
            repository = self.repository(session, self.seeded.b_business_id)
            result = await getattr(repository, self.method)(*args, **kwargs)
            if isinstance(result, Page):
                # B has a handful of rows: every page asked for here holds all that match.
                assert await result.count_total() == len(result.edges)
        assert_nothing_of_a(result, self.seeded)
        assert await rows_of(self.database, self.seeded.a.business_id) == before
        return result

    async def refused(self, code: UserErrorCode, *args: Any, **kwargs: Any) -> None:
        """The method refuses with `code`, as if A's key did not exist; A is unchanged."""
        before = await rows_of(self.database, self.seeded.a.business_id)

        async def attempt() -> None:
            async with self.database.unit_of_work() as session:
                repository = self.repository(session, self.seeded.b_business_id)
                await getattr(repository, self.method)(*args, **kwargs)

        with pytest.raises((RuleViolations, BadUserInput)) as raised:
            await attempt()
        error = raised.value
        assert isinstance(error, RuleViolations | BadUserInput)
        codes = (
            [violation.code for violation in error.violations]
            if isinstance(error, RuleViolations)
            else [error.code]
        )
        assert codes, error
        assert set(codes) == {code}, codes
        assert await rows_of(self.database, self.seeded.a.business_id) == before


def assert_nothing_of_a(value: Any, seeded: Seeded) -> None:
    """No id of A's anywhere in `value`, and every record in it is B's."""
    if isinstance(value, str):
        assert value not in seeded.a.ids, value
    elif isinstance(value, Page):
        assert_nothing_of_a(value.edges, seeded)
    elif is_dataclass(value):
        for field in fields(value):
            held = getattr(value, field.name)
            if field.name == "business_id":
                assert held == seeded.b_business_id, value
            if field.name in ("sequence", "event_sequence"):
                assert held in seeded.b_sequences, value
            assert_nothing_of_a(held, seeded)
    elif isinstance(value, dict):
        for key, held in value.items():
            assert_nothing_of_a(key, seeded)
            assert_nothing_of_a(held, seeded)
    elif isinstance(value, list | tuple | set | frozenset):
        for held in value:
            assert_nothing_of_a(held, seeded)


Walk = Callable[[AsB, BusinessA, Settings], Awaitable[None]]
WALKS: dict[str, Walk] = {}


def walks(repository: type, method: str) -> Callable[[Walk], Walk]:
    def register(walk: Walk) -> Walk:
        WALKS[f"{repository.__name__}.{method}"] = walk
        return walk

    return register


@walks(CustomerRepository, "create")
async def create_customer(b: AsB, a: BusinessA, settings: Settings) -> None:
    # A's external ids are free in B, except the one B uses itself.
    for external_id in set(a.external_ids) - {"shared"}:
        created = await b.call(external_id=external_id, name=None, email=None, now=now_utc())
        assert created.external_id == external_id
    await b.refused(
        UserErrorCode.EXTERNAL_ID_TAKEN, external_id="shared", name=None, email=None, now=now_utc()
    )


@walks(CustomerRepository, "get")
async def get_customer(b: AsB, a: BusinessA, settings: Settings) -> None:
    for customer_id in a.customer_ids:
        assert await b.call(customer_id) is None


@walks(CustomerRepository, "by_ids")
async def customers_by_ids(b: AsB, a: BusinessA, settings: Settings) -> None:
    assert await b.call(a.customer_ids) == {}


@walks(CustomerRepository, "by_external_ids")
async def customers_by_external_ids(b: AsB, a: BusinessA, settings: Settings) -> None:
    found = await b.call(a.external_ids)
    assert set(found) == {"shared"}  # B's own customer of that external id


@walks(CustomerRepository, "existing_ids")
async def existing_customer_ids(b: AsB, a: BusinessA, settings: Settings) -> None:
    assert await b.call(a.customer_ids) == set()


@walks(CustomerRepository, "page")
async def customers_page(b: AsB, a: BusinessA, settings: Settings) -> None:
    assert len((await b.call(PageRequest(), settings)).edges) == 1
    # By external id: only B's own customer of the one external id both businesses use.
    for external_id in a.external_ids:
        page = await b.call(PageRequest(), settings, external_id=external_id)
        assert [customer.external_id for _, customer in page.edges] == (
            ["shared"] if external_id == "shared" else []
        )
    cursor = a.cursors["customers"]
    await b.refused(UserErrorCode.INVALID_CURSOR, PageRequest(after=cursor), settings)
    await b.refused(UserErrorCode.INVALID_CURSOR, PageRequest(last=5, before=cursor), settings)


@walks(EventRepository, "ingest")
async def ingest(b: AsB, a: BusinessA, settings: Settings) -> None:
    # A's eventIds are new to B, A's deprecated one included (I9 is per business).
    result = await b.call(
        [draft(event_id, external_customer_id="acme") for event_id in a.event_ids],
        settings,
        now_utc(),
    )
    assert result.duplicates == ["shared-event"]
    assert set(result.ingested) == set(a.event_ids) - {"shared-event"}
    for customer_id in a.customer_ids:
        await b.refused(
            UserErrorCode.CUSTOMER_NOT_FOUND,
            [draft("b-new", customer_id=customer_id)],
            settings,
            now_utc(),
        )


@walks(EventRepository, "get_by_event_id")
async def get_event_by_event_id(b: AsB, a: BusinessA, settings: Settings) -> None:
    for event_id in a.event_ids:
        found = await b.call(event_id)
        assert found is None or event_id == "shared-event"


@walks(EventRepository, "get")
async def get_event(b: AsB, a: BusinessA, settings: Settings) -> None:
    for server_id in a.event_server_ids:
        assert await b.call(server_id) is None


@walks(EventRepository, "revisions_by_sequence")
async def revisions(b: AsB, a: BusinessA, settings: Settings) -> None:
    assert await b.call(a.sequences) == {}
    own = b.seeded.b_sequences
    assert set(await b.call([*a.sequences, *own])) == set(own)


@walks(EventListing, "page")
async def events_page(b: AsB, a: BusinessA, settings: Settings) -> None:
    async def listed(event_filter: EventFilter, order: EventOrder) -> set[str]:
        page = await b.call(event_filter, order, PageRequest(), settings)
        return {event.event_id for _, event in page.edges}

    every_event_id = {"shared-event", "b-by-id", "b-of-acme"}
    for order in EventOrder:
        assert await listed(EventFilter(include_deprecated=True), order) == every_event_id
        for customer_id in a.customer_ids:
            assert await listed(EventFilter(customer_id=customer_id), order) == set()
        event_ids = EventFilter(event_ids=a.event_ids, include_deprecated=True)
        assert await listed(event_ids, order) == {"shared-event"}
        assert await listed(EventFilter(metadata=TOKENS_OVER_10), order) == every_event_id
        for meter_id in a.meter_ids:
            await b.refused(
                UserErrorCode.METER_NOT_FOUND,
                EventFilter(meter_id=meter_id),
                order,
                PageRequest(),
                settings,
            )
        cursor = a.cursors["events"]
        for request in (PageRequest(after=cursor), PageRequest(last=5, before=cursor)):
            await b.refused(UserErrorCode.INVALID_CURSOR, EventFilter(), order, request, settings)


@walks(MeterRepository, "create")
async def create_meter(b: AsB, a: BusinessA, settings: Settings) -> None:
    await b.call(MeterDraft("calls", "llm.tokens", AggregationType.COUNT), now_utc())


@walks(MeterRepository, "get")
async def get_meter(b: AsB, a: BusinessA, settings: Settings) -> None:
    for meter_id in a.meter_ids:
        assert await b.call(meter_id) is None


@walks(MeterRepository, "set_archived")
async def archive_meter(b: AsB, a: BusinessA, settings: Settings) -> None:
    for meter_id in a.meter_ids:
        for archived in (True, False):
            await b.refused(UserErrorCode.METER_NOT_FOUND, meter_id, archived, now_utc())


@walks(MeterRepository, "page")
async def meters_page(b: AsB, a: BusinessA, settings: Settings) -> None:
    page = await b.call(PageRequest(), settings, include_archived=True)
    assert len(page.edges) == 1
    cursor = a.cursors["meters"]
    for request in (PageRequest(after=cursor), PageRequest(last=5, before=cursor)):
        await b.refused(UserErrorCode.INVALID_CURSOR, request, settings, include_archived=True)


@walks(EventCorrectionRepository, "amend")
async def amend(b: AsB, a: BusinessA, settings: Settings) -> None:
    for event_id in set(a.event_ids) - {"shared-event"}:
        amendment = Amendment(event_id, "llm.tokens", {"tokens": 1})
        await b.refused(UserErrorCode.EVENT_NOT_FOUND, amendment, settings, now_utc())
    # B's event of external id "acme" has no customer in B, whatever A has (C4).
    amendment = Amendment("b-of-acme", "llm.tokens", {"tokens": 1})
    await b.refused(UserErrorCode.CUSTOMER_NOT_FOUND, amendment, settings, now_utc())
    # The eventId both have: B's own event gets the revision, by its own sequence.
    amendment = Amendment("shared-event", "llm.tokens", {"tokens": 2})
    amended = await b.call(amendment, settings, now_utc())
    assert amended.revision == 2


@walks(EventCorrectionRepository, "deprecate")
async def deprecate(b: AsB, a: BusinessA, settings: Settings) -> None:
    for event_id in set(a.event_ids) - {"shared-event"}:
        await b.refused(UserErrorCode.EVENT_NOT_FOUND, event_id, None, settings, now_utc())
    await b.refused(UserErrorCode.CUSTOMER_NOT_FOUND, "b-of-acme", None, settings, now_utc())
    deprecated = await b.call("shared-event", None, settings, now_utc())
    assert deprecated.deprecated


@walks(UsageRepository, "meter_usage")
async def meter_usage(b: AsB, a: BusinessA, settings: Settings) -> None:
    now = now_utc()
    start, end = now - timedelta(days=1), now + timedelta(days=1)
    for meter_id in a.meter_ids:
        await b.refused(UserErrorCode.METER_NOT_FOUND, UsageQuery(meter_id, start, end), settings)
    async with b.database.session() as session:
        meters_of_b = await MeterRepository(session, b.seeded.b_business_id).page(
            PageRequest(), settings, include_archived=True
        )
    [(_, own_meter)] = meters_of_b.edges
    for customer_id in a.customer_ids:
        query = UsageQuery(own_meter.id, start, end, customer_ids=(customer_id,))
        await b.refused(UserErrorCode.CUSTOMER_NOT_FOUND, query, settings)
    # B's events only, A's external id "acme" included, which is no customer of B's.
    grouped = UsageQuery(
        own_meter.id, start, end, granularity=Granularity.HOUR, group_by_customer=True
    )
    answer = await b.call(grouped, settings)
    assert answer.event_count == 3
    assert answer.total == 3 * 42
    assert answer.customers.keys() <= {series.customer_id for series in answer.series}
    answer = await b.call(
        UsageQuery(own_meter.id, start, end, external_customer_ids=a.external_ids), settings
    )
    assert answer.event_count == 2  # "shared" and "acme", as B sent them


@walks(VolumeRepository, "event_volume")
async def event_volume(b: AsB, a: BusinessA, settings: Settings) -> None:
    now = now_utc()
    query = VolumeQuery(now - timedelta(days=1), now + timedelta(days=1))
    assert (await b.call(query, settings, now)).total == 3
    for customer_id in a.customer_ids:
        await b.refused(
            UserErrorCode.CUSTOMER_NOT_FOUND,
            VolumeQuery(query.start, query.end, customer_id=customer_id),
            settings,
            now,
        )


@walks(RollupRepository, "events_inserted")
async def rollups_of_inserted_events(b: AsB, a: BusinessA, settings: Settings) -> None:
    # B's rollups take B's new events; A's, which the harness checks, are unchanged.
    b_before = await rows_of(b.database, b.seeded.b_business_id)
    new = NewEvent("evt_b", "b-new", None, "shared", "llm.tokens", now_utc(), {"tokens": 5})
    await b.call([(b.seeded.b_sequences[0], new)], now_utc())
    b_after = await rows_of(b.database, b.seeded.b_business_id)
    assert b_after["volume_rollups"] != b_before["volume_rollups"]
    assert b_after["meter_rollups"] != b_before["meter_rollups"]


@walks(RollupRepository, "event_corrected")
async def rollups_of_corrected_event(b: AsB, a: BusinessA, settings: Settings) -> None:
    before = await rows_of(b.database, a.business_id)
    async with b.database.session() as session:
        event = await EventRepository(session, a.business_id).get_by_event_id("a-by-id")
    assert event is not None
    with pytest.raises(ValueError, match="not this business's"):
        async with b.database.unit_of_work() as session:
            await RollupRepository(session, b.seeded.b_business_id).event_corrected(event, event)
    assert await rows_of(b.database, a.business_id) == before


@walks(RollupRepository, "build_meter")
async def build_meter_rollups(b: AsB, a: BusinessA, settings: Settings) -> None:
    for meter_id in a.meter_ids:
        assert await b.call(meter_id, now_utc()) is False


@walks(RollupRepository, "rebuild_all")
async def rebuild_all_rollups(b: AsB, a: BusinessA, settings: Settings) -> None:
    b_before = await rows_of(b.database, b.seeded.b_business_id)
    await b.call(now_utc())
    b_after = await rows_of(b.database, b.seeded.b_business_id)
    # B's rollups are rebuilt as they were (only the meters' build moment changes).
    assert b_after["meter_rollups"] == b_before["meter_rollups"]
    assert b_after["volume_rollups"] == b_before["volume_rollups"]


@walks(RollupRepository, "usage_partials")
async def usage_partials(b: AsB, a: BusinessA, settings: Settings) -> None:
    now = now_utc()
    async with b.database.session() as session:
        meters_of_a = await MeterRepository(session, a.business_id).page(
            PageRequest(), settings, include_archived=True
        )
    quarters = range(quarter_of(now) - 100, quarter_of(now) + 100)
    for _, meter in meters_of_a.edges:
        plan = UsagePlan(
            meter=meter,
            start=quarter_start(quarters.start),
            end=quarter_start(quarters.stop),
            granularity=None,
            time_zone="UTC",
            edges=[quarter_start(quarters.start), quarter_start(quarters.stop)],
            filters=(),
            customer_ids=None,
            external_customer_ids=None,
            group_by=(),
            group_by_customer=True,
            as_of=None,
        )
        assert await b.call(plan, quarters, []) == []


@walks(RollupRepository, "volume_counts")
async def volume_counts(b: AsB, a: BusinessA, settings: Settings) -> None:
    quarters = range(quarter_of(now_utc()) - 100, quarter_of(now_utc()) + 100)
    for basis in ("event", "ingestion"):
        counts = await b.call(basis, quarters, None, True)
        assert sum(count for _, count in counts) == 3  # B's own events


def repository_modules() -> list[Any]:
    return [
        importlib.import_module(f"{db.repositories.__name__}.{module.name}")
        for module in pkgutil.iter_modules(db.repositories.__path__)
    ]


def repository_classes() -> set[type]:
    """Every class of db.repositories that is made with a session."""
    return {
        member
        for module in repository_modules()
        for _, member in inspect.getmembers(module, inspect.isclass)
        if member.__module__ == module.__name__
        and "session" in inspect.signature(member).parameters
    }


def public_methods(repository: type) -> set[str]:
    """The methods a caller may use, except the statement builders of the base."""
    return {
        f"{repository.__name__}.{name}"
        for name, member in inspect.getmembers(repository, inspect.isfunction)
        if not name.startswith("_") and member is not getattr(BusinessScopedRepository, name, None)
    }


def test_t2_every_repository_is_scoped_but_the_business_one() -> None:
    unscoped = {
        repository
        for repository in repository_classes()
        if not issubclass(repository, BusinessScopedRepository)
    }
    assert unscoped == UNSCOPED_REPOSITORIES


def test_t2_every_method_of_every_scoped_repository_is_walked() -> None:
    scoped = repository_classes() - UNSCOPED_REPOSITORIES - {BusinessScopedRepository}
    assert set(WALKS) == set().union(*(public_methods(repository) for repository in scoped))


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("method", sorted(WALKS))
async def test_t2_another_business_sees_and_changes_nothing(
    database: Database, seeded: Seeded, settings: Settings, method: str
) -> None:
    repository_name, method_name = method.split(".")
    repository = next(
        repository for repository in repository_classes() if repository.__name__ == repository_name
    )
    await WALKS[method](AsB(database, repository, method_name, seeded), seeded.a, settings)


@pytest.mark.asyncio(loop_scope="session")
async def test_t2_every_statement_the_base_builds_carries_the_business(database: Database) -> None:
    async with database.session() as session:
        scoped = BusinessScopedRepository(session, "bus_scoped")
        statements = [
            builder(table, lookup=lookup)
            for table in (customers, events, event_corrections, meters)
            for builder in (scoped.readable, scoped.update_of, scoped.delete_of)
            for lookup in (False, True)
        ]
        statements += [
            scoped.readable(event_revisions),
            scoped.insert_values(meters, {"id": "mtr_1"}),
            scoped.insert_values(customers, {"id": "cus_1"}, ignoring_conflicts_on=["id"]),
            scoped.insert_values(event_revisions, {"event_sequence": 1, "revision": 2}),
        ]
        for statement in statements:
            compiled = statement.compile(dialect=database.engine.dialect)
            assert "business_id" in str(compiled), compiled
            assert "bus_scoped" in compiled.params.values(), compiled

        # A row of a table without a business id is only reached through its parent.
        with pytest.raises(TypeError):
            scoped.update_of(event_revisions)
        # The business of a scoped statement is never the caller's to give.
        with pytest.raises(ValueError, match="repository's own"):
            scoped.insert_values(meters, {"id": "mtr_1", "business_id": "bus_other"})
        with pytest.raises(ValueError, match="repository's own"):
            await scoped.execute_text(sa.text("SELECT 1"), {"business_id": "bus_other"})
        # Hand-written SQL must name the business it is bound to.
        with pytest.raises(ValueError, match=":business_id"):
            await scoped.execute_text(sa.text("SELECT count(*) FROM events"), {})


# Tables whose rows belong to a business: only the base may build statements on them.
TENANT_TABLES = {
    "customers",
    "events",
    "event_revisions",
    "event_corrections",
    "meters",
    "meter_rollups",
    "volume_rollups",
}
STATEMENT_BUILDERS = {
    "select",
    "select_from",
    "insert",
    "update",
    "delete",
    "insert_or_ignore",
    "same_business",
}
# `events.select()`, `meters.update()`: statements built from the table itself.
TABLE_METHODS = {"select", "insert", "update", "delete"}


def test_t2_repositories_build_statements_only_through_the_scoped_base() -> None:
    """No statement on a business's table, nor a business condition, outside the base."""
    exempt = {"scoped.py", "businesses.py"}
    found = []
    for path in sorted(Path(db.repositories.__path__[0]).glob("*.py")):
        if path.name in exempt:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if is_business_column(node):
                found.append(f"{path.name}:{node.lineno} .c.business_id")
            if isinstance(node, ast.Call) and called_name(node) in STATEMENT_BUILDERS:
                tables = {
                    name.id
                    for argument in node.args
                    for name in ast.walk(argument)
                    if isinstance(name, ast.Name) and name.id in TENANT_TABLES
                }
                if tables:
                    found.append(f"{path.name}:{node.lineno} {called_name(node)} {tables}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in TENANT_TABLES
                and node.func.attr in TABLE_METHODS
            ):
                found.append(f"{path.name}:{node.lineno} {node.func.value.id}.{node.func.attr}()")
            if isinstance(node, ast.Call) and called_name(node) == "text":
                sql = ast.literal_eval(node.args[0])
                if set(re.findall(r"\w+", sql)) & TENANT_TABLES and ":business_id" not in sql:
                    found.append(f"{path.name}:{node.lineno} SQL without :business_id")
    assert found == []


def is_business_column(node: ast.AST) -> TypeGuard[ast.Attribute]:
    """`<table>.c.business_id`"""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "business_id"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "c"
    )


def called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None
