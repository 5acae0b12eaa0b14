"""Timestamps on SQLite: ``UTCDateTime``'s own bind processor stores exactly the text
SQLAlchemy's SQLite ``DATETIME`` stored before it, so existing databases and comparisons keep
working; naive datetimes are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite.base import DATETIME

from pilotwms.server.db.metadata import UTCDateTime, sqlite_datetime_text

MOMENTS = [
    datetime(2026, 12, 4, 16, 12, 52, 191107, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),  # no microseconds: still six digits
    datetime(999, 5, 6, 7, 8, 9, 10, tzinfo=UTC),  # a three-digit year is zero-padded
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=14))),
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_the_stored_text_is_sqlalchemys(moment: datetime) -> None:
    ours = UTCDateTime().bind_processor(sqlite.dialect())
    theirs = DATETIME().bind_processor(sqlite.dialect())
    assert ours is not None and theirs is not None
    expected = theirs(moment.astimezone(UTC).replace(tzinfo=None))
    assert ours(moment) == ours(moment) == sqlite_datetime_text(moment) == expected
    assert ours(None) is None


def test_naive_datetimes_are_refused() -> None:
    process = UTCDateTime().bind_processor(sqlite.dialect())
    assert process is not None
    with pytest.raises(ValueError, match="naive"):
        process(datetime(2026, 1, 1))  # a naive value, on purpose


def test_values_round_trip_and_compare_in_a_database(tmp_path: Path) -> None:
    table = Table(
        "t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime)
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), [{"id": i, "at": m} for i, m in enumerate(MOMENTS)])
        back = dict(conn.execute(select(table.c.id, table.c.at)).all())
        assert back == dict(enumerate(MOMENTS))
        cut = MOMENTS[0]
        later = conn.execute(select(table.c.id).where(table.c.at > cut)).scalars().all()
        assert sorted(later) == sorted(i for i, m in enumerate(MOMENTS) if m > cut)
    engine.dispose()
