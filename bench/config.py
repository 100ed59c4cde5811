"""How big and how long: the full benchmark and the quick one."""

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class BenchConfig:
    name: str
    # Events of the main business, over which every read scenario runs.
    events: int
    # Events of the second business of the scale check (same database).
    small_events: int
    # wrk durations, whole seconds (wrk takes no fractions).
    ceiling_seconds: int
    list_seconds: int
    deep_page_seconds: int
    point_read_seconds: int
    scale_seconds: int
    # meterUsage / eventVolume and their raw aggregates: at least this long, stretched for
    # slow queries (bench.scenarios.AGGREGATE_SAMPLES).
    usage_seconds: int
    point_read_connections: int
    # Ingestion, in 1000-event batches.
    ingest_batches: int
    ingest_floor_batches: int
    concurrency_baseline_batches: int
    concurrency_batches: int
    concurrency_clients: int
    soak_batches: int
    # Ingestion into a PENDING backfill, in batches of batch_size.
    backfill_ingest_batches: int
    # The backfill close: events of the history loaded first, and as many replacing them.
    backfill_events: int
    # A wrk run of this long against each server before each measured one (0: none).
    warmup_seconds: int = 0
    batch_size: int = 1000
    page_size: int = 100
    # The page the deep-page scenario reads (capped by what the data set holds).
    deep_page: int = 10_000

    @property
    def customers(self) -> int:
        """About 1000 events per customer, at most 1000 customers."""
        return max(20, min(1000, self.events // 1000))

    @property
    def small_customers(self) -> int:
        return max(10, min(1000, self.small_events // 500))


FULL = BenchConfig(
    name="full",
    events=1_000_000,
    small_events=10_000,
    ceiling_seconds=5,
    list_seconds=5,
    deep_page_seconds=5,
    point_read_seconds=10,
    scale_seconds=3,
    usage_seconds=5,
    point_read_connections=16,
    ingest_batches=100,
    ingest_floor_batches=100,
    concurrency_baseline_batches=100,
    concurrency_batches=400,
    concurrency_clients=8,
    soak_batches=1000,
    backfill_ingest_batches=100,
    backfill_events=100_000,
    warmup_seconds=1,
)

QUICK = BenchConfig(
    name="quick",
    events=20_000,
    small_events=2_000,
    ceiling_seconds=1,
    list_seconds=1,
    deep_page_seconds=1,
    point_read_seconds=2,
    scale_seconds=1,
    usage_seconds=1,
    point_read_connections=16,
    ingest_batches=20,
    ingest_floor_batches=20,
    concurrency_baseline_batches=16,
    concurrency_batches=48,
    concurrency_clients=8,
    soak_batches=30,
    backfill_ingest_batches=20,
    backfill_events=20_000,
)


def configured(quick: bool, events: int | None) -> BenchConfig:
    config = QUICK if quick else FULL
    if events is not None:
        config = replace(config, events=events)
    return config
