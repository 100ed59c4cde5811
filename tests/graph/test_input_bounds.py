"""Every String and ID a client sends has a length bound, and no error repeats it whole.

The inventory below names each string argument and input field of the schema (by its
schema coordinate) with its bound, the code that refuses a longer value and the path
that refusal points at. For each entry, over HTTP on SQLite and PostgreSQL: a value of
exactly the bound is accepted (or answered for another reason, never as too long), one
character more is refused with the code and path and nothing is written, and a megabyte
is answered in a few hundred bytes. `test_every_string_argument_has_a_bound` walks the
schema: a new String, ID or JSON argument fails it until it has an entry here.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import graphql
import pytest
import pytest_asyncio
import sqlalchemy as sa

from db.database import Database
from db.pagination import MAX_CURSOR_LENGTH
from db.tables import metadata
from graph.schema import build_schema
from tests.support import GraphQLClient, create_customer, event_input, ingest, iso, now_utc

on_both_databases = pytest.mark.asyncio(loop_scope="session")

# The answer to a megabyte of text sent anywhere: an error naming it, not the text.
SMALL_ANSWER = 10_000
HUGE = 2_000_000

# The stored customer's externalId and a stored eventId, both of exactly their bound.
EXTERNAL_ID = "a" * 255
LONG_EVENT_ID = "e" * 255


@dataclass(frozen=True)
class World:
    """What the requests of a case refer to: a customer, events, a meter, a backfill."""

    api: GraphQLClient
    database: Database
    customer_id: str
    meter_id: str
    backfill_id: str


Variables = Callable[[World, str], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    coordinate: str  # the argument or input field, as a schema coordinate
    bound: int
    code: str
    field: list[str] | None  # the refusal's path; None where none is given (cursors)
    document: str
    variables: Variables
    # The code answered at the bound for a reason other than length; None: accepted.
    at_bound: str | None = None
    make: Callable[[int], str] = "x".__mul__
    names_bound: bool = True
    via: str = ""

    @property
    def id(self) -> str:
        return f"{self.coordinate} via {self.via}" if self.via else self.coordinate


def days_ago(days: float) -> str:
    return iso(now_utc() - timedelta(days=days))


def customer_id_of(length: int) -> str:
    return "cus_" + "0" * (length - 4)


def email_of(length: int) -> str:
    return "a" * (length - len("@example.com")) + "@example.com"


# -- documents --------------------------------------------------------------------------------

ERRORS = "userErrors { code message field eventId }"
INGEST = f"mutation M($input: IngestEventsInput!) {{ ingestEvents(input: $input) {{ {ERRORS} }} }}"
AMEND = f"mutation M($input: AmendEventInput!) {{ amendEvent(input: $input) {{ {ERRORS} }} }}"
DEPRECATE = (
    f"mutation M($input: DeprecateEventInput!) {{ deprecateEvent(input: $input) {{ {ERRORS} }} }}"
)
CREATE_CUSTOMER = (
    f"mutation M($input: CreateCustomerInput!) {{ createCustomer(input: $input) {{ {ERRORS} }} }}"
)
CREATE_METER = (
    f"mutation M($input: CreateMeterInput!) {{ createMeter(input: $input) {{ {ERRORS} }} }}"
)
ARCHIVE_METER = f"mutation M($id: ID!) {{ archiveMeter(input: {{id: $id}}) {{ {ERRORS} }} }}"
UNARCHIVE_METER = f"mutation M($id: ID!) {{ unarchiveMeter(input: {{id: $id}}) {{ {ERRORS} }} }}"
CREATE_BACKFILL = (
    f"mutation M($input: CreateBackfillInput!) {{ createBackfill(input: $input) {{ {ERRORS} }} }}"
)
CLOSE_BACKFILL = f"mutation M($id: ID!) {{ closeBackfill(input: {{id: $id}}) {{ {ERRORS} }} }}"
REVERT_BACKFILL = f"mutation M($id: ID!) {{ revertBackfill(input: {{id: $id}}) {{ {ERRORS} }} }}"

NODE = "query Q($id: ID!) { node(id: $id) { id } }"
METER = "query Q($id: ID!) { meter(id: $id) { id } }"
CUSTOMER = "query Q($id: ID!) { customer(id: $id) { id } }"
BACKFILL = "query Q($id: ID!) { backfill(id: $id) { id } }"
EVENT = "query Q($eventId: String!) { event(eventId: $eventId) { id } }"
PAGING = "$after: String, $before: String"
PAGE = "after: $after, before: $before"
EVENTS = (
    f"query Q($filter: EventFilter, {PAGING}) "
    f"{{ events(filter: $filter, {PAGE}) {{ nodes {{ id }} }} }}"
)
CUSTOMERS = (
    f"query Q($filter: CustomerFilter, {PAGING}) "
    f"{{ customers(filter: $filter, {PAGE}) {{ nodes {{ id }} }} }}"
)
METERS = f"query Q({PAGING}) {{ meters({PAGE}) {{ nodes {{ id }} }} }}"
BACKFILLS = f"query Q({PAGING}) {{ backfills({PAGE}) {{ nodes {{ id }} }} }}"
BACKFILL_EVENTS = (
    f"query Q($id: ID!, {PAGING}) {{ backfill(id: $id) {{ events({PAGE}) {{ nodes {{ id }} }} }} }}"
)
BACKFILL_DEPRECATED_EVENTS = (
    f"query Q($id: ID!, {PAGING}) "
    f"{{ backfill(id: $id) {{ deprecatedEvents({PAGE}) {{ nodes {{ id }} }} }} }}"
)
USAGE = "query Q($input: MeterUsageInput!) { meterUsage(input: $input) { eventCount } }"
VOLUME = "query Q($input: EventVolumeInput!) { eventVolume(input: $input) { total } }"


# -- variables ----------------------------------------------------------------------------------


def event(**fields: Any) -> dict[str, Any]:
    return {
        "eventId": "fresh",
        "eventName": "api.request",
        "externalCustomerId": EXTERNAL_ID,
    } | fields


def amendment(**fields: Any) -> dict[str, Any]:
    """An amendment of e1 that changes its body, so that one accepted is written."""
    return {"input": {"eventId": "e1", "eventName": "api.request", "metadata": {"n": 2}} | fields}


def amending(name: str) -> Variables:
    return lambda world, value: amendment(**{name: value})


def meter_input(**fields: Any) -> dict[str, Any]:
    return {"name": "m2", "eventName": "api.request", "aggregation": {"type": "COUNT"}} | fields


def backfill_input(**fields: Any) -> dict[str, Any]:
    return {
        "timeframeStart": days_ago(3),
        "timeframeEnd": days_ago(2),
        "replaceExistingEvents": False,
    } | fields


def usage_input(world: World, **fields: Any) -> dict[str, Any]:
    return {"input": {"meterId": world.meter_id, "from": days_ago(1), "to": days_ago(0)} | fields}


def volume_input(**fields: Any) -> dict[str, Any]:
    return {"input": {"from": days_ago(1)} | fields}


def clause_with_key(key: str) -> dict[str, Any]:
    return {"clauses": [{"key": key, "operator": "EQUALS", "value": "x"}]}


def clause_with_value(value: str) -> dict[str, Any]:
    return {"clauses": [{"key": "plan", "operator": "EQUALS", "value": value}]}


CLAUSE_KEY = ["clauses", "0", "key"]
CLAUSE_VALUE = ["clauses", "0", "value"]
# Where a filter is given, and the path of its clauses there.
FILTERS: list[tuple[str, str, Callable[[World, dict[str, Any]], dict[str, Any]], list[str]]] = [
    (
        "createMeter",
        CREATE_METER,
        lambda world, tree: {"input": meter_input(filter=tree)},
        ["filter"],
    ),
    (
        "createBackfill",
        CREATE_BACKFILL,
        lambda world, tree: {
            "input": backfill_input(replaceExistingEvents=True, deprecationFilter=tree)
        },
        ["deprecationFilter"],
    ),
    ("events", EVENTS, lambda world, tree: {"filter": {"metadata": tree}}, ["filter", "metadata"]),
    ("meterUsage", USAGE, lambda world, tree: usage_input(world, filter=tree), ["filter"]),
]

CURSORS = [
    ("Query.events", EVENTS, lambda world: {}),
    ("Query.customers", CUSTOMERS, lambda world: {}),
    ("Query.meters", METERS, lambda world: {}),
    ("Query.backfills", BACKFILLS, lambda world: {}),
    ("Backfill.events", BACKFILL_EVENTS, lambda world: {"id": world.backfill_id}),
    (
        "Backfill.deprecatedEvents",
        BACKFILL_DEPRECATED_EVENTS,
        lambda world: {"id": world.backfill_id},
    ),
]


def _id_cases() -> list[Case]:
    """Server ids: 40 characters at most (db.rules.bounds.MAX_SERVER_ID_LENGTH)."""
    invalid = "INVALID_INPUT"
    return [
        Case("Query.node(id:)", 40, invalid, ["id"], NODE, lambda w, v: {"id": v}),
        Case("Query.meter(id:)", 40, invalid, ["id"], METER, lambda w, v: {"id": v}),
        Case("Query.customer(id:)", 40, invalid, ["id"], CUSTOMER, lambda w, v: {"id": v}),
        Case("Query.backfill(id:)", 40, invalid, ["id"], BACKFILL, lambda w, v: {"id": v}),
        Case(
            "MeterIdInput.id",
            40,
            invalid,
            ["id"],
            ARCHIVE_METER,
            lambda w, v: {"id": v},
            at_bound="METER_NOT_FOUND",
            via="archiveMeter",
        ),
        Case(
            "MeterIdInput.id",
            40,
            invalid,
            ["id"],
            UNARCHIVE_METER,
            lambda w, v: {"id": v},
            at_bound="METER_NOT_FOUND",
            via="unarchiveMeter",
        ),
        Case(
            "BackfillIdInput.id",
            40,
            invalid,
            ["id"],
            CLOSE_BACKFILL,
            lambda w, v: {"id": v},
            at_bound="BACKFILL_NOT_FOUND",
            via="closeBackfill",
        ),
        Case(
            "BackfillIdInput.id",
            40,
            invalid,
            ["id"],
            REVERT_BACKFILL,
            lambda w, v: {"id": v},
            at_bound="BACKFILL_NOT_FOUND",
            via="revertBackfill",
        ),
        Case(
            "IngestEventsInput.backfillId",
            40,
            invalid,
            ["backfillId"],
            INGEST,
            lambda w, v: {"input": {"backfillId": v, "events": [event(timestamp=days_ago(9.5))]}},
            at_bound="BACKFILL_NOT_FOUND",
        ),
        Case(
            "EventFilter.meterId",
            40,
            invalid,
            ["filter", "meterId"],
            EVENTS,
            lambda w, v: {"filter": {"meterId": v}},
            at_bound="METER_NOT_FOUND",
        ),
        Case(
            "EventFilter.backfillId",
            40,
            invalid,
            ["filter", "backfillId"],
            EVENTS,
            lambda w, v: {"filter": {"backfillId": v}},
            at_bound="BACKFILL_NOT_FOUND",
        ),
        Case(
            "MeterUsageInput.meterId",
            40,
            invalid,
            ["meterId"],
            USAGE,
            lambda w, v: usage_input(w, meterId=v),
            at_bound="METER_NOT_FOUND",
        ),
    ]


def _customer_reference_cases() -> list[Case]:
    """customerId (40) and externalCustomerId (255, I4) wherever an event's customer is named."""
    code = "CUSTOMER_REFERENCE_INVALID"
    return [
        Case(
            "EventInput.customerId",
            40,
            code,
            ["events", "0", "customerId"],
            INGEST,
            lambda w, v: {"input": {"events": [event(externalCustomerId=None, customerId=v)]}},
            at_bound="CUSTOMER_NOT_FOUND",
            make=customer_id_of,
        ),
        Case(
            "EventInput.externalCustomerId",
            255,
            code,
            ["events", "0", "externalCustomerId"],
            INGEST,
            lambda w, v: {"input": {"events": [event(externalCustomerId=v)]}},
        ),
        Case(
            "AmendEventInput.customerId",
            40,
            code,
            ["customerId"],
            AMEND,
            amending("customerId"),
            at_bound="CUSTOMER_MISMATCH",
            make=customer_id_of,
        ),
        Case(
            "AmendEventInput.externalCustomerId",
            255,
            code,
            ["externalCustomerId"],
            AMEND,
            amending("externalCustomerId"),
            make="a".__mul__,
        ),
        Case(
            "CreateBackfillInput.customerId",
            40,
            code,
            ["customerId"],
            CREATE_BACKFILL,
            lambda w, v: {"input": backfill_input(customerId=v)},
            at_bound="CUSTOMER_NOT_FOUND",
            make=customer_id_of,
        ),
        Case(
            "CreateBackfillInput.externalCustomerId",
            255,
            code,
            ["externalCustomerId"],
            CREATE_BACKFILL,
            lambda w, v: {"input": backfill_input(externalCustomerId=v)},
        ),
        Case(
            "EventFilter.customerId",
            40,
            code,
            ["filter", "customerId"],
            EVENTS,
            lambda w, v: {"filter": {"customerId": v}},
            make=customer_id_of,
        ),
        Case(
            "EventFilter.externalCustomerId",
            255,
            code,
            ["filter", "externalCustomerId"],
            EVENTS,
            lambda w, v: {"filter": {"externalCustomerId": v}},
        ),
        Case(
            "EventVolumeInput.customerId",
            40,
            code,
            ["customerId"],
            VOLUME,
            lambda w, v: volume_input(customerId=v),
            at_bound="CUSTOMER_NOT_FOUND",
            make=customer_id_of,
        ),
        Case(
            "MeterUsageInput.customerIds",
            40,
            code,
            ["customerIds", "0"],
            USAGE,
            lambda w, v: usage_input(w, customerIds=[v]),
            at_bound="CUSTOMER_NOT_FOUND",
            make=customer_id_of,
        ),
        Case(
            "MeterUsageInput.externalCustomerIds",
            255,
            code,
            ["externalCustomerIds", "0"],
            USAGE,
            lambda w, v: usage_input(w, externalCustomerIds=[v]),
        ),
    ]


