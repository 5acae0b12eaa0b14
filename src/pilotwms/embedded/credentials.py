"""The admin user, its tokens and the client configuration of ``pilotwms up``.

The tokens are kept in the data directory (mode 0600) and reused by later starts while they
still authenticate, so a client configured once keeps working across restarts.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotwms.core.settings import ServerSettings

__all__ = [
    "ADMIN_USER",
    "CREDENTIALS_FILE",
    "Credentials",
    "ensure_credentials",
    "write_client_config",
    "write_private",
]

ADMIN_USER = "admin"
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class Credentials:
    """What ``up`` hands out: the admin token goes into the client configuration, the pilot
    token (role ``pilot``, good for the pilot protocol only) to the local pilots."""

    user: str
    admin_token: str
    pilot_token: str


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically into a file only its owner can read (it holds a token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_client_config(path: Path, url: str, token: str, data_dir: Path) -> Path | None:
    """Point the client at this service; returns where a foreign configuration was saved.

    A configuration that ``up`` did not write (no header line) is kept as ``FILE.bak`` first:
    it may be the user's account on a real server.
    """
    header = f"# written by pilotwms up for {data_dir}\n"
    backup = None
    if path.is_file() and not path.read_text(errors="replace").startswith(
        "# written by pilotwms up"
    ):
        backup = path.with_name(path.name + ".bak")
        os.replace(path, backup)
    # A JSON string is a valid TOML basic string.
    write_private(path, f"{header}url = {json.dumps(url)}\ntoken = {json.dumps(token)}\n")
    return backup


def ensure_credentials(settings: ServerSettings, db: Any) -> Credentials:
    """The admin user and its tokens: those in the data directory if they still work, else new
    ones (stored there, mode 0600)."""
    from pilotwms.core.errors import NotFound, Unauthenticated
    from pilotwms.server.logic.accounts import (
        Role,
        authenticate,
        create_token,
        create_user,
        get_user,
    )

    path = settings.data_dir / CREDENTIALS_FILE
    stored: dict[str, Any] = {}
    if path.is_file():
        with contextlib.suppress(OSError, ValueError):
            stored = json.loads(path.read_text(encoding="utf-8"))

    def still_valid(conn: Any, token: object, role: Role) -> bool:
        if not isinstance(token, str):
            return False
        try:
            principal, _ = authenticate(conn, token)
        except Unauthenticated:
            return False
        return principal.role == role and principal.user == ADMIN_USER

    with db.write() as conn:
        try:
            get_user(conn, ADMIN_USER)
        except NotFound:
            create_user(conn, ADMIN_USER, ADMIN_USER, admin=True)
        tokens: dict[str, str] = {}
        for key, role in (("admin_token", Role.ADMIN), ("pilot_token", Role.PILOT)):
            token = stored.get(key)
            if not still_valid(conn, token, role):
                token = create_token(
                    conn,
                    ADMIN_USER,
                    role=role,
                    lifetime=settings.token_max_ttl,
                    max_lifetime=settings.token_max_ttl,
                    description=f"pilotwms up ({role.value})",
                ).token
            tokens[key] = str(token)
    credentials = Credentials(ADMIN_USER, tokens["admin_token"], tokens["pilot_token"])
    if stored != {"user": ADMIN_USER, **tokens}:
        write_private(path, json.dumps({"user": ADMIN_USER, **tokens}, indent=2) + "\n")
    return credentials
