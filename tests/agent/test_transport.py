"""HTTP client rules: back-off with jitter, Retry-After, what is final, and where the token goes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilotwms.agent.protocol import PilotClient
from pilotwms.agent.transport import (
    Backoff,
    ServerRejected,
    ServerUnreachable,
    StaleAttempt,
    Transport,
    fetch_url,
)

from .fakewms import FakeWMS


@pytest.fixture
def wms() -> Iterator[FakeWMS]:
    server = FakeWMS()
    server.start()
    yield server
    server.stop()


def transport(url: str, sleeps: list[float], token: str = "pilot-token") -> Transport:
    return Transport(url, token, timeout=5, backoff=Backoff(rng=lambda: 1.0), sleep=sleeps.append)


@pytest.mark.parametrize(
    ("failures", "retry_after", "expected"),
    [(1, None, 1.0), (2, None, 2.0), (3, None, 4.0), (7, None, 60.0), (100, None, 60.0),
     (1, 30.0, 30.0), (5, 3.0, 16.0)],
)  # fmt: skip
def test_backoff_ceiling_and_retry_after(
    failures: int, retry_after: float, expected: float
) -> None:
    assert Backoff(rng=lambda: 1.0).delay(failures, retry_after) == expected


def test_backoff_jitter_spreads_delays() -> None:
    assert Backoff(rng=lambda: 0.25).delay(3) == 1.0
    assert Backoff(rng=lambda: 0.0).delay(3) == 0.0


def test_503_is_retried_then_succeeds(wms: FakeWMS) -> None:
    sleeps: list[float] = []
    wms.unavailable = True
    t = transport(wms.url, sleeps)
    with pytest.raises(ServerUnreachable):
        t.request("POST", "/api/v1/pilot/register", json_body={}, attempts=3)
    assert len(sleeps) == 2 and len(wms.requests) == 3
    wms.unavailable = False
    client = PilotClient(t)
    reply = client.register({"Cpus": 1}, "1.0", "q", "")
    assert reply["pilot_id"] == client.pilot_id == "p1"
    assert wms.auth_headers[-1] == "Bearer pilot-token"


def test_409_is_final_and_other_4xx_carry_the_detail(wms: FakeWMS, tmp_path: Path) -> None:
    sleeps: list[float] = []
    client = PilotClient(transport(wms.url, sleeps))
    client.register({}, "1", "q", "")
    wms.stale.add(("7", 1))
    (tmp_path / "out").write_text("x")
    with pytest.raises(StaleAttempt):
        client.upload_output("7", 1, "out", tmp_path / "out")
    assert sleeps == []
    bad = PilotClient(transport(wms.url, sleeps, token="wrong"))
    with pytest.raises(ServerRejected) as info:
        bad.register({}, "1", "q", "")
    assert info.value.status == 401 and info.value.detail == "bad token"
    assert sleeps == []


def test_connection_refused_is_unreachable_after_the_attempts() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps: list[float] = []
    with pytest.raises(ServerUnreachable):
        transport(f"http://127.0.0.1:{port}", sleeps).request("GET", "/x", attempts=4)
    assert sleeps == [1.0, 2.0, 4.0]


def test_blob_download_and_output_upload(wms: FakeWMS, tmp_path: Path) -> None:
    client = PilotClient(transport(wms.url, []))
    client.register({}, "1", "q", "")
    digest = wms.add_blob(b"blob content" * 10000)
    assert client.fetch_blob(digest, tmp_path / "blob") == digest
    (tmp_path / "result.txt").write_bytes(b"output bytes")
    client.upload_output("job/1", 2, "sub dir/result.txt", tmp_path / "result.txt")
    assert wms.outputs[("job/1", 2, "sub dir/result.txt")] == b"output bytes"


def test_sandbox_urls_never_get_the_pilot_token(wms: FakeWMS, tmp_path: Path) -> None:
    digest = wms.add_blob(b"public")
    with pytest.raises(ServerRejected):  # the fake server wants a token; none is sent
        fetch_url(f"{wms.url}/api/v1/sandboxes/{digest}", tmp_path / "f")
    assert wms.auth_headers == [None]


def test_requests_share_a_kept_alive_connection_and_reconnect_when_it_was_closed(
    wms: FakeWMS,
) -> None:
    sleeps: list[float] = []
    client = PilotClient(transport(wms.url, sleeps))
    client.register({}, "1", "q", "")
    client.heartbeat("running", [])
    client.send_reports([])
    assert wms.connections_opened == 1
    port = wms.port
    wms.stop()  # closes the idle connection the client keeps
    wms.start(port)
    assert client.heartbeat("running", []) == []
    assert sleeps == [] and wms.connections_opened == 2


def test_a_proxy_in_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.example.org:3128")
    monkeypatch.setenv("no_proxy", "")
    assert Transport("http://wms.example.org", "t").pool is None
    monkeypatch.setenv("no_proxy", "wms.example.org")
    assert Transport("http://wms.example.org", "t").pool is not None
