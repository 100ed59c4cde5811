"""End-to-end: a real `usage-events serve --workers 2` process, driven over TCP with httpx.

Each test starts its own server (two worker processes) on a free port against the test
database — SQLite and PostgreSQL — sets tenants up with the real CLI, and stops the whole
process group when it ends, pass or fail.
"""

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from db.database import Database
from db.settings import Settings
from tests.e2e.server import RunningServer, describe, run_cli, running_server

WORKERS = 2
REQUEST_TIMEOUT_SECONDS = 30.0
REQUESTS_PER_ROUND = 12
MAX_ROUNDS = 20
VIEWER = "{ viewer { id } }"
INGEST_INTO = """
mutation Ingest($input: IngestEventsInput!) {
  ingestEvents(input: $input) { ingestedCount userErrors { code field } }
}
"""
INGEST = """
mutation Ingest($input: IngestEventsInput!) {
  ingestEvents(input: $input) {
    ingestedCount duplicateCount ingested duplicates userErrors { code field message }
  }
}
"""


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(database_url, tmp_path, workers=WORKERS) as running:
        yield running


def bearer(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


async def cli_json(server: RunningServer, *arguments: str) -> dict[str, Any]:
    """The JSON a `usage-events … --json` command prints, run against the server's database."""
    result = await asyncio.to_thread(
        run_cli,
        *arguments,
        "--json",
        database_url=server.database_url,
        cwd=server.log_path.parent,
    )
    assert result.returncode == 0, describe(result)
    printed: dict[str, Any] = json.loads(result.stdout)
    return printed


async def create_business(server: RunningServer) -> dict[str, Any]:
    name = f"E2E {uuid.uuid4().hex[:8]}"
    return await cli_json(server, "create-business", name)


async def revoke_api_key(server: RunningServer, key_id: str) -> None:
    result = await asyncio.to_thread(
        run_cli,
        "revoke-api-key",
        key_id,
        database_url=server.database_url,
        cwd=server.log_path.parent,
    )
    assert result.returncode == 0, describe(result)


async def only_other_key_id(server: RunningServer, business_id: str, known_key_id: str) -> str:
    """The id of the business's one other key: create-business prints the secret, not the id."""
    async with direct_database(server) as database, database.session() as session:
        rows = await session.execute(
            sa.text("SELECT id FROM api_keys WHERE business_id = :business_id AND id <> :known"),
            {"business_id": business_id, "known": known_key_id},
        )
        (key_id,) = rows.scalars().all()
    return str(key_id)


@asynccontextmanager
async def direct_database(server: RunningServer) -> AsyncIterator[Database]:
    """The server's database, reached directly with SQL to check what the server stored."""
    database = Database.from_settings(Settings(database_url=server.database_url))
    try:
        yield database
    finally:
        await database.dispose()


def open_client(server: RunningServer, *, connections: int = 16) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=server.base_url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS
    )


async def viewer_statuses_from_every_worker(server: RunningServer, api_key: str) -> list[int]:
    """Status codes of rounds of concurrent viewer queries, until every worker has answered.

    Which worker accepts a connection is up to the kernel; a round of new connections, sent
    at once, usually spreads over both, and rounds go on until /proc shows that they did.
    """
    statuses: list[int] = []
    serving: set[int] = set()
    for _ in range(MAX_ROUNDS):
        async with open_client(server, connections=REQUESTS_PER_ROUND) as client:
            responses = await asyncio.gather(
                *(
                    client.post("/graphql", json={"query": VIEWER}, headers=bearer(api_key))
                    for _ in range(REQUESTS_PER_ROUND)
                )
            )
            # Read while the client still holds its connections open.
            serving |= set(server.connections_per_process())
        statuses += [response.status_code for response in responses]
        if len(serving) >= WORKERS:
            return statuses
    pytest.fail(f"{MAX_ROUNDS} rounds of requests reached only the processes {serving}")


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# T1 — authentication


