"""T2: every repository method, called as one business with another's keys, sees nothing of it.

Two businesses share a database; A has customers, events (sent with a customer id, with an
external customer id, amended, deprecated, of a customer that does not exist), meters (one
archived) and backfills (reflected, one of them replacing events; reverted; pending, holding
an event). Each public method of each scoped repository is called as B with A's customer
ids, external ids, event ids, eventIds, sequences, meter ids, backfill ids, backfills and
cursors: nothing of A may come back, and A's rows must be the same afterwards. The table of
walks is checked against the methods the repositories really have, so a new method needs a
walk of its own.
"""

import ast
import importlib
import inspect
import pkgutil
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

import orjson
import pytest
import pytest_asyncio
import sqlalchemy as sa

import db.repositories
from db.database import Database
from db.errors import BadUserInput, RuleViolations, UserErrorCode
from db.event_filter import EventFilter, EventOrder
from db.pagination import Page, PageRequest
from db.records import BackfillRecord, EventDraft
from db.repositories.backfills import BackfillRepository
from db.repositories.businesses import BusinessRepository
from db.repositories.corrections import EventCorrectionRepository
from db.repositories.customers import CustomerRepository
from db.repositories.event_inserts import NewEvent
from db.repositories.event_listing import EventListing
from db.repositories.events import EventRepository
from db.repositories.meters import MeterRepository
from db.repositories.rollups import HOUR_SPAN, RollupRepository
from db.repositories.scoped import BusinessScopedRepository
from db.repositories.usage import UsageRepository
from db.repositories.volume import VolumeRepository
from db.rollups import quarter_of, quarter_start
from db.rules.backfills import BackfillDraft, BackfillStatus, CustomerScope
from db.rules.corrections import Amendment
from db.rules.meters import AggregationType, MeterDraft
from db.settings import Settings
from db.tables import (
    api_keys,
    backfill_replacements,
    backfills,
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
    backfill_ids: tuple[str, ...]
    # A's backfills as stored after seeding, by role: "history" (reflected, replacing
    # nothing), "replacing" (reflected, replaced an event), "reverted" (reflected, then
    # reverted: what it replaced restored), "pending" (holding an event not yet counted).
    backfills: dict[str, BackfillRecord]
    cursors: dict[str, str]
    cursor_key: bytes


@dataclass(frozen=True)
class Seeded:
    a: BusinessA
    b_business_id: str
    b_sequences: tuple[int, ...]
    b_cursor_key: bytes


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
        backfill_ids = await seed_backfills(session, a.business_id, acme.id, plain.id, settings)

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
        a_backfills = BackfillRepository(session, a.business_id)
        stored_backfills = await a_backfills.by_ids(backfill_ids.values())
        backfills_by_role = {role: stored_backfills[id_] for role, id_ in backfill_ids.items()}
        assert {role: backfill.status for role, backfill in backfills_by_role.items()} == {
            "history": BackfillStatus.REFLECTED.value,
            "replacing": BackfillStatus.REFLECTED.value,
            "reverted": BackfillStatus.REVERTED.value,
            "pending": BackfillStatus.PENDING.value,
        }
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
                CustomerRepository(session, a.business_id).page(
                    PageRequest(first=1, cursor_key=a.cursor_key), settings
                )
            ),
            "meters": await first_cursor(
                MeterRepository(session, a.business_id).page(
                    PageRequest(first=1, cursor_key=a.cursor_key), settings, include_archived=True
                )
            ),
            "events": await first_cursor(
                EventListing(session, a.business_id).page(
                    EventFilter(include_deprecated=True),
                    EventOrder.TIMESTAMP_DESC,
                    PageRequest(first=1, cursor_key=a.cursor_key),
                    settings,
                )
            ),
            "backfills": await first_cursor(
                a_backfills.page(
                    PageRequest(first=1, cursor_key=a.cursor_key), settings, status=None
                )
            ),
        }
        customer_ids = (acme.id, plain.id, shared.id)
        meter_ids = (meter.id, archived.id)
        event_server_ids = tuple(row.id for row in a_events)
        business_a = BusinessA(
            business_id=a.business_id,
            ids=frozenset(
                {
                    a.business_id,
                    *a_key_ids,
                    *customer_ids,
                    *meter_ids,
                    *event_server_ids,
                    *backfill_ids.values(),
                }
            ),
            customer_ids=customer_ids,
            external_ids=("acme", "shared", "nobody"),
            event_ids=tuple(row.event_id for row in a_events),
            event_server_ids=event_server_ids,
            sequences=tuple(row.sequence for row in a_events),
            meter_ids=meter_ids,
            backfill_ids=tuple(backfill_ids.values()),
            backfills=backfills_by_role,
            cursors=cursors,
            cursor_key=a.cursor_key,
        )
    return Seeded(business_a, b.business_id, tuple(b_sequences), b.cursor_key)


