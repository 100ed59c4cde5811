"""A kept point read runs its plan (graph.plans) and answers what graphql-core's way does.

The shape is decided on the document alone (the first tests); over HTTP, each document
is sent more than once: the first request goes Strawberry's way and is kept, the next
ones run the plan where it applies (on PostgreSQL; a spy counts the requests it
answered) and must answer exactly what the first did, and what `schema.execute` answers
with every value through Python.
"""

from typing import Any

import orjson
import pytest
from graphql import GraphQLObjectType, parse, validate
from strawberry.permission import BasePermission

from db.database import Database
from db.pagination import Page
from db.repositories.events import EventRepository
from db.settings import Settings
from graph.context import RequestContext
from graph.internals import graphql_core_schema_of, strawberry_field_of
from graph.plans import EventPlan, EventsPlan, TypenamePlan, query_plan
from graph.prepared import AcceptedQuery, PreparedQueries
from graph.schema import build_schema
from tests.graph.test_prepared_queries import shown
from tests.graph.test_serialized_rows import (
    ADVERSARIAL_METADATA,
    PLAIN_FIELDS,
    seed_events,
    usual_path,
)
from tests.support import GraphQLClient, count_seals

# The shape tests are plain functions; the HTTP ones run on the session's loop.
on_session_loop = pytest.mark.asyncio(loop_scope="session")

EVERY_FIELD = f"""
query One($eventId: String!) {{
  found: event(eventId: $eventId) {{ revision when: timestamp {PLAIN_FIELDS} data: metadata
    eventId kind: __typename }}
}}
"""
OTHER_VARIABLE = "query One($id: String!) { event(eventId: $id) { eventId metadata } }"
LITERAL = 'query One { event(eventId: "evt-002") { eventName eventId } }'

# Fields from fragments, as clients made of components send them: named and inline,
# nested, one spread twice (collected once), a key from a fragment and again beside it.
FRAGMENT_EVENT = f"""
query One($eventId: String!) {{
  found: event(eventId: $eventId) {{ eventId ...Row ... {{ when: timestamp }} ...Row }}
}}
fragment Row on Event {{ {PLAIN_FIELDS} ... on Event {{ kind: __typename }} ...More }}
fragment More on Event {{ when: timestamp data: metadata eventId }}
"""

PLANNED = {
    "variable": EVERY_FIELD,
    "fragments": FRAGMENT_EVENT,
    "a fragment spread": '{ event(eventId: "x") { ...F } } fragment F on Event { eventId }',
    "an inline fragment": '{ event(eventId: "x") { ... on Event { eventId } } }',
    "another variable": OTHER_VARIABLE,
    "literal": LITERAL,
    "anonymous": '{ event(eventId: "x") { eventId } }',
    "one of two operations": 'query A { __typename } query B { event(eventId: "x") { id } }',
}
NOT_PLANNED = {
    "two root fields": '{ event(eventId: "x") { eventId } viewer { id } }',
    "a field with its own resolver": '{ event(eventId: "x") { eventId revisions { revision } } }',
    "an object field": '{ event(eventId: "x") { customer { id } } }',
    "a fragment on an interface": '{ event(eventId: "x") { ... on Node { id } } }',
    "a directive on a spread": (
        '{ event(eventId: "x") { ...F @include(if: true) } } fragment F on Event { eventId }'
    ),
    "a directive in a fragment": (
        '{ event(eventId: "x") { ...F } } fragment F on Event { eventId @skip(if: false) }'
    ),
    "an object field in a fragment": (
        '{ event(eventId: "x") { ...F } } fragment F on Event { customer { id } }'
    ),
    "a root fragment": '{ ... on Query { event(eventId: "x") { eventId } } }',
    "a directive on a leaf": '{ event(eventId: "x") { eventId @include(if: true) } }',
    "a directive on the field": '{ event(eventId: "x") @skip(if: false) { eventId } }',
    "an unused variable": 'query Q($n: Int) { event(eventId: "x") { eventId } }',
    "a default value": 'query Q($e: String! = "x") { event(eventId: $e) { eventId } }',
    "a variable of another type": "query Q($e: ID!) { event(eventId: $e) { eventId } }",
    "another field": "{ viewer { id } }",
    "a mutation": (
        'mutation { deprecateEvent(input: {eventId: "x", reason: "y"}) { userErrors { code } } }'
    ),
}


