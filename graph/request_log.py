"""Every HTTP response: a request id, security headers, and one access line in the log.

An ASGI middleware rather than Starlette's BaseHTTPMiddleware, so that a response is
passed through as it is sent, never buffered, and a client that goes away is no error.

The request id is the client's `X-Request-Id` when it sends a sane one (a proxy in front
may have set it), else a new one; it is echoed in the response's `X-Request-Id`, in the
`extensions` of masked errors (graph.errors) and in every log line of the request.
"""

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.access_line import log_access
from graph.logs import current_request_id

logger = logging.getLogger("usage_events.access")

REQUEST_ID_HEADER = b"x-request-id"
# What a client's own request id may look like: short, and safe in a log line and header.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")

# Sent with every response. The GraphiQL page sets its own Content-Security-Policy.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_SECURITY_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)


@dataclass
class RequestRecord:
    """What the access line says of a request; the endpoint fills in what it learns."""

    request_id: str
    business_id: str | None = None
    operation: str | None = None
    # Why a request was refused or failed, when it was: the error code sent.
    code: str | None = None


def request_record(scope: Scope) -> RequestRecord | None:
    """The record of the request of `scope`, for the endpoint to fill in."""
    record = scope.get("state", {}).get("request_record")
    return record if isinstance(record, RequestRecord) else None


class RequestLog:
    """One request's part of the log: its id (in the log records written meanwhile too),
    its RequestRecord in the scope's state, and its access line when it is done."""

    __slots__ = ("_started", "_token", "record", "request_id", "status")

    def __init__(self, scope: Scope) -> None:
        self.request_id = _request_id(scope)
        self.record = RequestRecord(self.request_id)
        scope.setdefault("state", {})["request_record"] = self.record
        self._token = current_request_id.set(self.request_id)
        self._started = time.perf_counter()
        # 0 until the answer starts: the client went away, or the app failed before it.
        self.status = 0

    def response_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """An answer's `headers`, then its request id and each security header the answer
        does not set itself."""
        answered = list(headers)
        request_id = (REQUEST_ID_HEADER, self.request_id.encode())
        for name, _ in answered:
            if name.lower() in _SECURITY_NAMES:
                break
        else:  # Nearly every answer: it sets none of them, and gets them all.
            answered += (request_id, *SECURITY_HEADERS)
            return answered
        present = {name.lower() for name, _ in answered}
        answered.append(request_id)
        answered.extend(each for each in SECURITY_HEADERS if each[0] not in present)
        return answered

    def sending(
        self,
        send: Send,
        inner: Callable[[list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]] | None = None,
    ) -> Send:
        """`send`, noting the answer's status and adding this log's headers to its head,
        after those of `inner` (what a layer inside the request log adds)."""

        async def send_noted(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                if inner is not None:
                    headers = inner(list(headers))
                self.status = message["status"]
                message = {**message, "headers": self.response_headers(headers)}
            await send(message)

        return send_noted

    def done(self, scope: Scope) -> None:
        """Write the access line, and leave the request's id behind."""
        duration_ms = round((time.perf_counter() - self._started) * 1000, 2)
        record = self.record
        try:
            log_access(
                logger,
                "%s %s %s",
                (scope["method"], scope["path"], self.status or "no response"),
                # request_id comes with every record of the request (graph.logs).
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": self.status,
                    "duration_ms": duration_ms,
                    "business_id": record.business_id,
                    "operation": record.operation,
                    "code": record.code,
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )
        finally:
            current_request_id.reset(self._token)


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        log = RequestLog(scope)
        try:
            await self.app(scope, receive, log.sending(send))
        finally:
            log.done(scope)


def _request_id(scope: Scope) -> str:
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _SANE_REQUEST_ID.fullmatch(value):
            return value.decode()
    return _random_ids.next()


class RandomIds:
    """128 random bits in 32 hex digits, as uuid4().hex spells them, from os.urandom as
    `secrets.token_hex` takes them, but read for 256 ids at once: a system call per 256
    requests rather than one each (a point read's CPU under load: 3 % went to getrandom).
    A forked child reads afresh, never its parent's next ids."""

    BYTES = 16
    BATCH = 256

    def __init__(self) -> None:
        self._random = b""
        self._used = 0
        # An application may serve from event loops in several threads.
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            if self._used == len(self._random):
                self._random = os.urandom(self.BYTES * self.BATCH)
                self._used = 0
            start = self._used
            self._used += self.BYTES
            return self._random[start : self._used].hex()

    def forget(self) -> None:
        # A lock another thread held at the fork would stay held in the child.
        self._lock = threading.Lock()
        self._random = b""
        self._used = 0


_random_ids = RandomIds()
os.register_at_fork(after_in_child=_random_ids.forget)
