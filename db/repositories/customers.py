"""Customers of a business (SPEC §6)."""

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db import ids
from db.database import dialect_of
from db.errors import RuleViolations, UserErrorCode, Violation
from db.lookups import one_of
from db.pagination import Keyset, Page, PageRequest, fetch_page
from db.records import CustomerRecord
from db.rules.customers import check_new_customer
from db.settings import Settings
from db.tables import customers
from db.upsert import insert_or_ignore

# Customer ids are ULIDs, so id order is creation order, and one column makes it total.
CUSTOMER_KEYSET = Keyset("customers", (customers.c.id,), (str,))


def _to_record(row: Any) -> CustomerRecord:
    return CustomerRecord(
        id=row.id,
        business_id=row.business_id,
        external_id=row.external_id,
        name=row.name,
        email=row.email,
        created_at=row.created_at,
    )


class CustomerRepository:
    def __init__(self, session: AsyncSession, business_id: str) -> None:
        self.session = session
        self.business_id = business_id
        self.dialect_name = dialect_of(session)

    async def create(
        self, *, external_id: str | None, name: str | None, email: str | None, now: datetime
    ) -> CustomerRecord:
        """A new customer; raises RuleViolations (EXTERNAL_ID_TAKEN, INVALID_INPUT)."""
        if violations := check_new_customer(external_id, name, email):
            raise RuleViolations(violations)
        customer = CustomerRecord(
            id=ids.new_id(ids.CUSTOMER_PREFIX),
            business_id=self.business_id,
            external_id=external_id,
            name=name,
            email=email,
            created_at=now,
        )
        insert = insert_or_ignore(self.dialect_name, customers, ["business_id", "external_id"])
        inserted = await self.session.execute(
            insert.values(
                id=customer.id,
                business_id=customer.business_id,
                external_id=customer.external_id,
                name=customer.name,
                email=customer.email,
                created_at=customer.created_at,
            ).returning(customers.c.id)
        )
        if inserted.first() is None:
            message = "Another customer of your business already has this externalId."
            raise RuleViolations(
                [Violation(UserErrorCode.EXTERNAL_ID_TAKEN, message, ("externalId",))]
            )
        return customer

    async def get(self, customer_id: str) -> CustomerRecord | None:
        found = await self.by_ids([customer_id])
        return found.get(customer_id)

    async def by_ids(self, customer_ids: Collection[str]) -> dict[str, CustomerRecord]:
        if not customer_ids:
            return {}
        rows = await self.session.execute(
            sa.select(customers).where(
                customers.c.business_id == self.business_id,
                one_of(customers.c.id, customer_ids, self.dialect_name),
            )
        )
        return {row.id: _to_record(row) for row in rows}

    async def by_external_ids(self, external_ids: Collection[str]) -> dict[str, CustomerRecord]:
        if not external_ids:
            return {}
        rows = await self.session.execute(
            sa.select(customers).where(
                customers.c.business_id == self.business_id,
                one_of(customers.c.external_id, external_ids, self.dialect_name),
            )
        )
        return {row.external_id: _to_record(row) for row in rows}

    async def existing_ids(self, customer_ids: Collection[str]) -> set[str]:
        if not customer_ids:
            return set()
        rows = await self.session.execute(
            sa.select(customers.c.id).where(
                customers.c.business_id == self.business_id,
                one_of(customers.c.id, customer_ids, self.dialect_name),
            )
        )
        return set(rows.scalars())

    async def page(self, request: PageRequest, settings: Settings) -> Page[CustomerRecord]:
        query = sa.select(customers).where(customers.c.business_id == self.business_id)
        return await fetch_page(
            self.session,
            query,
            CUSTOMER_KEYSET,
            request,
            scope=self.business_id,
            settings=settings,
            to_item=_to_record,
        )
