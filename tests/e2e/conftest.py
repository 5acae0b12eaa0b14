"""End-to-end fixtures: a real server on a loopback port (SQLite), real pilot agents as
subprocesses (``python -m pilotwms.agent``) and real jobs (``/bin/sh`` scripts).

Every wait polls the API against a generous deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster import E2E_SETTINGS, Agent, AgentFactory, launch_agent

from wms_server import RunningServer, fresh_database, make_settings, serving


@pytest.fixture(scope="module")
def e2e_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with fresh_database("sqlite", tmp_path_factory.mktemp("e2e-db")) as database:
        settings = make_settings(database, tmp_path_factory.mktemp("e2e-server"), **E2E_SETTINGS)
        with serving(settings) as running:
            yield running


@pytest.fixture(scope="module")
def pilot_token(e2e_server: RunningServer) -> str:
    return e2e_server.token(e2e_server.add_user("factory"), "pilot")


@pytest.fixture
def user(e2e_server: RunningServer) -> httpx.Client:
    return e2e_server.user_client()


@pytest.fixture
def site() -> str:
    """A site name of this test's own: jobs requiring it run only on this test's pilots."""
    return f"site-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[AgentFactory]:
    """Start agents; every one still running at the end is stopped (and its jobs with it)."""
    started: list[Agent] = []

    def start(url: str, token: str, site: str, **options: Any) -> Agent:
        work_dir = tmp_path / f"pilot-{len(started)}"
        log = tmp_path / f"pilot-{len(started)}.log"
        agent = launch_agent(url, token, site, work_dir, log, **options)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
