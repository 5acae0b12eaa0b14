"""The one ``MetaData`` every table module registers with, and the column types they share."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer, MetaData
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so that Alembic migrations can refer to them on both databases.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Primary keys: BIGINT identity on PostgreSQL, SQLite's INTEGER rowid alias (only that exact
#: type autoincrements there).
IdType = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored and returned as aware UTC datetimes on both databases.

    SQLite has no time-zone type and hands back naive values; they are UTC by construction.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        """On SQLite, one function from the aware datetime to the stored text, instead of
        :meth:`process_bind_param` followed by SQLite's ``DATETIME`` processor (a dict and a
        ``%`` format per value): a report batch binds the same ``now`` hundreds of times, so
        the last value's text is kept. The text is exactly what that ``DATETIME`` stores
        (``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC), so stored rows and comparisons stay as
        they were. Other databases keep SQLAlchemy's processing."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        last: list[tuple[datetime, str] | None] = [None]

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            seen = last[0]  # one read, one write: safe between threads under the GIL
            if seen is not None and seen[0] is value:
                return seen[1]
            text = sqlite_datetime_text(value)
            last[0] = (value, text)
            return text

        return process

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use datetime.now(UTC)")
        if dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


def sqlite_datetime_text(value: datetime) -> str:
    """``value`` as SQLite's ``DATETIME`` type stores it: naive UTC, microseconds always."""
    if value.tzinfo is None:
        raise ValueError("naive datetime stored; use datetime.now(UTC)")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def utcnow() -> datetime:
    return datetime.now(UTC)
