"""Users and their bearer tokens.

Tokens are 256-bit random strings, so a plain SHA-256 of the token is a safe verifier (no
dictionary to attack, unlike passwords) and lets a request find its token by an indexed lookup.
Only the hash is stored; the token is shown once when created.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Identity, String, Table, UniqueConstraint

from pilotwms.server.db.metadata import IdType, UTCDateTime, metadata

users = Table(
    "users",
    metadata,
    Column("id", IdType, Identity(), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("group", String(128), nullable=False),
    Column("is_admin", Boolean, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("name"),
)

tokens = Table(
    "tokens",
    metadata,
    # Public identifier used to list and revoke a token without knowing it.
    Column("id", String(32), primary_key=True),
    Column("user_id", IdType, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("description", String(256)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    Column("last_used_at", UTCDateTime),
    UniqueConstraint("hash"),
)