def _event_cases() -> list[Case]:
    """eventId (I2), eventName (I3), metadata (I6) and reason (C1, C2)."""
    event_id, event_name = "EVENT_ID_INVALID", "EVENT_NAME_INVALID"
    reason = "REASON_TOO_LONG"
    return [
        Case(
            "EventInput.eventId",
            255,
            event_id,
            ["events", "0", "eventId"],
            INGEST,
            lambda w, v: {"input": {"events": [event(eventId=v)]}},
        ),
        Case(
            "EventInput.eventName",
            255,
            event_name,
            ["events", "0", "eventName"],
            INGEST,
            lambda w, v: {"input": {"events": [event(eventName=v)]}},
        ),
        Case(
            "EventInput.metadata",
            100,
            "METADATA_KEY_INVALID",
            ["events", "0", "metadata", "k" * 100],
            INGEST,
            lambda w, v: {"input": {"events": [event(metadata={v: 1})]}},
            make="k".__mul__,
            via="a key",
        ),
        Case(
            "EventInput.metadata",
            500,
            "METADATA_VALUE_TOO_LONG",
            ["events", "0", "metadata", "plan"],
            INGEST,
            lambda w, v: {"input": {"events": [event(metadata={"plan": v})]}},
            via="a value",
        ),
        Case(
            "AmendEventInput.eventId",
            255,
            event_id,
            ["eventId"],
            AMEND,
            amending("eventId"),
            make="e".__mul__,
        ),
        Case(
            "AmendEventInput.eventName",
            255,
            event_name,
            ["eventName"],
            AMEND,
            amending("eventName"),
        ),
        Case(
            "AmendEventInput.metadata",
            100,
            "METADATA_KEY_INVALID",
            ["metadata", "k" * 100],
            AMEND,
            lambda w, v: amendment(metadata={v: 1}),
            make="k".__mul__,
            via="a key",
        ),
        Case(
            "AmendEventInput.metadata",
            500,
            "METADATA_VALUE_TOO_LONG",
            ["metadata", "plan"],
            AMEND,
            lambda w, v: amendment(metadata={"plan": v}),
            via="a value",
        ),
        Case("AmendEventInput.reason", 1000, reason, ["reason"], AMEND, amending("reason")),
        Case(
            "DeprecateEventInput.eventId",
            255,
            event_id,
            ["eventId"],
            DEPRECATE,
            lambda w, v: {"input": {"eventId": v}},
            make="e".__mul__,
        ),
        Case(
            "DeprecateEventInput.reason",
            1000,
            reason,
            ["reason"],
            DEPRECATE,
            lambda w, v: {"input": {"eventId": "e1", "reason": v}},
        ),
        Case(
            "Query.event(eventId:)",
            255,
            event_id,
            ["eventId"],
            EVENT,
            lambda w, v: {"eventId": v},
            make="e".__mul__,
        ),
        Case(
            "EventFilter.eventIds",
            255,
            event_id,
            ["filter", "eventIds", "0"],
            EVENTS,
            lambda w, v: {"filter": {"eventIds": [v]}},
            make="e".__mul__,
        ),
        Case(
            "EventFilter.eventName",
            255,
            event_name,
            ["filter", "eventName"],
            EVENTS,
            lambda w, v: {"filter": {"eventName": v}},
        ),
        Case(
            "EventVolumeInput.eventName",
            255,
            event_name,
            ["eventName"],
            VOLUME,
            lambda w, v: volume_input(eventName=v),
        ),
    ]


