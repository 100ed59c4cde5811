"""Customers of a business (SPEC §6)."""

from collections.abc import Collection
from datetime import datetime
from typing import Any

from db import ids
from db.errors import RuleViolations, UserErrorCode, Violation
from db.pagination import Keyset, Page, PageRequest
from db.records import CustomerRecord
from db.repositories.scoped import BusinessScopedRepository
from db.rules.bounds import refuse, too_long
from db.rules.customers import MAX_EXTERNAL_ID_LENGTH, check_new_customer
from db.settings import Settings
from db.tables import customers

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


class CustomerRepository(BusinessScopedRepository):
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
        insert = self.insert_values(
            customers,
            {
                "id": customer.id,
                "external_id": customer.external_id,
                "name": customer.name,
                "email": customer.email,
                "created_at": customer.created_at,
            },
            ignoring_conflicts_on=["business_id", "external_id"],
        )
        inserted = await self.session.execute(insert.returning(customers.c.id))
        if inserted.first() is None:
            message = "Another customer of your business already has this externalId."
            raise RuleViolations(
                [Violation(UserErrorCode.EXTERNAL_ID_TAKEN, message, ("externalId",))]
            )
        return customer

    async def get(self, customer_id: str) -> CustomerRecord | None:
        row = await self.row_by_key(customers, customers.c.id, customer_id)
        return _to_record(row) if row else None

    async def by_ids(self, customer_ids: Collection[str]) -> dict[str, CustomerRecord]:
        if not customer_ids:
            return {}
        rows = await self.session.execute(
            self.readable(customers).where(self.one_of(customers.c.id, customer_ids))
        )
        return {row.id: _to_record(row) for row in rows}

    async def by_external_ids(self, external_ids: Collection[str]) -> dict[str, CustomerRecord]:
        if not external_ids:
            return {}
        rows = await self.session.execute(
            self.readable(customers).where(self.one_of(customers.c.external_id, external_ids))
        )
        return {row.external_id: _to_record(row) for row in rows}

    async def existing_ids(self, customer_ids: Collection[str]) -> set[str]:
        if not customer_ids:
            return set()
        rows = await self.session.execute(
            self.readable(customers, customers.c.id).where(
                self.one_of(customers.c.id, customer_ids)
            )
        )
        return set(rows.scalars())

    async def page(
        self, request: PageRequest, settings: Settings, *, external_id: str | None = None
    ) -> Page[CustomerRecord]:
        """The business's customers in creation order; with `external_id`, the one that has it."""
        refuse(
            too_long(
                external_id,
                MAX_EXTERNAL_ID_LENGTH,
                ("filter", "externalId"),
                UserErrorCode.INVALID_INPUT,
            )
        )
        if external_id is None:
            query = self.readable(customers)
        else:
            # Through the unique (business_id, external_id) index, however large the business.
            query = self.readable(customers, lookup=True).where(
                customers.c.external_id == external_id
            )
        return await self.page_of(query, CUSTOMER_KEYSET, request, settings, _to_record)