@pytest.mark.asyncio(loop_scope="session")
async def test_t1_requests_without_a_live_api_key_get_401_unauthenticated(
    server: RunningServer,
) -> None:
    unknown_key = "uek_" + "A" * 43
    async with open_client(server) as client:
        missing = await client.post("/graphql", json={"query": VIEWER})
        unknown = await client.post("/graphql", json={"query": VIEWER}, headers=bearer(unknown_key))
        wrong_scheme = await client.post(
            "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Basic {unknown_key}"}
        )
        missing_over_get = await client.get("/graphql", params={"query": VIEWER})

    for response in (missing, unknown, wrong_scheme, missing_over_get):
        assert_unauthenticated(response)
    assert missing.headers["www-authenticate"] == "Bearer"


@pytest.mark.asyncio(loop_scope="session")
async def test_t1_graphiql_healthz_and_readyz_need_no_api_key(server: RunningServer) -> None:
    async with open_client(server) as client:
        healthz = await client.get("/healthz")
        readyz = await client.get("/readyz")
        graphiql = await client.get("/graphql", headers={"Accept": "text/html"})

    assert healthz.status_code == 200, healthz.text
    assert readyz.status_code == 200, readyz.text
    assert graphiql.status_code == 200, graphiql.text
    assert graphiql.headers["content-type"].startswith("text/html")
    assert "graphiql" in graphiql.text.lower()
    # serve names no software behind it (README, Headers).
    assert [answer for answer in (healthz, readyz, graphiql) if "server" in answer.headers] == []


# T3 — keys are created and revoked from the CLI; a revocation acts at once, everywhere


@pytest.mark.asyncio(loop_scope="session")
async def test_t3_revoked_key_stops_working_at_once_in_every_worker(
    server: RunningServer,
) -> None:
    business = await create_business(server)
    async with open_client(server) as client:
        response = await client.post(
            "/graphql", json={"query": VIEWER}, headers=bearer(business["api_key"])
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"viewer": {"id": business["business_id"]}}}
    # Both workers use the first key before it is revoked: a cache of it would show.
    assert set(await viewer_statuses_from_every_worker(server, business["api_key"])) == {200}
    second = await cli_json(server, "create-api-key", business["business_id"])
    first_key_id = await only_other_key_id(server, business["business_id"], second["key_id"])

    await revoke_api_key(server, first_key_id)

    assert set(await viewer_statuses_from_every_worker(server, business["api_key"])) == {401}
    assert set(await viewer_statuses_from_every_worker(server, second["api_key"])) == {200}


# I11 — concurrent requests with overlapping eventIds, over several connections and workers

CONCURRENT_REQUESTS = 16
EVENTS_PER_REQUEST = 50
EVENT_ID_POOL_SIZE = 200


