"""GraphQL over HTTP (SPEC §9), authentication (T1) and the bounds on every request."""

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
import sqlalchemy as sa
from graphql import get_introspection_query
from starlette.requests import Request
from starlette.types import Message

from db.database import Database
from db.repositories.businesses import BusinessRepository
from db.repositories.events import EventRepository
from db.rules.ingestion import utc_now
from db.settings import Settings
from graph.app import create_app
from graph.errors import DATABASE_UNAVAILABLE, DATABASE_UNAVAILABLE_MESSAGE
from graph.http import EndpointHeaders, body_deadline
from graph.serving import BODY_RECEIVED
from tests.support import GraphQLClient, Tenant, count_rows, event_input

pytestmark = pytest.mark.asyncio(loop_scope="session")

VIEWER = "{ viewer { id name } }"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"


async def test_t1_missing_key_is_unauthenticated(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": VIEWER})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "Authorization" in error["message"]


@pytest.mark.parametrize(
    "header", ["Bearer uek_not-a-real-key", "Basic dXNlcjpwYXNz", "Bearer", "uek_alone"]
)
async def test_t1_unknown_or_malformed_key_is_unauthenticated(
    client: httpx.AsyncClient, header: str
) -> None:
    response = await client.post(
        "/graphql", json={"query": VIEWER}, headers={"Authorization": header}
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_t1_revoked_key_is_unauthenticated_at_once(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    assert (
        await client.post("/graphql", json={"query": VIEWER}, headers=tenant.headers)
    ).status_code == 200
    async with database.unit_of_work() as session:
        assert await BusinessRepository(session).revoke_api_key(tenant.key_id, utc_now())

    response = await client.post("/graphql", json={"query": VIEWER}, headers=tenant.headers)

    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_t1_a_key_the_trusted_cache_knows_costs_no_query(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, statements: list[str]
) -> None:
    # As the process's listener does while it hears every change (db.api_key_cache); the
    # endpoint is the same on both databases, only SQLite's listener never trusts.
    database.api_keys.trust_until(time.monotonic() + 60)
    try:
        first = await client.post("/graphql", json={"query": VIEWER}, headers=tenant.headers)
        looked_up = sum("api_keys" in statement for statement in statements)
        second = await client.post("/graphql", json={"query": VIEWER}, headers=tenant.headers)
        cached = sum("api_keys" in statement for statement in statements) - looked_up
        database.api_keys.forget_all()  # A change was heard.
        await client.post("/graphql", json={"query": VIEWER}, headers=tenant.headers)
        again = sum("api_keys" in statement for statement in statements) - looked_up
    finally:
        database.api_keys.distrust()

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["data"]["viewer"]["id"] == tenant.business_id
    assert (looked_up, cached, again) == (1, 0, 1)


async def test_t1_unauthenticated_mutation_writes_nothing(
    client: httpx.AsyncClient, database: Database
) -> None:
    mutation = (
        "mutation($input: IngestEventsInput!) { ingestEvents(input: $input) { ingestedCount } }"
    )
    response = await client.post(
        "/graphql",
        json={"query": mutation, "variables": {"input": {"events": [event_input("e1")]}}},
    )
    assert response.status_code == 401
    assert await count_rows(database, "events") == 0


async def test_t2_viewer_is_the_business_of_the_key(api: GraphQLClient) -> None:
    data = await api.data(VIEWER)
    assert data["viewer"] == {"id": api.tenant.business_id, "name": "Acme Analytics"}


async def test_health_and_readiness_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


async def test_the_bare_address_leads_to_graphiql(client: httpx.AsyncClient) -> None:
    # Given a browser pointed at the server itself, with no key
    home = await client.get("/", headers={"Accept": "text/html"})
    with_key = await client.get("/?headers=%7B%7D", headers={"Accept": "text/html"})

    # Then it is sent on to /graphql, the query string kept, where GraphiQL answers
    assert home.status_code == 307
    assert home.headers["location"] == "/graphql"
    assert with_key.headers["location"] == "/graphql?headers=%7B%7D"
    page = await client.get("/", headers={"Accept": "text/html"}, follow_redirects=True)
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


async def test_get_runs_queries(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get("/graphql", params={"query": VIEWER}, headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["data"]["viewer"]["id"] == tenant.business_id


async def test_get_refuses_mutations_with_405(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    mutation = 'mutation { createCustomer(input: {externalId: "x"}) { customer { id } } }'
    response = await client.get("/graphql", params={"query": mutation}, headers=tenant.headers)
    assert response.status_code == 405
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert await count_rows(database, "customers") == 0


async def test_graphql_response_json_answers_400_for_unparsable_documents(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { id "},
        headers=tenant.headers | {"Accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE_JSON)
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert error["locations"] == [{"line": 1, "column": 15}]


async def test_graphql_response_json_answers_400_for_invalid_documents(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { nickname } }"},
        headers=tenant.headers | {"Accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


# No Accept, or a wildcard only (the default of curl, fetch, requests and httpx), is a
# legacy client too: graphql-http's audits 47DE and 80D8 (tests/e2e/test_graphql_http_audit.py).
@pytest.mark.parametrize("accept", ["application/json", "*/*", "application/*", None])
async def test_application_json_clients_get_200_with_errors(
    client: httpx.AsyncClient, tenant: Tenant, accept: str | None
) -> None:
    request = client.build_request(
        "POST", "/graphql", json={"query": "{ viewer { nickname } }"}, headers=tenant.headers
    )
    if accept is None:
        del request.headers["accept"]
    else:
        request.headers["accept"] = accept
    response = await client.send(request)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_wrong_variable_type_is_bad_user_input(api: GraphQLClient) -> None:
    response = await api.http.post(
        "/graphql",
        json={
            "query": "query($id: String!) { event(eventId: $id) { id } }",
            "variables": {"id": 5},
        },
        headers=api.tenant.headers | {"Accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$id" in error["message"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"variables": {}}', "no GraphQL query"),
        (b'{"query": "{ viewer { id } }", "variables": [1]}', "variables must be"),
    ],
)
async def test_malformed_request_bodies_are_400(
    client: httpx.AsyncClient, tenant: Tenant, content: bytes, message: str
) -> None:
    response = await client.post(
        "/graphql",
        content=content,
        headers=tenant.headers | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert message in error["message"]


async def test_other_content_types_are_415(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/graphql", content=VIEWER, headers=tenant.headers | {"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


async def test_body_over_the_limit_is_413_before_parsing(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    padding = "x" * (8 * 1024 * 1024)
    response = await client.post(
        "/graphql",
        json={"query": VIEWER, "variables": {"padding": padding}},
        headers=tenant.headers,
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    # The server goes on serving.
    assert (
        await client.post("/graphql", json={"query": VIEWER}, headers=tenant.headers)
    ).status_code == 200


async def test_chunked_body_over_the_limit_is_413(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ viewer { id } }", "variables": {"padding": "'
        for _ in range(9):
            yield b"x" * (1024 * 1024)
        yield b'"}}'

    response = await client.post(
        "/graphql",
        content=chunks(),
        headers=tenant.headers | {"Content-Type": "application/json"},
    )
    assert response.status_code == 413


async def test_five_megabyte_batch_gets_rule_errors_and_writes_nothing(
    api: GraphQLClient, database: Database
) -> None:
    events = [event_input(f"e{index}", metadata={"blob": "b" * 5000}) for index in range(1000)]
    response = await api.post(
        "mutation($input: IngestEventsInput!) { ingestEvents(input: $input) "
        "{ ingestedCount userErrors { code field } } }",
        {"input": {"events": events}},
    )
    assert response.status_code == 200
    payload = response.json()["data"]["ingestEvents"]
    assert payload["ingestedCount"] == 0
    assert len(payload["userErrors"]) == 1000
    assert {error["code"] for error in payload["userErrors"]} == {"METADATA_VALUE_TOO_LONG"}
    assert await count_rows(database, "events") == 0


async def test_introspection_stays_on(api: GraphQLClient) -> None:
    data = await api.data(get_introspection_query(descriptions=True))
    type_names = {graphql_type["name"] for graphql_type in data["__schema"]["types"]}
    assert {"Event", "UserErrorCode", "IngestEventsPayload", "DateTime", "JSON"} <= type_names


@pytest_asyncio.fixture
async def strict_client(settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A server with tight query bounds, to show that each bound is enforced."""
    strict = settings.model_copy(
        update={"max_query_depth": 1, "max_query_aliases": 2, "max_query_tokens": 40}
    )
    transport = httpx.ASGITransport(app=create_app(strict, database))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def post_with(
    client: httpx.AsyncClient, tenant: Tenant, query: str
) -> tuple[int, dict[str, Any]]:
    # The new media type, under which a query refused by a bound is a 400.
    headers = tenant.headers | {"Accept": GRAPHQL_RESPONSE_JSON}
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    return response.status_code, response.json()


async def test_query_depth_is_bounded(strict_client: httpx.AsyncClient, tenant: Tenant) -> None:
    status, body = await post_with(
        strict_client, tenant, '{ event(eventId: "x") { revisions { metadata } customer { id } } }'
    )
    assert status == 400
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]


async def test_aliases_are_bounded(strict_client: httpx.AsyncClient, tenant: Tenant) -> None:
    status, body = await post_with(
        strict_client, tenant, "{ a: viewer { id } b: viewer { id } c: viewer { id } }"
    )
    assert status == 400
    assert "aliases" in body["errors"][0]["message"]


async def test_tokens_are_bounded(strict_client: httpx.AsyncClient, tenant: Tenant) -> None:
    status, body = await post_with(
        strict_client,
        tenant,
        "{ " + " ".join(f"v{index}: __typename" for index in range(30)) + " }",
    )
    assert status == 400
    assert "token" in body["errors"][0]["message"].lower()


async def test_unexpected_errors_are_masked(
    api: GraphQLClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(*_args: object) -> None:
        raise RuntimeError("secret connection string postgres://admin:hunter2@db")

    monkeypatch.setattr(EventRepository, "get_by_event_id", explode)
    response = await api.post('{ event(eventId: "e1") { id } }')
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"event": None}
    request_id = response.headers["x-request-id"]
    assert body["errors"] == [
        {
            "message": "Internal server error",
            "locations": [{"line": 1, "column": 3}],
            "path": ["event"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        }
    ]
    assert "hunter2" not in response.text
    # The one traceback of the failure is in the log, under the id the client was given.
    [failure] = [record for record in caplog.records if record.exc_info]
    assert "hunter2" in caplog.text
    assert getattr(failure, "request_id", None) == request_id


@pytest.mark.parametrize(
    ("event", "location"),
    [
        ({"eventId": "e\x00"}, "variables.input.events.0.eventId"),
        ({"eventName": "n\x00"}, "variables.input.events.0.eventName"),
        ({"metadata": {"plan": "pro\x00"}}, "variables.input.events.0.metadata.plan"),
        ({"metadata": {"pl\x00an": 1}}, "variables.input.events.0.metadata"),
    ],
)
async def test_nul_characters_are_refused_before_anything_is_written(
    api: GraphQLClient, database: Database, event: dict[str, Any], location: str
) -> None:
    response = await api.post(
        "mutation($input: IngestEventsInput!) { ingestEvents(input: $input) { ingestedCount } }",
        {"input": {"events": [event_input("e1") | event]}},
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "U+0000" in error["message"]
    assert location in error["message"]
    assert await count_rows(database, "events") == 0


@pytest.mark.parametrize("literal", ["\\u0000", "\\u{0}", "a\\u0000b"])
async def test_nul_escapes_in_query_literals_are_refused(api: GraphQLClient, literal: str) -> None:
    response = await api.post(f'{{ event(eventId: "{literal}") {{ id }} }}')
    assert response.status_code == 400
    assert "found in query" in response.json()["errors"][0]["message"]


async def test_escaped_backslash_before_u0000_is_not_a_nul(api: GraphQLClient) -> None:
    # The JSON text \\u0000 is a backslash followed by "u0000": six harmless characters.
    data = await api.data("query($id: String!) { event(eventId: $id) { id } }", {"id": "\\u0000"})
    assert data == {"event": None}


async def test_nul_in_get_parameters_is_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get(
        "/graphql",
        params={
            "query": "query($id: String!) { event(eventId: $id) { id } }",
            "variables": '{"id": "a\\u0000"}',
        },
        headers=tenant.headers,
    )
    assert response.status_code == 400
    assert "variables.id" in response.json()["errors"][0]["message"]


async def test_large_documents_are_not_kept_in_the_shared_caches(api: GraphQLClient) -> None:
    from graph.document_caches import MAX_CACHED_QUERY_LENGTH, SmallDocumentParserCache

    cache = SmallDocumentParserCache().cached_parse_document
    padding = "# " + "x" * MAX_CACHED_QUERY_LENGTH + "\n"
    before = cache.cache_info().currsize  # type: ignore[attr-defined]
    for index in range(3):
        data = await api.data(f"{padding}{{ v{index}: viewer {{ id }} }}")
        assert data[f"v{index}"]["id"] == api.tenant.business_id
    assert cache.cache_info().currsize == before  # type: ignore[attr-defined]
    # A small document never seen before (the cache is shared by the whole process).
    await api.data(f"{{ small_{uuid.uuid4().hex}: viewer {{ id }} }}")
    assert cache.cache_info().currsize == before + 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("escaped", ["\\ud800", "a\\udfffb", "\\ud83d", "\\ude00\\ud83d"])
async def test_unpaired_surrogate_escapes_are_refused_before_anything_is_written(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, escaped: str
) -> None:
    body = (
        '{"query": "mutation($input: IngestEventsInput!) { ingestEvents(input: $input) '
        '{ ingestedCount } }", "variables": {"input": {"events": [{"eventId": "e1", '
        f'"eventName": "n{escaped}", "externalCustomerId": "acme"}}]}}}}}}'
    )
    response = await client.post(
        "/graphql", content=body, headers=tenant.headers | {"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "surrogate" in error["message"]
    assert await count_rows(database, "events") == 0


async def test_a_paired_surrogate_escape_is_one_character(api: GraphQLClient) -> None:
    body = (
        '{"query": "query($id: String!) { event(eventId: $id) { id } }", '
        '"variables": {"id": "\\ud83d\\ude00"}}'
    )
    response = await api.http.post(
        "/graphql", content=body, headers=api.tenant.headers | {"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"event": None}}


async def test_failures_outside_execution_are_masked_graphql_errors(
    client: httpx.AsyncClient,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_lookup(*_args: object) -> None:
        raise RuntimeError("a bug; secret postgres://admin:hunter2@db")

    monkeypatch.setattr(BusinessRepository, "authenticate", broken_lookup)
    response = await client.post("/graphql", json={"query": VIEWER}, headers=tenant.headers)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")  # Accept: */*
    masked = {"code": "INTERNAL_SERVER_ERROR", "requestId": response.headers["x-request-id"]}
    assert response.json() == {
        "errors": [{"message": "Internal server error", "extensions": masked}]
    }
    assert "hunter2" not in response.text
    assert "hunter2" in caplog.text


# Database faults: an outage is a 503 to retry, logged as one warning line


def database_locked() -> sa.exc.OperationalError:
    """What SQLite's writer gets after busy_timeout, wrapped as SQLAlchemy raises it."""
    return sa.exc.OperationalError(
        "SELECT * FROM events WHERE event_id = ?",
        ("secret-hunter2",),
        sqlite3.OperationalError("database is locked"),
        hide_parameters=True,
    )


def assert_one_warning_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    outages = [record for record in caplog.records if "database unavailable" in record.message]
    assert [record.levelname for record in outages] == ["WARNING"], caplog.text
    assert outages[0].exc_info is None
    assert "Traceback" not in caplog.text
    assert "hunter2" not in caplog.text


async def test_a_pool_timeout_outside_execution_is_503_database_unavailable(
    client: httpx.AsyncClient,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def pool_timeout(*_args: object) -> None:
        raise sa.exc.TimeoutError("QueuePool limit of size 10 overflow 0 reached")

    monkeypatch.setattr(BusinessRepository, "authenticate", pool_timeout)

    response = await client.post("/graphql", json={"query": VIEWER}, headers=tenant.headers)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    outage = {"code": DATABASE_UNAVAILABLE, "requestId": response.headers["x-request-id"]}
    assert response.json() == {
        "errors": [{"message": DATABASE_UNAVAILABLE_MESSAGE, "extensions": outage}]
    }
    assert_one_warning_without_traceback(caplog)


async def test_an_outage_during_execution_is_503_with_the_field_error_coded(
    api: GraphQLClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def locked(*_args: object) -> None:
        raise database_locked()

    monkeypatch.setattr(EventRepository, "get_by_event_id", locked)

    response = await api.post('{ event(eventId: "e1") { id } }')

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {
        "data": {"event": None},
        "errors": [
            {
                "message": DATABASE_UNAVAILABLE_MESSAGE,
                "locations": [{"line": 1, "column": 3}],
                "path": ["event"],
                "extensions": {
                    "code": DATABASE_UNAVAILABLE,
                    "requestId": response.headers["x-request-id"],
                },
            }
        ],
    }
    assert_one_warning_without_traceback(caplog)


async def test_fields_after_an_outage_fail_with_it_without_asking_the_database_again(
    api: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def locked(_repository: object, event_id: str) -> None:
        calls.append(event_id)
        raise database_locked()

    monkeypatch.setattr(EventRepository, "get_by_event_id", locked)

    response = await api.post('{ a: event(eventId: "e1") { id } b: event(eventId: "e2") { id } }')

    assert response.status_code == 503
    codes = [error["extensions"]["code"] for error in response.json()["errors"]]
    assert codes == [DATABASE_UNAVAILABLE, DATABASE_UNAVAILABLE]
    assert calls == ["e1"]


async def test_several_operations_without_an_operation_name_run_none(
    api: GraphQLClient, database: Database
) -> None:
    document = (
        "query Look { viewer { id } } "
        'mutation Write { createCustomer(input: {externalId: "acme"}) { customer { id } } }'
    )
    response = await api.post(document)
    # Accept: */* is answered as application/json, where a request error is a 200 too.
    assert response.status_code == 200, response.text
    error = response.json()["errors"][0]
    assert "send operationName" in error["message"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "data" not in response.json()
    assert await count_rows(database, "customers") == 0


async def test_several_operations_run_the_one_named(api: GraphQLClient) -> None:
    document = "query First { viewer { id } } query Second { viewer { name } }"
    for name, field in (("First", "id"), ("Second", "name")):
        response = await api.http.post(
            "/graphql",
            json={"query": document, "operationName": name},
            headers=api.tenant.headers,
        )
        assert response.status_code == 200, response.text
        assert list(response.json()["data"]["viewer"]) == [field]


async def test_a_body_that_stops_arriving_is_408_after_the_body_timeout(
    settings: Settings, database: Database, tenant: Tenant
) -> None:
    impatient = settings.model_copy(update={"body_read_timeout": timedelta(seconds=0.2)})
    transport = httpx.ASGITransport(app=create_app(impatient, database))

    async def stalled() -> AsyncIterator[bytes]:
        yield b'{"query": "{ viewer'
        await asyncio.Event().wait()  # The rest never comes.
        yield b' { id } }"}'

    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            "/graphql",
            content=stalled(),
            headers=tenant.headers | {"Content-Type": "application/json"},
        )

    assert response.status_code == 408
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "REQUEST_TIMEOUT"
    assert error["message"] == (
        "The request body did not arrive within 0.2 seconds (USAGE_EVENTS_BODY_READ_TIMEOUT)."
    )


async def test_a_client_that_leaves_while_sending_the_body_is_not_logged_as_an_error(
    settings: Settings, database: Database, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, database)
    received: list[Message] = [
        {"type": "http.request", "body": b'{"query": "{ vie', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return received.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json")]
    headers += [(name.lower().encode(), value.encode()) for name, value in tenant.headers.items()]
    scope = graphql_post_scope(headers)

    with caplog.at_level(logging.WARNING):
        await app(scope, receive, send)

    assert received == []
    assert [record.getMessage() for record in caplog.records] == []
    # Answered all the same, to nobody: uvicorn drops what is sent to a closed connection.
    assert sent[0]["status"] == 400


async def test_a_body_the_server_has_read_whole_is_read_without_a_deadline() -> None:
    assert body_deadline({"type": "http", BODY_RECEIVED: True}, 30.0) is None
    assert body_deadline({"type": "http"}, 30.0) == 30.0
    assert body_deadline({"type": "http"}, 0.0) is None  # 0: no limit


@pytest.mark.parametrize("received", [True, False])
async def test_a_body_read_whole_arms_no_timer(
    settings: Settings,
    database: Database,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    received: bool,
) -> None:
    """Through the endpoint: asyncio.timeout is entered for a body still to come only."""
    armed: list[float | None] = []
    real_timeout = asyncio.timeout

    def noted(delay: float | None) -> asyncio.Timeout:
        armed.append(delay)
        return real_timeout(delay)

    monkeypatch.setattr(asyncio, "timeout", noted)
    body = orjson.dumps({"query": VIEWER})
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = graphql_post_scope(
        [
            (b"authorization", f"Bearer {tenant.api_key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        **({BODY_RECEIVED: True} if received else {}),
    )
    await create_app(settings, database)(scope, receive, send)
    assert sent[0]["status"] == 200
    assert orjson.loads(sent[1]["body"])["data"]["viewer"]["id"] == tenant.business_id
    assert armed == ([] if received else [settings.body_read_timeout.total_seconds()])


async def test_the_endpoint_reads_the_first_header_of_each_name() -> None:
    """As Starlette's Request.headers.get reads them; latin-1 as HTTP carries them."""
    scope = {
        "type": "http",
        "headers": [
            (b"accept", b"application/graphql-response+json"),
            (b"x-other", b"1"),
            (b"accept", b"text/html"),
            (b"authorization", b"Bearer uek_\xe9"),
            (b"content-length", b"12"),
        ],
    }
    headers = EndpointHeaders.of(scope)
    assert headers == EndpointHeaders(
        accept="application/graphql-response+json",
        authorization="Bearer uek_é",
        content_length="12",
        content_type="",
    )
    assert (headers.accept, headers.authorization, headers.content_length) == (
        Request(scope).headers.get("accept"),
        Request(scope).headers.get("authorization"),
        Request(scope).headers.get("content-length"),
    )
    assert EndpointHeaders.of({"type": "http", "headers": []}).content_length is None


def graphql_post_scope(headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    """The ASGI scope of a POST /graphql from 127.0.0.1 with these headers."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        **extra,
    }