@pytest.mark.parametrize("name", PLANNED)
def test_the_point_read_shape_gets_a_plan(name: str) -> None:
    document = PLANNED[name]
    operation = "B" if name == "one of two operations" else None
    assert isinstance(query_plan(build_schema(Settings()), parse(document), operation), EventPlan)


@pytest.mark.parametrize("name", NOT_PLANNED)
def test_any_other_shape_goes_graphql_cores_way(name: str) -> None:
    assert query_plan(build_schema(Settings()), parse(NOT_PLANNED[name]), None) is None


def test_the_plan_keeps_the_keys_in_response_order_once_each() -> None:
    plan = query_plan(build_schema(Settings()), parse(EVERY_FIELD), None)
    assert isinstance(plan, EventPlan)
    assert (plan.response_key, plan.variable, plan.event_id) == ("found", "eventId", None)
    keys = [key for key, _ in plan.fields]
    assert keys[:4] == ["revision", "when", "id", "eventId"]
    assert keys[-3:] == ["__typename", "data", "kind"]
    assert len(keys) == len(set(keys)) == 17
    assert dict(plan.fields)["kind"] == ("Event",)


def spy_on_plans(monkeypatch: pytest.MonkeyPatch, plan_class: Any) -> list[str]:
    """The response keys of the requests a plan of `plan_class` answered, in order."""
    answered: list[str] = []
    run = plan_class.run

    async def spy(self: Any, *args: Any) -> Any:
        result = await run(self, *args)
        if result is not None:
            answered.append(self.response_key)
        return result

    monkeypatch.setattr(plan_class, "run", spy)
    return answered


