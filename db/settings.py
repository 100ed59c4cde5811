"""The one settings object of the service (SPEC §10), read from USAGE_EVENTS_* variables."""

import json
import re
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# "3600" or "0.5": a number of seconds, as SPEC §10 allows beside ISO-8601.
_SECONDS = re.compile(r"\s*[-+]?\d+(\.\d+)?\s*")


def _seconds_or_iso8601(value: Any) -> Any:
    """A duration from the environment: seconds ("3600") or ISO-8601 ("PT1H").

    pydantic reads a string of digits as ISO-8601 and refuses it; an environment variable
    is always a string, so plain seconds are turned into a timedelta here, exactly.
    """
    if isinstance(value, str) and _SECONDS.fullmatch(value):
        seconds = Decimal(value.strip())
        if seconds < 0:
            raise ValueError("a duration may not be negative")
        try:
            return timedelta(seconds=int(seconds), microseconds=int(seconds % 1 * 1_000_000))
        except OverflowError:
            raise ValueError(f"{value.strip()} seconds is too long a duration") from None
    return value


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _json_list(value: Any) -> Any:
    """The environment's text as JSON, with a message that says what to write instead."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise ValueError(
            'write a JSON list, e.g. ["https://app.example.com"], or [] for none'
        ) from None


def _browser_origins(origins: list[str]) -> list[str]:
    """Each origin as a browser sends it in `Origin`: scheme://host[:port], nothing more.

    A path, a query or a trailing slash would never equal a browser's Origin header, so
    such a value is refused rather than left to match nothing; the case of scheme and host
    and a default port are normalised, as browsers write them.
    """
    if "*" in origins:
        if len(origins) > 1:
            raise ValueError('"*" allows every origin and must stand alone')
        return origins
    return [_browser_origin(origin) for origin in origins]


def _browser_origin(origin: str) -> str:
    parts = urlsplit(origin)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # Not a number, or out of range.
        port = -1
    if (
        scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or not origin.isascii()
        or "@" in parts.netloc
        or parts.netloc.endswith(":")
        or port == -1
        or parts.path
        or parts.query
        or parts.fragment
        or origin.endswith(("?", "#"))
    ):
        raise ValueError(
            f"{origin!r} is not an origin: write scheme://host[:port] "
            '(e.g. "https://app.example.com"), or "*" alone'
        )
    host = parts.netloc.lower()
    if port is not None:
        host = host.rpartition(":")[0]  # "[::1]:8080" → "[::1]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


# What a URL without a driver (or with the dialect's other name) runs on: the two drivers
# the service is built for. postgresql:// is what PostgreSQL's own tools and most hosts
# print, postgres:// what some hosts print; SQLAlchemy would pick a driver that is not
# installed for the one and know no dialect for the other.
_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def _database_url(url: str) -> str:
    """The URL with the service's own driver: postgresql+asyncpg:// or sqlite+aiosqlite://.

    Only the scheme is rewritten, so that the rest (a password with %-escapes) stays as
    written. Any other database or driver is refused here, before anything connects.
    """
    scheme, separator, rest = url.partition("://")
    driver = _DRIVERS.get(scheme.lower())
    if not separator or driver is None:
        raise ValueError(
            f"{scheme + separator or url!r} is not a database this service runs on: write "
            "postgresql://user@host:5432/name (PostgreSQL, through asyncpg) or "
            "sqlite:///path/to/file.db (SQLite, through aiosqlite)"
        )
    return f"{driver}://{rest}"


# Durations are never negative: a negative window would turn every rule that uses it around.
Duration = Annotated[timedelta, BeforeValidator(_seconds_or_iso8601), Field(ge=timedelta(0))]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="USAGE_EVENTS_", frozen=True)

    # postgresql:// and postgres:// mean asyncpg, sqlite:// aiosqlite (see _database_url).
    database_url: Annotated[str, AfterValidator(_database_url)] = (
        "sqlite+aiosqlite:///./usage-events.db"
    )

    max_batch_size: int = Field(1000, ge=1)
    ingest_past_window: Duration = timedelta(hours=1)
    ingest_future_window: Duration = timedelta(minutes=5)
    metadata_max_keys: int = Field(50, ge=0)
    correction_limit: int = Field(100, ge=0)
    correction_window: Duration = timedelta(days=100)

    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(100, ge=1)
    # meterUsage and eventVolume answer at most this many buckets × series (U7, V2).
    max_usage_points: int = Field(10_000, ge=1)

    # Bounds on every request (SPEC §9): introspection stays on, abuse is capped instead.
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_query_depth: int = Field(15, ge=1)
    # Room for a 1000-event batch written inline with 50 metadata keys per event (≈165 000
    # tokens, ≈0.8 s to parse); larger documents are refused before parsing ends.
    max_query_tokens: int = Field(200_000, ge=100)
    max_query_aliases: int = Field(30, ge=0)
    # Fields of an operation once every fragment spread is expanded: what validation and
    # execution walk, however short the document (graph.document_bounds).
    max_query_fields: int = Field(2000, ge=10)
    # How often one response name may be selected in one selection set (fragments that
    # overlap select `id` several times): validation compares such fields pairwise.
    max_repeated_fields: int = Field(20, ge=2)
    # Work graphql-core may spend comparing fields that share a response name (its rule
    # that overlapping fields can be merged) before it gives up: ≈0.05 s at most here.
    max_validation_work: int = Field(100_000, ge=1000)
    # Values an operation's answer may hold, every list counted at its bound and a JSON
    # value as 20 (graph.response_cost): a page of 100 events with every field, their
    # customer and every revision of each is ≈320 000.
    max_response_cost: int = Field(400_000, ge=1000)
    # How deeply JSON objects and arrays may nest in a request's variables.
    max_input_depth: int = Field(32, ge=4)
    # How many values (every object member and list item, at any depth) a request's
    # variables may hold: a 1000-event batch with 50 metadata keys per event is ≈57 000.
    max_input_values: int = Field(100_000, ge=100)

    # Backfills (SPEC §16): the longest timeframe one may cover (B1), and how often each
    # server process looks for pending backfills whose closeTime has come (B4): a
    # backfill is reflected at most this long (plus the close itself) after its closeTime.
    backfill_max_span: Duration = timedelta(days=31)
    backfill_close_interval: Duration = timedelta(seconds=1)

    # Size of the database connection pool of each server process.
    database_pool_size: int = Field(20, ge=1)

    # Load each server process takes on (graph.admission); beyond it a request is turned
    # away at once with 503 (or 429 for one business over its share) and Retry-After.
    max_concurrent_requests: int = Field(64, ge=1)
    # Requests of one business at once in one process: below the pool size, so that one
    # business always leaves connections to the others (4 of the default 20).
    max_concurrent_requests_per_business: int = Field(16, ge=1)
    # Bodies above large_request_bytes cost many times their size while parsed: at most
    # this many at once per process.
    max_large_requests: int = Field(2, ge=1)
    large_request_bytes: int = Field(1024 * 1024, ge=1024)
    # Unknown API keys (never issued) one client address may send per window before it is
    # answered 429 without a lookup.
    failed_key_limit: int = Field(20, ge=1)
    failed_key_window: Annotated[Duration, Field(gt=timedelta(0))] = timedelta(seconds=60)

    # Origins whose pages may call the API from a browser (CORS): a JSON list such as
    # ["https://app.example.com"], or ["*"] for any origin. None by default.
    cors_origins: Annotated[
        list[str], NoDecode, BeforeValidator(_json_list), AfterValidator(_browser_origins)
    ] = []

    # Free text a client sends and the service keeps (db.rules.bounds has the fixed bounds
    # of ids and names): the reason of an amendment or deprecation (C1, C2), an audit
    # note on every revision and listing, not a document.
    max_reason_length: int = Field(1000, ge=1)

    # Database faults (an outage is answered 503 within seconds, not waited out).
    # CONNECT_TIMEOUT: how long opening a PostgreSQL connection may take; a pooled one is
    # pinged (at most 1 s) before each use. STATEMENT_TIMEOUT: the most one statement may
    # take on PostgreSQL (PostgreSQL cancels it a little sooner itself); 0 for none. The
    # longest legitimate ones: a backfill close's UPDATE of its events (≈5 s per 100 000),
    # createMeter's one pass over the meter's history (≈5 s per million events), and a
    # write waiting for its business's lock while such a close or build holds it (≈21 s
    # behind a close of 100 000 replacing 100 000). `migrate` is not bound by it.
    # POOL_TIMEOUT: how long a request waits for a free connection of the pool.
    database_connect_timeout: Annotated[Duration, Field(gt=timedelta(0))] = timedelta(seconds=3)
    database_statement_timeout: Duration = timedelta(seconds=30)
    # The same bound for the work that is long by nature, one transaction each: closing or
    # reverting a backfill (≈5 s per 100 000 events per statement) and building a new
    # meter's rollups from its history (≈5 s per 1 000 000 events). 0: no limit.
    database_long_statement_timeout: Duration = timedelta(minutes=10)
    database_pool_timeout: Annotated[Duration, Field(gt=timedelta(0))] = timedelta(seconds=5)

    # Slow and excess connections, per server process (graph.serving, graph.http).
    # HEADER_READ_TIMEOUT: how long a request head may take to arrive, from the connection
    # opening or, on a kept-alive connection, from its first byte; the connection is then
    # closed. BODY_READ_TIMEOUT: how long a request body may take to arrive; then HTTP 408.
    # 0 for no bound. KEEP_ALIVE_TIMEOUT: how long an idle connection is kept between
    # requests (whole seconds). MAX_CONNECTIONS: open connections beyond which a new one is
    # answered 503 at once; lowered to what `ulimit -n` allows.
    header_read_timeout: Duration = timedelta(seconds=10)
    body_read_timeout: Duration = timedelta(seconds=30)
    keep_alive_timeout: Duration = timedelta(seconds=5)
    max_connections: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _default_page_fits(self) -> Self:
        # Otherwise every listing without `first`/`last` would be refused as too large.
        if self.default_page_size > self.max_page_size:
            raise ValueError(
                f"USAGE_EVENTS_DEFAULT_PAGE_SIZE ({self.default_page_size}) must not exceed "
                f"USAGE_EVENTS_MAX_PAGE_SIZE ({self.max_page_size})"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()
