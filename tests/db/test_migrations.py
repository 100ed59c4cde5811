"""The Alembic migrations create exactly the tables the models declare, on both databases."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db.database import Database
from db.tables import metadata

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_migrated_schema_matches_the_models(database: Database) -> None:
    def differences(connection: object) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(context, metadata))

    async with database.engine.connect() as connection:
        found = await connection.run_sync(differences)
    assert found == []