async def seed_backfills(
    session: Any, business_id: str, acme_id: str, plain_id: str, settings: Settings
) -> dict[str, str]:
    """A's backfills, by role (see BusinessA.backfills). History older than the ingestion
    window is loaded through a first backfill, closed, so that later ones have counted
    events to replace."""
    now = now_utc()
    backfills_of_a = BackfillRepository(session, business_id)
    events_of_a = EventRepository(session, business_id)

    def days_ago(days: int) -> datetime:
        return now - timedelta(days=days)

    async def backfill(draft_of_backfill: BackfillDraft, *drafts: EventDraft) -> str:
        created = await backfills_of_a.create(draft_of_backfill, settings, now)
        await events_of_a.ingest(drafts, settings, now, backfill_id=created.id)
        return created.id

    history = await backfill(
        BackfillDraft(days_ago(10), days_ago(2), replace_existing_events=False),
        draft("a-history-replaced", external_customer_id="acme", timestamp=days_ago(9)),
        draft("a-history-kept", customer_id=plain_id, timestamp=days_ago(9)),
        draft("a-history-restored", customer_id=plain_id, timestamp=days_ago(6)),
        draft("a-history-recent", external_customer_id="acme", timestamp=days_ago(3)),
    )
    await backfills_of_a.close(history, now)
    # Acme's events of days 10 to 8 ago: "a-history-replaced" is deprecated by the close.
    replacing = await backfill(
        BackfillDraft(days_ago(10), days_ago(8), replace_existing_events=True, customer_id=acme_id),
        draft("a-replacement", external_customer_id="acme", timestamp=days_ago(9)),
    )
    await backfills_of_a.close(replacing, now)
    # Every customer's events of days 7 to 5 ago: "a-history-restored", replaced by the
    # close, restored by the revert.
    reverted = await backfill(
        BackfillDraft(days_ago(7), days_ago(5), replace_existing_events=True),
        draft("a-reverted", customer_id=plain_id, timestamp=days_ago(6)),
    )
    await backfills_of_a.close(reverted, now)
    await backfills_of_a.revert(reverted, now)
    # Its close would replace "a-history-recent" (B6).
    pending = await backfill(
        BackfillDraft(
            days_ago(4),
            days_ago(2),
            replace_existing_events=True,
            customer_id=acme_id,
            deprecation_filter=TOKENS_OVER_10,
        ),
        draft("a-pending", external_customer_id="acme", timestamp=days_ago(3)),
    )
    return {"history": history, "replacing": replacing, "reverted": reverted, "pending": pending}


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
            backfills,
            backfill_replacements,
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

    def request(self, **fields: Any) -> PageRequest:
        """A page request of B's: its cursors are sealed and opened with B's key."""
        return PageRequest(**fields, cursor_key=self.seeded.b_cursor_key)

    def requests_with_cursor_of_a(self, cursor: str) -> list[PageRequest]:
        """A's cursor sent as B, after and before: opened with B's key, as the server does,
        and with A's own, which the business id it is bound to refuses all the same."""
        return [
            request
            for key in (self.seeded.b_cursor_key, self.seeded.a.cursor_key)
            for request in (
                PageRequest(after=cursor, cursor_key=key),
                PageRequest(last=5, before=cursor, cursor_key=key),
            )
        ]

    async def call(self, *args: Any, **kwargs: Any) -> Any:
        """The method's result, which holds nothing of A; A is unchanged afterwards."""
        return await self.echoing((), *args, **kwargs)

    async def echoing(self, echoed: Collection[str], *args: Any, **kwargs: Any) -> Any:
        """As `call`, except that the result may give back `echoed`: keys of A's that the
        arguments themselves hold (and nothing else of A's)."""
        before = await rows_of(self.database, self.seeded.a.business_id)
        async with self.database.unit_of_work() as session:
            repository = self.repository(session, self.seeded.b_business_id)
            result = await getattr(repository, self.method)(*args, **kwargs)
            if isinstance(result, Page):
                # B has a handful of rows: every page asked for here holds all that match.
                assert await result.count_total() == len(result.edges)
        unknown = replace(self.seeded.a, ids=self.seeded.a.ids - set(echoed))
        assert_nothing_of_a(result, replace(self.seeded, a=unknown))
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
    assert len((await b.call(b.request(), settings)).edges) == 1
    # By external id: only B's own customer of the one external id both businesses use.
    for external_id in a.external_ids:
        page = await b.call(b.request(), settings, external_id=external_id)
        assert [customer.external_id for _, customer in page.edges] == (
            ["shared"] if external_id == "shared" else []
        )
    for request in b.requests_with_cursor_of_a(a.cursors["customers"]):
        await b.refused(UserErrorCode.INVALID_CURSOR, request, settings)


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
    # Into a backfill of A's, whatever its status: none of B's (not BACKFILL_NOT_PENDING,
    # which would tell that it exists); the event lies in that backfill's timeframe.
    for backfill in a.backfills.values():
        into_a = draft("b-new", external_customer_id="acme", timestamp=backfill.timeframe_start)
        await b.refused(
            UserErrorCode.BACKFILL_NOT_FOUND,
            [into_a],
            settings,
            now_utc(),
            backfill_id=backfill.id,
        )


