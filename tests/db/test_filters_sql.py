"""M5: a filter compiled to SQL answers exactly like the in-process matcher, on both databases.

Hypothesis drives a plain test function; the database work runs on one event loop per
database (an asyncio.Runner kept for all examples), so that the engine's connections
stay on the loop that opened them. Every example writes its events under a business of
its own, so examples never see each other's rows.
"""

import asyncio
import math
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from db.database import Database
from db.filters import (
    MAX_FILTER_DEPTH,
    Clause,
    Conjunction,
    Filter,
    FilterOperator,
    ScalarValue,
    parse_filter,
)
from db.settings import Settings
from db.tables import businesses, events

# Keys a JSON path would mis-read: dots, quotes, brackets, '$', spaces, backslashes,
# control characters, digits only, non-ASCII; plus plain ones.
KEYS = [
    "plan",
    "tokens",
    "a.b",
    'say "hi"',
    "arr[0]",
    "$",
    "$.plan",
    "with space",
    "back\\slash",
    "tab\there",
    "new\nline",
    "1",
    "é",
    "日本",
    "emoji 😀",
    "it's",
    "a/b",
    "<&>",
]
TEXT = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
keys = st.one_of(st.sampled_from(KEYS), st.text(TEXT, min_size=1, max_size=4))

EDGE_NUMBERS: list[int | float] = [
    0,
    -0.0,
    0.0,
    1,
    1.0,
    2,
    2.0,
    -1,
    0.1,
    0.5,
    1e16,
    10**16,
    2**53,
    2**53 + 1,
    float(2**53),
    4611686018427388000,
    4611686018427388100,
    4.611686018427388e18,
    2**63 - 1,
    -(2**63),
    float(2**63),
    -float(2**63),
    5e-324,
    1.7976931348623157e308,
]
EDGE_STRINGS = ["", "1", "true", "a", "A", "abc", "ABC", "b", "é", "日本", 'q"', "%", "_"]
numbers = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-5, max_value=5),
    # Beyond 2^53, where an integer and the nearest float differ.
    st.integers(min_value=-(2**63), max_value=-(2**53)),
    st.integers(min_value=2**53, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
strings = st.one_of(st.sampled_from(EDGE_STRINGS), st.text(TEXT, max_size=5))
scalars: st.SearchStrategy[ScalarValue] = st.one_of(numbers, strings, st.booleans())
# Not valid metadata (ingestion refuses them), stored anyway: a clause on them is false.
OTHER_TYPES: list[Any] = [None, {}, {"plan": 1}, [], [1, "a"]]
Scenario = tuple[Filter, list[dict[str, Any]]]
ORDERING_OPERATORS = {
    FilterOperator.GREATER_THAN,
    FilterOperator.GREATER_THAN_OR_EQUALS,
    FilterOperator.LESS_THAN,
    FilterOperator.LESS_THAN_OR_EQUALS,
}
SUBSTRING_OPERATORS = {FilterOperator.CONTAINS, FilterOperator.DOES_NOT_CONTAIN}


def neighbours(value: ScalarValue) -> list[ScalarValue]:
    """Values on and next to a boundary: the same number as int and float, ±1, a substring."""
    if isinstance(value, bool):
        return [value, not value, int(value), str(value).lower()]
    if isinstance(value, str):
        return [value, value[1:], value[:-1], value.upper(), value + "x"]
    close: list[ScalarValue] = [value, -value, value + 1, value - 1, float(value)]
    if isinstance(value, float):
        close += [math.nextafter(value, math.inf), math.nextafter(value, -math.inf)]
    nearest = float(value)
    if nearest.is_integer():
        # Beyond 2^53 the float's exact value and the decimal of its repr differ.
        close += [int(nearest), int(Decimal(repr(nearest)))]
    return [
        number
        for number in close
        if not isinstance(number, int) or -(2**63) <= number <= 2**63 - 1
        if not isinstance(number, float) or math.isfinite(number)
    ]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A filter and event documents drawn from a few keys and values, so that they meet."""
    key_pool = draw(st.lists(keys, min_size=1, max_size=3, unique=True))
    seeds = draw(st.lists(scalars, min_size=1, max_size=2))
    value_pool = [value for seed in seeds for value in neighbours(seed)]
    pool_keys = st.sampled_from(key_pool)
    pool_values = st.sampled_from(value_pool)
    pool_numbers = [
        value
        for value in value_pool
        if isinstance(value, int | float) and not isinstance(value, bool)
    ] or EDGE_NUMBERS
    pool_strings = [value for value in value_pool if isinstance(value, str)] or EDGE_STRINGS

    def clauses() -> st.SearchStrategy[Clause]:
        return st.sampled_from(FilterOperator).flatmap(
            lambda operator: st.builds(
                Clause,
                pool_keys,
                st.just(operator),
                st.sampled_from(pool_numbers)
                if operator in ORDERING_OPERATORS
                else st.sampled_from(pool_strings)
                if operator in SUBSTRING_OPERATORS
                else pool_values,
            )
        )

    def filters(level: int) -> st.SearchStrategy[Filter]:
        groups = (
            st.lists(st.deferred(lambda: filters(level + 1)), max_size=2)
            if level < MAX_FILTER_DEPTH
            else st.just([])
        )
        return st.builds(
            Filter,
            conjunction=st.sampled_from(Conjunction),
            clauses=st.lists(clauses(), max_size=3).map(tuple),
            groups=groups.map(tuple),
        )

    stored = st.one_of(pool_values, pool_values, scalars, st.sampled_from(OTHER_TYPES))
    documents = st.lists(
        st.dictionaries(st.one_of(pool_keys, pool_keys, pool_keys, keys), stored, max_size=4),
        min_size=2,
        max_size=8,
    )
    return draw(filters(1)), draw(documents)


@dataclass
class Backend:
    """A migrated database and the event loop its engine's connections live on."""

    runner: asyncio.Runner
    database: Database

    @property
    def dialect(self) -> str:
        return self.database.dialect_name

    def evaluate(
        self, tree: Filter, documents: list[dict[str, Any]]
    ) -> tuple[set[str], dict[str, dict[str, Any]]]:
        """The eventIds the SQL filter selects, and every stored document as read back."""
        return self.runner.run(self._evaluate(tree, documents))

    async def _evaluate(
        self, tree: Filter, documents: list[dict[str, Any]]
    ) -> tuple[set[str], dict[str, dict[str, Any]]]:
        business_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        async with self.database.engine.begin() as connection:
            await connection.execute(
                businesses.insert().values(id=business_id, name="M5", created_at=now)
            )
            await connection.execute(
                events.insert(),
                [
                    {
                        "id": uuid.uuid4().hex,
                        "business_id": business_id,
                        "event_id": f"e{index}",
                        "event_name": "api.request",
                        "timestamp": now,
                        "metadata": document,
                        "ingested_at": now,
                        "counted_from": now,
                        "revision": 1,
                    }
                    for index, document in enumerate(documents)
                ],
            )
        of_business = events.c.business_id == business_id
        async with self.database.engine.connect() as connection:
            selected = await connection.execute(
                sa.select(events.c.event_id).where(
                    of_business, tree.to_sql(events.c.metadata, self.dialect)
                )
            )
            stored = await connection.execute(
                sa.select(events.c.event_id, events.c.metadata).where(of_business)
            )
            return set(selected.scalars()), {row.event_id: row.metadata for row in stored}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("filters") / "filters.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    with asyncio.Runner() as runner:
        database = Database.from_settings(Settings(database_url=url))
        try:
            yield Backend(runner, database)
        finally:
            runner.run(database.dispose())


def clause_filter(key: str, operator: FilterOperator, value: ScalarValue) -> Filter:
    return Filter(clauses=(Clause(key, operator, value),))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
# A float beyond 2^53 is stored by PostgreSQL as the decimal of its repr: compared with an
# integer, the decimal decides, on every database and in the matcher.
@example(
    scenario=(
        clause_filter("n", FilterOperator.GREATER_THAN, 4611686018427388100),
        [{"n": 4.611686018427388e18}, {"n": 4611686018427388416}],
    )
)
@example(
    scenario=(
        clause_filter("n", FilterOperator.EQUALS, 4611686018427388000),
        [{"n": 4.611686018427388e18}, {"n": 4611686018427388000}, {"n": 2**62 + 512}],
    )
)
@example(
    scenario=(
        clause_filter("n", FilterOperator.LESS_THAN_OR_EQUALS, 4.611686018427388e18),
        [{"n": 4611686018427388000}, {"n": 4611686018427388001}, {"n": 2**62 + 512}],
    )
)
@example(
    scenario=(
        clause_filter('say "hi"', FilterOperator.NOT_EQUALS, "x"),
        [{'say "hi"': "y"}, {'say "hi"': None}, {"say": "y"}, {"hi": "y"}],
    )
)
@example(
    scenario=(
        clause_filter("a.b", FilterOperator.EQUALS, 1),
        [{"a.b": 1}, {"a": {"b": 1}}, {"a.b": True}, {"a.b": "1"}, {"a.b": 1.0}],
    )
)
@example(
    scenario=(
        clause_filter("$", FilterOperator.DOES_NOT_CONTAIN, ""),
        [{"$": ""}, {"$": 1}, {}, {"$": None}, {"$": ["a"]}],
    )
)
@example(
    scenario=(
        Filter(Conjunction.OR, groups=(Filter(), clause_filter("x", FilterOperator.EQUALS, 1))),
        [{}, {"x": 2}],
    )
)
@example(
    scenario=(
        clause_filter("1", FilterOperator.EQUALS, True),
        [{"1": True}, {"1": 1}, {"1": "true"}],
    )
)
def test_m5_sql_agrees_with_the_matcher(backend: Backend, scenario: Scenario) -> None:
    # Given events with these metadata documents, stored as they are
    tree, documents = scenario
    # When the filter runs in SQL
    selected, stored = backend.evaluate(tree, documents)
    # Then it selects exactly the events the matcher accepts
    expected = {f"e{index}" for index, document in enumerate(documents) if tree.matches(document)}
    assert selected == expected
    # And the matcher answers alike on the documents the database gives back
    assert {event_id for event_id, document in stored.items() if tree.matches(document)} == (
        expected
    )


@given(scenario=scenarios())
def test_m2_every_generated_filter_survives_parse_and_document_round_trip(
    scenario: Scenario,
) -> None:
    tree, _ = scenario
    document = tree.to_document()
    assert Filter.from_document(document) == tree
    assert parse_filter(document, ("filter",)) == (tree, [])


# Numbers on both sides of each boundary, for every comparison: integers whose nearest
# float shows a larger decimal, a smaller one, or exactly them; fractions between two
# integers; floats beyond the 64-bit integers.
BOUNDARY_TARGETS: list[int | float] = [
    4611686018427387950,
    4611686018427388100,
    4.611686018427388e18,
    2**53 + 1,
    -4611686018427387950,
    -(2**63),
    2**63 - 1,
    2.5,
    -2.5,
    0.1,
    9.5e18,
    -9.5e18,
]


def boundary_documents(target: int | float) -> list[dict[str, Any]]:
    nearest = float(target)
    numbers = {
        nearest,
        math.nextafter(nearest, math.inf),
        math.nextafter(nearest, -math.inf),
        int(Decimal(repr(nearest))),
    }
    numbers |= {math.floor(target) + step for step in (-1, 0, 1, 2)}
    numbers |= {-(2**63), 0, 2**63 - 1}
    in_range = [number for number in numbers if -(2**63) <= number < 2**63]
    return [{"n": number} for number in sorted(in_range)] + [{"n": "1"}, {"n": True}, {}]


@pytest.mark.parametrize("target", BOUNDARY_TARGETS)
@pytest.mark.parametrize(
    "operator", [operator for operator in FilterOperator if operator not in SUBSTRING_OPERATORS]
)
def test_m5_numbers_beyond_2_53_agree_on_each_side_of_the_boundary(
    backend: Backend, operator: FilterOperator, target: int | float
) -> None:
    # Given events holding the numbers next to the target, as integers and as floats
    documents = boundary_documents(target)
    tree = clause_filter("n", operator, target)
    # When the clause runs in SQL
    selected, _ = backend.evaluate(tree, documents)
    # Then it selects what the matcher selects
    assert selected == {
        f"e{index}" for index, document in enumerate(documents) if tree.matches(document)
    }