@pytest.fixture
def planned_answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The response keys of the point reads a plan answered."""
    return spy_on_plans(monkeypatch, EventPlan)


async def answers(
    api: GraphQLClient, query: str, variables: dict[str, Any] | None, times: int = 3
) -> tuple[int, str, Any]:
    """The one answer of `times` requests of `query` (every one the same)."""
    payload = {"query": query, "variables": variables}
    seen = []
    for _ in range(times):
        response = await api.http.post(
            "/graphql",
            json=payload,
            headers={**api.tenant.headers, "Accept": "application/graphql-response+json"},
        )
        seen.append(shown(response))
    assert all(answer == seen[0] for answer in seen), seen
    return seen[0]


def test_fragments_are_collected_in_graphql_order_once_each() -> None:
    plan = query_plan(build_schema(Settings()), parse(FRAGMENT_EVENT), None)
    assert isinstance(plan, EventPlan)
    keys = [key for key, _ in plan.fields]
    assert keys[:2] == ["eventId", "id"]
    assert keys[-3:] == ["kind", "when", "data"]
    assert len(keys) == len(set(keys))
    assert dict(plan.fields)["kind"] == ("Event",)


@on_session_loop
@pytest.mark.parametrize("query", [EVERY_FIELD, FRAGMENT_EVENT], ids=["fields", "fragments"])
async def test_every_event_reads_the_same_by_its_plan(
    api: GraphQLClient,
    database: Database,
    settings: Settings,
    planned_answers: list[str],
    query: str,
) -> None:
    # Given events with metadata that tells JSON writers apart, amended and deprecated
    await seed_events(api)
    event_ids = [f"evt-{index:03d}" for index in range(len(ADVERSARIAL_METADATA) + 40)]
    for event_id in event_ids:
        # When each is read three times
        status, _, body = await answers(api, query, {"eventId": event_id})
        # Then every answer is the one graphql-core gives with every value through Python
        assert status == 200
        usual = await usual_path(database, settings, api, query, {"eventId": event_id})
        assert body == orjson.dumps({"data": usual})
        assert orjson.loads(body)["data"]["found"]["eventId"] == event_id
    # And on PostgreSQL the plan gave every answer but the first (which kept the query)
    planned = 3 * len(event_ids) - 1 if database.dialect_name == "postgresql" else 0
    assert planned_answers == ["found"] * planned
    first = orjson.loads(body)["data"]["found"]
    assert first["kind"] == "Event"


@on_session_loop
async def test_literals_misses_and_nulls_read_the_same_by_the_plan(
    api: GraphQLClient, database: Database, planned_answers: list[str]
) -> None:
    await seed_events(api)
    status, _, body = await answers(api, LITERAL, None)
    assert orjson.loads(body) == {
        "data": {"event": {"eventName": "llm.tokens", "eventId": "evt-002"}}
    }
    status, _, body = await answers(api, OTHER_VARIABLE, {"id": "nobody"})
    assert (status, orjson.loads(body)) == (200, {"data": {"event": None}})
    on_postgresql = database.dialect_name == "postgresql"
    assert planned_answers == ["event"] * (4 if on_postgresql else 0)


@on_session_loop
async def test_q1_the_planned_point_read_is_exact_and_returns_deprecated_events(
    api: GraphQLClient, database: Database, planned_answers: list[str]
) -> None:
    # Given events, evt-003 deprecated
    await seed_events(api)
    # When the same document asks, by the plan, for an eventId in another case and for
    # the deprecated event
    status, _, body = await answers(api, EVERY_FIELD, {"eventId": "EVT-001"})
    # Then the eventId matched exactly, case and all: none
    assert (status, orjson.loads(body)) == (200, {"data": {"found": None}})
    status, _, body = await answers(api, EVERY_FIELD, {"eventId": "evt-003"})
    # And the deprecated event is returned, marked so
    found = orjson.loads(body)["data"]["found"]
    assert (found["eventId"], found["deprecated"]) == ("evt-003", True)
    assert found["deprecationReason"] == "sent twice"
    assert len(planned_answers) == (5 if database.dialect_name == "postgresql" else 0)


@on_session_loop
async def test_another_tenants_event_is_not_found_by_the_plan(
    api: GraphQLClient, other_api: GraphQLClient, database: Database, planned_answers: list[str]
) -> None:
    await seed_events(api)
    status, _, body = await answers(other_api, EVERY_FIELD, {"eventId": "evt-001"})
    assert (status, orjson.loads(body)) == (200, {"data": {"found": None}})
    assert len(planned_answers) == (2 if database.dialect_name == "postgresql" else 0)


@on_session_loop
@pytest.mark.parametrize(
    "variables",
    [None, {"eventId": None}, {"eventId": 7}, {"eventId": ["evt-001"]}, {"eventId": {"a": 1}}],
)
async def test_variables_that_are_not_strings_are_refused_by_graphql_core(
    api: GraphQLClient, planned_answers: list[str], variables: dict[str, Any] | None
) -> None:
    status, _, body = await answers(api, EVERY_FIELD, variables)
    assert status == 400
    assert "$eventId" in orjson.loads(body)["errors"][0]["message"]
    assert planned_answers == []


@on_session_loop
async def test_an_event_id_too_long_is_refused_at_its_path_by_the_plan(
    api: GraphQLClient, database: Database, planned_answers: list[str]
) -> None:
    status, _, body = await answers(api, EVERY_FIELD, {"eventId": "x" * 10_000})
    answer = orjson.loads(body)
    assert status == 200
    assert answer["data"] == {"found": None}
    (error,) = answer["errors"]
    assert error["path"] == ["found"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["reason"] == "EVENT_ID_INVALID"
    assert len(planned_answers) == (2 if database.dialect_name == "postgresql" else 0)


@on_session_loop
async def test_a_failing_read_is_placed_at_its_path_by_the_plan(
    api: GraphQLClient,
    database: Database,
    planned_answers: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def failing(*_args: Any) -> Any:
        raise RuntimeError("the read failed")

    monkeypatch.setattr(EventRepository, "get_by_event_id", failing)
    monkeypatch.setattr(EventRepository, "json_by_event_id", failing)
    status, _, body = await answers(api, EVERY_FIELD, {"eventId": "evt-001"})
    answer = orjson.loads(body)
    assert status == 200
    assert answer["data"] == {"found": None}
    (error,) = answer["errors"]
    assert error["path"] == ["found"]
    assert error["locations"] == [{"line": 3, "column": 3}]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "the read failed" not in body.decode()
    assert len(planned_answers) == (2 if database.dialect_name == "postgresql" else 0)


class Nobody(BasePermission):
    message = "nobody may"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


POINT_WITH_METADATA = "query One($e: String!) { event(eventId: $e) { eventId metadata } }"
PAGE_WITH_INFO = "{ events { pageInfo { hasNextPage endCursor } nodes { eventId metadata } } }"


@pytest.mark.parametrize(
    ("type_name", "field_name", "query"),
    [
        ("Query", "event", POINT_WITH_METADATA),
        ("Event", "metadata", POINT_WITH_METADATA),
        ("Query", "events", PAGE_WITH_INFO),
        ("EventConnection", "nodes", PAGE_WITH_INFO),
        ("EventConnection", "pageInfo", PAGE_WITH_INFO),
        ("PageInfo", "hasNextPage", PAGE_WITH_INFO),
        ("PageInfo", "endCursor", PAGE_WITH_INFO),
        ("Event", "metadata", PAGE_WITH_INFO),
    ],
)
def test_a_field_with_a_permission_class_is_never_planned(
    monkeypatch: pytest.MonkeyPatch, type_name: str, field_name: str, query: str
) -> None:
    schema = build_schema(Settings())
    document = parse(query)
    assert query_plan(schema, document, None) is not None
    object_type = graphql_core_schema_of(schema).get_type(type_name)
    assert isinstance(object_type, GraphQLObjectType)
    definition = strawberry_field_of(object_type.fields[field_name])
    monkeypatch.setattr(definition, "permission_classes", [Nobody])
    assert query_plan(schema, document, None) is None


def test_a_point_read_beyond_the_response_bound_is_kept_without_a_plan() -> None:
    document = parse(EVERY_FIELD)
    schema = build_schema(Settings())
    # The setting's floor (1000) lets every point read through; below it, the bound holds.
    for max_response_cost, planned in ((10, False), (1000, True)):
        settings = Settings().model_copy(update={"max_response_cost": max_response_cost})
        prepared = PreparedQueries(schema, settings)
        prepared.remember(EVERY_FIELD, None, AcceptedQuery(document))
        kept = prepared.runnable(EVERY_FIELD, None, {"eventId": "e"})
        if planned:
            assert kept is not None
            assert kept.plan is not None
        else:
            assert kept is None  # refused at each request, by the bound Strawberry applies


# --- The root's typename --------------------------------------------------------------

TYPENAME_PLANNED = {
    "bare": ("{ __typename }", ("__typename",)),
    "named": ("query Ping { __typename }", ("__typename",)),
    "under keys": (
        "{ a: __typename __typename b: __typename a: __typename }",
        ("a", "__typename", "b"),
    ),
    "from fragments on Query": (
        "{ ...Root ... on Query { kind: __typename } ...Root }"
        " fragment Root on Query { __typename }",
        ("__typename", "kind"),
    ),
}
# Each a document validation accepts: only those are ever kept.
TYPENAME_NOT_PLANNED = {
    "beside a field": "{ __typename viewer { id } }",
    "beside a point read": '{ __typename event(eventId: "x") { eventId } }',
    "a directive": "{ __typename @include(if: true) }",
    "a directive with a variable": "query Q($on: Boolean!) { __typename @skip(if: $on) }",
    "a directive in a fragment": (
        "{ ...Root } fragment Root on Query { __typename @skip(if: false) }"
    ),
    "a mutation": "mutation { __typename }",
}


@pytest.mark.parametrize("name", TYPENAME_PLANNED)
def test_the_roots_typename_alone_gets_a_plan(name: str) -> None:
    document, keys = TYPENAME_PLANNED[name]
    schema = build_schema(Settings())
    assert validate(graphql_core_schema_of(schema), parse(document)) == []
    plan = query_plan(schema, parse(document), None)
    assert isinstance(plan, TypenamePlan)
    assert (plan.keys, plan.type_name) == (keys, "Query")


@pytest.mark.parametrize("name", TYPENAME_NOT_PLANNED)
def test_a_typename_with_anything_else_goes_graphql_cores_way(name: str) -> None:
    schema, document = build_schema(Settings()), parse(TYPENAME_NOT_PLANNED[name])
    assert validate(graphql_core_schema_of(schema), document) == []
    assert query_plan(schema, document, None) is None


@pytest.fixture
def planned_typenames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The keys of the requests a TypenamePlan answered, in order."""
    answered: list[tuple[str, ...]] = []
    run = TypenamePlan.run

    async def spy(self: TypenamePlan, *args: Any) -> Any:
        answered.append(self.keys)
        return await run(self, *args)

    monkeypatch.setattr(TypenamePlan, "run", spy)
    return answered


