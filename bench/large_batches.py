"""Memory of one server process while clients send maximum-size batches all at once.

    python -m bench.large_batches [--clients 10] [--postgres-url postgresql://…]

Each client sends one 1000-event batch of about 7.8 MiB (50 metadata keys of 150
characters per event, under the 8 MiB body limit) at the same moment. The process's
peak resident memory (VmHWM) is read afterwards, once with as many large bodies allowed
at once as there are clients, once with the default bound (USAGE_EVENTS_MAX_LARGE_REQUESTS):
the bound is what keeps the peak from growing with the number of clients.
"""

import argparse
import asyncio
import json
import subprocess
import tempfile
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.databases import DEFAULT_POSTGRES_ADMIN_URL, postgres_database, sqlite_database
from bench.servers import (
    _status_kib,
    free_port,
    server_environment,
    start_server,
    stop_server,
    usage_events_command,
    wait_ready,
)
from db.settings import Settings

INGEST = (
    "mutation($input: IngestEventsInput!) "
    "{ ingestEvents(input: $input) { ingestedCount userErrors { code } } }"
)


def batch_body(prefix: str) -> bytes:
    now = datetime.now(UTC).isoformat()
    metadata = {f"key{index}": "x" * 150 for index in range(50)}
    events = [
        {
            "eventId": f"{prefix}-{index}",
            "externalCustomerId": "large-batches",
            "eventName": "api.request",
            "timestamp": now,
            "metadata": metadata,
        }
        for index in range(1000)
    ]
    return json.dumps({"query": INGEST, "variables": {"input": {"events": events}}}).encode()


def create_business(database_url: str, directory: Path) -> str:
    printed = subprocess.run(
        [*usage_events_command(), "create-business", "Large batches", "--json"],
        env=server_environment(database_url),
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
    )
    api_key: str = json.loads(printed.stdout)["api_key"]
    return api_key


async def send_at_once(url: str, api_key: str, bodies: list[bytes]) -> Counter[int]:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.post(f"{url}/graphql", content=body, headers=headers) for body in bodies)
        )
    return Counter(response.status_code for response in responses)


def measure(database_url: str, clients: int, max_large_requests: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="usage-events-large-") as directory:
        api_key = create_business(database_url, Path(directory))  # Migrates first.
        port = free_port()
        command = [*usage_events_command(), "serve", "--port", str(port)]
        settings = {"USAGE_EVENTS_MAX_LARGE_REQUESTS": str(max_large_requests)}
        server = start_server("large", command, database_url, Path(directory), port, settings)
        try:
            wait_ready(server)
            [pid] = server.pids()
            before = _status_kib(pid, "VmRSS:") / 1024
            bodies = [batch_body(uuid.uuid4().hex) for _ in range(clients)]
            statuses = asyncio.run(send_at_once(server.url, api_key, bodies))
            peak = _status_kib(pid, "VmHWM:") / 1024
        finally:
            stop_server(server)
    return {
        "max_large_requests": max_large_requests,
        "body_mib": round(len(bodies[0]) / 2**20, 2),
        "statuses": dict(sorted(statuses.items())),
        "rss_before_mib": round(before),
        "peak_mib": round(peak),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_ADMIN_URL)
    arguments = parser.parse_args()
    default_bound = Settings.model_fields["max_large_requests"].default
    for opener in (sqlite_database, lambda: postgres_database(arguments.postgres_url)):
        with opener() as database:
            for bound in (arguments.clients, default_bound):
                row = measure(database.url, arguments.clients, bound)
                print(json.dumps({"database": database.kind, "clients": arguments.clients} | row))


if __name__ == "__main__":
    main()
