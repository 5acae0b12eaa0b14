"""Alembic migrations run programmatically: the scripts ship inside the package.

The server upgrades the schema at start, or (``migrate_on_start = false``) refuses to start when
the schema is behind, naming both revisions and the command that fixes it.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from pilotwms.core.errors import ConfigurationError

SCRIPT_LOCATION = "pilotwms.server:migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The newest revision this version of pilotwms knows."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None, "the package ships at least one migration"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


def require_current(engine: Engine) -> None:
    """Raise ``ConfigurationError`` unless the schema is at the head revision."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise ConfigurationError(
            f"the database schema is at revision {current or 'none (empty database)'}, "
            f"this server needs {head}; run 'pilotwms server' without --no-migrate "
            "(or set migrate_on_start = true) to upgrade it"
        )