@walks(EventRepository, "get_by_event_id")
async def get_event_by_event_id(b: AsB, a: BusinessA, settings: Settings) -> None:
    for event_id in a.event_ids:
        found = await b.call(event_id)
        assert found is None or event_id == "shared-event"


@walks(EventRepository, "json_by_event_id")
async def event_json_by_event_id(b: AsB, a: BusinessA, settings: Settings) -> None:
    if b.database.dialect_name != "postgresql":
        with pytest.raises(ValueError, match="PostgreSQL only"):
            await b.call("shared-event", JSON_ID_FIELDS)
        return
    for event_id in a.event_ids:
        text = await b.call(event_id, JSON_ID_FIELDS)
        if event_id != "shared-event":
            assert text is None
            continue
        node = orjson.loads(text)  # B's own event of the eventId A uses too
        assert_nothing_of_a([node], b.seeded)
        assert node["businessId"] == b.seeded.b_business_id


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
        page = await b.call(event_filter, order, b.request(), settings)
        return {event.event_id for _, event in page.edges}

    await walk_event_listing(b, a, settings, listed)


# What json_page is asked to write: the ids of each event, which must all be B's.
JSON_ID_FIELDS = (
    ("eventId", "event_id"),
    ("id", "id"),
    ("businessId", "business_id"),
    ("customerId", "customer_id"),
)


@walks(EventListing, "json_page")
async def events_json_page(b: AsB, a: BusinessA, settings: Settings) -> None:
    if b.database.dialect_name != "postgresql":
        with pytest.raises(ValueError, match="PostgreSQL only"):
            await b.call(EventFilter(), EventOrder.TIMESTAMP_DESC, b.request(), settings, ())
        return

    async def listed(event_filter: EventFilter, order: EventOrder) -> set[str]:
        page = await b.call(event_filter, order, b.request(), settings, JSON_ID_FIELDS)
        nodes = [orjson.loads(text) for text in page.items]
        assert_nothing_of_a(nodes, b.seeded)
        assert {node["businessId"] for node in nodes} <= {b.seeded.b_business_id}
        return {node["eventId"] for node in nodes}

    await walk_event_listing(b, a, settings, listed, JSON_ID_FIELDS)


async def walk_event_listing(
    b: AsB,
    a: BusinessA,
    settings: Settings,
    listed: Callable[[EventFilter, EventOrder], Awaitable[set[str]]],
    *more: Any,
) -> None:
    """B lists its own events, whatever filter names A's customers, events, meters,
    backfills or cursors; `more`: the listing method's arguments after the settings."""
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
                b.request(),
                settings,
                *more,
            )
        for backfill_id in a.backfill_ids:
            await b.refused(
                UserErrorCode.BACKFILL_NOT_FOUND,
                EventFilter(backfill_id=backfill_id),
                order,
                b.request(),
                settings,
                *more,
            )
            replaced = EventFilter(replaced_by_backfill_id=backfill_id, include_deprecated=True)
            assert await listed(replaced, order) == set()
        for request in b.requests_with_cursor_of_a(a.cursors["events"]):
            await b.refused(
                UserErrorCode.INVALID_CURSOR, EventFilter(), order, request, settings, *more
            )


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
    page = await b.call(b.request(), settings, include_archived=True)
    assert len(page.edges) == 1
    for request in b.requests_with_cursor_of_a(a.cursors["meters"]):
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
            b.request(), settings, include_archived=True
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
            PageRequest(cursor_key=a.cursor_key), settings, include_archived=True
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


