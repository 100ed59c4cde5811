"""The one settings object of the service (SPEC §10), read from USAGE_EVENTS_* variables."""

import re
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# "3600" or "0.5": a number of seconds, as SPEC §10 allows beside ISO-8601.
_SECONDS = re.compile(r"\s*\d+(\.\d+)?\s*")


def _seconds_or_iso8601(value: Any) -> Any:
    """A duration from the environment: seconds ("3600") or ISO-8601 ("PT1H").

    pydantic reads a string of digits as ISO-8601 and refuses it; an environment variable
    is always a string, so plain seconds are turned into a timedelta here, exactly.
    """
    if isinstance(value, str) and _SECONDS.fullmatch(value):
        seconds = Decimal(value.strip())
        return timedelta(seconds=int(seconds), microseconds=int(seconds % 1 * 1_000_000))
    return value


# Durations are never negative: a negative window would turn every rule that uses it around.
Duration = Annotated[timedelta, BeforeValidator(_seconds_or_iso8601), Field(ge=timedelta(0))]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="USAGE_EVENTS_", frozen=True)

    database_url: str = "sqlite+aiosqlite:///./usage-events.db"

    max_batch_size: int = Field(1000, ge=1)
    ingest_past_window: Duration = timedelta(hours=1)
    ingest_future_window: Duration = timedelta(minutes=5)
    metadata_max_keys: int = Field(50, ge=0)
    correction_limit: int = Field(100, ge=0)
    correction_window: Duration = timedelta(days=100)

    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(100, ge=1)

    # Bounds on every request (SPEC §9): introspection stays on, abuse is capped instead.
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_query_depth: int = Field(15, ge=1)
    # Room for a 1000-event batch written inline with 50 metadata keys per event (≈165 000
    # tokens, ≈0.8 s to parse); larger documents are refused before parsing ends.
    max_query_tokens: int = Field(200_000, ge=100)
    max_query_aliases: int = Field(30, ge=0)
    # How deeply JSON objects and arrays may nest in a request's variables.
    max_input_depth: int = Field(32, ge=4)

    # Size of the database connection pool of each server process.
    database_pool_size: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _default_page_fits(self) -> Self:
        # Otherwise every listing without `first`/`last` would be refused as too large.
        if self.default_page_size > self.max_page_size:
            raise ValueError(
                f"DEFAULT_PAGE_SIZE ({self.default_page_size}) must not exceed "
                f"MAX_PAGE_SIZE ({self.max_page_size})"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()
