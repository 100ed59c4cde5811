"""Businesses (tenants) and their API keys (SPEC §7, T1–T3)."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from db import ids
from db.database import Reading
from db.records import ApiKeyRecord, BusinessRecord
from db.rules.ingestion import utc_now
from db.tables import api_keys, businesses


class BusinessRepository:
    """The one repository not scoped to a business (see db.repositories.scoped).

    Its callers act for no business yet: the CLI creates businesses and their keys, and
    authentication finds the business of a key. Nothing here reads or writes a business's
    customers, events or meters.
    """

    def __init__(self, session: Reading) -> None:
        self.session = session

    async def create(self, name: str) -> BusinessRecord:
        business = BusinessRecord(
            id=ids.new_id(ids.BUSINESS_PREFIX),
            name=name,
            created_at=utc_now(),
            cursor_key=ids.new_cursor_key(),
        )
        await self.session.execute(
            sa.insert(businesses).values(
                id=business.id,
                name=business.name,
                created_at=business.created_at,
                cursor_key=business.cursor_key,
            )
        )
        return business

    async def get(self, business_id: str) -> BusinessRecord | None:
        row = (
            await self.session.execute(sa.select(businesses).where(businesses.c.id == business_id))
        ).first()
        return business_record(row) if row else None

    async def find_by_name(self, name: str) -> BusinessRecord | None:
        row = (
            await self.session.execute(
                sa.select(businesses).where(businesses.c.name == name).order_by(businesses.c.id)
            )
        ).first()
        return business_record(row) if row else None

    async def create_api_key(self, business_id: str) -> tuple[ApiKeyRecord, str]:
        """A new key for the business; returns it with its secret, which is never stored."""
        secret = ids.new_api_key_secret()
        key = ApiKeyRecord(
            id=ids.new_id(ids.API_KEY_PREFIX),
            business_id=business_id,
            created_at=utc_now(),
            revoked_at=None,
        )
        await self.session.execute(
            sa.insert(api_keys).values(
                id=key.id,
                business_id=business_id,
                secret_hash=ids.hash_api_key_secret(secret),
                created_at=key.created_at,
            )
        )
        return key, secret

    async def api_keys_of(self, business_id: str) -> list[ApiKeyRecord]:
        """Every key of the business, live and revoked, oldest first."""
        rows = await self.session.execute(
            sa.select(api_keys.c.id, api_keys.c.created_at, api_keys.c.revoked_at)
            .where(api_keys.c.business_id == business_id)
            .order_by(api_keys.c.created_at, api_keys.c.id)
        )
        return [ApiKeyRecord(row.id, business_id, row.created_at, row.revoked_at) for row in rows]

    async def api_key_of_secret(self, secret: str) -> ApiKeyRecord | None:
        """The key a secret belongs to, live or revoked, found by the secret's hash."""
        row = (
            await self.session.execute(
                sa.select(api_keys).where(api_keys.c.secret_hash == ids.hash_api_key_secret(secret))
            )
        ).first()
        return (
            ApiKeyRecord(row.id, row.business_id, row.created_at, row.revoked_at) if row else None
        )

    async def revoke_api_keys_of(self, business_id: str, now: datetime) -> int:
        """Revoke every live key of the business; returns how many were live."""
        result = await self.session.execute(
            sa.update(api_keys)
            .where(api_keys.c.business_id == business_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_api_key(self, key_id: str, now: datetime) -> bool:
        """Revoke the key; False when no such key exists or it was revoked already."""
        result = await self.session.execute(
            sa.update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def authenticate(self, secret: str) -> BusinessRecord | None:
        """The business of a live (unrevoked) key, from the database every time. The HTTP
        endpoint keeps what it finds in Database.api_keys, which forgets it as soon as a
        revocation commits (db.api_key_cache)."""
        row = (
            await self.session.execute(
                sa.select(businesses)
                .join(api_keys, api_keys.c.business_id == businesses.c.id)
                .where(
                    api_keys.c.secret_hash == ids.hash_api_key_secret(secret),
                    api_keys.c.revoked_at.is_(None),
                )
            )
        ).first()
        return business_record(row) if row else None

    async def was_issued(self, secret: str) -> bool:
        """Whether `secret` is a key ever issued (revoked since, for a failed authenticate):
        sending it again is no guess at a key."""
        found = await self.session.execute(
            sa.select(api_keys.c.id).where(
                api_keys.c.secret_hash == ids.hash_api_key_secret(secret)
            )
        )
        return found.first() is not None


def business_record(row: Any) -> BusinessRecord:
    return BusinessRecord(row.id, row.name, row.created_at, row.cursor_key)
