import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db.repositories.customers import CustomerRepository
from db.rules.ingestion import utc_now
from graph.context import Info
from graph.mutations.base import run_mutation
from graph.types.customer import Customer
from graph.types.user_error import UserError


@strawberry.input
class CreateCustomerInput:
    external_id: str | None = strawberry.field(
        default=None, description="Your own id for the customer, unique within your business."
    )
    name: str | None = None
    email: str | None = None


@strawberry.type
class CreateCustomerPayload:
    customer: Customer | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def create_customer(info: Info, input: CreateCustomerInput) -> CreateCustomerPayload:
    context = info.context

    async def create(session: AsyncSession) -> CreateCustomerPayload:
        record = await CustomerRepository(session, context.business.id).create(
            external_id=input.external_id, name=input.name, email=input.email, now=utc_now()
        )
        return CreateCustomerPayload(customer=Customer.from_record(record))

    return await run_mutation(info, CreateCustomerPayload, create)