def _customer_and_meter_cases() -> list[Case]:
    """createCustomer (§6) and createMeter (M1) fields, and the customers filter."""
    invalid = "INVALID_INPUT"
    return [
        Case(
            "CreateCustomerInput.externalId",
            255,
            invalid,
            ["externalId"],
            CREATE_CUSTOMER,
            lambda w, v: {"input": {"externalId": v}},
        ),
        Case(
            "CreateCustomerInput.name",
            255,
            invalid,
            ["name"],
            CREATE_CUSTOMER,
            lambda w, v: {"input": {"name": v}},
        ),
        Case(
            "CreateCustomerInput.email",
            320,
            invalid,
            ["email"],
            CREATE_CUSTOMER,
            lambda w, v: {"input": {"email": v}},
            make=email_of,
        ),
        Case(
            "CustomerFilter.externalId",
            255,
            invalid,
            ["filter", "externalId"],
            CUSTOMERS,
            lambda w, v: {"filter": {"externalId": v}},
        ),
        Case(
            "CreateMeterInput.name",
            255,
            invalid,
            ["name"],
            CREATE_METER,
            lambda w, v: {"input": meter_input(name=v)},
        ),
        Case(
            "CreateMeterInput.description",
            2000,
            invalid,
            ["description"],
            CREATE_METER,
            lambda w, v: {"input": meter_input(description=v)},
        ),
        Case(
            "CreateMeterInput.eventName",
            255,
            "EVENT_NAME_INVALID",
            ["eventName"],
            CREATE_METER,
            lambda w, v: {"input": meter_input(eventName=v)},
        ),
        Case(
            "CreateMeterInput.measurementUnit",
            100,
            invalid,
            ["measurementUnit"],
            CREATE_METER,
            lambda w, v: {"input": meter_input(measurementUnit=v)},
        ),
        Case(
            "CreateMeterInput.dimensions",
            100,
            invalid,
            ["dimensions", "0"],
            CREATE_METER,
            lambda w, v: {"input": meter_input(dimensions=[v])},
        ),
        Case(
            "MeterAggregationInput.key",
            100,
            "AGGREGATION_INVALID",
            ["aggregation", "key"],
            CREATE_METER,
            lambda w, v: {"input": meter_input(aggregation={"type": "SUM", "key": v})},
        ),
    ]


