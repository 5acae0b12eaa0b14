"""Settings of the server components, read from a TOML file and ``PILOTWMS_*`` variables.

Precedence, highest first: values given in code or on the command line, environment variables
(``PILOTWMS_DATABASE_URL``, ``PILOTWMS_PORT``, ...), the TOML file (top-level keys named like the
fields), the defaults below. Everything is validated when the object is built, so a typo or an
impossible value stops the server at start-up with a message naming the field, not at the first
request that needs it. Settings objects are passed in; nothing reads a global.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``"90"``, ``"90s"``, ``"15m"``, ``"12h"``, ``"30d"`` or ``"2w"`` as a ``timedelta``."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; write a number with an optional unit s, m, h, d or w "
            "(e.g. 30d)"
        )
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/pilotwms``, or ``~/.local/share/pilotwms`` (the XDG default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pilotwms"


class ServerSettings(BaseSettings):
    """Everything ``pilotwms server`` and ``pilotwms admin`` need to know."""

    model_config = SettingsConfigDict(
        env_prefix="PILOTWMS_",
        extra="forbid",
        validate_default=True,
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Directory for the embedded SQLite database and the sandbox store; "
        "created on first start.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the job database. Empty: SQLite file "
        "pilotwms.sqlite3 in data_dir. At scale: postgresql+psycopg://user:pw@host/db.",
    )
    sandbox_dir: Path | None = Field(
        default=None,
        description="Directory of the content-addressed sandbox store (default: "
        "data_dir/sandboxes).",
    )
    migrate_on_start: bool = Field(
        default=True,
        description="Upgrade the database schema at start. When false the server refuses to "
        "start if the schema is behind this version.",
    )
    db_pool_size: int = Field(
        default=10, ge=1, description="Connections kept open to PostgreSQL (ignored for SQLite)."
    )
    db_busy_timeout_ms: int = Field(
        default=10_000,
        ge=0,
        description="How long a SQLite writer waits for the lock before failing (ms).",
    )
    db_retry_after_s: int = Field(
        default=5,
        ge=1,
        description="Retry-After (seconds) sent with 503 when the database is unreachable.",
    )

    # --- network -------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8600, ge=0, le=65535, description="TCP port to listen on.")
    ssl_certfile: Path | None = Field(
        default=None, description="PEM certificate (chain) for HTTPS; needs ssl_keyfile."
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="PEM private key for HTTPS; needs ssl_certfile."
    )
    log_level: str = Field(default="info", description="uvicorn log level.")

    # --- sandboxes -----------------------------------------------------------------------
    max_sandbox_file_bytes: int = Field(
        default=100 * 1024**2, ge=1, description="Largest single sandbox file accepted (413)."
    )
    max_sandbox_job_bytes: int = Field(
        default=1024**3,
        ge=1,
        description="Largest total of the sandbox files sent with one submission (413).",
    )
    max_jdl_bytes: int = Field(
        default=1024**2, ge=1, description="Largest JDL text accepted in one submission (413)."
    )
    max_nodes: int = Field(
        default=100_000,
        ge=1,
        description="Most nodes one compound job (or one bulk request) may expand to (413).",
    )
    blob_gc_grace_s: int = Field(
        default=3600,
        ge=0,
        description="Unreferenced sandbox files younger than this survive garbage collection "
        "(an upload whose submission is still on its way).",
    )

    # --- job defaults and limits (gLite WMS semantics) -----------------------------------------
    default_requirements: str = Field(
        default='other.GlueCEStateStatus == "Production"',
        description="Requirements added to every job (ANDed with the job's own).",
    )
    default_rank: str = Field(
        default="-other.GlueCEStateEstimatedResponseTime",
        description="Rank of jobs that have none.",
    )
    default_retry_count: int = Field(
        default=3, ge=0, description="RetryCount of jobs that have none (gLite UI default 3)."
    )
    default_shallow_retry_count: int = Field(
        default=3,
        ge=-1,
        description="ShallowRetryCount of jobs that have none (gLite UI default 3).",
    )
    max_retry_count: int = Field(
        default=10, ge=0, description="Cap on RetryCount (gLite MaxRetryCount)."
    )
    max_shallow_retry_count: int = Field(
        default=10, ge=0, description="Cap on ShallowRetryCount (gLite MaxShallowRetryCount)."
    )
    expiry_period_s: int = Field(
        default=86_400,
        ge=0,
        description="A job without ExpiryTime still waiting this long after submission is "
        "aborted with 'request expired' (gLite ExpiryPeriod); 0 disables.",
    )
    expiry_check_interval_s: float = Field(
        default=30.0, gt=0, description="How often the expiry task looks for expired jobs."
    )

    # --- pilots and matchmaking --------------------------------------------------------------
    heartbeat_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="How often pilots heartbeat (sent to them at registration).",
    )
    lease_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Seconds without a heartbeat after which a pilot is declared dead and its "
        "jobs are requeued. Empty: two heartbeat periods, at most 60 s. Must outlast one "
        "heartbeat interval.",
    )
    work_max_wait_s: float = Field(
        default=20.0,
        ge=0,
        description="Longest time a work request (long poll) is held when no job matches; "
        "sent to pilots as poll_wait_s.",
    )
    max_jobs_per_request: int = Field(
        default=128,
        ge=1,
        description="Most jobs handed to a pilot in one work reply (it asks for one per free "
        "slot, plus a queue of prefetched ones while its jobs are short).",
    )
    fair_share_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Fair-share weight per owner group (VO); groups not listed weigh "
        "fair_share_default_weight. A group's share of running jobs tends to its weight over "
        "the total.",
    )
    fair_share_default_weight: float = Field(
        default=1.0, gt=0, description="Fair-share weight of groups not in fair_share_weights."
    )
    task_queue_resync_s: float = Field(
        default=10.0,
        gt=0,
        description="How often the in-memory task-queue index is recounted from the database "
        "(it is also updated on every submission, hand-out, requeue and cancel).",
    )

    # --- tokens and sharing -------------------------------------------------------------------
    token_default_lifetime: str = Field(
        default="30d",
        description="Lifetime of a token created without --expires (duration like 30d).",
    )
    token_max_lifetime: str = Field(
        default="365d", description="Longest lifetime a token may be given (duration)."
    )
    shared_groups: list[str] = Field(
        default_factory=list,
        description="Groups (VOs) whose members see and act on each other's jobs.",
    )

    @field_validator("token_default_lifetime", "token_max_lifetime")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        levels = ("critical", "error", "warning", "info", "debug", "trace")
        if value.lower() not in levels:
            raise ValueError(f"log_level must be one of {', '.join(levels)}")
        return value.lower()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgres")):
            raise ValueError(
                "database_url must be a sqlite:/// or postgresql+psycopg:// URL, got "
                f"{value.split(':', 1)[0]}:"
            )
        if value.startswith(("postgresql://", "postgres://")):
            # psycopg 3 is the driver we ship; SQLAlchemy would pick psycopg2 by default.
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @model_validator(mode="after")
    def _lease(self) -> Self:
        self.effective_lease_timeout_s  # noqa: B018 - raises ValueError when impossible
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile must be given together")
        for path in (self.ssl_certfile, self.ssl_keyfile):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self

    # --- derived values ------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        """``database_url``, or the embedded SQLite file in ``data_dir``."""
        return self.database_url or f"sqlite:///{self.data_dir / 'pilotwms.sqlite3'}"

    @property
    def effective_lease_timeout_s(self) -> float:
        """``lease_timeout_s``, or two heartbeat periods capped at 60 s (the issue's rule)."""
        lease = self.lease_timeout_s
        if lease is None:
            lease = min(2 * self.heartbeat_interval_s, 60.0)
        if lease <= self.heartbeat_interval_s:
            raise ValueError(
                f"a lease of {lease:g} s does not outlast the heartbeat interval of "
                f"{self.heartbeat_interval_s:g} s: raise lease_timeout_s or lower "
                "heartbeat_interval_s"
            )
        return lease

    @property
    def effective_sandbox_dir(self) -> Path:
        return self.sandbox_dir or self.data_dir / "sandboxes"

    @property
    def token_default_ttl(self) -> timedelta:
        return parse_duration(self.token_default_lifetime)

    @property
    def token_max_ttl(self) -> timedelta:
        return parse_duration(self.token_max_lifetime)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> ServerSettings:
        """Settings from ``config_file`` (TOML), the environment and ``overrides``.

        ``overrides`` whose value is ``None`` are ignored, so CLI options that were not given do
        not mask the file or the environment.
        """
        values = {k: v for k, v in overrides.items() if v is not None}
        if config_file is None:
            return cls(**values)
        if not config_file.is_file():
            raise ValueError(f"configuration file {config_file} does not exist")
        bound = type(
            cls.__name__,
            (cls,),
            {"model_config": SettingsConfigDict(**{**cls.model_config, "toml_file": config_file})},
        )
        return bound(**values)  # type: ignore[no-any-return]


__all__ = ["ServerSettings", "default_data_dir", "parse_duration"]