@on_session_loop
@pytest.mark.parametrize("name", TYPENAME_PLANNED)
async def test_the_roots_typename_reads_the_same_by_its_plan(
    api: GraphQLClient,
    database: Database,
    settings: Settings,
    planned_typenames: list[tuple[str, ...]],
    name: str,
) -> None:
    document, keys = TYPENAME_PLANNED[name]
    # When it is asked three times (the first keeps the document)
    status, _, body = await answers(api, document, None)
    # Then every answer is graphql-core's, on either database: the plan reads nothing
    assert status == 200, body
    assert body == orjson.dumps({"data": await usual_path(database, settings, api, document, None)})
    assert orjson.loads(body) == {"data": dict.fromkeys(keys, "Query")}
    assert planned_typenames == [keys, keys]


TWO_OPERATIONS = "query Ping { __typename } query Latest { events(first: 2) { nodes { eventId } } }"


@on_session_loop
async def test_the_typename_plan_answers_only_the_operation_it_was_made_for(
    api: GraphQLClient, planned_typenames: list[tuple[str, ...]]
) -> None:
    await seed_events(api)
    # When each operation of one document is asked three times, in turn
    for _ in range(3):
        for name in ("Ping", "Latest"):
            response = await api.http.post(
                "/graphql",
                json={"query": TWO_OPERATIONS, "operationName": name},
                headers=api.tenant.headers,
            )
            assert response.status_code == 200, response.text
            data = response.json()["data"]
            # Then each gets its own answer
            if name == "Ping":
                assert data == {"__typename": "Query"}
            else:
                assert list(data) == ["events"]
                assert len(data["events"]["nodes"]) == 2
    # And the plan answered Ping's later requests only
    assert planned_typenames == [("__typename",)] * 2


