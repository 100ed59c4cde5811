"""db/api_key_cache.py: a key's business is served from memory only while every change to
keys and businesses reaches the process (PostgreSQL's notifications), and never after."""

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
import sqlalchemy as sa

from db.api_key_cache import (
    APPLICATION_NAME,
    HEARTBEAT_SECONDS,
    HEARTBEAT_TIMEOUT_SECONDS,
    RECONNECT_SECONDS,
    ApiKeyCache,
)
from db.database import Database
from db.ids import hash_api_key_secret
from db.records import BusinessRecord
from db.repositories.businesses import BusinessRepository
from tests.support import Tenant, make_tenant

BUSINESS = BusinessRecord("biz_1", "Acme", datetime(2026, 1, 1, tzinfo=UTC), b"k" * 32)
# A change must reach the cache well before a heartbeat would have told it.
AT_ONCE = 0.5


def trusted_cache() -> ApiKeyCache:
    cache = ApiKeyCache()
    cache.trust_until(time.monotonic() + 60)
    return cache


def test_a_cache_nobody_listens_for_serves_nothing() -> None:
    cache = ApiKeyCache()

    cache.remember("hash", BUSINESS, cache.generation)

    assert cache.business_of("hash") is None
    assert not cache.trusted


def test_a_trusted_cache_serves_what_it_was_told() -> None:
    cache = trusted_cache()

    cache.remember("hash", BUSINESS, cache.generation)

    assert cache.business_of("hash") == BUSINESS
    assert cache.business_of("other") is None


def test_a_lookup_that_began_before_a_change_is_not_remembered() -> None:
    cache = trusted_cache()
    began = cache.generation
    cache.forget_all()  # A notification arrived while the lookup ran.

    cache.remember("hash", BUSINESS, began)

    assert cache.business_of("hash") is None


def test_trust_ends_at_its_deadline_and_with_it_every_entry() -> None:
    cache = ApiKeyCache()
    cache.trust_until(time.monotonic() + 0.05)
    cache.remember("hash", BUSINESS, cache.generation)
    assert cache.business_of("hash") == BUSINESS

    time.sleep(0.1)
    cache.trust_until(time.monotonic() + 60)  # Trusted again: the old entries are gone.

    assert cache.business_of("hash") is None


def test_distrust_drops_every_entry() -> None:
    cache = trusted_cache()
    cache.remember("hash", BUSINESS, cache.generation)

    cache.distrust()
    cache.trust_until(time.monotonic() + 60)

    assert cache.business_of("hash") is None


# On PostgreSQL, with the listener running as in a server process.


async def wait_until(condition: object, within: float) -> float:
    """Seconds until `condition()` held; fails after `within`."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest_asyncio.fixture(loop_scope="session")
async def listening(postgres_database: Database) -> AsyncIterator[Database]:
    listener = asyncio.create_task(postgres_database.listen_for_key_changes(connect_timeout=3))
    try:
        await wait_until(lambda: postgres_database.api_keys.trusted, within=5)
        yield postgres_database
    finally:
        listener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listener


async def cached(database: Database, tenant: Tenant) -> str:
    """Look the tenant's key up as a request does, and keep it: its hash."""
    cache = database.api_keys
    generation = cache.generation
    async with database.session() as session:
        business = await BusinessRepository(session).authenticate(tenant.api_key)
    assert business is not None
    secret_hash = hash_api_key_secret(tenant.api_key)
    cache.remember(secret_hash, business, generation)
    assert cache.business_of(secret_hash) == business
    return secret_hash


async def revoke_in_sql(database: Database, key_id: str, *before: str) -> None:
    """Revoke the key as an UPDATE typed into psql would, after the statements `before`."""
    async with database.engine.begin() as connection:
        for statement in before:
            await connection.execute(sa.text(statement))
        await connection.execute(
            sa.text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"), {"id": key_id}
        )


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_t3_a_revocation_reaches_the_cache_as_it_commits(listening: Database) -> None:
    tenant = await make_tenant(listening)
    secret_hash = await cached(listening, tenant)

    async with listening.unit_of_work() as session:
        assert await BusinessRepository(session).revoke_api_key(tenant.key_id, datetime.now(UTC))
    took = await wait_until(
        lambda: listening.api_keys.business_of(secret_hash) is None, within=AT_ONCE
    )

    assert took < AT_ONCE
    assert listening.api_keys.trusted


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_t3_a_key_revoked_by_hand_in_sql_is_forgotten_too(listening: Database) -> None:
    tenant = await make_tenant(listening)
    secret_hash = await cached(listening, tenant)

    await revoke_in_sql(listening, tenant.key_id)

    await wait_until(lambda: listening.api_keys.business_of(secret_hash) is None, within=AT_ONCE)


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_a_change_rolled_back_forgets_nothing(listening: Database) -> None:
    tenant = await make_tenant(listening)
    secret_hash = await cached(listening, tenant)

    async with listening.engine.connect() as connection:
        await connection.execute(sa.text("UPDATE api_keys SET revoked_at = now()"))
        await connection.rollback()
    await asyncio.sleep(AT_ONCE)

    assert listening.api_keys.business_of(secret_hash) is not None


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_a_lost_listener_stops_the_cache_at_once_and_comes_back(
    listening: Database,
) -> None:
    tenant = await make_tenant(listening)
    secret_hash = await cached(listening, tenant)

    async with listening.engine.begin() as connection:
        terminated = await connection.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": APPLICATION_NAME},
        )
        assert terminated.scalars().all() == [True]
    await wait_until(lambda: not listening.api_keys.trusted, within=AT_ONCE)

    assert listening.api_keys.business_of(secret_hash) is None
    # Listening again after a reconnect; what it knew before is not served.
    await wait_until(
        lambda: listening.api_keys.trusted,
        within=RECONNECT_SECONDS + HEARTBEAT_SECONDS + HEARTBEAT_TIMEOUT_SECONDS + 3,
    )
    assert listening.api_keys.business_of(secret_hash) is None


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_a_write_in_replica_mode_is_heard_too(listening: Database) -> None:
    tenant = await make_tenant(listening)
    secret_hash = await cached(listening, tenant)

    # As a logical replica's apply or a data-only restore writes: ordinary triggers skipped.
    await revoke_in_sql(listening, tenant.key_id, "SET LOCAL session_replication_role = replica")

    await wait_until(lambda: listening.api_keys.business_of(secret_hash) is None, within=AT_ONCE)


@pytest.mark.postgres
@pytest.mark.asyncio(loop_scope="session")
async def test_a_trigger_switched_off_ends_the_trust_until_it_is_back(
    listening: Database,
) -> None:
    tenant = await make_tenant(listening)
    secret_hash = await cached(listening, tenant)
    within_a_heartbeat = HEARTBEAT_SECONDS + HEARTBEAT_TIMEOUT_SECONDS + 1

    async def alter(statement: str) -> None:
        async with listening.engine.begin() as connection:
            await connection.execute(sa.text(statement))

    await alter("ALTER TABLE api_keys DISABLE TRIGGER notify_api_keys_change")
    try:
        await wait_until(lambda: not listening.api_keys.trusted, within=within_a_heartbeat)
        assert listening.api_keys.business_of(secret_hash) is None
    finally:
        await alter("ALTER TABLE api_keys ENABLE ALWAYS TRIGGER notify_api_keys_change")
    await wait_until(
        lambda: listening.api_keys.trusted, within=within_a_heartbeat + RECONNECT_SECONDS
    )