# -- backfills (SPEC §16) ------------------------------------------------------------------


async def own_backfill(b: AsB, settings: Settings) -> BackfillRecord:
    """A pending backfill of B's own, for every customer, over the timeframe of A's pending
    one, holding one event: what B may see of backfills. Were A's pending backfill B's
    too, creating this one would be a BACKFILL_CONFLICT (B1)."""
    now = now_utc()
    async with b.database.unit_of_work() as session:
        created = await BackfillRepository(session, b.seeded.b_business_id).create(
            BackfillDraft(
                now - timedelta(days=4), now - timedelta(days=2), replace_existing_events=True
            ),
            settings,
            now,
        )
        await EventRepository(session, b.seeded.b_business_id).ingest(
            [
                draft(
                    "b-backfilled",
                    external_customer_id="shared",
                    timestamp=now - timedelta(days=3),
                )
            ],
            settings,
            now,
            backfill_id=created.id,
        )
    return created


async def as_a(b: AsB, a: BusinessA, repository: type, method: str, *args: Any) -> Any:
    """The method called as A itself: what B must not get (the walks' controls)."""
    async with b.database.session() as session:
        return await getattr(repository(session, a.business_id), method)(*args)


@walks(BackfillRepository, "create")
async def create_backfill(b: AsB, a: BusinessA, settings: Settings) -> None:
    now = now_utc()
    pending = a.backfills["pending"]
    start, end = pending.timeframe_start, pending.timeframe_end
    middle = start + (end - start) / 2
    # A's pending backfill (Acme's) overlaps both in timeframe and scope: no conflict in B.
    every_customer = await b.call(BackfillDraft(start, middle, True), settings, now)
    acme = await b.call(
        BackfillDraft(middle, end, True, external_customer_id="acme"), settings, now
    )
    for created in (every_customer, acme):
        assert created.status == BackfillStatus.PENDING.value
    assert acme.external_customer_id == "acme"
    assert acme.customer_id is None
    for customer_id in a.customer_ids:
        draft_for_a = BackfillDraft(start, end, True, customer_id=customer_id)
        await b.refused(UserErrorCode.CUSTOMER_NOT_FOUND, draft_for_a, settings, now)
    # B's own pending backfills do conflict (the check is there, scoped).
    await b.refused(UserErrorCode.BACKFILL_CONFLICT, BackfillDraft(start, end, True), settings, now)


@walks(BackfillRepository, "get")
async def get_backfill(b: AsB, a: BusinessA, settings: Settings) -> None:
    for backfill_id in a.backfill_ids:
        assert await b.call(backfill_id) is None
    own = await own_backfill(b, settings)
    found = await b.call(own.id)
    assert found is not None
    assert found.id == own.id


@walks(BackfillRepository, "by_ids")
async def backfills_by_ids(b: AsB, a: BusinessA, settings: Settings) -> None:
    assert await b.call(a.backfill_ids) == {}
    own = await own_backfill(b, settings)
    assert set(await b.call([*a.backfill_ids, own.id])) == {own.id}


@walks(BackfillRepository, "page")
async def backfills_page(b: AsB, a: BusinessA, settings: Settings) -> None:
    for status in (None, *BackfillStatus):
        assert (await b.call(b.request(), settings, status=status)).edges == []
    own = await own_backfill(b, settings)
    for status in (None, *BackfillStatus):
        page = await b.call(b.request(), settings, status=status)
        expected = [own.id] if status in (None, BackfillStatus.PENDING) else []
        assert [backfill.id for _, backfill in page.edges] == expected
    for request in b.requests_with_cursor_of_a(a.cursors["backfills"]):
        await b.refused(UserErrorCode.INVALID_CURSOR, request, settings, status=None)


