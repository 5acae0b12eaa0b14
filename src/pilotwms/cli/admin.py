"""``pilotwms admin``: users and tokens, straight on the database (for bootstrapping).

These commands need no running server: they open the database named by the same settings as
``pilotwms server`` (``--config``, ``PILOTWMS_*``) and migrate it if needed. A token is printed
once, when it is created; only its hash is stored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Administer users and tokens directly on the database.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
user_app = typer.Typer(help="Users (a name and a group/VO).", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens.", no_args_is_help=True)
agent_app = typer.Typer(help="The agent zipapp served to pilots.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(agent_app, name="agent")


@app.callback()
def _admin(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file."),
    database_url: str | None = typer.Option(None, help="Database URL (overrides the settings)."),
    data_dir: Path | None = typer.Option(None, help="Data directory (overrides the settings)."),
) -> None:
    """Administer users and tokens directly on the database."""
    ctx.obj = {"config": config, "database_url": database_url, "data_dir": data_dir}


def _database(ctx: typer.Context) -> Any:
    from pydantic import ValidationError
    from sqlalchemy.exc import OperationalError

    from pilotwms.core.errors import ConfigurationError
    from pilotwms.core.settings import ServerSettings
    from pilotwms.server.app import prepare_database

    # Set by the ``admin`` callback; click hands a context's obj down to its subcommands.
    obj = ctx.obj or {}
    try:
        settings = ServerSettings.load(
            obj.get("config"), database_url=obj.get("database_url"), data_dir=obj.get("data_dir")
        )
        return settings, prepare_database(settings)
    except (ValidationError, ValueError) as exc:
        _fail(f"invalid settings:\n{exc}")
    except ConfigurationError as exc:
        _fail(exc.message)
    except OperationalError as exc:
        _fail(f"cannot open the database: {exc.orig}")


def _fail(message: str) -> None:
    typer.echo(f"pilotwms admin: {message}", err=True)
    raise typer.Exit(1)


def parse_expiry(text: str, now: datetime) -> timedelta | None:
    """``30d``/``12h``/... from now, an ISO 8601 date or time, or ``never``."""
    from pilotwms.core.settings import parse_duration

    if text.lower() == "never":
        return None
    try:
        return parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(
            f"--expires {text!r}: give a duration (30d, 12h), an ISO date (2027-01-31) or never"
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when - now


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="User name (no spaces)."),
    group: str | None = typer.Option(
        None, "--group", "-g", help="Group/VO of the user (default: the user name)."
    ),
    admin: bool = typer.Option(False, "--admin", help="The user may hold admin tokens."),
) -> None:
    """Add a user."""
    from pilotwms.core.errors import PilotWMSError
    from pilotwms.server.logic.accounts import create_user

    _, db = _database(ctx)
    try:
        with db.write() as conn:
            create_user(conn, name, group or name, admin=admin)
    except PilotWMSError as exc:
        _fail(exc.message)
    typer.echo(f"user {name} added (group {group or name}{', admin' if admin else ''})")


@user_app.command("list")
def user_list(ctx: typer.Context) -> None:
    """List users."""
    from sqlalchemy import select

    from pilotwms.server.db import users

    _, db = _database(ctx)
    with db.read() as conn:
        for row in conn.execute(select(users).order_by(users.c.name)):
            typer.echo(f"{row.name}\t{row.group}\t{'admin' if row.is_admin else 'user'}")


@token_app.command("create")
def token_create(  # noqa: PLR0917 - Typer options
    ctx: typer.Context,
    user: str = typer.Argument(..., help="The user the token acts for."),
    expires: str | None = typer.Option(
        None,
        "--expires",
        help="Lifetime (30d, 12h), expiry date (ISO 8601) or 'never' "
        "(default: token_default_lifetime).",
    ),
    role: str = typer.Option("user", "--role", help="user, admin or pilot."),
    description: str | None = typer.Option(None, "--description", help="Free text."),
    as_json: bool = typer.Option(False, "--json", help="Print the token as JSON."),
) -> None:
    """Create a token and print it (the only time it is shown)."""
    from pilotwms.core.errors import PilotWMSError
    from pilotwms.server.db import utcnow
    from pilotwms.server.logic.accounts import Role, create_token

    settings, db = _database(ctx)
    now = utcnow()
    try:
        role_value = Role(role)
    except ValueError:
        _fail(f"--role must be user, admin or pilot, not {role!r}")
    try:
        lifetime = parse_expiry(expires, now) if expires is not None else settings.token_default_ttl
    except ValueError as exc:
        _fail(str(exc))
    try:
        with db.write() as conn:
            issued = create_token(
                conn,
                user,
                role=role_value,
                lifetime=lifetime,
                max_lifetime=settings.token_max_ttl,
                description=description,
                now=now,
            )
    except PilotWMSError as exc:
        _fail(exc.message)
    expiry = issued.expires_at.isoformat() if issued.expires_at else "never"
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "token_id": issued.token_id,
                    "token": issued.token,
                    "user": user,
                    "role": role_value.value,
                    "expires_at": issued.expires_at.isoformat() if issued.expires_at else None,
                }
            )
        )
        return
    typer.echo(f"token {issued.token_id} for {user} ({role_value.value}), expires {expiry}:")
    typer.echo(issued.token)
    typer.echo("Store it now: it cannot be shown again.", err=True)


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token_id: str | None = typer.Argument(None, help="Token id (tok_...) to revoke."),
    user: str | None = typer.Option(None, "--user", help="Revoke every token of this user."),
) -> None:
    """Revoke one token by id, or all tokens of a user."""
    from pilotwms.core.errors import PilotWMSError
    from pilotwms.server.logic.accounts import revoke_token, revoke_user_tokens

    if (token_id is None) == (user is None):
        _fail("give either a TOKEN_ID or --user NAME")
    _, db = _database(ctx)
    try:
        with db.write() as conn:
            if token_id is not None:
                revoke_token(conn, token_id)
                typer.echo(f"token {token_id} revoked")
            else:
                assert user is not None
                count = revoke_user_tokens(conn, user)
                typer.echo(f"{count} token(s) of {user} revoked")
    except PilotWMSError as exc:
        _fail(exc.message)


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    user: str | None = typer.Option(None, "--user", help="Only this user's tokens."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List tokens (never the tokens themselves)."""
    from pilotwms.server.logic.accounts import list_tokens

    _, db = _database(ctx)
    with db.read() as conn:
        rows = list_tokens(conn, user)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()}
                    for r in rows
                ]
            )
        )
        return
    for r in rows:
        status = "revoked" if r["revoked_at"] else "active"
        expires = r["expires_at"].isoformat() if r["expires_at"] else "never"
        used = r["last_used_at"].isoformat() if r["last_used_at"] else "never"
        typer.echo(
            f"{r['id']}\t{r['user']}\t{r['role']}\t{status}\texpires {expires}\tlast used {used}"
        )


@agent_app.command("upload")
def agent_upload(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., help="The agent zipapp (agent.pyz).", exists=True, dir_okay=False, readable=True
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the release as JSON."),
) -> None:
    """Make FILE the agent served to pilots (the rolling upgrade): every server sharing this
    database serves it within seconds, and pilots of another version are drained (their
    running jobs end normally) and replaced by the pilot factory."""
    from pilotwms.core.errors import PilotWMSError
    from pilotwms.server.blobstore import FileBlobStore
    from pilotwms.server.logic.agent_releases import AgentReleases

    settings, db = _database(ctx)
    store = FileBlobStore(settings.effective_sandbox_dir)
    releases = AgentReleases(db, store, settings.data_dir / "agent")
    try:
        release = releases.install(file.read_bytes(), "pilotwms admin agent upload")
    except PilotWMSError as exc:
        _fail(f"{file}: {exc.message}")
    if as_json:
        typer.echo(
            json.dumps({"version": release.version, "digest": release.digest, "size": release.size})
        )
        return
    typer.echo(
        f"agent {release.version} installed (sha256 {release.digest}, {release.size} bytes); "
        "pilots of other versions drain at their next heartbeat"
    )
