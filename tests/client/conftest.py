"""Client fixtures: a :class:`Client` of a fresh user on the module's real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pilotwms.client import Client
from wms_server import RunningServer


@pytest.fixture
def client(server: RunningServer) -> Iterator[Client]:
    token = server.token(server.add_user())
    with Client(server.base_url, token) as c:
        yield c
