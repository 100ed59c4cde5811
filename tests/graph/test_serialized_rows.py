"""Nodes written as JSON by PostgreSQL (graph.serialized) answer what the usual path does.

Every test asks the same document twice: over HTTP, where a page of plain nodes comes as
PostgreSQL's JSON text on PostgreSQL, and through `schema.execute` without it, where
every value goes through Python and GraphQL's serializers. Both must give the same JSON
values. On SQLite both are the usual path; the spacing of PostgreSQL's JSON in the body
tells which path was taken.
"""

import json
import random
from typing import Any

import orjson
import pytest

import graph.serialized
from db.database import Database
from db.repositories.businesses import BusinessRepository
from db.settings import Settings
from graph.context import RequestContext
from graph.schema import build_schema
from tests.support import GraphQLClient, create_customer, event_input, ingest, now_utc

pytestmark = pytest.mark.asyncio(loop_scope="session")

PLAIN_FIELDS = (
    "id eventId businessId customerId externalCustomerId eventName timestamp metadata"
    " ingestedAt deprecated deprecatedAt deprecationReason revision __typename"
)

# Every plain field, some twice under aliases, in an order of its own.
EVERY_FIELD = f"""
query Every($first: Int, $after: String, $last: Int, $before: String,
            $filter: EventFilter, $orderBy: EventOrder! = TIMESTAMP_DESC) {{
  events(first: $first, after: $after, last: $last, before: $before, filter: $filter,
         orderBy: $orderBy) {{
    totalCount
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    nodes {{ revision when: timestamp {PLAIN_FIELDS} kind: __typename data: metadata }}
  }}
}}
"""

# Metadata that tells a JSON writer from another: escapes, non-ASCII, number spellings.
ADVERSARIAL_METADATA: list[dict[str, Any]] = [
    {
        "quote": 'say "hi"',
        "backslash": "C:\\path\\to",
        "controls": "line\nbreak\ttab\r\x01\x08\x0c\x1f\x7f",
        "separators": "\u2028\u2029",
        "unicode": "é ✓ 𝄞 😀 日本語",
        'key "quoted"': "value",
        "ключ": "значение",
        "with space": "x",
        "slash": "</script>",
    },
    {
        "zero": 0,
        "minus_one": -1,
        "largest": 2**63 - 1,
        "smallest": -(2**63),
        "half": 1.5,
        "tenth": 0.1,
        "tiny": 1e-7,
        "huge": 1e16,
        "huger": 1.5e16,
        "max_float": 1.7976931348623157e308,
        "min_subnormal": 5e-324,
        "negative_zero": -0.0,
        "long_fraction": 123456789.12345679,
        "one_point_zero": 1.0,
        "yes": True,
        "no": False,
    },
    {"a": 1, "bb": 2, "c": 3, "aa": 4, "b": 5, "ccc": 6},
]


def random_metadata(rng: random.Random) -> dict[str, Any]:
    characters = 'abcXYZ019 _-"\\\n\té✓😀\u0001\u007f'
    document: dict[str, Any] = {}
    for _ in range(rng.randint(0, 8)):
        key = "".join(rng.choice(characters) for _ in range(rng.randint(1, 12)))
        kind = rng.randrange(5)
        if kind == 0:
            document[key] = "".join(rng.choice(characters) for _ in range(rng.randint(0, 30)))
        elif kind == 1:
            document[key] = rng.randint(-(2**63), 2**63 - 1)
        elif kind == 2:
            document[key] = rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30)
        elif kind == 3:
            document[key] = rng.random() < 0.5
        else:
            document[key] = rng.randint(-1000, 1000) / 8
    return document


async def usual_path(
    database: Database, settings: Settings, api: GraphQLClient, query: str, variables: Any
) -> Any:
    """The data of `query` through `schema.execute`, every value through Python."""
    async with database.session() as session:
        business = await BusinessRepository(session).get(api.tenant.business_id)
    assert business is not None
    context = RequestContext(database, settings, business)
    try:
        result = await build_schema(settings).execute(
            query, variable_values=variables, context_value=context
        )
    finally:
        await context.close()
    assert not result.errors, result.errors
    return json.loads(orjson.dumps(result.data))


async def both_ways(
    database: Database,
    settings: Settings,
    api: GraphQLClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    serialized: bool,
) -> Any:
    """The data of `query` over HTTP, checked equal to the usual path's; `serialized`:
    whether PostgreSQL is expected to write the nodes (never on SQLite)."""
    response = await api.post(query, variables)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    # PostgreSQL's JSON puts a space around each colon of an object; orjson never does.
    # (An empty page holds no node to tell by.)
    written_by_postgresql = b'" : ' in response.content
    any_nodes = bool(body["data"]["events"].get("nodes"))
    assert written_by_postgresql == (
        serialized and any_nodes and database.dialect_name == "postgresql"
    )
    # Compared as orjson writes them: strict on types (1, 1.0 and true differ) and order
    usual = await usual_path(database, settings, api, query, variables)
    assert orjson.dumps(body["data"]) == orjson.dumps(usual)
    return body["data"]


