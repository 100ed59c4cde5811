"""Instructions per request, counted by callgrind: `python -m bench instructions`.

CPU seconds measured on a shared or virtual machine drift by a tenth from one run to the
next, more than most single changes to the request path are worth. Instructions do not:
valgrind's callgrind counts the instructions the process executes, nearly the same for the
same code, data and inputs whatever else the machine does (two runs agreed within 0.1 %
for a point read, 2–4 % for `{ __typename }` and the latest 100, whose share of first
and later statements on the pool's connections varies). So each change of issue 14 was
weighed by this count before the side-by-side run.

The requests run in process through the application as `usage-events serve` makes it
(create_served_app, the same logging configuration, a body the server has read whole),
eight at a time, on PostgreSQL; the count covers `--requests` of them after a warm-up,
from the first to the last (callgrind's collection is switched on and off around them by
a small shared library built here with the C compiler and valgrind's header). What it
leaves out: uvicorn's own work per request, and the kernel's (system calls).

`--served` counts the served process instead: `usage-events serve` itself runs under
callgrind, and requests reach it over HTTP on SERVED_CONNECTIONS kept-alive connections,
so uvicorn and graph/serving.py's protocol are counted too. Once it is ready, callgrind's
instrumentation is switched on (`callgrind_control -i on`); after SERVED_WARMUP_REQUESTS,
the count is zeroed (`callgrind_control -z`), the requests are sent, and the count is
dumped (`callgrind_control -d`): it also holds the event loop's idle wake-ups between
requests, a small share (counts of the same code agreed within 0.1 % for a point read on
one machine, ±0.9 % on a busier one).
"""

import asyncio
import json
import logging.config
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from bench.databases import BenchDatabase
from bench.servers import free_port, start_server, stop_server, wait_ready

# Switches callgrind's collection on and off from the process itself.
_TOGGLE_SOURCE = """
#include <valgrind/callgrind.h>
void collect_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION;
                           CALLGRIND_TOGGLE_COLLECT; }
void collect_stop(void) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS;
                          CALLGRIND_STOP_INSTRUMENTATION; }
"""
CONCURRENCY = 8
WARMUP_REQUESTS = 1600
SERVED_CONNECTIONS = 4
SERVED_WARMUP_REQUESTS = 1000


