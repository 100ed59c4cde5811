"""The application's start-up, as a server runs it (the lifespan)."""

import gc
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Router

from db.settings import Settings
from graph.app import create_app
from tests.support import GraphQLClient

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


async def test_start_up_freezes_the_long_lived_objects(settings: Settings, unfrozen: None) -> None:
    app = create_app(settings)
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        # The modules, the schema and the engine: tens of thousands of objects at least.
        assert gc.get_freeze_count() > 10_000
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_graphql_under_other_methods_is_answered_by_starlette_as_before(
    client: httpx.AsyncClient, api: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    routed: list[str] = []
    route = Router.__call__

    async def spy(self: Router, scope: Any, receive: Any, send: Any) -> None:
        routed.append(f"{scope['method']} {scope['path']}")
        await route(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", spy)
    # GET and POST /graphql go straight to the endpoint (graph.app.UsageEventsApp)...
    posted = await api.post("{ __typename }")
    got = await client.get(
        "/graphql", params={"query": "{ __typename }"}, headers=api.tenant.headers
    )
    assert got.json() == {"data": {"__typename": "Query"}}
    assert routed == []
    assert posted.json() == {"data": {"__typename": "Query"}}
    # ...with the same middleware: a request id and the security headers.
    assert posted.headers["x-request-id"]
    assert posted.headers["x-content-type-options"] == "nosniff"
    # Other methods, and paths beside it, still meet Starlette's routing.
    put = await client.put("/graphql", headers=api.tenant.headers)
    assert put.status_code == 405
    assert set(put.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert put.headers["x-request-id"]
    assert (await client.get("/graphql/nothing")).status_code == 404
    assert routed == ["PUT /graphql", "GET /graphql/nothing"]