@walks(BackfillRepository, "scope_of")
async def backfill_scope(b: AsB, a: BusinessA, settings: Settings) -> None:
    """Given A's backfill, B resolves its customer among B's own: the customer id the
    record names comes back as given, and nothing more of A's customer (its externalId)."""
    async with b.database.session() as session:
        b_customers = CustomerRepository(session, b.seeded.b_business_id)
        b_shared = (await b_customers.by_external_ids(["shared"]))["shared"]
    # The control: A resolves its own backfill's customer fully.
    pending = a.backfills["pending"]
    assert await as_a(b, a, BackfillRepository, "scope_of", pending) == CustomerScope(
        pending.customer_id, "acme"
    )
    for backfill in a.backfills.values():
        named = [backfill.customer_id] if backfill.customer_id is not None else []
        scope = await b.echoing(named, backfill)
        assert scope == CustomerScope(backfill.customer_id, None), backfill
    # By externalId: B's customer of it, if B has one; never A's.
    for external_id, owner in (("acme", None), ("nobody", None), ("shared", b_shared.id)):
        by_external_id = replace(pending, customer_id=None, external_customer_id=external_id)
        assert await b.call(by_external_id) == CustomerScope(owner, external_id)


@walks(BackfillRepository, "due")
async def due_backfills(b: AsB, a: BusinessA, settings: Settings) -> None:
    later = now_utc() + timedelta(days=365)  # every pending backfill's closeTime has come
    assert await as_a(b, a, BackfillRepository, "due", later) == [a.backfills["pending"].id]
    assert await b.call(later) == []
    own = await own_backfill(b, settings)
    assert await b.call(later) == [own.id]


@walks(BackfillRepository, "events_ingested")
async def backfill_events_ingested(b: AsB, a: BusinessA, settings: Settings) -> None:
    assert await as_a(b, a, BackfillRepository, "events_ingested", a.backfill_ids) == {
        a.backfills["history"].id: 4,
        a.backfills["replacing"].id: 1,
        a.backfills["reverted"].id: 1,
        a.backfills["pending"].id: 1,
    }
    assert await b.call(a.backfill_ids) == {}
    own = await own_backfill(b, settings)
    assert await b.call([*a.backfill_ids, own.id]) == {own.id: 1}


@walks(BackfillRepository, "events_to_deprecate")
async def backfill_events_to_deprecate(b: AsB, a: BusinessA, settings: Settings) -> None:
    pending = a.backfills["pending"]
    # The control: A's close would replace "a-history-recent".
    assert await as_a(b, a, BackfillRepository, "events_to_deprecate", pending) == 1
    for backfill in a.backfills.values():
        assert await b.call(backfill) == 0
    # A's pending backfill moved over the moment both businesses sent events at, where
    # events of both count: B counts its own only, A (the control) its own.
    now = now_utc()
    moved = replace(
        pending, timeframe_start=now - timedelta(days=1), timeframe_end=now + timedelta(days=1)
    )
    for customer_id, external_id, a_count, b_count in (
        (pending.customer_id, None, 1, 0),  # A's Acme, which B cannot resolve
        (None, "acme", 1, 1),  # "a-by-external"; B's "b-of-acme"
        (None, None, 4, 3),  # every event that counts, of tokens over 10
    ):
        scoped = replace(moved, customer_id=customer_id, external_customer_id=external_id)
        assert await as_a(b, a, BackfillRepository, "events_to_deprecate", scoped) == a_count
        assert await b.call(scoped) == b_count, scoped


@walks(BackfillRepository, "replacement_of")
async def backfill_replacement(b: AsB, a: BusinessA, settings: Settings) -> None:
    """A condition, not a call: counted over every business's events, it finds none."""

    def count_of(condition: sa.ColumnElement[bool]) -> sa.Select[Any]:
        return sa.select(sa.func.count()).select_from(events).where(condition)

    replacing, reverted = a.backfills["replacing"].id, a.backfills["reverted"].id
    async with b.database.session() as session:
        of_a = BackfillRepository(session, a.business_id)
        for replaced_by in (replacing, reverted):
            assert (await session.execute(count_of(of_a.replacement_of(replaced_by)))).scalar() == 1
    before = await rows_of(b.database, a.business_id)
    async with b.database.unit_of_work() as session:
        of_b = BackfillRepository(session, b.seeded.b_business_id)
        for backfill_id in a.backfill_ids:
            condition = of_b.replacement_of(backfill_id)
            assert (await session.execute(count_of(condition))).scalar() == 0
            scoped = of_b.readable(events, sa.func.count()).where(condition)
            assert (await session.execute(scoped)).scalar() == 0
    assert await rows_of(b.database, a.business_id) == before


@walks(BackfillRepository, "pending_for_ingestion")
async def backfill_pending_for_ingestion(b: AsB, a: BusinessA, settings: Settings) -> None:
    # Whatever the status of A's backfill: not found (not BACKFILL_NOT_PENDING).
    for backfill_id in a.backfill_ids:
        await b.refused(UserErrorCode.BACKFILL_NOT_FOUND, backfill_id)
    own = await own_backfill(b, settings)
    backfill, scope = await b.call(own.id)
    assert backfill.id == own.id
    assert scope == CustomerScope(None, None)


