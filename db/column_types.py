"""Column types that behave the same on SQLite and PostgreSQL."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, with microseconds.

    PostgreSQL keeps `timestamptz`. SQLite has no time zones, so the value is stored as
    naive UTC text of a fixed width, which also makes it sort correctly as a string.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a time zone first")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if type(value) is datetime and value.tzinfo is UTC:
            return value  # asyncpg's timestamptz, as it is read for every row of a page
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        assert isinstance(moment, datetime)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


# JSON objects: `jsonb` on PostgreSQL (indexable, typed operators), JSON text on SQLite.
JSONDocument = sa.JSON().with_variant(JSONB(), "postgresql")

# 64-bit on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
BigIntegerKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class ExactNumber(sa.types.TypeDecorator[Decimal]):
    """Exact decimals of any size: `numeric` on PostgreSQL, the decimal's text on SQLite.

    SQLite has no decimal type: a NUMERIC column would turn "0.1" into a binary float, so
    the value is kept as TEXT and read back digit for digit.
    """

    impl = sa.Numeric(asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))
