"""The Alembic migrations create exactly the tables the models declare, on both databases,
and bring the rows of an older schema along."""

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db import ids
from db.column_types import UTCDateTime
from db.database import Database
from db.migrate import alembic_config, upgrade_to_head
from db.pagination import PageRequest
from db.repositories.businesses import BusinessRepository
from db.repositories.customers import CustomerRepository
from db.settings import Settings
from db.tables import metadata

pytestmark = pytest.mark.asyncio(loop_scope="session")

CREATED = datetime(2026, 11, 1, tzinfo=UTC)


async def test_migrated_schema_matches_the_models(database: Database) -> None:
    def differences(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(context, metadata))

    async with database.engine.connect() as connection:
        found = await connection.run_sync(differences)
    assert found == []


async def seed_businesses_at_revision_0005(database: Database) -> None:
    """Three businesses as 0005's schema held them, one with a key and two customers."""
    insert_business = sa.text(
        "INSERT INTO businesses (id, name, created_at) VALUES (:id, :name, :created_at)"
    ).bindparams(sa.bindparam("created_at", type_=UTCDateTime()))
    async with database.engine.begin() as connection:
        for index in (1, 2, 3):
            await connection.execute(
                insert_business, {"id": f"bus_{index}", "name": f"B{index}", "created_at": CREATED}
            )
        await connection.execute(
            sa.text(
                "INSERT INTO api_keys (id, business_id, secret_hash, created_at) "
                "VALUES ('key_1', 'bus_1', :secret_hash, :created_at)"
            ).bindparams(sa.bindparam("created_at", type_=UTCDateTime())),
            {"secret_hash": ids.hash_api_key_secret("uek_secret"), "created_at": CREATED},
        )
        for customer_id in ("cus_1", "cus_2"):
            await connection.execute(
                sa.text(
                    "INSERT INTO customers (id, business_id, created_at) "
                    "VALUES (:id, 'bus_1', :created_at)"
                ).bindparams(sa.bindparam("created_at", type_=UTCDateTime())),
                {"id": customer_id, "created_at": CREATED},
            )


async def test_0006_gives_every_business_a_cursor_key_of_its_own(empty_database_url: str) -> None:
    # Given a database at revision 0005 holding businesses, a key and customers
    await asyncio.to_thread(command.upgrade, alembic_config(empty_database_url), "0005")
    database = Database.from_settings(Settings(database_url=empty_database_url))
    try:
        await seed_businesses_at_revision_0005(database)
        await database.dispose()
        # When it is migrated to the newest schema
        await asyncio.to_thread(upgrade_to_head, empty_database_url)
        # Then every business has 32 random bytes of its own, and none can lack them
        async with database.session() as session:
            rows = await session.execute(sa.text("SELECT id, cursor_key FROM businesses"))
            keys: dict[str, bytes] = {row.id: row.cursor_key for row in rows}
        assert set(keys) == {"bus_1", "bus_2", "bus_3"}
        assert all(isinstance(key, bytes) and len(key) == 32 for key in keys.values())
        assert len(set(keys.values())) == 3
        with pytest.raises(sa.exc.IntegrityError):
            async with database.engine.begin() as connection:
                await connection.execute(
                    sa.text(
                        "INSERT INTO businesses (id, name, created_at, cursor_key) "
                        "VALUES ('bus_4', 'B4', :created_at, NULL)"
                    ).bindparams(sa.bindparam("created_at", type_=UTCDateTime())),
                    {"created_at": CREATED},
                )
        # And the rows that refer to a business are still there, and still refer to it
        async with database.session() as session:
            business = await BusinessRepository(session).authenticate("uek_secret")
            assert business is not None
            assert (business.id, business.cursor_key) == ("bus_1", keys["bus_1"])
            customers = CustomerRepository(session, business.id)
            first = await customers.page(
                PageRequest(first=1, cursor_key=business.cursor_key), Settings()
            )
            rest = await customers.page(
                PageRequest(after=first.end_cursor, cursor_key=business.cursor_key), Settings()
            )
            if database.dialect_name == "sqlite":
                broken = (await session.execute(sa.text("PRAGMA foreign_key_check"))).all()
                assert broken == []
        assert [customer.id for _, customer in [*first.edges, *rest.edges]] == ["cus_1", "cus_2"]
    finally:
        await database.dispose()
