"""Upper length bounds of the strings a client sends: every String and ID argument has one.

Most come with a rule of their own (I2 eventId, I3 eventName, I4 externalCustomerId, …);
this module holds what the others share: the bound of our own ids, and one way to refuse
a string over its bound, as a userError in a mutation or BAD_USER_INPUT in a query. A
bound is checked before the value is looked up or stored, so that a megabyte sent as an
id costs neither a database round trip nor a megabyte in the answer.
tests/graph/test_input_bounds.py walks the schema and fails on an argument it does not
know the bound of. What an error may repeat of the text itself is db.errors.shown.
"""

from collections.abc import Sequence

from db.errors import BadUserInput, UserErrorCode, Violation

Path = tuple[str, ...]

# bus_, cus_, evt_, mtr_ or bfl_ and a 26-character ULID make 30 characters; no id of
# ours is longer than 40, so a longer one is a mistake, not an id that is not found.
MAX_SERVER_ID_LENGTH = 40


def too_long(
    value: str | None, bound: int, path: Path, code: UserErrorCode, event_id: str | None = None
) -> list[Violation]:
    """The violation of a string longer than `bound` characters, named by its path."""
    if value is None or len(value) <= bound:
        return []
    name = next((part for part in reversed(path) if not part.isdigit()), "value")
    message = f"{name} must be at most {bound} characters long, not {len(value)}."
    return [Violation(code, message, path, event_id)]


def each_too_long(
    values: Sequence[str] | None, bound: int, path: Path, code: UserErrorCode
) -> list[Violation]:
    """`too_long` for every entry of a list argument, each at its index."""
    return [
        violation
        for index, value in enumerate(values or ())
        for violation in too_long(value, bound, (*path, str(index)), code)
    ]


def refuse(violations: list[Violation]) -> None:
    """A query argument's first broken bound as BAD_USER_INPUT, with its code and path."""
    if violations:
        first = violations[0]
        raise BadUserInput(first.code, first.message, first.field)


def refuse_long_id(value: str, path: Path) -> None:
    """A query's server-id argument (node, meter, customer, backfill) within its bound."""
    refuse(too_long(value, MAX_SERVER_ID_LENGTH, path, UserErrorCode.INVALID_INPUT))
