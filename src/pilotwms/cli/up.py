"""``pilotwms up``: the server on SQLite and its pilot factory with local pilots, in one command.

The logic lives in ``pilotwms.embedded``; this module only turns options into
``EmbeddedOptions`` and errors into one message and an exit code.
"""

from __future__ import annotations

from pathlib import Path

import typer


def up(  # noqa: PLR0917 - Typer options
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Directory for the database, the sandboxes, the tokens and the pilots' logs "
        "(default: the server's, ~/.local/share/pilotwms).",
    ),
    host: str | None = typer.Option(None, help="Address to listen on (default: 127.0.0.1)."),
    port: int | None = typer.Option(
        None, help="TCP port to listen on (default: 8600; 0 picks a free one)."
    ),
    pilots: int = typer.Option(
        2, "--pilots", min=0, help="Local pilots kept running even when idle (keep-warm)."
    ),
    max_pilots: int | None = typer.Option(
        None,
        "--max-pilots",
        min=1,
        help="Most local pilots at once: the factory adds pilots beyond --pilots while jobs "
        "wait (default: --pilots).",
    ),
    cores: int = typer.Option(2, "--cores", min=1, help="Cores each pilot offers."),
    memory_mb: int = typer.Option(2000, "--memory-mb", min=1, help="Memory each pilot offers."),
    tags: str = typer.Option(
        "pilotwms-demo,python3",
        "--tags",
        help="Software tags the pilots publish (comma-separated; examples/requirements.jdl "
        "needs pilotwms-demo).",
    ),
    client_config: Path | None = typer.Option(
        None,
        "--client-config",
        help="Write the client configuration here (default: the standard location, "
        "$PILOTWMS_CONFIG or ~/.config/pilotwms/client.toml).",
    ),
    no_client_config: bool = typer.Option(
        False, "--no-client-config", help="Do not write a client configuration."
    ),
    grace: float = typer.Option(
        30.0,
        "--grace",
        min=0,
        help="Seconds pilots get to drain at shutdown before they are killed.",
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Server settings file (TOML), as for pilotwms server."
    ),
    log_level: str | None = typer.Option(
        None, help="Server log level: critical, error, warning, info, debug (default: warning)."
    ),
) -> None:
    """Run the server and a pilot factory of local pilots on this machine; configure the client.

    Creates an admin user and token on first start, kept in the data directory.

    Writes a client configuration so that 'pilotwms submit' works at once.

    Ctrl-C stops the pilots (drained, killed after --grace seconds), then the server.
    """
    from pydantic import ValidationError
    from sqlalchemy.exc import OperationalError

    from pilotwms.client.config import config_path
    from pilotwms.core.errors import PilotWMSError
    from pilotwms.core.settings import ServerSettings
    from pilotwms.embedded import EmbeddedError, EmbeddedOptions, run

    if client_config is not None and no_client_config:
        _fail("give --client-config FILE or --no-client-config, not both", 2)
    try:
        settings = ServerSettings.load(
            config,
            data_dir=data_dir,
            host=host,
            port=port,
            log_level=log_level or "warning",
        )
    except (ValidationError, ValueError) as exc:
        _fail(f"invalid settings:\n{exc}", 2)
    if settings.database_url and not settings.database_url.startswith("sqlite"):
        _fail("pilotwms up runs on SQLite only; use pilotwms server for PostgreSQL", 2)
    options = EmbeddedOptions(
        settings=settings,
        pilots=pilots,
        max_pilots=max_pilots,
        cores=cores,
        memory_mb=memory_mb,
        tags=tuple(t.strip() for t in tags.split(",") if t.strip()),
        client_config=None if no_client_config else (client_config or config_path()),
        grace_s=grace,
    )
    try:
        code = run(options, lambda line: typer.echo(line, err=True))
    except EmbeddedError as exc:
        _fail(str(exc), 1)
    except PilotWMSError as exc:
        _fail(exc.message, 1)
    except OperationalError as exc:
        _fail(f"cannot open the database {settings.effective_database_url!r}: {exc.orig}", 1)
    except OSError as exc:  # an unwritable data directory or client configuration
        _fail(str(exc), 1)
    raise typer.Exit(code)


def _fail(message: str, code: int) -> None:
    typer.echo(f"pilotwms up: {message}", err=True)
    raise typer.Exit(code)
