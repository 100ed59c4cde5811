"""A query Strawberry accepted once is run by graphql-core directly (graph.prepared), and
answers exactly what Strawberry's way does: status, media type and body, errors included.

Each document is sent twice, or more, over HTTP: the first request goes Strawberry's way
and the next ones the prepared way where they may (a spy on PreparedQueries.execute says
which way each took); every answer must equal the first.
"""

from typing import Any

import httpx
import orjson
import pytest

from db.settings import Settings
from graph.prepared import AcceptedQuery, PreparedQueries
from tests.support import GraphQLClient, create_customer, event_input, ingest

pytestmark = pytest.mark.asyncio(loop_scope="session")

LIST = """
query List($first: Int, $after: String, $filter: EventFilter) {
  events(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { eventId eventName customerId externalCustomerId timestamp metadata kind: __typename }
  }
}
"""
EDGES = """
query Edges($first: Int) {
  events(first: $first) { edges { cursor node { ...Plain customer { id externalId } } } }
}
fragment Plain on Event { eventId revision metadata }
"""
POINT = """
query One($eventId: String!) {
  event(eventId: $eventId) { eventId metadata revisions { revision } }
}
"""
TWO_OPERATIONS = """
query Names { events(first: 2) { nodes { eventName } } }
query Ids { events(first: 2) { nodes { eventId } } }
"""


