import strawberry

from db.errors import UserErrorCode as DomainUserErrorCode
from db.errors import Violation

UserErrorCode = strawberry.enum(
    DomainUserErrorCode, name="UserErrorCode", description="Why a request broke a rule."
)


@strawberry.type(description="A broken rule: a mutation's expected failure, returned as data.")
class UserError:
    code: UserErrorCode  # type: ignore[valid-type]
    message: str
    field: list[str] = strawberry.field(
        description='Path into the input, e.g. ["events", "3", "metadata", "plan"].'
    )
    event_id: str | None = strawberry.field(description="The eventId of the event concerned.")

    @classmethod
    def from_violation(cls, violation: Violation) -> "UserError":
        return cls(
            code=violation.code,
            message=violation.message,
            field=list(violation.field),
            event_id=violation.event_id,
        )


def user_errors(violations: list[Violation]) -> list[UserError]:
    return [UserError.from_violation(violation) for violation in violations]
