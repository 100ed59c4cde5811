"""The one settings object of the service (SPEC §10), read from USAGE_EVENTS_* variables."""

from datetime import timedelta
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="USAGE_EVENTS_", frozen=True)

    database_url: str = "sqlite+aiosqlite:///./usage-events.db"

    max_batch_size: int = Field(1000, ge=1)
    # pydantic reads durations as seconds ("3600") or ISO-8601 ("PT1H").
    ingest_past_window: timedelta = timedelta(hours=1)
    ingest_future_window: timedelta = timedelta(minutes=5)
    metadata_max_keys: int = Field(50, ge=0)
    correction_limit: int = Field(100, ge=0)
    correction_window: timedelta = timedelta(days=100)

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()