def _usage_cases() -> list[Case]:
    """timeZone (U5) and groupBy (U6) of meterUsage and eventVolume."""
    zone = "TIME_ZONE_INVALID"
    return [
        # No name of 100 characters is an IANA zone: at the bound the answer is that it is
        # not a zone, beyond it that it is too long.
        Case(
            "MeterUsageInput.timeZone",
            100,
            zone,
            ["timeZone"],
            USAGE,
            lambda w, v: usage_input(w, timeZone=v),
            at_bound=zone,
        ),
        Case(
            "EventVolumeInput.timeZone",
            100,
            zone,
            ["timeZone"],
            VOLUME,
            lambda w, v: volume_input(timeZone=v),
            at_bound=zone,
        ),
        Case(
            "MeterUsageInput.groupBy",
            100,
            "GROUP_BY_INVALID",
            ["groupBy", "0"],
            USAGE,
            lambda w, v: usage_input(w, groupBy=[v]),
        ),
    ]


def _filter_cases() -> list[Case]:
    """A clause's key (M3, 100) and string value (500, a metadata string's bound)."""
    cases = []
    for via, document, given, path in FILTERS:
        cases += [
            Case(
                "FilterClauseInput.key",
                100,
                "FILTER_INVALID",
                [*path, *CLAUSE_KEY],
                document,
                lambda w, v, given=given: given(w, clause_with_key(v)),  # type: ignore[misc]
                via=via,
            ),
            Case(
                "FilterClauseInput.value",
                500,
                "FILTER_INVALID",
                [*path, *CLAUSE_VALUE],
                document,
                lambda w, v, given=given: given(w, clause_with_value(v)),  # type: ignore[misc]
                via=via,
            ),
        ]
    return cases