@on_session_loop
async def test_t1_a_planned_typename_still_needs_a_valid_key(
    api: GraphQLClient, planned_typenames: list[tuple[str, ...]]
) -> None:
    # Given `{ __typename }` kept and answered by its plan
    await answers(api, "{ __typename }", None)
    assert len(planned_typenames) == 2
    # When it is sent without a key, and with a key that is not one
    for headers in ({}, {"Authorization": "Bearer ue_not_a_key"}):
        response = await api.http.post(
            "/graphql", json={"query": "{ __typename }"}, headers=headers
        )
        # Then it is refused before any plan runs
        assert response.status_code == 401, response.text
        assert "data" not in response.json()
    assert len(planned_typenames) == 2


# --- Pages of events ------------------------------------------------------------------

LIST = f"""
query List($first: Int, $after: String, $last: Int, $before: String, $filter: EventFilter,
           $orderBy: EventOrder! = TIMESTAMP_DESC) {{
  page: events(first: $first, after: $after, last: $last, before: $before, filter: $filter,
               orderBy: $orderBy) {{
    info: pageInfo {{ hasNextPage hasPreviousPage infoKind: __typename startCursor endCursor
                     more: hasNextPage }}
    connectionKind: __typename
    nodes {{ {PLAIN_FIELDS} when: timestamp kind: __typename }}
    __typename
  }}
}}
"""
# What Apollo Client and urql send: `__typename` added to every selection set.
APOLLO_LIST = """
query List($first: Int) {
  events(first: $first) {
    nodes { eventId eventName __typename }
    pageInfo { endCursor hasNextPage __typename }
    __typename
  }
}
"""
# As Relay asks for a page: edges with their cursors; here with every variation of keys.
EDGES_LIST = f"""
query List($first: Int, $after: String, $last: Int, $before: String, $filter: EventFilter,
           $orderBy: EventOrder! = TIMESTAMP_DESC) {{
  page: events(first: $first, after: $after, last: $last, before: $before, filter: $filter,
               orderBy: $orderBy) {{
    info: pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    connectionKind: __typename
    edges {{
      at: cursor
      node {{ {PLAIN_FIELDS} when: timestamp kind: __typename }}
      edgeKind: __typename
      cursor
      at: cursor
    }}
  }}
}}
"""
RELAY_LIST = """
query List($first: Int, $after: String) {
  events(first: $first, after: $after) {
    edges { cursor node { eventId eventName timestamp } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
# The same page from fragments at every level, merged with fields beside them.
FRAGMENT_LIST = f"""
query List($first: Int, $after: String, $last: Int, $before: String, $filter: EventFilter,
           $orderBy: EventOrder! = TIMESTAMP_DESC) {{
  page: events(first: $first, after: $after, last: $last, before: $before, filter: $filter,
               orderBy: $orderBy) {{
    ...Page
    info: pageInfo {{ hasPreviousPage }}
    edges {{ ... {{ at: cursor }} node {{ eventId ...Row }} }}
    __typename
  }}
}}
fragment Page on EventConnection {{
  info: pageInfo {{ ...Info hasNextPage }}
  edges {{ node {{ ...Row eventName }} __typename ...Edge }}
  ...Kind
}}
fragment Kind on EventConnection {{ __typename kind: __typename }}
fragment Info on PageInfo {{ startCursor endCursor hasNextPage ... {{ more: hasNextPage }} }}
fragment Edge on EventEdge {{ cursor at: cursor }}
fragment Row on Event {{ {PLAIN_FIELDS} ... on Event {{ when: timestamp }} ...Kinds }}
fragment Kinds on Event {{ kind: __typename eventId }}
"""
LIST_PLANNED = {
    "nodes only": "{ events { nodes { eventId } } }",
    "literal arguments": '{ events(first: 2, filter: {eventName: "x"}) { nodes { eventId } } }',
    "page info first": "{ events { pageInfo { endCursor } nodes { eventId } } }",
    "every argument": LIST,
    "a connection typename": "{ events { __typename nodes { eventId } } }",
    "as Apollo Client sends it": APOLLO_LIST,
    "edges as Relay asks for them": RELAY_LIST,
    "edges with every variation": EDGES_LIST,
    "edges' nodes alone": "{ events { edges { node { eventId } } } }",
    "fragments everywhere": FRAGMENT_LIST,
    "a connection typename twice": "{ events { __typename __typename nodes { eventId } } }",
    "a fragment on the connection": (
        "{ events { ...P } } fragment P on EventConnection { nodes { eventId } }"
    ),
    "a fragment in an edge": (
        "{ events { edges { ...E } } } fragment E on EventEdge { node { eventId } }"
    ),
    "nodes twice under one key": "{ events { nodes { eventId } nodes { eventName } } }",
    "a node twice under one key": ("{ events { edges { node { eventId } node { eventName } } } }"),
}
LIST_NOT_PLANNED = {
    "a total count": "{ events { totalCount nodes { eventId } } }",
    "totalCount from a fragment": (
        "{ events { nodes { id } ...C } } fragment C on EventConnection { totalCount }"
    ),
    "edges without nodes": "{ events { edges { cursor } } }",
    "edges beside nodes": "{ events { nodes { eventId } edges { node { eventId } } } }",
    "edges twice": "{ events { a: edges { cursor } b: edges { node { eventId } } } }",
    "a node under two keys": "{ events { edges { a: node { eventId } b: node { eventId } } } }",
    "an object field in an edge's node": "{ events { edges { node { customer { id } } } } }",
    "a cursor with a directive": (
        "{ events { edges { cursor @include(if: true) node { eventId } } } }"
    ),
    "a directive on a fragment in edges": (
        "{ events { edges { ...E @skip(if: false) } } } fragment E on EventEdge { node { id } }"
    ),
    "page info alone": "{ events { pageInfo { endCursor } } }",
    "nodes twice": "{ events { a: nodes { eventId } b: nodes { eventName } } }",
    "an object node field": "{ events { nodes { eventId customer { id } } } }",
    "a fragment on an interface in nodes": "{ events { nodes { ... on Node { id } } } }",
    "a page info typename with a directive": (
        "{ events { nodes { eventId } pageInfo { __typename @skip(if: false) } } }"
    ),
    "a directive on nodes": "{ events { nodes @include(if: true) { eventId } } }",
}


@pytest.mark.parametrize("name", LIST_PLANNED)
def test_pages_of_plain_nodes_get_a_plan(name: str) -> None:
    plan = query_plan(build_schema(Settings()), parse(LIST_PLANNED[name]), None)
    assert isinstance(plan, EventsPlan)


@pytest.mark.parametrize("name", LIST_NOT_PLANNED)
def test_any_other_page_goes_graphql_cores_way(name: str) -> None:
    assert query_plan(build_schema(Settings()), parse(LIST_NOT_PLANNED[name]), None) is None


def test_a_page_plan_keeps_the_selection_order_and_keys() -> None:
    plan = query_plan(build_schema(Settings()), parse(LIST), None)
    assert isinstance(plan, EventsPlan)
    assert (plan.response_key, plan.selections) == (
        "page",
        (
            ("info", "pageInfo"),
            ("connectionKind", "__typename"),
            ("nodes", "nodes"),
            ("__typename", "__typename"),
        ),
    )
    assert plan.typename == "EventConnection"
    assert [field.key for field in plan.page_info] == [
        "hasNextPage",
        "hasPreviousPage",
        "infoKind",
        "startCursor",
        "endCursor",
        "more",
    ]
    assert [field.nullable for field in plan.page_info] == [False, False, False, True, True, False]
    assert [field.constant for field in plan.page_info][1:3] == [None, "PageInfo"]
    assert [key for key, _ in plan.fields][-2:] == ["when", "kind"]


def test_an_edges_plan_keeps_the_edge_fields_in_order_once_each() -> None:
    plan = query_plan(build_schema(Settings()), parse(EDGES_LIST), None)
    assert isinstance(plan, EventsPlan)
    assert plan.selections == (
        ("info", "pageInfo"),
        ("connectionKind", "__typename"),
        ("edges", "edges"),
    )
    assert [(field.key, field.name, field.constant) for field in plan.edge_fields] == [
        ("at", "cursor", None),
        ("node", "node", None),
        ("edgeKind", "__typename", "EventEdge"),
        ("cursor", "cursor", None),
    ]
    assert [key for key, _ in plan.fields][-2:] == ["when", "kind"]


@pytest.fixture
def planned_pages(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The response keys of the pages a plan answered."""
    return spy_on_plans(monkeypatch, EventsPlan)


