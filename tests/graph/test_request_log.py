"""Request ids, security headers and the one JSON access line per request (graph.request_log)."""

import logging
import os
import re
import warnings
from typing import Any

import httpx
import pytest

from graph import request_log
from graph.request_log import SECURITY_HEADERS, RandomIds, RequestLog
from tests.support import GraphQLClient, Tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

ACCESS_LOGGER = "usage_events.access"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == ACCESS_LOGGER]


async def test_every_response_carries_a_fresh_request_id(
    client: httpx.AsyncClient, api: GraphQLClient
) -> None:
    answers = [
        await api.post("{ viewer { id } }"),
        await client.get("/healthz"),
        await client.post("/graphql", json={"query": "{ __typename }"}),  # 401
        await client.get("/graphql", headers={"Accept": "text/html"}),  # GraphiQL
    ]
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert all(re.fullmatch(r"[0-9a-f]{32}", each) for each in ids), ids
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("req-42.a:b_C", True), ("x" * 65, False), ("bad id", False), ("a/b", False)],
)
async def test_a_sane_client_request_id_is_kept_others_replaced(
    client: httpx.AsyncClient, tenant: Tenant, sent: str, kept: bool
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { id } }"},
        headers=tenant.headers | {"X-Request-Id": sent},
    )
    assert (response.headers["x-request-id"] == sent) is kept


async def test_security_headers_on_every_response(
    client: httpx.AsyncClient, api: GraphQLClient
) -> None:
    for response in [
        await api.post("{ viewer { id } }"),
        await client.get("/healthz"),
        await client.get("/graphql", headers={"Accept": "text/html"}),
    ]:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"


async def test_one_access_line_per_request_with_who_what_and_how_long(
    api: GraphQLClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    response = await api.http.post(
        "/graphql",
        json={"query": "query Mine { viewer { id } }", "operationName": "Mine"},
        headers=tenant.headers,
    )
    assert response.status_code == 200
    [line] = access_lines(caplog)
    expected = {
        "request_id": response.headers["x-request-id"],
        "method": "POST",
        "path": "/graphql",
        "status": 200,
        "business_id": tenant.business_id,
        "operation": "Mine",
        "code": None,
    }
    assert {key: line.__dict__.get(key) for key in expected} == expected
    assert isinstance(line.__dict__["duration_ms"], float)


async def test_refusals_are_logged_with_their_code_and_no_secret(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "uek_not-a-real-key-but-secret"
    response = await client.post(
        "/graphql",
        json={"query": "{ viewer { id } }"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 401
    [line] = access_lines(caplog)
    assert line.__dict__["status"] == 401
    assert line.__dict__["code"] == "UNAUTHENTICATED"
    assert line.__dict__["business_id"] is None
    assert secret not in caplog.text
    assert not [record for record in caplog.records if record.exc_info]


async def test_a_long_operation_name_is_cut_in_the_log(
    api: GraphQLClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    await api.http.post(
        "/graphql",
        json={"query": "{ viewer { id } }", "operationName": "N" * 100_000},
        headers=tenant.headers,
    )
    [line] = access_lines(caplog)
    assert len(line.__dict__["operation"]) == 100


async def test_random_ids_are_read_in_batches_and_never_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []
    real_urandom = os.urandom

    def noted(size: int) -> bytes:
        reads.append(size)
        return real_urandom(size)

    monkeypatch.setattr(os, "urandom", noted)
    ids = RandomIds()
    made = [ids.next() for _ in range(RandomIds.BATCH * 2 + 1)]
    assert reads == [RandomIds.BYTES * RandomIds.BATCH] * 3
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"[0-9a-f]{32}", each) for each in made)


async def test_a_forked_child_reads_its_own_random_ids() -> None:
    """The server's own RandomIds: an application that forks its workers after importing
    the service (a pre-forking server) would otherwise give two requests one id."""
    ids = request_log._random_ids
    ids.forget()
    ids.next()  # The parent has 255 ids left of the bytes it read: the child must not.
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns of fork() in a process with threads; the child only writes.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # The child: its next id, from bytes of its own; it never returns.
        try:
            os.close(read_end)
            os.write(write_end, ids.next().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child_next = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child_next != ids.next()


HEADS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"content-type", b"application/json")],
    [(b"vary", b"Accept")],
    [(b"X-Frame-Options", b"SAMEORIGIN")],
    [(b"referrer-policy", b"same-origin"), (b"content-length", b"2")],
    [(b"x-request-id", b"set-by-the-answer")],
    [*SECURITY_HEADERS, (b"vary", b"Origin")],
]


@pytest.mark.parametrize("head", HEADS)
async def test_an_answer_gets_its_request_id_and_each_security_header_it_does_not_set(
    head: list[tuple[bytes, bytes]],
) -> None:
    """The one list made where the answer sets none of them, or the security headers it
    does not set (by name, in any case), after the request id."""
    scope: dict[str, Any] = {"headers": [(b"x-request-id", b"log-head")]}
    log = RequestLog(scope)
    try:
        present = {name.lower() for name, _ in head}
        expected = [
            *head,
            (b"x-request-id", b"log-head"),
            *(each for each in SECURITY_HEADERS if each[0] not in present),
        ]
        assert log.response_headers(iter(head)) == expected
    finally:
        log.done({"method": "POST", "path": "/graphql"} | scope)