def tools_missing(served: bool) -> str | None:
    """What the count needs and the machine lacks, or None."""
    for tool in ("valgrind", "callgrind_control" if served else "cc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not served and not Path("/usr/include/valgrind/callgrind.h").exists():
        return "valgrind's header valgrind/callgrind.h is not installed"
    return None


def count_instructions(
    database: BenchDatabase,
    api_key: str,
    bodies: list[bytes],
    requests: int,
    keep_dump: Path | None = None,
) -> int:
    """Instructions per request of `bodies` sent in turn, `requests` of them (rounded down
    to a multiple of CONCURRENCY)."""
    requests -= requests % CONCURRENCY
    if requests <= 0:
        raise ValueError(f"count at least {CONCURRENCY} requests")
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        (folder / "toggle.c").write_text(_TOGGLE_SOURCE)
        toggle = folder / "toggle.so"
        subprocess.run(
            ["cc", "-shared", "-fPIC", "-O2", "-o", str(toggle), str(folder / "toggle.c")],
            check=True,
        )
        (folder / "bodies.json").write_text(json.dumps([body.decode() for body in bodies]))
        output = folder / "callgrind.out"
        completed = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                "--collect-atstart=no",
                f"--callgrind-out-file={output}",
                sys.executable,
                "-m",
                "bench.instructions",
                str(toggle),
                str(folder / "bodies.json"),
                str(requests),
            ],
            env=dict(
                os.environ,
                USAGE_EVENTS_DATABASE_URL=database.url,
                BENCH_API_KEY=api_key,
                PYTHONPATH=str(Path(__file__).parent.parent),
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        # The dump made at the stop: its totals are the requests' alone.
        dumps = sorted(folder.glob("callgrind.out.*"))
        if completed.returncode != 0 or not dumps:
            raise RuntimeError(f"callgrind run failed:\n{completed.stderr[-3000:]}")
        return _per_request(dumps[0], requests, keep_dump)


def count_served_instructions(
    database: BenchDatabase,
    api_key: str,
    bodies: list[bytes],
    requests: int,
    keep_dump: Path | None = None,
) -> int:
    """Instructions per request of the served process (see the module), `bodies` sent in
    turn, `requests` of them (rounded down to a multiple of SERVED_CONNECTIONS)."""
    requests -= requests % SERVED_CONNECTIONS
    if requests <= 0:
        raise ValueError(f"count at least {SERVED_CONNECTIONS} requests")
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        port = free_port()
        server = start_server(
            "served",
            [
                "valgrind",
                "--tool=callgrind",
                # Instrumented from the first request on: a start instrumented takes
                # minutes.
                "--instr-atstart=no",
                f"--callgrind-out-file={folder / 'callgrind.out'}",
                sys.executable,
                "-m",
                "graph.cli",
                "serve",
                "--port",
                str(port),
            ],
            database.url,
            folder,
            port,
            {"PYTHONPATH": str(Path(__file__).parent.parent)},
        )
        try:
            wait_ready(server)
            pid = str(server.process.pid)
            _callgrind_control("-i", "on", pid)
            _send_over_http(port, api_key, bodies, SERVED_WARMUP_REQUESTS)
            _callgrind_control("-z", pid)
            _send_over_http(port, api_key, bodies, requests)
            _callgrind_control("-d", pid)
        finally:
            stop_server(server)
        # The first dump, made by `-d`: the final one, written at exit, has no number.
        dump = folder / "callgrind.out.1"
        if not dump.exists():
            raise RuntimeError(f"callgrind wrote no dump:\n{server.log_tail()}")
        return _per_request(dump, requests, keep_dump)


def _callgrind_control(*arguments: str) -> None:
    """callgrind_control with `arguments`, failing unless it says it did it: it exits 0
    when it found no callgrind run to ask, too."""
    completed = subprocess.run(
        ["callgrind_control", *arguments], capture_output=True, text=True, check=False
    )
    said = completed.stdout + completed.stderr
    if completed.returncode != 0 or "OK." not in said or "Error" in said:
        raise RuntimeError(f"callgrind_control {' '.join(arguments)} failed:\n{said[-2000:]}")


def _per_request(dump: Path, requests: int, keep_dump: Path | None) -> int:
    """The dump's total ÷ `requests`; the dump is copied to `keep_dump` when one is given
    (for callgrind_annotate or KCachegrind)."""
    if keep_dump is not None:
        shutil.copyfile(dump, keep_dump)
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            total = int(line.split()[1])
            if total <= 0:  # Nothing was instrumented: no count at all.
                raise RuntimeError(f"callgrind counted nothing in {dump.name}")
            return total // requests
    raise RuntimeError(f"callgrind wrote no totals in {dump.name}")


def _send_over_http(port: int, api_key: str, bodies: list[bytes], requests: int) -> None:
    """`requests` POSTs to /graphql, shared by SERVED_CONNECTIONS kept-alive connections
    (one thread each); any answer but a 200 without errors, or none, fails the count."""
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    failures: list[str] = []
    answered = [0] * SERVED_CONNECTIONS

    def client(each: int) -> None:
        connection = HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for index in range(requests // SERVED_CONNECTIONS):
                body = bodies[(index + each * 13) % len(bodies)]
                connection.request("POST", "/graphql", body, headers)
                response = connection.getresponse()
                answer = response.read()
                if response.status != 200 or b'"errors"' in answer:
                    failures.append(f"{response.status}: {answer[:800]!r}")
                    return
                answered[each] += 1
        except Exception as error:  # A thread's exception would be printed and lost.
            failures.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(each,)) for each in range(SERVED_CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"a request failed: {failures[0]}")
    if sum(answered) != requests:
        raise RuntimeError(f"{sum(answered)} of {requests} requests were answered")


async def _run(toggle_path: str, bodies: list[bytes], requests: int) -> None:
    import ctypes

    from graph.app import create_served_app
    from graph.serving import BODY_RECEIVED

    authorization = f"Bearer {os.environ['BENCH_API_KEY']}".encode()
    app = create_served_app()

    async def one(body: bytes) -> None:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"authorization", authorization),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
            "state": {},
            BODY_RECEIVED: True,
        }
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200 or b'"errors"' in sent[1]["body"]:
            raise RuntimeError(f"the request failed: {sent}")

    async def client(count: int, offset: int) -> None:
        for index in range(count):
            await one(bodies[(index + offset) % len(bodies)])

    async def concurrently(total: int) -> None:
        share = total // CONCURRENCY
        await asyncio.gather(*(client(share, each * 13) for each in range(CONCURRENCY)))

    toggle = ctypes.CDLL(toggle_path)
    async with app.router.lifespan_context(app):
        await concurrently(WARMUP_REQUESTS)
        toggle.collect_start()
        await concurrently(requests)
        toggle.collect_stop()


def main() -> None:
    """The process callgrind runs: the application and the requests (see the module)."""
    toggle_path, bodies_path, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
    from graph.logs import logging_config

    # As `serve` configures logging; the lines go nowhere.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    logging.config.dictConfig(logging_config())
    bodies = [body.encode() for body in json.loads(Path(bodies_path).read_text())]
    import uvloop

    uvloop.run(_run(toggle_path, bodies, requests))


if __name__ == "__main__":
    main()
