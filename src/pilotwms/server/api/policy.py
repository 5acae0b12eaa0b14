"""Route policies: who may call a route, declared on every route.

``Policy.PUBLIC``: anyone (health, version, metrics). ``Policy.USER``: user and admin tokens
(users see their own jobs, and those of a shared group). ``Policy.ADMIN``: admin tokens.
``Policy.PILOT``: pilot and admin tokens (the pilot protocol). ``Policy.AUTHENTICATED``: any
valid token (content-addressed sandbox files, which users upload and pilots fetch).

A route declares its policy by depending on ``authorize(policy)``; ``route_policy`` reads it
back so that the app factory can refuse undeclared routes and a test can enumerate them.
Pilot tokens get 403 on user routes: a stolen pilot token cannot read anyone's jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute

from pilotwms.core.errors import Forbidden, Unauthenticated
from pilotwms.server.api.services import Services, get_services
from pilotwms.server.logic.accounts import Principal, Role, authenticate, touch_token


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


class Authorize:
    """The dependency that enforces one policy and yields the caller (``None`` if public)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def __repr__(self) -> str:
        return f"Authorize({self.policy.value})"

    def __call__(
        self,
        request: Request,
        services: Annotated[Services, Depends(get_services)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal | None:
        if self.policy == Policy.PUBLIC:
            return None
        if credentials is None or not credentials.credentials:
            raise Unauthenticated("this route needs a bearer token (Authorization: Bearer <token>)")
        with services.db.read() as conn:
            principal, due = authenticate(conn, credentials.credentials)
        if due:
            with services.db.write() as conn:
                touch_token(conn, principal.token_id)
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
