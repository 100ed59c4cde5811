"""CORS for /graphql (SPEC §10): pages of the allowed origins may call the API; none by default.

Sent the way a browser sends them: a preflight OPTIONS with Access-Control-Request-*,
then the request itself with its Origin. What the browser then does with the answer is
tested in tests/e2e/test_cors_browser.py.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from db.database import Database
from db.settings import Settings
from graph.app import create_app
from graph.cors import ApiCORSMiddleware
from tests.support import Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

FRONTEND = "https://app.example.com"
ELSEWHERE = "https://evil.example.net"
VIEWER = {"query": "{ viewer { name } }"}

ClientFor = Callable[[list[str]], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def client_for(database_url: str, database: Database) -> ClientFor:
    """A client of the app whose USAGE_EVENTS_CORS_ORIGINS are the given origins."""

    @asynccontextmanager
    async def client(origins: list[str]) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(Settings(database_url=database_url, cors_origins=origins), database)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http

    return client


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }


async def test_preflight_from_an_allowed_origin_allows_post_with_the_key(
    client_for: ClientFor,
) -> None:
    async with client_for([FRONTEND]) as client:
        response = await client.options("/graphql", headers=preflight(FRONTEND))

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert {"GET", "POST"} <= set(response.headers["access-control-allow-methods"].split(", "))
    allowed_headers = response.headers["access-control-allow-headers"].lower().split(", ")
    assert {"authorization", "content-type"} <= set(allowed_headers)
    assert response.headers["access-control-max-age"] == "600"
    # The key is a header, not a cookie: the browser is never told to send credentials.
    assert "access-control-allow-credentials" not in response.headers


async def test_preflight_from_another_origin_is_refused(client_for: ClientFor) -> None:
    async with client_for([FRONTEND]) as client:
        response = await client.options("/graphql", headers=preflight(ELSEWHERE))

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_preflight_for_a_method_the_api_does_not_serve_is_refused(
    client_for: ClientFor, method: str
) -> None:
    async with client_for([FRONTEND]) as client:
        response = await client.options("/graphql", headers=preflight(FRONTEND, method))

    assert response.status_code == 400


async def test_no_origin_is_allowed_by_default(client_for: ClientFor) -> None:
    async with client_for([]) as client:
        response = await client.options("/graphql", headers=preflight(FRONTEND))

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_request_from_an_allowed_origin_may_be_read_by_its_page(
    client_for: ClientFor, tenant: Tenant
) -> None:
    async with client_for([FRONTEND]) as client:
        response = await client.post(
            "/graphql", json=VIEWER, headers={**tenant.headers, "Origin": FRONTEND}
        )

    assert response.status_code == 200
    assert response.json() == {"data": {"viewer": {"name": "Acme Analytics"}}}
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert "origin" in response.headers["vary"].lower()


async def test_refusals_from_an_allowed_origin_may_be_read_too(client_for: ClientFor) -> None:
    # A frontend must be able to tell "your key is wrong" from a network failure.
    async with client_for([FRONTEND]) as client:
        response = await client.post("/graphql", json=VIEWER, headers={"Origin": FRONTEND})

    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert response.headers["access-control-allow-origin"] == FRONTEND


async def test_request_from_another_origin_is_not_marked_readable(
    client_for: ClientFor, tenant: Tenant
) -> None:
    async with client_for([FRONTEND]) as client:
        response = await client.post(
            "/graphql", json=VIEWER, headers={**tenant.headers, "Origin": ELSEWHERE}
        )

    assert "access-control-allow-origin" not in response.headers


async def test_any_origin_is_allowed_with_star_and_never_with_credentials(
    client_for: ClientFor, tenant: Tenant
) -> None:
    async with client_for(["*"]) as client:
        answer = await client.options("/graphql", headers=preflight(ELSEWHERE))
        response = await client.post(
            "/graphql", json=VIEWER, headers={**tenant.headers, "Origin": ELSEWHERE}
        )

    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answer.headers
    assert "access-control-allow-credentials" not in response.headers


async def test_get_queries_are_allowed_from_an_allowed_origin(
    client_for: ClientFor, tenant: Tenant
) -> None:
    async with client_for([FRONTEND]) as client:
        answer = await client.options("/graphql", headers=preflight(FRONTEND, "GET"))
        response = await client.get(
            "/graphql", params=VIEWER, headers={**tenant.headers, "Origin": FRONTEND}
        )

    assert answer.status_code == 200
    assert response.json() == {"data": {"viewer": {"name": "Acme Analytics"}}}
    assert response.headers["access-control-allow-origin"] == FRONTEND


@pytest.mark.parametrize("origins", [[], [FRONTEND], ["*"]])
async def test_a_request_without_origin_gets_vary_origin_and_nothing_else_of_cors(
    client_for: ClientFor, origins: list[str]
) -> None:
    async with client_for(origins) as client:
        responses = [
            await client.post("/graphql", json=VIEWER),
            await client.get("/graphql", headers={"Accept": "text/html"}),
            await client.get("/healthz"),
        ]

    for response in responses:
        assert response.headers.get_list("vary")[-1].endswith("Origin"), response.headers
        assert not [name for name in response.headers if name.startswith("access-control-")]


# Responses as an endpoint may start them: no Vary, one, several, among other headers.
RESPONSE_HEADERS = [
    [],
    [(b"content-type", b"application/json")],
    [(b"vary", b"Accept"), (b"content-type", b"text/html")],
    [(b"vary", b"Accept"), (b"x-one", b"1"), (b"vary", b"Accept-Encoding"), (b"x-two", b"2")],
]


@pytest.mark.parametrize("response_headers", RESPONSE_HEADERS)
@pytest.mark.parametrize("origins", [[], [FRONTEND], ["*"]])
@pytest.mark.parametrize("origin", [None, FRONTEND, ELSEWHERE])
async def test_the_short_way_sends_the_headers_starlettes_middleware_sends(
    response_headers: list[tuple[bytes, bytes]], origins: list[str], origin: str | None
) -> None:
    """graph.cors answers requests without an Origin itself: the same start message as
    Starlette's CORSMiddleware, for every kind of response headers (and, with an Origin,
    Starlette's middleware itself)."""

    async def endpoint(_scope: Scope, _receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": list(response_headers)}
        )
        await send({"type": "http.response.body", "body": b"{}"})

    async def sent_by(middleware: type[CORSMiddleware]) -> list[Message]:
        app = middleware(
            endpoint,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
        headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        scope = {"type": "http", "method": "POST", "path": "/graphql", "headers": headers}
        messages: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            messages.append(message)

        await app(scope, receive, send)
        return messages

    ours, starlettes = await sent_by(ApiCORSMiddleware), await sent_by(CORSMiddleware)

    assert ours == starlettes
    assert [name for name, _ in ours[0]["headers"]].count(b"vary") == 1
