import strawberry

from db.errors import RuleViolations
from db.repositories.customers import CustomerRepository
from db.rules.ingestion import utc_now
from graph.context import Info
from graph.types.customer import Customer
from graph.types.user_error import UserError, user_errors


@strawberry.input
class CreateCustomerInput:
    external_id: str | None = strawberry.field(
        default=None, description="Your own id for the customer, unique within your business."
    )
    name: str | None = None
    email: str | None = None


@strawberry.type
class CreateCustomerPayload:
    customer: Customer | None
    user_errors: list[UserError]


async def create_customer(info: Info, input: CreateCustomerInput) -> CreateCustomerPayload:
    context = info.context
    try:
        async with context.writing() as session:
            record = await CustomerRepository(session, context.business.id).create(
                external_id=input.external_id, name=input.name, email=input.email, now=utc_now()
            )
    except RuleViolations as error:
        return CreateCustomerPayload(customer=None, user_errors=user_errors(error.violations))
    return CreateCustomerPayload(customer=Customer.from_record(record), user_errors=[])
