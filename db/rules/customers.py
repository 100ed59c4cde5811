"""Rules for createCustomer input (SPEC §6)."""

from db import ids
from db.errors import UserErrorCode, Violation

MAX_EXTERNAL_ID_LENGTH = 255
MAX_NAME_LENGTH = 255
MAX_EMAIL_LENGTH = 320


# A customerId that cannot be anyone's (every customer id starts with cus_) is almost always
# the business's own id of the customer, sent in the wrong field.
NOT_A_CUSTOMER_ID = (
    "This is not a customer id (those start with cus_); it looks like your own id for the "
    "customer, which goes in externalCustomerId."
)


def is_customer_id(value: str) -> bool:
    """Whether `value` could be a customer id at all; saying which exist needs the database."""
    return value.startswith(ids.CUSTOMER_PREFIX)


def check_new_customer(
    external_id: str | None, name: str | None, email: str | None
) -> list[Violation]:
    violations: list[Violation] = []
    if external_id is not None and not 1 <= len(external_id) <= MAX_EXTERNAL_ID_LENGTH:
        message = f"externalId must be 1 to {MAX_EXTERNAL_ID_LENGTH} characters long, or absent."
        violations.append(Violation(UserErrorCode.INVALID_INPUT, message, ("externalId",)))
    if name is not None and len(name) > MAX_NAME_LENGTH:
        message = f"name must be at most {MAX_NAME_LENGTH} characters long."
        violations.append(Violation(UserErrorCode.INVALID_INPUT, message, ("name",)))
    if email is not None and not _looks_like_email(email):
        message = f"email must look like name@domain and be at most {MAX_EMAIL_LENGTH} characters."
        violations.append(Violation(UserErrorCode.INVALID_INPUT, message, ("email",)))
    return violations


def _looks_like_email(email: str) -> bool:
    # Deliverability is the mail system's business; this only catches obvious slips.
    local, at, domain = email.rpartition("@")
    return bool(at and local and domain) and len(email) <= MAX_EMAIL_LENGTH and " " not in email
