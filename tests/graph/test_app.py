"""The application's start-up, as a server runs it (the lifespan)."""

import gc
from collections.abc import Iterator

import httpx
import pytest

from db.settings import Settings
from graph.app import create_app

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


async def test_start_up_freezes_the_long_lived_objects(settings: Settings, unfrozen: None) -> None:
    app = create_app(settings)
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        # The modules, the schema and the engine: tens of thousands of objects at least.
        assert gc.get_freeze_count() > 10_000
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await client.get("/readyz")).json() == {"status": "ready"}
