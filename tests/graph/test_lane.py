"""The lane (graph.lane) answers a GraphQL request without an Origin as the middleware
stack does: the same status, headers and body, and the same access line."""

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from db.database import Database
from db.settings import Settings
from graph.app import UsageEventsApp, create_app, graphql_stack, service_middleware
from graph.lane import GraphQLLane
from graph.logs import current_request_id
from tests.support import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

ACCESS_LOGGER = "usage_events.access"
# Sent by the client, so that both ways answer with the same request id.
REQUEST_ID = {"X-Request-Id": "lane-test-1"}


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The access lines' fields, but the duration."""
    lines = []
    for record in caplog.records:
        if record.name == ACCESS_LOGGER:
            fields = {key: value for key, value in vars(record).items() if key in FIELDS}
            lines.append(fields | {"message": record.getMessage()})
    caplog.clear()
    return lines


FIELDS = ("request_id", "method", "path", "status", "business_id", "operation", "code", "client")


class BothWays:
    """The app as served (the lane for requests without an Origin) and the stack it stands
    in for, over one database."""

    def __init__(self, app: UsageEventsApp) -> None:
        lane = app.graphql
        assert isinstance(lane, GraphQLLane)
        self.lane = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )
        self.stack = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=lane.stacked), base_url="http://testserver"
        )

    async def same(
        self, caplog: pytest.LogCaptureFixture, method: str, **request: Any
    ) -> httpx.Response:
        """Send the request both ways; the answers and access lines must be equal."""
        request["headers"] = REQUEST_ID | request.get("headers", {})
        caplog.clear()
        by_lane = await self.lane.request(method, "/graphql", **request)
        lane_lines = access_lines(caplog)
        by_stack = await self.stack.request(method, "/graphql", **request)
        stack_lines = access_lines(caplog)
        assert by_lane.status_code == by_stack.status_code
        # Raw: names in the case each way wrote them, in order.
        assert by_lane.headers.raw == by_stack.headers.raw
        assert by_lane.content == by_stack.content
        assert len(lane_lines) == 1
        assert lane_lines == stack_lines
        return by_lane

    async def close(self) -> None:
        await self.lane.aclose()
        await self.stack.aclose()


@pytest_asyncio.fixture
async def both(settings: Settings, database: Database) -> AsyncIterator[BothWays]:
    ways = BothWays(create_app(settings, database))
    try:
        yield ways
    finally:
        await ways.close()


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    return caplog


async def test_queries_read_the_same(
    both: BothWays, tenant: Tenant, captured: pytest.LogCaptureFixture
) -> None:
    auth = tenant.headers
    answer = await both.same(
        captured,
        "POST",
        json={"query": "query Who { viewer { id name } }", "operationName": "Who"},
        headers=auth,
    )
    assert answer.json()["data"]["viewer"]["name"] == "Acme Analytics"
    # Kept documents run their plans: asked twice.
    for _ in range(2):
        await both.same(
            captured,
            "POST",
            json={"query": "{ events(first: 5) { nodes { eventId metadata } } }"},
            headers=auth,
        )
        await both.same(
            captured, "POST", json={"query": '{ event(eventId: "none") { eventId } }'}, headers=auth
        )
    await both.same(captured, "GET", params={"query": "{ viewer { name } }"}, headers=auth)


async def test_refusals_read_the_same(
    both: BothWays, tenant: Tenant, captured: pytest.LogCaptureFixture
) -> None:
    unauthorized = await both.same(captured, "POST", json={"query": "{ __typename }"})
    assert unauthorized.status_code == 401
    bad_json = await both.same(
        captured,
        "POST",
        content=b"{not json",
        headers=tenant.headers | {"Content-Type": "application/json"},
    )
    assert bad_json.status_code == 400
    mutation_by_get = await both.same(
        captured,
        "GET",
        params={"query": "mutation { __typename }"},
        headers=tenant.headers,
    )
    assert mutation_by_get.status_code == 405


async def test_graphiql_which_sets_security_headers_itself_reads_the_same(
    both: BothWays, captured: pytest.LogCaptureFixture
) -> None:
    page = await both.same(captured, "GET", headers={"Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    # Its own, once, beside the request log's other one and CORS's Vary.
    assert page.headers.get_list("referrer-policy") == ["no-referrer"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["vary"] == "Origin"


async def test_a_request_with_an_origin_goes_through_the_stack(
    settings: Settings, database: Database, tenant: Tenant
) -> None:
    frontend = "https://app.example.com"
    app = create_app(settings.model_copy(update={"cors_origins": [frontend]}), database)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        answer = await client.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers=tenant.headers | {"Origin": frontend},
        )
    assert answer.headers["access-control-allow-origin"] == frontend
    assert answer.headers["x-request-id"]


class StubEndpoint:
    """An endpoint whose answer the test chooses."""

    def __init__(self, answer: Callable[[], Response]) -> None:
        self.answer = answer

    async def handle(self, _request: Request) -> Response:
        return self.answer()


def lane_and_stack(answer: Callable[[], Response]) -> BothWays:
    endpoint: Any = StubEndpoint(answer)
    stacked = graphql_stack(endpoint, service_middleware(Settings()))
    app: Any = UsageEventsApp(graphql=GraphQLLane(endpoint, stacked), routes=[])
    return BothWays(app)


async def test_an_answer_starlette_streams_reads_the_same(
    captured: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"one,"
        yield b"two"

    def streamed() -> Response:
        return StreamingResponse(
            chunks(),
            media_type="text/plain",
            headers={"Vary": "Accept"},
            background=BackgroundTask(ran.append, "after"),
        )

    ways = lane_and_stack(streamed)
    try:
        answer = await ways.same(captured, "POST", content=b"{}")
    finally:
        await ways.close()
    assert answer.content == b"one,two"
    assert answer.headers["vary"] == "Accept, Origin"
    assert ran == ["after", "after"]


async def test_a_background_task_runs_after_the_answer(
    captured: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    def answered() -> Response:
        return Response(b"ok", background=BackgroundTask(ran.append, "after"))

    ways = lane_and_stack(answered)
    try:
        await ways.same(captured, "POST", content=b"{}")
    finally:
        await ways.close()
    assert ran == ["after", "after"]


async def test_a_failing_endpoint_fails_the_same_and_is_logged(
    captured: pytest.LogCaptureFixture,
) -> None:
    def broken() -> Response:
        raise RuntimeError("broken endpoint")

    ways = lane_and_stack(broken)
    try:
        for client in (ways.lane, ways.stack):
            with pytest.raises(RuntimeError, match="broken endpoint"):
                await client.post("/graphql", content=b"{}", headers=REQUEST_ID)
            # The transport runs the app in this task: its request id is not left behind.
            assert current_request_id.get() == ""
    finally:
        await ways.close()
    lane_line, stack_line = access_lines(captured)
    assert lane_line == stack_line
    assert (lane_line["status"], lane_line["message"]) == (0, "POST /graphql no response")


async def test_the_request_id_is_left_behind(
    both: BothWays, captured: pytest.LogCaptureFixture
) -> None:
    await both.same(captured, "POST", json={"query": "{ __typename }"})
    assert current_request_id.get() == ""
