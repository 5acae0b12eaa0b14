"""Route policies: who may call a route, declared on every route.

``Policy.PUBLIC``: anyone (health, version, metrics). ``Policy.USER``: user and admin tokens
(users see their own jobs, and those of a shared group). ``Policy.ADMIN``: admin tokens.
``Policy.PILOT``: pilot and admin tokens (the pilot protocol). ``Policy.AUTHENTICATED``: any
valid token (content-addressed sandbox files, which users upload and pilots fetch).

A route declares its policy by depending on ``authorize(policy)``; ``route_policy`` reads it
back so that the app factory can refuse undeclared routes and a test can enumerate them.
Pilot tokens get 403 on user routes: a stolen pilot token cannot read anyone's jobs.

Pilot tokens that were found valid are remembered for :data:`TOKEN_CACHE_S` seconds (per app,
by the token's hash), so that a pilot streaming short jobs, which calls the server many times a
second, does not cost a database query each time, and the check runs in the event loop instead
of a worker thread. The price is bounded: the revocation or expiry of a pilot token takes effect
at most :data:`TOKEN_CACHE_S` seconds later. User and admin tokens are checked on every request
(their revocation is immediate); unknown, revoked and expired tokens are never cached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute

from pilotwms.core.errors import Forbidden, Unauthenticated
from pilotwms.server.api.services import Services
from pilotwms.server.logic.accounts import (
    Principal,
    Role,
    authenticate,
    hash_token,
    touch_token,
)

TOKEN_CACHE_S = 5.0
"""How long a valid token is trusted without asking the database: the longest a revocation
takes to take effect."""
_TOKEN_CACHE_MAX = 4096


class Policy(StrEnum):
    PUBLIC = "public"
    USER = "user"
    ADMIN = "admin"
    PILOT = "pilot"
    AUTHENTICATED = "authenticated"


ALLOWED_ROLES: dict[Policy, frozenset[Role]] = {
    Policy.USER: frozenset({Role.USER, Role.ADMIN}),
    Policy.ADMIN: frozenset({Role.ADMIN}),
    Policy.PILOT: frozenset({Role.PILOT, Role.ADMIN}),
    Policy.AUTHENTICATED: frozenset({Role.USER, Role.ADMIN, Role.PILOT}),
}

_bearer = HTTPBearer(auto_error=False, description="A token from 'pilotwms admin token create'")


class TokenCache:
    """Principals of tokens recently found valid, each trusted until a monotonic deadline."""

    def __init__(self, ttl: float = TOKEN_CACHE_S, max_entries: int = _TOKEN_CACHE_MAX) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if time.monotonic() >= entry[1]:
                del self._entries[digest]
                return None
            return entry[0]

    def put(self, digest: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # rare (thousands of live tokens); refilled on demand
            self._entries[digest] = (principal, time.monotonic() + self.ttl)


def token_cache(request: Request) -> TokenCache:
    """The app's token cache (made on first use)."""
    state = request.app.state
    cache: TokenCache | None = getattr(state, "token_cache", None)
    if cache is None:
        cache = state.token_cache = TokenCache()
    return cache


def _check_token(services: Services, cache: TokenCache, digest: str, token: str) -> Principal:
    """Ask the database about a token (in a worker thread) and remember a valid pilot token."""
    with services.db.read() as conn:
        principal, due = authenticate(conn, token)
    if due:
        with services.db.write() as conn:
            touch_token(conn, principal.token_id)
    if principal.role == Role.PILOT:
        cache.put(digest, principal)
    return principal


class Authorize:
    """The dependency that enforces one policy and yields the caller (``None`` if public).

    It runs in the event loop: a token in the cache costs no thread hop and no query."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def __repr__(self) -> str:
        return f"Authorize({self.policy.value})"

    async def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal | None:
        if self.policy == Policy.PUBLIC:
            return None
        if credentials is None or not credentials.credentials:
            raise Unauthenticated("this route needs a bearer token (Authorization: Bearer <token>)")
        token = credentials.credentials
        digest = hash_token(token)
        cache = token_cache(request)
        principal = cache.get(digest)
        if principal is None:
            services: Services = request.app.state.services
            principal = await anyio.to_thread.run_sync(_check_token, services, cache, digest, token)
        if principal.role not in ALLOWED_ROLES[self.policy]:
            raise Forbidden(
                f"a {principal.role.value} token cannot use {request.method} "
                f"{request.url.path} (route policy: {self.policy.value})"
            )
        request.state.principal = principal
        return principal


_AUTHORIZERS = {policy: Authorize(policy) for policy in Policy}


def authorize(policy: Policy) -> Authorize:
    return _AUTHORIZERS[policy]


UserPrincipal = Annotated[Principal, Depends(authorize(Policy.USER))]
AdminPrincipal = Annotated[Principal, Depends(authorize(Policy.ADMIN))]
PilotPrincipal = Annotated[Principal, Depends(authorize(Policy.PILOT))]
AnyPrincipal = Annotated[Principal, Depends(authorize(Policy.AUTHENTICATED))]
PUBLIC = Depends(authorize(Policy.PUBLIC))


def iter_api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every ``APIRoute`` of an app or router, including those of included routers.

    Recent FastAPI versions keep an included router as one entry (``original_router``) instead
    of copying its routes into the app; routers are included without an extra prefix here, so
    the routes' own paths are the paths served.
    """
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
            continue
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from iter_api_routes(included.routes)


def route_policy(route: APIRoute) -> Policy | None:
    """The policy a route declared (``None``: it declared none)."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, Authorize):
            return dep.call.policy
        stack.extend(dep.dependencies)
    return None
