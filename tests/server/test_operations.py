"""Running the server: migrations, the admin and server commands, TLS, database outages."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import exc as sa_exc
from typer.testing import CliRunner

from pilotwms.cli.main import app as cli
from pilotwms.server.api.errors import database_error_response, is_database_unavailable
from pilotwms.server.db import Database, metadata
from pilotwms.server.db.migrate import current_revision, head_revision, upgrade
from wms_server import fresh_database, make_settings, postgres_base_url, start_server

runner = CliRunner()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request, tmp_path):
    with fresh_database(request.param, tmp_path / "db") as db:
        yield db


def test_migrations_build_exactly_the_declared_tables(empty_db) -> None:
    database = Database(empty_db.url)
    try:
        assert current_revision(database.engine) is None
        upgrade(database.engine)
        upgrade(database.engine)
        assert current_revision(database.engine) == head_revision()
        with database.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        database.dispose()


def test_server_refuses_to_start_on_an_old_schema_with_no_migrate(empty_db, tmp_path) -> None:
    args = ["server", "--no-migrate", "--data-dir", str(tmp_path), "--database-url", empty_db.url]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert "schema is at revision none" in result.output
    assert "without --no-migrate" in result.output


def test_admin_commands_manage_users_and_tokens(empty_db, tmp_path) -> None:
    base = ["admin", "--data-dir", str(tmp_path), "--database-url", empty_db.url]
    ok = runner.invoke(cli, [*base, "user", "add", "carol", "--group", "atlas"])
    assert ok.exit_code == 0, ok.output
    assert runner.invoke(cli, [*base, "user", "add", "carol"]).exit_code == 1
    assert runner.invoke(cli, [*base, "user", "add", "root", "--admin"]).exit_code == 0
    refused = runner.invoke(cli, [*base, "token", "create", "carol", "--role", "admin"])
    assert refused.exit_code == 1 and "not an admin" in refused.output
    made = runner.invoke(cli, [*base, "token", "create", "carol", "--expires", "7d", "--json"])
    assert made.exit_code == 0, made.output
    issued = json.loads(made.stdout)
    assert issued["token"].startswith("pwms_") and issued["role"] == "user"
    in_100_days = (datetime.now(UTC) + timedelta(days=100)).date().isoformat()
    pilot = runner.invoke(
        cli, [*base, "token", "create", "carol", "--role", "pilot", "--expires", in_100_days]
    )
    assert pilot.exit_code == 0 and "(pilot)" in pilot.output
    bad = runner.invoke(cli, [*base, "token", "create", "carol", "--expires", "soon"])
    assert bad.exit_code == 1 and "--expires" in bad.output
    too_long = runner.invoke(cli, [*base, "token", "create", "carol", "--expires", "400d"])
    assert too_long.exit_code == 1 and "at most 365 days" in too_long.output
    listed = runner.invoke(cli, [*base, "token", "list", "--json"])
    rows = json.loads(listed.stdout)
    assert {r["role"] for r in rows} == {"user", "pilot"}
    assert issued["token"] not in listed.stdout
    revoked = runner.invoke(cli, [*base, "token", "revoke", issued["token_id"]])
    assert revoked.exit_code == 0
    again = runner.invoke(cli, [*base, "token", "revoke", issued["token_id"]])
    assert again.exit_code == 1
    by_user = runner.invoke(cli, [*base, "token", "revoke", "--user", "carol"])
    assert by_user.exit_code == 0 and "1 token(s)" in by_user.output
    status = json.loads(runner.invoke(cli, [*base, "token", "list", "--json"]).stdout)
    assert all(r["revoked_at"] for r in status)


def test_admin_token_works_against_the_server(database, tmp_path) -> None:
    settings = make_settings(database, tmp_path)
    running = start_server(settings)
    try:
        base = ["admin", "--data-dir", str(tmp_path), "--database-url", database.url]
        runner.invoke(cli, [*base, "user", "add", "dave"])
        token = json.loads(runner.invoke(cli, [*base, "token", "create", "dave", "--json"]).stdout)
        r = running.client(token["token"]).get("/api/v1/jobs")
        assert r.status_code == 200
    finally:
        running.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_command_serves_https_with_a_self_signed_certificate(tmp_path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    trusted = ssl.create_default_context(cafile=str(cert))
    port = free_port()
    env = {**os.environ, "PILOTWMS_DATA_DIR": str(tmp_path / "data")}
    env.pop("PILOTWMS_DATABASE_URL", None)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "pilotwms.cli.main", "server", "--port", str(port)),
            *("--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--log-level", "warning"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/api/v1/health", verify=trusted)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)
        assert r.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://127.0.0.1:{port}/api/v1/health")  # untrusted certificate
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class TcpProxy:
    """Forwards a local port to PostgreSQL; ``stop`` makes the database unreachable."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave the
            # port listening until accept() returns.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._sockets.clear()


def test_unreachable_database_is_503_with_retry_after(tmp_path) -> None:
    from sqlalchemy.engine import make_url

    postgres_base_url()
    with fresh_database("postgres", tmp_path) as db:
        url = make_url(db.url)
        proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
        proxy.start()
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        settings = make_settings(db, tmp_path, database_url=proxied, db_retry_after_s=7)
        running = start_server(settings)
        try:
            client = running.user_client()
            assert client.post("/api/v1/jobs", json={"jdl": 'Executable="/bin/true";'}).is_success
            proxy.stop()
            for path in ("/api/v1/jobs", "/api/v1/health"):
                r = client.get(path)
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "7"
                assert r.json()["type"].endswith("service-unavailable")
            proxy.start()
            assert client.get("/api/v1/jobs").status_code == 200
        finally:
            proxy.stop()
            running.stop()


def test_database_errors_map_to_503_without_a_server() -> None:
    refused = sa_exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert is_database_unavailable(refused)
    assert not is_database_unavailable(sa_exc.IntegrityError("INSERT", {}, Exception("dup")))
    locked = sa_exc.OperationalError("INSERT", {}, Exception("database is locked"))
    response = database_error_response(locked, 5, "/api/v1/jobs")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"


def test_settings_come_from_toml_env_and_overrides(tmp_path, monkeypatch) -> None:
    from pilotwms.core.settings import ServerSettings

    config = tmp_path / "server.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\nshared_groups = ["atlas"]\n')
    monkeypatch.setenv("PILOTWMS_PORT", "9100")
    settings = ServerSettings.load(config, data_dir=tmp_path, host=None)
    assert (settings.port, settings.host, settings.shared_groups) == (9100, "0.0.0.0", ["atlas"])
    assert ServerSettings.load(config, data_dir=tmp_path, port=9200).port == 9200
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'pilotwms.sqlite3'}"
    config.write_text("prot = 9000\n")
    with pytest.raises(ValueError, match="prot"):
        ServerSettings.load(config, data_dir=tmp_path)
    with pytest.raises(ValueError, match="duration"):
        ServerSettings(data_dir=tmp_path, token_default_lifetime="forever")
    with pytest.raises(ValueError, match="together"):
        ServerSettings(data_dir=tmp_path, ssl_certfile=Path(config))
    url = ServerSettings(data_dir=tmp_path, database_url="postgresql://u@h/d").database_url
    assert url == "postgresql+psycopg://u@h/d"