@pytest.mark.asyncio(loop_scope="session")
async def test_i11_concurrent_overlapping_batches_store_each_event_exactly_once(
    server: RunningServer,
) -> None:
    business = await create_business(server)
    run = uuid.uuid4().hex[:8]
    pool = [f"i11-{run}-{index:03}" for index in range(EVENT_ID_POOL_SIZE)]
    rng = random.Random(11)
    # Distinct eventIds inside each request (I7), heavy overlap between requests.
    batches = [rng.sample(pool, EVENTS_PER_REQUEST) for _ in range(CONCURRENT_REQUESTS)]
    sent = {event_id for batch in batches for event_id in batch}

    async with open_client(server, connections=CONCURRENT_REQUESTS) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/graphql",
                    json={"query": INGEST, "variables": {"input": {"events": events(batch)}}},
                    headers=bearer(business["api_key"]),
                )
                for batch in batches
            )
        )

    payloads = []
    for batch, response in zip(batches, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        payload = body["data"]["ingestEvents"]
        assert payload["userErrors"] == []
        # Every event of a request is either stored by it or reported as already stored.
        assert sorted(payload["ingested"] + payload["duplicates"]) == sorted(batch)
        assert payload["ingestedCount"] == len(payload["ingested"])
        assert payload["duplicateCount"] == len(payload["duplicates"])
        payloads.append(payload)
    reported_ingested = Counter(
        event_id for payload in payloads for event_id in payload["ingested"]
    )
    assert set(reported_ingested) == sent
    assert set(reported_ingested.values()) == {1}, "an eventId was ingested by two requests"
    assert sum(payload["ingestedCount"] for payload in payloads) == len(sent)
    assert sum(payload["duplicateCount"] for payload in payloads) == (
        CONCURRENT_REQUESTS * EVENTS_PER_REQUEST - len(sent)
    )
    assert await stored_revisions(server, business["business_id"]) == {
        event_id: [1] for event_id in sent
    }


def events(event_ids: list[str]) -> list[dict[str, Any]]:
    """Events at the server's time (no timestamp), for customers that need not exist (I4)."""
    return [
        {
            "eventId": event_id,
            "externalCustomerId": f"customer-{index % 4}",
            "eventName": "api.request",
            "metadata": {"endpoint": "/v1/search", "tokens": index},
        }
        for index, event_id in enumerate(event_ids)
    ]


async def stored_revisions(server: RunningServer, business_id: str) -> dict[str, list[int]]:
    """Each stored eventId of the business, with the revision numbers stored for it."""
    query = sa.text(
        "SELECT events.event_id, event_revisions.revision FROM events"
        " LEFT JOIN event_revisions ON event_revisions.event_sequence = events.sequence"
        " WHERE events.business_id = :business_id"
    )
    revisions: dict[str, list[int]] = {}
    async with direct_database(server) as database, database.session() as session:
        for event_id, revision in await session.execute(query, {"business_id": business_id}):
            revisions.setdefault(event_id, []).append(revision)
    return revisions


# Bounds (SPEC §9, §10): a refused request costs the server nothing but that request


@pytest.mark.asyncio(loop_scope="session")
async def test_bad_requests_are_refused_and_the_server_keeps_serving(
    server: RunningServer,
) -> None:
    business = await create_business(server)
    headers = {**bearer(business["api_key"]), "Content-Type": "application/json"}
    nine_megabytes = b'{"query": "' + b" " * (9 * 1024 * 1024) + b'{ viewer { id } }"}'

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(9):
            yield b" " * (1024 * 1024)

    async with open_client(server) as client:
        too_large = await client.post("/graphql", content=nine_megabytes, headers=headers)
        too_large_chunked = await client.post("/graphql", content=chunks(), headers=headers)
        malformed = await client.post("/graphql", content=b'{"query": "{ viewer', headers=headers)
        afterwards = await client.post("/graphql", json={"query": VIEWER}, headers=headers)

    assert too_large.status_code == 413, too_large.text
    assert too_large.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "content-length" not in too_large_chunked.request.headers
    assert too_large_chunked.status_code == 413, too_large_chunked.text
    assert malformed.status_code == 400, malformed.text
    assert malformed.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert afterwards.status_code == 200, afterwards.text
    assert afterwards.json() == {"data": {"viewer": {"id": business["business_id"]}}}


# B4 — a backfill is reflected at its closeTime by the server itself, exactly once


@pytest.mark.asyncio(loop_scope="session")
async def test_b4_the_server_closes_a_backfill_at_its_close_time_exactly_once(
    server: RunningServer,
) -> None:
    # Given a backfill of 500 events whose closeTime is two seconds away, on two workers
    business = await create_business(server)
    headers = bearer(business["api_key"])
    now = datetime.now(UTC)
    start = (now - timedelta(days=2)).replace(microsecond=0)
    close_time = now + timedelta(seconds=2)
    async with open_client(server) as client:

        async def data(query: str, variables: dict[str, Any] | None = None) -> Any:
            response = await client.post(
                "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
            )
            body = response.json()
            assert "errors" not in body, body
            return body["data"]

        created = await data(
            "mutation($input: CreateBackfillInput!) { createBackfill(input: $input) "
            "{ backfill { id } userErrors { code } } }",
            {
                "input": {
                    "timeframeStart": start.isoformat(),
                    "timeframeEnd": (start + timedelta(days=1)).isoformat(),
                    "replaceExistingEvents": False,
                    "closeTime": close_time.isoformat(),
                }
            },
        )
        backfill_id = created["createBackfill"]["backfill"]["id"]
        events = [
            {
                "eventId": f"b-{index}",
                "eventName": "api.request",
                "externalCustomerId": "acme",
                "timestamp": (start + timedelta(seconds=index)).isoformat(),
            }
            for index in range(500)
        ]
        ingested = await data(INGEST_INTO, {"input": {"backfillId": backfill_id, "events": events}})
        assert ingested["ingestEvents"]["ingestedCount"] == 500

        # When nobody asks for the backfill itself, only for the events
        counted = 0
        for _ in range(100):
            listed = await data("{ events(first: 1) { totalCount } }")
            counted = listed["events"]["totalCount"]
            if counted:
                break
            await asyncio.sleep(0.1)
        seen = datetime.now(UTC)

        # Then they became visible by the server's own close, shortly after closeTime, once
        assert counted == 500
        assert seen - close_time < timedelta(seconds=5)
        volume = await data(
            "query($from: DateTime!) { eventVolume(input: {from: $from}) { total } }",
            {"from": start.isoformat()},
        )
        assert volume["eventVolume"]["total"] == 500
        state = await data(
            "query($id: ID!) { backfill(id: $id) { status reflectedAt } }", {"id": backfill_id}
        )
    assert state["backfill"]["status"] == "REFLECTED"
    assert datetime.fromisoformat(state["backfill"]["reflectedAt"]) >= close_time


@pytest.mark.asyncio(loop_scope="session")
async def test_the_server_logs_one_json_line_per_request_under_its_id(
    server: RunningServer,
) -> None:
    business = await create_business(server)
    async with open_client(server, connections=1) as client:
        served = await client.post(
            "/graphql",
            json={"query": "query Who { viewer { id } }", "operationName": "Who"},
            headers=bearer(business["api_key"]) | {"X-Request-Id": "e2e-log-1"},
        )
        refused = await client.post(
            "/graphql", json={"query": VIEWER}, headers=bearer("uek_e2e-not-a-key")
        )
    assert served.status_code == 200
    assert served.headers["x-request-id"] == "e2e-log-1"
    assert refused.status_code == 401

    def access_lines() -> dict[str, dict[str, Any]]:
        printed = server.log().splitlines()
        # After the start-up banner (printed for a person), every line is one JSON object.
        first_json = next(index for index, line in enumerate(printed) if line.startswith("{"))
        lines = [json.loads(line) for line in printed[first_json:]]
        assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
        access = "usage_events.access"
        return {line["request_id"]: line for line in lines if line["logger"] == access}

    # A request's line is written once its response has gone: a moment after the client
    # has it.
    wanted = {"e2e-log-1", refused.headers["x-request-id"]}
    for _ in range(100):
        access = access_lines()
        if wanted <= access.keys():
            break
        await asyncio.sleep(0.05)
    served_line = access["e2e-log-1"]
    assert {key: served_line[key] for key in ("method", "path", "status", "operation")} == {
        "method": "POST",
        "path": "/graphql",
        "status": 200,
        "operation": "Who",
    }
    assert served_line["business_id"] == business["business_id"]
    refused_line = access[refused.headers["x-request-id"]]
    assert (refused_line["status"], refused_line["code"]) == (401, "UNAUTHENTICATED")
    assert "uek_e2e-not-a-key" not in server.log()
    assert business["api_key"] not in server.log()
