"""The Starlette application: / (to /graphql), /graphql and GraphiQL's files, /healthz, /readyz."""

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from db.database import Database
from db.settings import Settings, get_settings
from graph.access_line import settle_verdicts
from graph.backfills.closer import run_backfill_closer
from graph.cors import ApiCORSMiddleware
from graph.graphiql import ASSET_MOUNT, graphiql_assets_app
from graph.http import GraphQLEndpoint
from graph.lane import GraphQLLane
from graph.logs import install_request_ids, skip_unlogged_record_fields
from graph.request_log import RequestLogMiddleware
from graph.schema import build_schema


def freeze_long_lived_objects() -> None:
    """Keep what lives as long as the process out of the collector's full passes.

    The modules, the GraphQL schema and the engine are several hundred thousand objects;
    every full (generation 2) collection walked them all, pausing a request for ≈70 ms
    (measured in process over `events(first: 100)`; after freezing, ≈1 ms), which set the
    service's p99 in `make bench`.
    """
    gc.collect()
    gc.freeze()


GRAPHQL_PATH = "/graphql"


def create_served_app() -> "UsageEventsApp":
    """The application as `usage-events serve` runs it in each server process: create_app,
    with log records spared the fields no line of the service shows, and each access
    line's way (graph.access_line) decided at the first line and kept (both process-wide:
    serve's logging configuration is the process's and changes no more)."""
    skip_unlogged_record_fields()
    settle_verdicts()
    return create_app()


def create_app(
    settings: Settings | None = None, database: Database | None = None
) -> "UsageEventsApp":
    settings = settings or get_settings()
    install_request_ids()
    owns_database = database is None
    database = database or Database.from_settings(settings)
    endpoint = GraphQLEndpoint(build_schema(settings), database, settings)

    async def home(request: Request) -> RedirectResponse:
        # A browser pointed at the bare address gets GraphiQL, the query string kept along
        # (`/?headers=…` fills in the key as the printed link does).
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/graphql{query}")

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        if await database.is_reachable():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "database unreachable"}, status_code=503)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        freeze_long_lived_objects()
        closer = None
        if settings.backfill_close_interval:  # 0: this process closes none by itself
            closer = asyncio.create_task(run_backfill_closer(database, settings))
        key_listener = asyncio.create_task(
            database.listen_for_key_changes(settings.database_connect_timeout.total_seconds())
        )
        yield
        for task in (closer, key_listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if owns_database:
            await database.dispose()

    middleware = service_middleware(settings)
    return UsageEventsApp(
        graphql=GraphQLLane(endpoint, stacked=graphql_stack(endpoint, middleware)),
        routes=[
            Route("/", home, methods=["GET"]),
            Route(GRAPHQL_PATH, endpoint.handle, methods=["GET", "POST"]),
            Mount(ASSET_MOUNT, app=graphiql_assets_app()),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )


class UsageEventsApp(Starlette):
    """Starlette, except that GET and POST /graphql, nearly every request the service
    serves, go straight to the endpoint under the same middleware (request log, CORS), or
    for a request without an Origin through the lane that does what they do
    (graph.lane).

    Starlette's own layers around a route — its error and exception middleware, the
    router's matching, the route's request wrapper — cost about a twentieth of a point
    read's CPU (issue 14's profiles) and do nothing for the endpoint, which answers every
    error itself. Every other request, /graphql under another method (a CORS preflight,
    HEAD, 405s) or below a root path included, goes through Starlette as before.
    """

    def __init__(self, *, graphql: ASGIApp, **options: Any) -> None:
        super().__init__(**options)
        self.graphql = graphql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == GRAPHQL_PATH
            and scope["method"] in ("GET", "POST")
            and not scope.get("root_path")
        ):
            scope["app"] = self
            await self.graphql(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class GraphQLApp:
    """The endpoint as a bare ASGI application."""

    def __init__(self, endpoint: GraphQLEndpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint.handle(Request(scope, receive, send))
        await response(scope, receive, send)


def service_middleware(settings: Settings) -> list[Middleware]:
    """The middleware of every route. Outermost, the request log: every response, CORS
    answers included, gets its request id."""
    return [Middleware(RequestLogMiddleware), cors_middleware(settings)]


def graphql_stack(endpoint: GraphQLEndpoint, middleware: list[Middleware]) -> ASGIApp:
    """The endpoint as an ASGI application inside `middleware`: what /graphql is, but for
    the lane's short way (graph.lane)."""
    return _wrapped(GraphQLApp(endpoint), middleware)


def _wrapped(app: ASGIApp, middleware: list[Middleware]) -> ASGIApp:
    """`app` inside `middleware`, the first outermost, as Starlette stacks it."""
    for cls, args, kwargs in reversed(middleware):
        app = cls(app, *args, **kwargs)
    return app


def cors_middleware(settings: Settings) -> Middleware:
    """Browser pages of the allowed origins may call the API (SPEC §10; none by default).

    The API key travels in the Authorization header, never in a cookie, so credentials
    stay off: a browser then sends no cookies along, and "*" (any origin) is safe to
    allow, since a page can only use a key it already holds. Starlette's middleware, with a
    short way for the requests without an Origin (graph.cors).
    """
    return Middleware(
        ApiCORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        allow_credentials=False,
        max_age=600,
    )
