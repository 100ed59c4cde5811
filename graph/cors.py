"""Starlette's CORS middleware, with a short way for requests that are not CORS requests.

A request without an `Origin` header — every call from a server, a script or curl, which is
nearly every request the API serves — gets from Starlette's CORSMiddleware only a
`Vary: Origin` on its response; on the way it parses the request's headers twice and the
response's once (about a twentieth of `{ __typename }`'s CPU, issue 14). This adds that
same header directly. Requests with an Origin (browsers: preflights, simple and actual
requests) go through Starlette's middleware unchanged. tests/graph/test_cors.py checks
that the response headers are those Starlette's own middleware sends.
"""

from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

_ORIGIN = b"origin"
VARY = b"vary"


class ApiCORSMiddleware(CORSMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or sends_origin(scope):
            await super().__call__(scope, receive, send)
            return

        async def send_varying_by_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = vary_by_origin(list(message.get("headers", ())))
            await send(message)

        await self.app(scope, receive, send_varying_by_origin)


def sends_origin(scope: Scope) -> bool:
    """Whether the request has an `Origin` header: a CORS request, or a browser's own."""
    # A loop, not any() over a generator: this is asked of every request.
    for name, _ in scope["headers"]:  # noqa: SIM110
        if name == _ORIGIN:
            return True
    return False


def vary_by_origin(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with `Origin` added to their Vary, as Starlette sets it: the values of
    every Vary header joined into the first one, with `Origin` last."""
    for name, _ in headers:
        if name == VARY:
            break
    else:  # Nearly every answer: no Vary of its own.
        headers.append((VARY, b"Origin"))
        return headers
    found = [index for index, (name, _) in enumerate(headers) if name == VARY]
    value = b", ".join([*(headers[index][1] for index in found), b"Origin"])
    for index in reversed(found[1:]):
        del headers[index]
    headers[found[0]] = (VARY, value)
    return headers