@on_session_loop
@pytest.mark.parametrize(
    "query", [LIST, EDGES_LIST, FRAGMENT_LIST], ids=["nodes", "edges", "fragments"]
)
async def test_every_page_reads_the_same_by_its_plan(
    api: GraphQLClient,
    database: Database,
    settings: Settings,
    planned_pages: list[str],
    query: str,
) -> None:
    # Given events of every kind
    (customer_id,) = await seed_events(api)
    first_page = await api.data(query, {"first": 7})
    after = first_page["page"]["info"]["endCursor"]
    before = first_page["page"]["info"]["startCursor"]
    pages: list[dict[str, Any]] = [
        {"first": 5},
        {"first": 100, "filter": {"includeDeprecated": True}},
        {"first": 3, "filter": {"customerId": customer_id}},
        {"filter": {"externalCustomerId": "ext-7", "eventName": "llm.tokens"}},
        {"filter": {"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00+02:00"}},
        {"filter": {"eventIds": ["evt-004", "evt-001", "nobody"]}},
        {"first": 4, "after": after},
        {"last": 4, "before": after},
        {"last": 3},
        {"first": 6, "orderBy": "TIMESTAMP_ASC"},
        {"first": 2, "before": before},
    ]
    for variables in pages:
        # When each page is asked three times
        status, _, body = await answers(api, query, variables)
        # Then every answer is the one graphql-core gives with every value through Python
        assert status == 200, body
        usual = await usual_path(database, settings, api, query, variables)
        assert body == orjson.dumps({"data": usual}), variables
    # And on PostgreSQL the plan gave every answer (the first page above kept the query)
    on_postgresql = database.dialect_name == "postgresql"
    assert planned_pages == ["page"] * (3 * len(pages) if on_postgresql else 0)
    page = orjson.loads(body)["data"]["page"]
    assert page.get("nodes", page.get("edges")) == []  # nothing lies before the newest event


