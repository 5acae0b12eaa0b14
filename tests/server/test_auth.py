"""Every route declares a policy, and the policies hold for every route of the app.

Public routes: health, version, metrics and the API documentation (openapi.json, docs, redoc):
they carry no user data and are what load balancers and Prometheus call without a token.
"""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from starlette.routing import Route

from pilotwms.core.settings import ServerSettings
from pilotwms.server.api.policy import Policy, iter_api_routes, route_policy
from pilotwms.server.app import DOC_PATHS, create_app
from pilotwms.server.db import tokens, utcnow
from pilotwms.server.logic.accounts import hash_token, revoke_token, revoke_user_tokens
from wms_server import add_output

PUBLIC_PATHS = {"/api/v1/health", "/api/v1/version", "/metrics"}


def api_routes() -> list[tuple[str, str, Policy]]:
    app = create_app(ServerSettings(data_dir="/nonexistent-not-opened"))
    out = []
    for route in iter_api_routes(app.routes):
        policy = route_policy(route)
        assert policy is not None, route.path
        out.extend((method, route.path, policy) for method in sorted(route.methods))
    assert len(out) > 15
    return out


ROUTES = api_routes()


def test_every_route_declares_a_policy_and_only_known_ones_are_public() -> None:
    public = {path for _, path, policy in ROUTES if policy == Policy.PUBLIC}
    assert public == PUBLIC_PATHS
    app = create_app(ServerSettings(data_dir="/nonexistent-not-opened"))
    others = {getattr(r, "path", None) for r in app.routes if isinstance(r, Route)}
    assert others <= DOC_PATHS | {"/docs/oauth2-redirect"}


@pytest.fixture(scope="module")
def world(server):
    """Alice's job, Bob (another user), a pilot token, an admin token, alice's own token."""
    alice_name = server.add_user()
    alice_token = server.token(alice_name)
    alice = server.client(alice_token)
    job = alice.post("/api/v1/jobs", json={"jdl": 'Executable = "/bin/true";'}).json()["id"]
    digest = alice.post("/api/v1/sandboxes", content=b"x").json()["digest"]
    add_output(server, job, "std.out", b"out")
    bob = server.client(server.token(server.add_user()))
    pilot = server.client(server.token(server.add_user(), "pilot"))
    admin = server.client(server.token(server.add_user(admin=True), "admin"))
    return {
        "alice": alice,
        "bob": bob,
        "pilot": pilot,
        "admin": admin,
        "anon": server.client(),
        "job": job,
        "digest": digest,
    }


def concrete(path: str, world: dict) -> str:
    path = path.replace("{job_id}", str(world["job"])).replace("{digest}", world["digest"])
    return re.sub(r"\{name(:path)?\}", "std.out", path)


def call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    if method in ("POST", "PUT", "PATCH"):
        return client.request(method, path, json={})
    return client.request(method, path)


@pytest.mark.parametrize(
    ("method", "path", "policy"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES]
)
def test_route_policy_is_enforced(world, method: str, path: str, policy: Policy) -> None:
    url = concrete(path, world)
    anonymous = call(world["anon"], method, url)
    if policy == Policy.PUBLIC:
        assert anonymous.status_code not in (401, 403)
        return
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    pilot = call(world["pilot"], method, url)
    if policy in (Policy.USER, Policy.ADMIN):
        assert pilot.status_code == 403, pilot.text
    else:
        assert pilot.status_code not in (401, 403)
    if policy == Policy.ADMIN:
        assert call(world["alice"], method, url).status_code == 403
        assert call(world["admin"], method, url).status_code not in (401, 403)
    if policy == Policy.USER and "{job_id}" in path:
        other = call(world["bob"], method, url)
        assert other.status_code == 404, other.text
        assert call(world["admin"], method, url).status_code not in (401, 403, 404)


def test_openapi_is_public_and_lists_the_routes(world) -> None:
    spec = world["anon"].get("/api/v1/openapi.json")
    assert spec.status_code == 200
    assert "/api/v1/jobs/{job_id}/events" in spec.json()["paths"]


def test_unknown_and_malformed_tokens_are_401(server) -> None:
    r = server.client("pwms_not-a-real-token").get("/api/v1/jobs")
    assert r.status_code == 401 and "unknown token" in r.json()["detail"]
    raw = httpx.get(f"{server.base_url}/api/v1/jobs", headers={"Authorization": "Basic abc"})
    assert raw.status_code == 401


def test_expired_token_is_refused(server) -> None:
    name = server.add_user()
    token = server.token(name, lifetime_s=3600)
    client = server.client(token)
    assert client.get("/api/v1/jobs").status_code == 200
    with server.db.write() as conn:
        conn.execute(
            update(tokens)
            .where(tokens.c.hash == hash_token(token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    r = client.get("/api/v1/jobs")
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_revoked_tokens_are_refused(server) -> None:
    from pilotwms.server.logic.accounts import list_tokens

    name = server.add_user()
    first, second = server.client(server.token(name)), server.client(server.token(name))
    assert first.get("/api/v1/jobs").status_code == 200
    with server.db.write() as conn:
        token_ids = [t["id"] for t in list_tokens(conn, name)]
        revoke_token(conn, token_ids[0])
    assert first.get("/api/v1/jobs").status_code == 401
    assert second.get("/api/v1/jobs").status_code == 200
    with server.db.write() as conn:
        assert revoke_user_tokens(conn, name) == 1
    r = second.get("/api/v1/jobs")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    with server.db.read() as conn:
        used = [t["last_used_at"] for t in list_tokens(conn, name)]
    assert all(u is not None for u in used)


def test_tokens_are_stored_hashed(server) -> None:
    name = server.add_user()
    token = server.token(name)
    with server.db.read() as conn:
        stored = [row.hash for row in conn.execute(select(tokens.c.hash))]
    assert token not in stored and all(len(h) == 64 for h in stored)
