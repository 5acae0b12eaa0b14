"""Users, bearer tokens, roles and who may see which job.

A token is ``pwms_`` plus 256 random bits; only its SHA-256 is stored. A request's token is found
by its hash (an indexed lookup), the stored hash is compared with ``hmac.compare_digest``, then
expiry and revocation are checked. ``last_used_at`` is written at most once a minute per token,
so authentication does not turn every read into a database write.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select, update

from pilotwms.core.errors import BadRequest, Conflict, NotFound, Unauthenticated
from pilotwms.server.db import tokens, users, utcnow

TOKEN_PREFIX = "pwms_"
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class Role(StrEnum):
    """What a token may do: ``user`` its owner's jobs, ``admin`` everything, ``pilot`` only the
    pilot protocol."""

    USER = "user"
    ADMIN = "admin"
    PILOT = "pilot"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    user: str
    group: str
    role: Role
    token_id: str

    @property
    def source(self) -> str:
        """How events caused by this caller name it."""
        return f"{self.role.value}:{self.user}"


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    token: str
    user: str
    role: Role
    expires_at: datetime | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(conn: Connection, name: str, group: str, *, admin: bool = False) -> int:
    """Add a user; raises ``Conflict`` when the name is taken."""
    if not name or len(name) > 128 or any(c.isspace() for c in name):
        raise BadRequest(f"user name {name!r} must be 1-128 characters without spaces")
    if conn.execute(select(users.c.id).where(users.c.name == name)).first():
        raise Conflict(f"user {name!r} exists already")
    result = conn.execute(
        users.insert().values(name=name, group=group, is_admin=admin, created_at=utcnow())
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def get_user(conn: Connection, name: str) -> Any:
    row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        raise NotFound(f"no user {name!r}; add one with 'pilotwms admin user add {name}'")
    return row


def create_token(
    conn: Connection,
    user: str,
    *,
    role: Role = Role.USER,
    lifetime: timedelta | None,
    max_lifetime: timedelta | None = None,
    description: str | None = None,
    now: datetime | None = None,
) -> IssuedToken:
    """Issue a token for ``user``; the returned ``token`` is never stored and shown only once.

    ``lifetime`` ``None`` means the token never expires. Admin tokens need an admin user.
    """
    now = now or utcnow()
    row = get_user(conn, user)
    if role == Role.ADMIN and not row.is_admin:
        raise BadRequest(
            f"user {user!r} is not an admin; add the user with --admin to give it admin tokens"
        )
    if lifetime is not None and lifetime <= timedelta(0):
        raise BadRequest("a token's lifetime must be positive")
    if max_lifetime is not None and (lifetime is None or lifetime > max_lifetime):
        raise BadRequest(
            f"a token may live at most {max_lifetime.days} days (token_max_lifetime setting)"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = "tok_" + secrets.token_hex(6)
    expires = now + lifetime if lifetime is not None else None
    conn.execute(
        tokens.insert().values(
            id=token_id,
            user_id=row.id,
            hash=hash_token(token),
            role=role.value,
            description=description,
            created_at=now,
            expires_at=expires,
        )
    )
    return IssuedToken(token_id, token, user, role, expires)


def revoke_token(conn: Connection, token_id: str, *, now: datetime | None = None) -> None:
    result = conn.execute(
        update(tokens)
        .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
    if result.rowcount == 0:
        raise NotFound(f"no active token {token_id!r}; see 'pilotwms admin token list'")


def revoke_user_tokens(conn: Connection, user: str, *, now: datetime | None = None) -> int:
    """Revoke every active token of ``user``; return how many."""
    row = get_user(conn, user)
    result = conn.execute(
        update(tokens)
        .where(tokens.c.user_id == row.id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
    return int(result.rowcount)


def list_tokens(conn: Connection, user: str | None = None) -> list[dict[str, Any]]:
    stmt = (
        select(
            tokens.c.id,
            users.c.name.label("user"),
            tokens.c.role,
            tokens.c.description,
            tokens.c.created_at,
            tokens.c.expires_at,
            tokens.c.revoked_at,
            tokens.c.last_used_at,
        )
        .join(users, users.c.id == tokens.c.user_id)
        .order_by(tokens.c.created_at, tokens.c.id)
    )
    if user is not None:
        stmt = stmt.where(users.c.name == user)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def authenticate(
    conn: Connection, token: str, *, now: datetime | None = None
) -> tuple[Principal, bool]:
    """The principal a bearer token stands for, and whether its ``last_used_at`` is due for an
    update (``touch_token``, in a write transaction). Raises ``Unauthenticated`` with the
    reason."""
    now = now or utcnow()
    digest = hash_token(token)
    row = conn.execute(
        select(
            tokens.c.id,
            tokens.c.hash,
            tokens.c.role,
            tokens.c.expires_at,
            tokens.c.revoked_at,
            tokens.c.last_used_at,
            users.c.name,
            users.c.group,
        )
        .join(users, users.c.id == tokens.c.user_id)
        .where(tokens.c.hash == digest)
    ).first()
    if row is None or not hmac.compare_digest(row.hash, digest):
        raise Unauthenticated("unknown token; ask an administrator for a token")
    if row.revoked_at is not None:
        raise Unauthenticated(f"token {row.id} was revoked; ask an administrator for a new one")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthenticated(
            f"token {row.id} expired at {row.expires_at.isoformat()}; "
            "ask an administrator for a new one"
        )
    due = row.last_used_at is None or now - row.last_used_at > _LAST_USED_RESOLUTION
    return Principal(user=row.name, group=row.group, role=Role(row.role), token_id=row.id), due


def touch_token(conn: Connection, token_id: str, *, now: datetime | None = None) -> None:
    """Record that a token was used (shown by ``pilotwms admin token list``)."""
    conn.execute(update(tokens).where(tokens.c.id == token_id).values(last_used_at=now or utcnow()))