TYPENAME_PAGES = {
    "as Apollo Client sends it": APOLLO_LIST,
    "page info's typename alone": (
        "{ events(first: 2) { nodes { eventId } pageInfo { __typename } } }"
    ),
    "a typename twice under one key": (
        "{ events(first: 2) { pageInfo { a: __typename endCursor a: __typename }"
        " nodes { eventId } } }"
    ),
}


@on_session_loop
@pytest.mark.parametrize("name", TYPENAME_PAGES)
async def test_typenames_read_the_same_by_the_plan(
    api: GraphQLClient,
    database: Database,
    settings: Settings,
    planned_pages: list[str],
    name: str,
) -> None:
    await seed_events(api)
    query = TYPENAME_PAGES[name]
    status, _, body = await answers(api, query, {"first": 3})
    assert status == 200, body
    usual = await usual_path(database, settings, api, query, {"first": 3})
    assert body == orjson.dumps({"data": usual})
    assert len(planned_pages) == (2 if database.dialect_name == "postgresql" else 0)


@on_session_loop
@pytest.mark.parametrize(
    ("variables", "planned"),
    [
        ({"first": 0}, True),
        ({"first": 101}, True),
        ({"first": 2, "last": 2}, True),
        ({"after": "not-a-cursor"}, True),
        ({"filter": {"customerId": "not-an-id"}}, True),
        ({"filter": {"eventIds": []}}, True),
        ({"first": "many"}, False),
        ({"orderBy": "SIDEWAYS"}, False),
        ({"filter": {"nope": 1}}, False),
        (
            {"filter": {"metadata": {"clauses": [{"key": "n", "operator": "EQUALS", "value": 1}]}}},
            False,
        ),
    ],
)
async def test_refusals_read_the_same_by_the_plan(
    api: GraphQLClient,
    database: Database,
    planned_pages: list[str],
    variables: dict[str, Any],
    planned: bool,
) -> None:
    await seed_events(api)
    status, _, body = await answers(api, LIST, variables)
    answer = orjson.loads(body)
    if planned:
        assert (status, answer["data"]) == (200, None)
        assert answer["errors"][0]["path"] == ["page"]
    else:
        assert status in (200, 400)
    on_postgresql = database.dialect_name == "postgresql"
    assert len(planned_pages) == (2 if planned and on_postgresql else 0)


