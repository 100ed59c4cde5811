"""The ingest load generator: its own process, N keep-alive connections, 1000-event batches.

    python -m bench.ingest_client --url http://127.0.0.1:8000/graphql --key uek_… \
        --batches 100 --connections 1 --mode fresh --prefix run1

`fresh`: every batch has eventIds never sent before. `overlap`: batch k holds eventIds
k·500 … k·500+999, so each eventId is in two batches, and with several connections the
batches in flight at once overlap. Every response is checked (no errors, no userErrors);
with --with-ids the eventIds each response lists as `ingested` are counted, to check that
each stored event is listed by exactly one request. With --backfill-id, every batch goes
into that PENDING backfill, batch k's events stamped at the middle of the k-th of `batches`
equal parts of [--timeframe-start, --timeframe-end) instead of now. Prints one JSON object.
"""

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from bench.workload import backfill_batch_moment, ingest_body, ingest_events


def batch_event_ids(mode: str, prefix: str, batch: int, size: int) -> list[str]:
    if mode == "fresh":
        return [f"{prefix}-{batch:06d}-{index:04d}" for index in range(size)]
    start = batch * (size // 2)
    return [f"{prefix}-{number:09d}" for number in range(start, start + size)]


def distinct_event_ids(mode: str, batches: int, size: int) -> int:
    if mode == "fresh":
        return batches * size
    return (batches - 1) * (size // 2) + size if batches else 0


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(arguments.seed)
    headers = {"Authorization": f"Bearer {arguments.key}", "Content-Type": "application/json"}
    latencies: list[float] = [0.0] * arguments.batches
    finished_at: list[float] = [0.0] * arguments.batches
    totals = {"ingested": 0, "duplicates": 0, "failed": 0}
    listed: Counter[str] = Counter()
    problems: list[str] = []
    next_batch = 0
    limits = httpx.Limits(max_connections=arguments.connections, max_keepalive_connections=64)
    timeframe: tuple[datetime, datetime] | None = None
    if arguments.backfill_id is not None:
        timeframe = (
            datetime.fromisoformat(arguments.timeframe_start),
            datetime.fromisoformat(arguments.timeframe_end),
        )

    async with httpx.AsyncClient(limits=limits, timeout=300) as client:

        async def connection() -> None:
            nonlocal next_batch
            while next_batch < arguments.batches:
                batch = next_batch
                next_batch += 1
                event_ids = batch_event_ids(
                    arguments.mode, arguments.prefix, batch, arguments.batch_size
                )
                moment = (
                    datetime.now(UTC)
                    if timeframe is None
                    else backfill_batch_moment(*timeframe, batch, arguments.batches)
                )
                body = ingest_body(
                    ingest_events(event_ids, rng, moment),
                    with_ids=arguments.with_ids,
                    backfill_id=arguments.backfill_id,
                )
                sent = time.perf_counter()
                response = await client.post(arguments.url, content=body, headers=headers)
                latencies[batch] = time.perf_counter() - sent
                finished_at[batch] = time.perf_counter() - started
                payload = orjson.loads(response.content)
                result = (payload.get("data") or {}).get("ingestEvents")
                if response.status_code != 200 or payload.get("errors") or result is None:
                    totals["failed"] += 1
                    problems.append(f"HTTP {response.status_code}: {response.text[:300]}")
                    continue
                if result["userErrors"]:
                    totals["failed"] += 1
                    problems.append(f"userErrors: {str(result['userErrors'])[:300]}")
                    continue
                totals["ingested"] += result["ingestedCount"]
                totals["duplicates"] += result["duplicateCount"]
                if arguments.with_ids:
                    listed.update(result["ingested"])

        started = time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(arguments.connections)))
        wall = time.perf_counter() - started

    report: dict[str, Any] = {
        "batches": arguments.batches,
        "connections": arguments.connections,
        "mode": arguments.mode,
        "events_sent": arguments.batches * arguments.batch_size,
        "distinct_event_ids": distinct_event_ids(
            arguments.mode, arguments.batches, arguments.batch_size
        ),
        "wall_seconds": wall,
        "latencies_ms": [round(latency * 1000, 3) for latency in latencies],
        "finished_at_seconds": [round(moment, 3) for moment in finished_at],
        "ingested_count": totals["ingested"],
        "duplicate_count": totals["duplicates"],
        "failed_batches": totals["failed"],
        "problems": problems[:5],
    }
    if arguments.with_ids:
        report["listed_ingested"] = sum(listed.values())
        report["listed_distinct"] = len(listed)
        report["listed_more_than_once"] = sum(1 for count in listed.values() if count > 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--batches", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--mode", choices=["fresh", "overlap"], default="fresh")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--with-ids", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backfill-id", default=None)
    parser.add_argument("--timeframe-start", help="ISO 8601; with --backfill-id")
    parser.add_argument("--timeframe-end", help="ISO 8601; with --backfill-id")
    arguments = parser.parse_args()
    if arguments.backfill_id is not None and not (
        arguments.timeframe_start and arguments.timeframe_end
    ):
        parser.error("--backfill-id needs --timeframe-start and --timeframe-end")
    sys.stdout.write(orjson.dumps(asyncio.run(run(arguments))).decode() + "\n")


if __name__ == "__main__":
    main()