def _cursor_cases() -> list[Case]:
    """after and before of every connection: MAX_CURSOR_LENGTH, checked before decoding.

    No string of exactly that length is a cursor the server issued, so the one at the
    bound is refused as not a cursor; what counts is that a longer one is refused before
    it is decoded and never echoed whole. db.pagination gives these errors no path.
    """
    return [
        Case(
            f"{field}({name}:)",
            MAX_CURSOR_LENGTH,
            "INVALID_CURSOR",
            None,
            document,
            lambda w, v, name=name, fixed=fixed: fixed(w) | {name: v},  # type: ignore[misc]
            at_bound="INVALID_CURSOR",
            names_bound=False,
        )
        for field, document, fixed in CURSORS
        for name in ("after", "before")
    ]


CASES = [
    *_id_cases(),
    *_customer_reference_cases(),
    *_event_cases(),
    *_customer_and_meter_cases(),
    *_usage_cases(),
    *_filter_cases(),
    *_cursor_cases(),
]


# -- the schema's string arguments ------------------------------------------------------------

TEXT_TYPES = {"String", "ID", "JSON"}


def string_arguments() -> set[str]:
    """The coordinate of every argument and input field a client sends text in."""
    schema = graphql.build_schema(build_schema().as_str())
    found: set[str] = set()
    for type_name, named in schema.type_map.items():
        if type_name.startswith("__"):
            continue
        if isinstance(named, graphql.GraphQLInputObjectType):
            found |= {
                f"{type_name}.{name}"
                for name, field in named.fields.items()
                if graphql.get_named_type(field.type).name in TEXT_TYPES
            }
        elif isinstance(named, graphql.GraphQLObjectType | graphql.GraphQLInterfaceType):
            found |= {
                f"{type_name}.{field_name}({name}:)"
                for field_name, field in named.fields.items()
                for name, argument in field.args.items()
                if graphql.get_named_type(argument.type).name in TEXT_TYPES
            }
    return found


