"""The one mutation pattern: a write in one transaction; broken rules come back as userErrors.

Saleor's BaseMutation is the model. A payload type gives every field but `user_errors` an
empty default (null, [] or 0), so that a refused payload can be built here, the same way for
every mutation, and a mutation module keeps only its input, its call and its payload.
"""

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from db.errors import RuleViolations
from graph.context import Info
from graph.types.user_error import UserError, user_errors

Payload = TypeVar("Payload")
Payload_co = TypeVar("Payload_co", covariant=True)


class PayloadType(Protocol[Payload_co]):
    """A payload class that can be built from userErrors alone."""

    def __call__(self, *, user_errors: list[UserError]) -> Payload_co: ...


async def run_mutation(
    info: Info,
    payload_type: PayloadType[Payload],
    write: Callable[[AsyncSession], Awaitable[Payload]],
    *,
    long_running: bool = False,
) -> Payload:
    """`write`'s payload, committed; or, if it broke rules, nothing written and its userErrors.

    `long_running`: a write long by nature (Database.unit_of_work).
    """
    try:
        async with info.context.writing(long_running=long_running) as session:
            return await write(session)
    except RuleViolations as error:
        return payload_type(user_errors=user_errors(error.violations))
