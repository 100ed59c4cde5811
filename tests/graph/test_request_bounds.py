"""Every request is bounded in the work it causes, not only in its size (hardening).

A kilobyte of fragment spreads stands for millions of fields; repeated fields make
validation compare pairs; a few megabytes of variables are millions of values. Each is
refused before the work starts, with a message naming the bound and its setting.
"""

from typing import Any

import httpx
import pytest
from graphql import get_introspection_query, parse

from db.database import Database
from db.settings import Settings
from graph.app import create_app
from graph.document_bounds import DocumentMeasurer
from graph.errors import MAX_MESSAGE_LENGTH
from tests.support import GraphQLClient, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"


def fragment_bomb(levels: int, *, used: bool = True) -> str:
    """`{...F0}`, each fragment spreading the next twice: 2**levels fields once expanded."""
    fragments = [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    fragments.append(f"fragment F{levels} on Query {{ viewer {{ id }} }}")
    operation = "query Bomb { ...F0 }" if used else "query Small { viewer { id } }"
    return " ".join([operation, *fragments])


async def post(
    client: httpx.AsyncClient, tenant: Tenant, query: str, variables: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers=tenant.headers | {"Accept": GRAPHQL_RESPONSE_JSON},
    )
    body: dict[str, Any] = response.json()
    return response.status_code, body


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    assert "data" not in body, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
    return dict(error)


async def test_a_fragment_bomb_is_refused_before_validation(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # 1.3 KB of text; 2**25 fields expanded. Validated spread by spread, it took minutes.
    query = fragment_bomb(25)
    assert len(query) < 1500
    status, body = await post(client, tenant, query)
    assert status == 400
    message = only_error(body)["message"]
    # `viewer` doubles at every level: the repeat bound (20) is met before the field bound.
    assert message == (
        "The document selects one field 32 times in one selection set once its fragments "
        "are expanded; at most 20 are allowed (USAGE_EVENTS_MAX_REPEATED_FIELDS)."
    )


async def test_a_fragment_bomb_of_distinct_fields_meets_the_field_bound(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # Each level spreads the next twice, under two fields of different names: no name
    # repeats in any selection set, and the fields double at every level (the measure
    # needs no types: it runs before validation, which would refuse these).
    levels = 25
    fragments = [
        f"fragment F{i} on Query {{ a: viewer {{ ...F{i + 1} }} b: viewer {{ ...F{i + 1} }} }}"
        for i in range(levels)
    ]
    fragments.append(f"fragment F{levels} on Query {{ __typename }}")
    status, body = await post(client, tenant, "query Wide { ...F0 } " + " ".join(fragments))
    assert status == 400
    assert only_error(body)["message"] == (
        "The document selects more than 2000 fields once its fragment spreads are expanded, "
        "counting every operation and fragment (USAGE_EVENTS_MAX_QUERY_FIELDS)."
    )


async def test_a_fragment_no_operation_uses_is_bounded_too(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # Validation walks every fragment of the document, used or not.
    status, body = await post(client, tenant, fragment_bomb(25, used=False))
    assert status == 400
    assert "USAGE_EVENTS_MAX_REPEATED_FIELDS" in only_error(body)["message"]


async def test_the_expansion_bound_is_a_setting(
    settings: Settings, database: Database, tenant: Tenant
) -> None:
    bounded = settings.model_copy(update={"max_query_fields": 10})
    transport = httpx.ASGITransport(app=create_app(bounded, database))

    def fields(count: int) -> str:
        return "{ " + " ".join(f"v{index}: __typename" for index in range(count)) + " }"

    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        status, body = await post(client, tenant, fields(10))
        assert status == 200, body
        status, body = await post(client, tenant, fields(11))
        assert status == 400
        assert "more than 10 fields" in only_error(body)["message"]


async def test_many_operations_spreading_one_fragment_spend_one_budget(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # Each operation is small; validation (and the depth and alias limiters) expands the
    # fragment in every one of them: 200 operations × 20 fields.
    fragment = "fragment F on Query { " + " ".join(f"f{i}: __typename" for i in range(19)) + " }"
    operations = " ".join(f"query Q{index} {{ ...F }}" for index in range(200))
    status, body = await post(client, tenant, f"{operations} {fragment}")
    assert status == 400
    messages = [error["message"] for error in body["errors"]]
    assert any("USAGE_EVENTS_MAX_QUERY_FIELDS" in message for message in messages), messages


async def test_a_spread_of_many_distinct_fields_many_times_is_refused_early(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # 10 000 spreads of a 1000-field fragment: measured naively, 10**7 name merges.
    fragment = "fragment F on Query { " + " ".join(f"f{i}: __typename" for i in range(1000))
    query = "query Wide { " + " ...F" * 10_000 + " } " + fragment + " }"
    status, body = await post(client, tenant, query)
    assert status == 400
    assert "USAGE_EVENTS_MAX_QUERY_FIELDS" in only_error(body)["message"]


@pytest.mark.parametrize("kind", ["fields", "spreads"])
async def test_nesting_beyond_any_depth_is_refused_without_exhausting_the_stack(
    client: httpx.AsyncClient, tenant: Tenant, kind: str
) -> None:
    if kind == "fields":
        query = "{ " + "viewer { " * 120 + "id" + " }" * 120 + " }"
    else:
        chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(500))
        query = f"query Chain {{ ...F0 }} {chain} fragment F500 on Query {{ __typename }}"
    status, body = await post(client, tenant, query)
    assert status == 400
    error = body["errors"][0]
    assert error["extensions"]["code"] in ("GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED")
    assert "Internal server error" not in error["message"]


async def test_many_real_validation_errors_are_kept_not_called_too_costly(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    query = "{ " + " ".join(f"a{index}: nosuchfield" for index in range(25)) + " }"
    status, body = await post(client, tenant, query)
    assert status == 400
    messages = [error["message"] for error in body["errors"]]
    assert all("nosuchfield" in message for message in messages), messages


async def test_fragment_cycles_are_refused_without_following_them(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    query = (
        "query Loop { ...A } fragment A on Query { viewer { id } ...B } "
        "fragment B on Query { ...A }"
    )
    status, body = await post(client, tenant, query)
    assert status == 400
    assert only_error(body)["message"] in (
        'Cannot spread fragment "A" within itself.',
        'Cannot spread fragment "B" within itself.',
    )


async def test_one_field_repeated_past_the_bound_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    at_bound = "{ viewer { " + " id" * 20 + " } }"
    status, body = await post(client, tenant, at_bound)
    assert status == 200, body
    status, body = await post(client, tenant, "{ viewer { " + " id" * 21 + " } }")
    assert status == 400
    assert only_error(body)["message"] == (
        "The document selects one field 21 times in one selection set once its fragments "
        "are expanded; at most 20 are allowed (USAGE_EVENTS_MAX_REPEATED_FIELDS)."
    )


async def test_repeats_through_fragments_are_counted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # Each fragment selects `id` once; 3 × 7 spreads put it 21 times in one selection set.
    query = (
        "query Spread { viewer { ...T ...T ...T } } "
        "fragment T on Business { ...I ...I ...I ...I ...I ...I ...I } "
        "fragment I on Business { id }"
    )
    status, body = await post(client, tenant, query)
    assert status == 400
    assert "selects one field 21 times" in only_error(body)["message"]


async def test_validation_that_runs_out_of_budget_says_why(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # Within the field and repeat bounds, but 12 × 12 × 12 overlapping fields to compare.
    customers = " ".join("customer { " + " id" * 12 + " }" for _ in range(12))
    query = "{" + (" events { nodes { " + customers + " } }") * 12 + " }"
    status, body = await post(client, tenant, query)
    assert status == 400
    message = only_error(body)["message"]
    assert message.startswith("The query is too costly to validate"), message
    assert "USAGE_EVENTS_MAX_VALIDATION_WORK" in message
    assert "Validation aborted" not in message


async def test_variables_are_bounded_in_values(
    settings: Settings, database: Database, tenant: Tenant
) -> None:
    bounded = settings.model_copy(update={"max_input_values": 100})
    transport = httpx.ASGITransport(app=create_app(bounded, database))
    query = "query($ids: [String!]!) { events(filter: {eventIds: $ids}) { totalCount } }"
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        # {"ids": [...99]}: 1 member and 99 items.
        status, body = await post(client, tenant, query, {"ids": ["e"] * 99})
        assert status == 200, body
        status, body = await post(client, tenant, query, {"ids": ["e"] * 100})
        assert status == 400
        assert body["errors"] == [
            {
                "message": "variables hold more than 100 values (USAGE_EVENTS_MAX_INPUT_VALUES).",
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ]


async def test_four_million_values_are_refused_by_default(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/graphql",
        content=b'{"query": "{ __typename }", "variables": {"v": [' + b"1," * 4_000_000 + b"1]}}",
        headers=tenant.headers | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "USAGE_EVENTS_MAX_INPUT_VALUES" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "literal",
    ["9" * 5000, '"' + "x" * 1_000_000 + '"', "1." + "9" * 5000],
    ids=["huge integer", "megabyte string", "long float"],
)
async def test_no_error_message_repeats_a_huge_literal(api: GraphQLClient, literal: str) -> None:
    response = await api.post(f"{{ events(first: {literal}) {{ totalCount }} }}")
    [error] = response.json()["errors"]
    assert len(error["message"]) <= MAX_MESSAGE_LENGTH
    assert len(response.content) < 2 * MAX_MESSAGE_LENGTH
    assert error["extensions"]["code"] in ("GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT")


async def test_the_introspection_query_stays_well_within_the_bounds(api: GraphQLClient) -> None:
    document = parse(get_introspection_query(descriptions=True))
    measurer = DocumentMeasurer(document, max_fields=2000, max_repeats=20)
    measurer.measure(document)
    assert measurer.spent < 2000 // 3
    data = await api.data(get_introspection_query(descriptions=True))
    assert data["__schema"]["queryType"]["name"] == "Query"


async def test_an_integer_literal_too_long_for_any_integer_is_said_to_be_one(
    api: GraphQLClient, database: Database
) -> None:
    digits = "9" * 4301
    response = await api.post(
        'mutation { ingestEvents(input: {events: [{eventId: "e1", eventName: "n", '
        f'externalCustomerId: "c", metadata: {{tokens: {digits}}}}}]}}) {{ ingestedCount }} }}'
    )
    [error] = response.json()["errors"]
    assert error["message"] == (
        "An integer literal has 4301 digits; integers here fit in 64 bits (19 digits)."
    )
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "NaN" not in response.text
    # A string of as many digits is just a string (within its own length rule).
    response = await api.post(f'{{ event(eventId: "{digits}") {{ id }} }}')
    assert "integer literal" not in response.text


EVERY_EVENT_FIELD = """
  id eventId businessId customerId externalCustomerId eventName timestamp metadata
  ingestedAt deprecated deprecatedAt deprecationReason revision
  customer { id externalId name }
  revisions { revision eventName timestamp customerId externalCustomerId metadata
              createdAt reason }
"""


async def test_a_full_page_of_events_with_every_revision_fits_the_answer_bound(
    api: GraphQLClient,
) -> None:
    data = await api.data(f"{{ events(first: 100) {{ nodes {{ {EVERY_EVENT_FIELD} }} }} }}")
    assert data["events"]["nodes"] == []


@pytest.mark.parametrize("page", ["literal", "variable"])
async def test_aliases_that_multiply_an_answer_past_its_bound_are_refused_before_running(
    client: httpx.AsyncClient, tenant: Tenant, statements: list[str], page: str
) -> None:
    first = "100" if page == "literal" else "$page"
    aliases = " ".join(
        f"a{index}: events(first: {first}) {{ nodes {{ revisions {{ reason metadata }} }} }}"
        for index in range(30)
    )
    query = f"query Big($page: Int) {{ {aliases} }}"
    statements.clear()
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": {"page": 100}},
        headers=tenant.headers | {"Accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 400
    message = only_error(response.json())["message"]
    assert "USAGE_EVENTS_MAX_RESPONSE_COST" in message, message
    assert "revisions up to 101" in message
    # Refused before it ran: the key's lookup was the only query.
    assert [each for each in statements if "FROM events" in each] == [], statements
    assert sum("api_keys" in each for each in statements) == 1, statements


async def test_small_pages_of_the_same_aliases_pass(api: GraphQLClient) -> None:
    aliases = " ".join(
        f"a{index}: events(first: 5) {{ nodes {{ revisions {{ reason metadata }} }} }}"
        for index in range(30)
    )
    data = await api.data(f"{{ {aliases} }}")
    assert data["a0"]["nodes"] == []