def test_every_string_argument_has_a_bound() -> None:
    inventory = {case.coordinate for case in CASES}
    assert string_arguments() - inventory == set(), (
        "These arguments take text without a bound: add a rule and an entry to CASES."
    )
    assert inventory - string_arguments() == set(), "CASES names arguments the schema lacks."


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


# -- the world each case runs in --------------------------------------------------------------


@pytest_asyncio.fixture
async def world(api: GraphQLClient, database: Database) -> World:
    customer = await create_customer(api, externalId=EXTERNAL_ID)
    payload = await ingest(
        api,
        [
            event_input("e1", external_customer_id=EXTERNAL_ID),
            event_input(LONG_EVENT_ID, external_customer_id=EXTERNAL_ID),
        ],
    )
    assert payload["userErrors"] == [], payload
    meter = await api.data(
        "mutation M($input: CreateMeterInput!) "
        "{ createMeter(input: $input) { meter { id } userErrors { code } } }",
        {"input": meter_input(name="requests")},
    )
    backfill = await api.data(
        "mutation M($input: CreateBackfillInput!) "
        "{ createBackfill(input: $input) { backfill { id } userErrors { code } } }",
        {"input": backfill_input(timeframeStart=days_ago(10), timeframeEnd=days_ago(9))},
    )
    return World(
        api,
        database,
        customer["id"],
        meter["createMeter"]["meter"]["id"],
        backfill["createBackfill"]["backfill"]["id"],
    )