@walks(BackfillRepository, "close")
async def close_backfill(b: AsB, a: BusinessA, settings: Settings) -> None:
    # Closing a REFLECTED backfill again would return it: A's are not found at all.
    for backfill_id in a.backfill_ids:
        await b.refused(UserErrorCode.BACKFILL_NOT_FOUND, backfill_id, now_utc())
    own = await own_backfill(b, settings)
    closed = await b.call(own.id, now_utc())
    assert closed.status == BackfillStatus.REFLECTED.value


@walks(BackfillRepository, "close_if_due")
async def close_backfill_if_due(b: AsB, a: BusinessA, settings: Settings) -> None:
    later = now_utc() + timedelta(days=365)  # every pending backfill's closeTime has come
    for backfill_id in a.backfill_ids:
        for wait in (False, True):
            assert await b.call(backfill_id, later, wait=wait) is False
    own = await own_backfill(b, settings)
    assert await b.call(own.id, later) is True


@walks(BackfillRepository, "revert")
async def revert_backfill(b: AsB, a: BusinessA, settings: Settings) -> None:
    # Reverting a REVERTED backfill again would return it: A's are not found at all.
    for backfill_id in a.backfill_ids:
        await b.refused(UserErrorCode.BACKFILL_NOT_FOUND, backfill_id, now_utc())
    own = await own_backfill(b, settings)
    reverted = await b.call(own.id, now_utc())
    assert reverted.status == BackfillStatus.REVERTED.value


async def event_hours(database: Database, business_id: str) -> set[tuple[str, int]]:
    """(event name, first quarter of the UTC hour) of every event of the business."""
    async with database.session() as session:
        rows = await session.execute(
            sa.select(events.c.event_name, events.c.timestamp).where(
                events.c.business_id == business_id
            )
        )
        return {
            (name, quarter_of(moment) - quarter_of(moment) % HOUR_SPAN) for name, moment in rows
        }


@walks(RollupRepository, "hours_of")
async def rollup_hours_of(b: AsB, a: BusinessA, settings: Settings) -> None:
    of_a_backfills = events.c.backfill_id.in_(a.backfill_ids)
    a_hours = await as_a(b, a, RollupRepository, "hours_of", of_a_backfills)
    assert len(a_hours) == 3  # 9, 6 and 3 days ago
    assert await b.call(of_a_backfills) == set()
    assert await b.call(events.c.sequence.in_(a.sequences)) == set()
    b_hours = await event_hours(b.database, b.seeded.b_business_id)
    assert await b.call(events.c.sequence.is_not(None)) == b_hours
    assert not b_hours & a_hours


@walks(RollupRepository, "hours_recounted")
async def rollup_hours_recounted(b: AsB, a: BusinessA, settings: Settings) -> None:
    # A's hours, one of them also B's (both sent events now): B's rows of it rebuilt as
    # they were, A's (which the harness checks) untouched.
    a_hours = await event_hours(b.database, a.business_id)
    b_hours = await event_hours(b.database, b.seeded.b_business_id)
    assert b_hours <= a_hours
    b_before = await rows_of(b.database, b.seeded.b_business_id)
    await b.call(a_hours)
    b_after = await rows_of(b.database, b.seeded.b_business_id)
    assert b_after["meter_rollups"] == b_before["meter_rollups"]


@walks(RollupRepository, "volume_changed")
async def rollup_volume_changed(b: AsB, a: BusinessA, settings: Settings) -> None:
    b_before = await rows_of(b.database, b.seeded.b_business_id)
    await b.call(
        [
            (events.c.sequence.in_(a.sequences), 1, 1),
            (events.c.backfill_id.in_(a.backfill_ids), 1, 0),
        ]
    )
    assert await rows_of(b.database, b.seeded.b_business_id) == b_before
    # B's own events do change B's counts.
    await b.call([(events.c.sequence.in_(b.seeded.b_sequences), 1, 0)])
    b_after = await rows_of(b.database, b.seeded.b_business_id)
    assert b_after["volume_rollups"] != b_before["volume_rollups"]


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
            for table in (
                customers,
                events,
                event_corrections,
                meters,
                backfills,
                backfill_replacements,
            )
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
    "backfills",
    "backfill_replacements",
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