@on_session_loop
async def test_a_failing_page_info_read_is_placed_at_its_path_by_the_plan(
    api: GraphQLClient,
    database: Database,
    planned_pages: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed_events(api)

    def failing(_context: Any, _read: Any) -> Any:
        async def run() -> Any:
            raise RuntimeError("the probe failed")

        return run

    monkeypatch.setattr(RequestContext, "locked", failing)
    status, _, body = await answers(api, LIST, {"first": 2, "after": None})
    answer = orjson.loads(body)
    assert (status, answer["data"]) == (200, None)
    (error,) = answer["errors"]
    assert error["path"] == ["page", "info", "hasNextPage"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    # A field selected twice under one key: its error names both places
    twice = "{ page: events { nodes { eventId } info: pageInfo { hasNextPage\n hasNextPage } } }"
    status, _, body = await answers(api, twice, None)
    (error,) = orjson.loads(body)["errors"]
    assert error["locations"] == [{"line": 1, "column": 53}, {"line": 2, "column": 2}]
    assert len(planned_pages) == (4 if database.dialect_name == "postgresql" else 0)


@on_session_loop
async def test_each_cursor_of_a_page_is_sealed_once_either_way(
    api: GraphQLClient,
    database: Database,
    planned_pages: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed_events(api)
    sealed = count_seals(monkeypatch)
    # pageInfo, selected before the edges, gives the first and last of their cursors
    for _ in range(2):  # the second request takes the plan
        sealed.clear()
        planned_before = len(planned_pages)
        status, _, body = await answers(api, EDGES_LIST, {"first": 3}, times=1)
        assert status == 200, body
        page = orjson.loads(body)["data"]["page"]
        cursors = [edge["cursor"] for edge in page["edges"]]
        assert len(cursors) == 3
        assert (page["info"]["startCursor"], page["info"]["endCursor"]) == (cursors[0], cursors[-1])
        # Each row's cursor was sealed once, whichever way answered (the page keeps them)
        assert len(sealed) == len(set(sealed)) == 3
    if database.dialect_name == "postgresql":
        assert planned_pages[planned_before:] == ["page"]
    else:
        assert planned_pages == []


@on_session_loop
async def test_a_cursor_the_plan_cannot_seal_leaves_the_page_to_graphql_core(
    api: GraphQLClient,
    database: Database,
    settings: Settings,
    planned_pages: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed_events(api)

    def failing(_page: Any) -> list[str]:
        raise ValueError("no cursor")

    monkeypatch.setattr(Page, "all_cursors", failing)
    status, _, body = await answers(api, RELAY_LIST, {"first": 3})
    assert status == 200, body
    usual = await usual_path(database, settings, api, RELAY_LIST, {"first": 3})
    assert body == orjson.dumps({"data": usual})
    assert len(usual["events"]["edges"]) == 3
    assert planned_pages == []  # every request went graphql-core's way, which seals its own