@dataclass(frozen=True)
class Refusal:
    code: str
    field: list[str] | None
    message: str
    event_id: str | None = None


async def send(world: World, case: Case, value: str) -> tuple[list[Refusal], int]:
    """What the API answered to the case's request with `value`: its refusals (none when
    accepted), and the size of the answer in bytes."""
    response = await world.api.post(case.document, case.variables(world, value))
    size = len(response.content)
    body = response.json()
    if "errors" in body:
        refusals = []
        for error in body["errors"]:
            extensions = error["extensions"]
            assert extensions["code"] == "BAD_USER_INPUT", str(body)[:2000]
            refusals.append(
                Refusal(extensions["reason"], extensions.get("field"), error["message"])
            )
        return refusals, size
    [payload] = body["data"].values()
    if isinstance(payload, dict) and "userErrors" in payload:
        return [
            Refusal(error["code"], error["field"], error["message"], error["eventId"])
            for error in payload["userErrors"]
        ], size
    return [], size


async def snapshot(database: Database) -> dict[str, list[str]]:
    """Every row of every table, to show that a refused request wrote nothing."""
    async with database.session() as session:
        return {
            table.name: sorted(repr(tuple(row)) for row in await session.execute(sa.select(table)))
            for table in metadata.sorted_tables
        }