async def seed_events(api: GraphQLClient) -> list[str]:
    """Events of every kind: by customer id and external id, amended, deprecated."""
    customer = await create_customer(api, externalId="ext-7", name="Seven")
    rng = random.Random(14)
    documents = ADVERSARIAL_METADATA + [random_metadata(rng) for _ in range(40)]
    events = []
    for index, metadata in enumerate(documents):
        by_id = index % 3 == 0
        events.append(
            event_input(
                f"evt-{index:03d}",
                customer_id=customer["id"] if by_id else None,
                external_customer_id="ext-7" if index % 3 == 1 else f"other-{index % 4}",
                event_name="api.request" if index % 2 else "llm.tokens",
                minutes_ago=index * 0.5,
                metadata=metadata,
            )
        )
    payload = await ingest(api, events)
    assert payload["userErrors"] == [], payload["userErrors"]
    amended = await api.data(
        'mutation { amendEvent(input: {eventId: "evt-001", eventName: "llm.tokens",'
        " metadata: {amended: true}}) { userErrors { code message } } }"
    )
    assert amended["amendEvent"]["userErrors"] == []
    deprecated = await api.data(
        'mutation { deprecateEvent(input: {eventId: "evt-003", reason: "sent twice"})'
        " { userErrors { code message } } }"
    )
    assert deprecated["deprecateEvent"]["userErrors"] == []
    return [customer["id"]]


async def test_every_plain_field_reads_the_same_as_the_usual_path(
    api: GraphQLClient, database: Database, settings: Settings
) -> None:
    # Given events with metadata that tells JSON writers apart, amended and deprecated
    await seed_events(api)
    # When all of them are read with every plain field, aliases among them
    data = await both_ways(
        database,
        settings,
        api,
        EVERY_FIELD,
        {"first": 100, "filter": {"includeDeprecated": True}},
        serialized=True,
    )
    # Then both paths gave the same values (both_ways), and these are the events
    nodes = data["events"]["nodes"]
    assert len(nodes) == len(ADVERSARIAL_METADATA) + 40
    by_id = {node["eventId"]: node for node in nodes}
    assert by_id["evt-000"]["metadata"] == ADVERSARIAL_METADATA[0]
    assert by_id["evt-001"]["revision"] == 2
    assert by_id["evt-001"]["data"] == {"amended": True}
    assert by_id["evt-003"]["deprecated"] is True
    assert by_id["evt-003"]["deprecationReason"] == "sent twice"
    # A field selected twice (revision) keeps its first place
    repeated = [name for name in PLAIN_FIELDS.split() if name != "revision"]
    assert list(nodes[0]) == ["revision", "when", *repeated, "kind", "data"]
    assert nodes[0]["kind"] == nodes[0]["__typename"] == "Event"


async def test_pages_cursors_and_filters_read_the_same(
    api: GraphQLClient, database: Database, settings: Settings
) -> None:
    # Given the events and their customer (sent by id and by externalId)
    [customer_id] = await seed_events(api)
    start = (now_utc().replace(microsecond=0)).isoformat()
    arguments: list[dict[str, Any]] = [
        {"first": 7},
        {"first": 7, "orderBy": "TIMESTAMP_ASC"},
        {"last": 5},
        {"first": 10, "filter": {"customerId": customer_id}},
        {"first": 10, "filter": {"eventName": "api.request", "end": start}},
        {"first": 3, "filter": {"externalCustomerId": "ext-7"}},
    ]
    for variables in arguments:
        # When a page is read, then the pages after and before its ends
        page = await both_ways(database, settings, api, EVERY_FIELD, variables, serialized=True)
        info = page["events"]["pageInfo"]
        assert page["events"]["nodes"], variables
        onward = {**variables, "first": 4, "last": None, "after": info["endCursor"]}
        back = {**variables, "first": None, "last": 4, "before": info["startCursor"]}
        for following in (onward, back):
            # Then both paths agree on nodes, cursors, hasNext/PreviousPage and totalCount
            await both_ways(database, settings, api, EVERY_FIELD, following, serialized=True)


@pytest.mark.parametrize(
    "selection",
    [
        "edges { cursor node { eventId metadata } }",
        "nodes { eventId customer { id externalId } }",
        "nodes { eventId revisions { revision } }",
        "nodes { ... on Event { eventId } }",
        "nodes { eventId ...Plain } ",
        "nodes { eventId metadata @include(if: true) }",
        "nodes { eventId } more: nodes { timestamp }",
    ],
)
async def test_selections_beyond_plain_values_take_the_usual_path(
    api: GraphQLClient,
    database: Database,
    settings: Settings,
    selection: str,
) -> None:
    # Given events
    await seed_events(api)
    fragment = "fragment Plain on Event { timestamp }" if "...Plain" in selection else ""
    query = f"query {{ events(first: 5) {{ {selection} }} }} {fragment}"
    # When a selection is asked that PostgreSQL does not write, then it is answered the
    # usual way, with the same data
    data = await both_ways(database, settings, api, query, serialized=False)
    assert data["events"]


async def test_a_page_serialized_for_another_selection_fails_loudly(
    api: GraphQLClient,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given events, and a resolver that would write nodes other than those selected
    await seed_events(api)
    written_for = graph.serialized.serialized_node_fields

    def swapped(*arguments: Any) -> Any:
        fields = written_for(*arguments)
        return None if fields is None else tuple(reversed(fields))

    monkeypatch.setattr("graph.queries.serialized_node_fields", swapped)
    # When a page of nodes is asked for
    response = await api.post("query { events(first: 3) { nodes { eventId timestamp } } }")
    body = response.json()
    if database.dialect_name == "postgresql":
        # Then on PostgreSQL the mismatch is an internal error, not a silently wrong body
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    else:
        # SQLite never writes nodes as JSON: the usual path answers
        assert len(body["data"]["events"]["nodes"]) == 3