@pytest.fixture
def prepared_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The queries run the prepared way, in order."""
    runs: list[str] = []
    execute = PreparedQueries.execute

    async def spy(self: PreparedQueries, accepted: AcceptedQuery, *args: Any) -> Any:
        runs.append(accepted.document.loc.source.body if accepted.document.loc else "")
        return await execute(self, accepted, *args)

    monkeypatch.setattr(PreparedQueries, "execute", spy)
    return runs


def shown(response: httpx.Response) -> tuple[int, str, Any]:
    """What a client sees of an answer; the request id (new each time) left out."""
    body = orjson.loads(response.content)
    for error in body.get("errors", []):
        error.get("extensions", {}).pop("requestId", None)
    return response.status_code, response.headers["content-type"], orjson.dumps(body)


async def post(
    api: GraphQLClient,
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
    *,
    accept: str = "application/graphql-response+json",
) -> httpx.Response:
    payload: dict[str, Any] = {"query": query, "variables": variables}
    if operation_name is not None:
        payload["operationName"] = operation_name
    return await api.http.post(
        "/graphql", json=payload, headers={**api.tenant.headers, "Accept": accept}
    )


async def same_each_time(
    api: GraphQLClient,
    runs: list[str],
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
    *,
    prepared: int,
) -> tuple[int, str, Any]:
    """The answer to three requests, all the same, of which `prepared` went the prepared
    way: 2 for a document new to the server (its first request goes Strawberry's way),
    3 for one accepted before, 0 for one never accepted."""
    before = len(runs)
    first = shown(await post(api, query, variables, operation_name))
    for _ in range(2):
        assert shown(await post(api, query, variables, operation_name)) == first
    assert len(runs) - before == prepared, first
    return first


async def seed(api: GraphQLClient) -> str:
    customer = await create_customer(api, externalId="ext-1", name="One")
    events = [
        event_input(
            f"evt-{index}",
            customer_id=customer["id"] if index % 2 else None,
            external_customer_id=None if index % 2 else "ext-1",
            minutes_ago=index,
            metadata={"n": index, "half": index / 2, "text": 'é\n"x"'},
        )
        for index in range(12)
    ]
    payload = await ingest(api, events)
    assert payload["userErrors"] == []
    amended = await api.data(
        'mutation { amendEvent(input: {eventId: "evt-1", eventName: "llm.tokens",'
        " metadata: {amended: true}}) { userErrors { code } } }"
    )
    assert amended["amendEvent"]["userErrors"] == []
    return str(customer["id"])


async def test_queries_answer_the_same_the_prepared_way(
    api: GraphQLClient, prepared_runs: list[str]
) -> None:
    customer_id = await seed(api)
    status, _, body = await same_each_time(api, prepared_runs, "{ __typename }", prepared=2)
    assert (status, orjson.loads(body)) == (200, {"data": {"__typename": "Query"}})

    pages: tuple[dict[str, Any], ...] = (
        {"first": 5},
        {"first": 3, "filter": {"customerId": customer_id}},
        {"first": 100, "filter": {"eventName": "llm.tokens"}},
    )
    for known, variables in enumerate(pages):
        prepared = 3 if known else 2
        status, _, body = await same_each_time(
            api, prepared_runs, LIST, variables, prepared=prepared
        )
        assert status == 200
        assert orjson.loads(body)["data"]["events"]["nodes"]

    page = await api.data(LIST, {"first": 4})
    after = page["events"]["pageInfo"]["endCursor"]
    status, _, body = await same_each_time(
        api, prepared_runs, LIST, {"first": 4, "after": after}, prepared=3
    )
    assert [node["eventId"] for node in orjson.loads(body)["data"]["events"]["nodes"]] == [
        "evt-4",
        "evt-5",
        "evt-6",
        "evt-7",
    ]
    await same_each_time(api, prepared_runs, EDGES, {"first": 3}, prepared=2)
    status, _, body = await same_each_time(
        api, prepared_runs, POINT, {"eventId": "evt-1"}, prepared=2
    )
    assert orjson.loads(body)["data"]["event"]["revisions"] == [{"revision": 1}, {"revision": 2}]
    status, _, body = await same_each_time(
        api, prepared_runs, POINT, {"eventId": "nobody"}, prepared=3
    )
    assert orjson.loads(body) == {"data": {"event": None}}


async def test_errors_answer_the_same_the_prepared_way(
    api: GraphQLClient, prepared_runs: list[str]
) -> None:
    await seed(api)
    # A field error: the document is accepted, the page size refused when it runs.
    status, _, body = await same_each_time(api, prepared_runs, LIST, {"first": 0}, prepared=2)
    assert status == 200
    assert orjson.loads(body)["errors"][0]["extensions"]["reason"] == "PAGE_SIZE_INVALID"
    # Variables graphql-core cannot coerce: a request error, 400.
    status, _, body = await same_each_time(api, prepared_runs, LIST, {"first": "many"}, prepared=3)
    assert status == 400
    assert "data" not in orjson.loads(body)
    # A bad cursor and a bad filter value.
    await same_each_time(api, prepared_runs, LIST, {"after": "not-a-cursor"}, prepared=3)
    await same_each_time(
        api, prepared_runs, LIST, {"filter": {"customerId": "not-an-id"}}, prepared=3
    )
    # Documents never accepted are never prepared: invalid, and several operations unnamed.
    await same_each_time(api, prepared_runs, "{ events { nope } }", prepared=0)
    status, _, _ = await same_each_time(api, prepared_runs, TWO_OPERATIONS, prepared=0)
    assert status == 400
    # An operation name the document lacks.
    await same_each_time(api, prepared_runs, TWO_OPERATIONS, None, "Nope", prepared=0)


async def test_each_operation_of_a_document_is_kept_by_its_name(
    api: GraphQLClient, prepared_runs: list[str]
) -> None:
    await seed(api)
    _, _, names = await same_each_time(
        api, prepared_runs, TWO_OPERATIONS, None, "Names", prepared=2
    )
    _, _, ids = await same_each_time(api, prepared_runs, TWO_OPERATIONS, None, "Ids", prepared=2)
    assert list(orjson.loads(names)["data"]["events"]["nodes"][0]) == ["eventName"]
    assert list(orjson.loads(ids)["data"]["events"]["nodes"][0]) == ["eventId"]


async def test_variables_beyond_the_response_bound_go_strawberrys_way(
    api: GraphQLClient, prepared_runs: list[str], settings: Settings
) -> None:
    await seed(api)
    small = {"first": 2}
    await same_each_time(api, prepared_runs, EDGES, small, prepared=2)
    # Accepted with small pages, the same document asked for pages too large to answer.
    many = {"first": settings.max_page_size}
    pages = " ".join(
        f"a{index}: events(first: $first)"
        " { nodes { eventId revisions { metadata eventName timestamp } } }"
        for index in range(25)
    )
    aliased = f"query Many($first: Int) {{ {pages} }}"
    await same_each_time(api, prepared_runs, aliased, small, prepared=2)
    before = len(prepared_runs)
    refused = shown(await post(api, aliased, many))
    assert refused[0] == 400, refused
    assert b"USAGE_EVENTS_MAX_RESPONSE_COST" in refused[2]
    assert len(prepared_runs) == before
    # And small pages still go the prepared way.
    await post(api, aliased, small)
    assert len(prepared_runs) == before + 1


async def test_mutations_are_never_prepared(api: GraphQLClient, prepared_runs: list[str]) -> None:
    mutation = (
        'mutation { deprecateEvent(input: {eventId: "nobody", reason: "x"})'
        " { userErrors { code } } }"
    )
    await same_each_time(api, prepared_runs, mutation, prepared=0)


async def test_get_runs_a_prepared_query_and_never_a_mutation(
    api: GraphQLClient, prepared_runs: list[str]
) -> None:
    await seed(api)
    query = "query Names { events(first: 2) { nodes { eventName } } }"
    by_post = shown(await post(api, query))
    by_get = [
        shown(
            await api.http.get(
                "/graphql",
                params={"query": query},
                headers={**api.tenant.headers, "Accept": "application/graphql-response+json"},
            )
        )
        for _ in range(2)
    ]
    assert by_get == [by_post, by_post]
    assert len(prepared_runs) == 2
    mutation = (
        'mutation { deprecateEvent(input: {eventId: "x", reason: "y"}) { userErrors { code } } }'
    )
    for _ in range(2):
        response = await api.http.get(
            "/graphql", params={"query": mutation}, headers=api.tenant.headers
        )
        assert response.status_code == 405
    assert len(prepared_runs) == 2
