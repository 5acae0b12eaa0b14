"""Shared fixtures: real databases (SQLite and PostgreSQL) and a real server on a loopback port.

``database`` is parametrised over ``sqlite`` and ``postgres``: each module (or test, with
``fresh_database``) gets its own SQLite file or its own PostgreSQL database, dropped afterwards.
The PostgreSQL server is the one ``make test`` starts (``PILOTWMS_TEST_POSTGRES_URL``); without
it the postgres variants are skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from wms_server import (
    DATABASE_KINDS,
    RunningServer,
    ThrowawayDatabase,
    fresh_database,
    make_settings,
    serving,
)


@pytest.fixture(scope="module", params=DATABASE_KINDS)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThrowawayDatabase]:
    """One database per module and kind."""
    with fresh_database(request.param, tmp_path_factory.mktemp(f"db-{request.param}")) as db:
        yield db


@pytest.fixture(scope="module")
def server(
    database: ThrowawayDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One running server per module and database kind."""
    with serving(make_settings(database, tmp_path_factory.mktemp("server"))) as running:
        yield running


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> httpx.Client:
    """A client of an administrator."""
    return server.user_client(admin=True)


@pytest.fixture
def alice(server: RunningServer) -> httpx.Client:
    """A client of a fresh user (each test its own, so tests of a module do not interfere)."""
    return server.user_client()