@on_both_databases
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_over_the_bound_is_refused_and_nothing_is_written_at_the_bound_it_is_not(
    world: World, case: Case
) -> None:
    # Given the stored customer, events, meter and backfill
    before = await snapshot(world.database)

    # When the argument is one character longer than its bound, or two megabytes long
    over, _ = await send(world, case, case.make(case.bound + 1))
    huge, size = await send(world, case, case.make(HUGE))

    # Then it alone is refused, with its code and path, nothing is written, and the
    # answer to the megabytes is a few hundred bytes
    assert [(refusal.code, refusal.field) for refusal in over] == [(case.code, case.field)]
    assert [(refusal.code, refusal.field) for refusal in huge] == [(case.code, case.field)]
    if case.names_bound:
        assert str(case.bound) in over[0].message
    assert size < SMALL_ANSWER
    assert await snapshot(world.database) == before

    # When it is exactly as long as its bound
    at_bound, _ = await send(world, case, case.make(case.bound))

    # Then it is accepted, or refused for another reason than its length
    if case.at_bound is None:
        assert at_bound == []
    else:
        assert [refusal.code for refusal in at_bound] == [case.at_bound]
        assert f"at most {case.bound} characters" not in at_bound[0].message


# -- the issue as reported ----------------------------------------------------------------------


@on_both_databases
async def test_a_seven_mebibyte_reason_is_refused_not_stored(world: World) -> None:
    before = await snapshot(world.database)
    reason = "r" * (7 * 1024 * 1024)

    for document, variables in (
        (AMEND, amendment(reason=reason)),
        (DEPRECATE, {"input": {"eventId": "e1", "reason": reason}}),
    ):
        response = await world.api.post(document, variables)
        [payload] = response.json()["data"].values()
        assert [(e["code"], e["field"], e["eventId"]) for e in payload["userErrors"]] == [
            ("REASON_TOO_LONG", ["reason"], "e1")
        ]
        assert f"not {len(reason)}" in payload["userErrors"][0]["message"]
        assert len(response.content) < SMALL_ANSWER
    assert await snapshot(world.database) == before


@on_both_databases
async def test_a_two_megabyte_event_id_is_never_echoed(world: World) -> None:
    # The eventId of a userError is the eventId concerned, or null when it is no valid
    # eventId at all: a cut one would name no event.
    event_id = "e" * HUGE
    before = await snapshot(world.database)

    for document, variables in (
        (AMEND, amendment(eventId=event_id, reason="r" * 1001)),
        (DEPRECATE, {"input": {"eventId": event_id, "reason": "r" * 1001}}),
    ):
        response = await world.api.post(document, variables)
        [payload] = response.json()["data"].values()
        assert [(e["code"], e["field"], e["eventId"]) for e in payload["userErrors"]] == [
            ("EVENT_ID_INVALID", ["eventId"], None),
            ("REASON_TOO_LONG", ["reason"], None),
        ]
        assert len(response.content) < SMALL_ANSWER
    response = await world.api.post(INGEST, {"input": {"events": [event(eventId=event_id)] * 2}})
    [payload] = response.json()["data"].values()
    assert [(e["code"], e["field"], e["eventId"]) for e in payload["userErrors"]] == [
        ("EVENT_ID_INVALID", ["events", "0", "eventId"], None),
        ("EVENT_ID_INVALID", ["events", "1", "eventId"], None),
        ("DUPLICATE_EVENT_ID_IN_BATCH", ["events", "1", "eventId"], None),
    ]
    assert len(response.content) < SMALL_ANSWER
    assert await snapshot(world.database) == before


@on_both_databases
@pytest.mark.parametrize(
    ("document", "variables"),
    [
        (VOLUME, {"input": {"from": "x" * HUGE}}),
        (VOLUME, {"input": {"from": days_ago(1), "granularity": "X" * HUGE}}),
        (VOLUME, {"input": {"from": days_ago(1), "x" * HUGE: 1}}),
        ("query Q($first: Int) { events(first: $first) { nodes { id } } }", {"first": "1" * HUGE}),
    ],
    ids=["DateTime", "enum", "unknown field", "Int"],
)
async def test_a_megabyte_of_the_wrong_type_is_answered_in_a_few_hundred_bytes(
    api: GraphQLClient, document: str, variables: dict[str, Any]
) -> None:
    # graphql-core shortens the values its coercion errors repeat (graphql.pyutils.inspect).
    response = await api.post(document, variables)
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert len(response.content) < SMALL_ANSWER
