"""graph/serving.py's HeadWithBody: an answer's head goes out with its body, in one write.

Run on real sockets of this event loop through HttpProtocol, as uvicorn's server makes it;
what reaches the socket is counted by the writes of the connection's own transport.
"""

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
from uvicorn.server import ServerState

from graph.serving import JOINED_BODY_BYTES, HeadWithBody, HttpProtocol
from tests.graph.test_serving import CLOSED_WITHIN, REQUEST, serving

pytestmark = pytest.mark.asyncio(loop_scope="session")

UPGRADE = "an upgrade of uvicorn changed it; see graph/serving.py"
ANSWER_HEAD = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
App = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], object]


async def _hello(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": ANSWER_HEAD})
    await send({"type": "http.response.body", "body": b"hello"})


class Connection:
    """A client connection, and every write the server made on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.writes: list[bytes] = []

    async def read_until(self, ending: bytes) -> bytes:
        async with asyncio.timeout(CLOSED_WITHIN):
            return await self.reader.readuntil(ending)

    async def read_to_end(self) -> bytes:
        async with asyncio.timeout(CLOSED_WITHIN):
            return await self.reader.read()

    async def nothing_arrives(self) -> bool:
        try:
            async with asyncio.timeout(0.2):
                await self.reader.read(1)
        except TimeoutError:
            return True
        return False


@asynccontextmanager
async def connected(app: App = _hello) -> AsyncIterator[Connection]:
    state = ServerState()
    async with serving(app=app, state=state, keep_alive=30) as port:  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(CLOSED_WITHIN):
            while not state.connections:
                await asyncio.sleep(0.01)
        [protocol] = state.connections
        assert isinstance(protocol, HttpProtocol)
        connection = Connection(reader, writer)
        transport = protocol.transport
        write = transport.write

        def noting_write(data: bytes | bytearray | memoryview) -> None:
            connection.writes.append(bytes(data))
            write(data)

        transport.write = noting_write  # type: ignore[method-assign]
        try:
            yield connection
        finally:
            writer.close()


async def test_uvicorn_still_writes_an_answer_as_head_with_body_expects() -> None:
    send = inspect.getsource(RequestResponseCycle.send)
    started = send.index("self.response_started = True")
    head_written = send.index('self.transport.write(b"".join(content))')
    assert started < head_written, f"the head is no longer written once started: {UPGRADE}"
    assert "self.transport.write(body)" in send, f"a body is written otherwise: {UPGRADE}"
    assert "self.transport.close()" in inspect.getsource(RequestResponseCycle.run_asgi), (
        f"an unfinished answer no longer closes the transport: {UPGRADE}"
    )
    cycle_parameters = inspect.signature(RequestResponseCycle.__init__).parameters
    assert {"scope", "transport"} <= set(cycle_parameters), UPGRADE
    assert "self.transport = transport" in inspect.getsource(RequestResponseCycle.__init__)


async def test_each_answer_is_one_write_of_its_head_and_body() -> None:
    async with connected() as connection:
        answers = []
        for _ in range(3):  # on a kept-alive connection
            connection.writer.write(REQUEST)
            answers.append(await connection.read_until(b"hello"))

    assert all(answer.startswith(b"HTTP/1.1 200 OK\r\n") for answer in answers)
    assert connection.writes == answers


async def test_a_streamed_answer_sends_its_head_with_the_first_part_and_each_part_at_once() -> None:
    steps = [asyncio.Event(), asyncio.Event()]

    async def streaming(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await steps[0].wait()
        await send({"type": "http.response.body", "body": b"two", "more_body": True})
        await steps[1].wait()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with connected(streaming) as connection:
        connection.writer.write(REQUEST)
        first = await connection.read_until(b"one\r\n")
        steps[0].set()
        second = await connection.read_until(b"two\r\n")
        steps[1].set()
        last = await connection.read_until(b"0\r\n\r\n")

    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked\r\n" in first
    assert second == b"3\r\ntwo\r\n"
    assert last == b"0\r\n\r\n"
    assert connection.writes == [first, second, last]


async def test_a_head_request_is_answered_with_the_head_alone() -> None:
    async with connected() as connection:
        connection.writer.write(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n")
        head = await connection.read_until(b"\r\n\r\n")
        nothing_more = await connection.nothing_arrives()

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 5\r\n" in head
    assert nothing_more
    assert connection.writes == [head]


async def test_100_continue_goes_out_before_the_body_is_sent() -> None:
    async def echo(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        message = await receive()
        body = message.get("body", b"")
        assert isinstance(body, bytes)
        length = str(len(body)).encode()
        headers = [(b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async with connected(echo) as connection:
        connection.writer.write(
            b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await connection.read_until(b"\r\n\r\n")
        connection.writer.write(b"ping")
        answer = await connection.read_until(b"ping")

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert connection.writes == [interim, answer]


@pytest.mark.parametrize("ending", ["raises", "returns"])
async def test_an_answer_left_unfinished_still_sends_its_head_before_closing(ending: str) -> None:
    async def unfinished(
        scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": ANSWER_HEAD})
        if ending == "raises":
            raise RuntimeError("the app failed after starting its answer")

    async with connected(unfinished) as connection:
        connection.writer.write(REQUEST)
        received = await connection.read_to_end()  # the server closes the connection

    # As uvicorn alone answers: the head, then the connection closed.
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"content-length: 5\r\n\r\n")
    assert connection.writes == [received]


async def test_head_with_body_passes_the_rest_to_its_transport() -> None:
    class Transport:
        def __init__(self) -> None:
            self.written: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.written.append(data)

        def close(self) -> None:
            self.closed = True

        def is_closing(self) -> bool:
            return self.closed

    class Cycle:
        response_started = False

    transport, cycle = Transport(), Cycle()
    wrapped = HeadWithBody(transport, cycle)  # type: ignore[arg-type]
    wrapped.write(b"before the answer")
    cycle.response_started = True
    wrapped.write(b"head")
    assert transport.written == [b"before the answer"]
    wrapped.write(memoryview(b"body"))
    wrapped.write(b"more")
    assert not wrapped.is_closing()
    wrapped.close()

    assert transport.written == [b"before the answer", b"headbody", b"more"]
    assert transport.closed
    assert wrapped.is_closing()


async def test_a_large_body_is_written_apart_from_its_head() -> None:
    large = b"x" * (JOINED_BODY_BYTES + 1)

    async def answering_large(
        scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        headers = [(b"content-length", str(len(large)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": large})

    async with connected(answering_large) as connection:
        connection.writer.write(REQUEST)
        head = await connection.read_until(b"\r\n\r\n")
        async with asyncio.timeout(CLOSED_WITHIN):
            body = await connection.reader.readexactly(len(large))

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == large
    assert connection.writes == [head, large]
