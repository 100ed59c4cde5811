"""One step for a GraphQL request that is not a CORS request, in place of the middleware stack.

Nearly every request the service serves is a POST (or GET) to /graphql from a server, a
script or curl: no `Origin` header. Through the middleware stack such a request passes
three layers — the request log (graph.request_log), CORS (graph.cors), the endpoint as an
ASGI application — each a coroutine frame the request's every resumption passes through,
and two of them wrapping `send` to copy the answer's head and add headers. The lane does
the same for such a request in one frame: the request log's id, record and access line;
the answer's headers as CORS adds them (`Vary: Origin`) and then the request log
(`X-Request-Id`, the security headers); the endpoint's answer sent as Starlette sends
it. What it saves is in BENCHMARKS.md (issue 14).

A request with an `Origin` goes through the stack, where Starlette's CORS middleware
answers it. tests/graph/test_lane.py checks that both ways give the same answers and
access lines.
"""

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from graph.cors import sends_origin, vary_by_origin
from graph.http import GraphQLEndpoint
from graph.request_log import RequestLog


class GraphQLLane:
    """For a request without an Origin, what `stacked` (the endpoint inside the request
    log and CORS middleware) does, in one step; `stacked` itself for any other."""

    def __init__(self, endpoint: GraphQLEndpoint, stacked: ASGIApp) -> None:
        self.endpoint = endpoint
        self.stacked = stacked

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or sends_origin(scope):
            await self.stacked(scope, receive, send)
            return
        log = RequestLog(scope)
        try:
            response = await self.endpoint.handle(Request(scope, receive, send))
            if type(response).__call__ is Response.__call__:
                await _send(response, log, send)
            else:  # An answer Starlette streams or sends otherwise: it sends it.
                await response(scope, receive, log.sending(send, inner=vary_by_origin))
        finally:
            log.done(scope)


async def _send(response: Response, log: RequestLog, send: Send) -> None:
    """What Starlette's Response.__call__ sends, with the headers CORS and the request log
    add. (A head that cannot be made, which a Response's never fails to be, is logged as no
    answer.)"""
    # CORS's first (inner), then the request log's (outer), as in the stack.
    headers = log.response_headers(vary_by_origin(list(response.raw_headers)))
    log.status = response.status_code
    await send({"type": "http.response.start", "status": log.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
    if response.background is not None:
        await response.background()
