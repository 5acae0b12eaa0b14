"""``pilotwms server``: run the WMS server (FastAPI on uvicorn).

Every setting can come from a TOML file (``--config``), from ``PILOTWMS_*`` environment
variables, or from the options below (highest precedence). Settings without an option here
(size limits, retry caps, default Requirements/Rank, expiry, token lifetimes, shared groups)
are listed with ``--show-settings``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    help="Run the WMS server (REST API, job store, sandbox store, expiry).\n\n"
    "Settings come from --config (TOML), PILOTWMS_<NAME> environment variables and the "
    "options below, highest last. Size limits, retry caps, default Requirements/Rank, expiry, "
    "token lifetimes and shared groups are settings too: --show-settings lists them all "
    "with their values.",
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def server(  # noqa: PLR0917 - Typer options
    config: Path | None = typer.Option(
        None, "--config", "-c", help="TOML settings file (top-level keys named like the settings)."
    ),
    host: str | None = typer.Option(None, help="Address to listen on (default: 127.0.0.1)."),
    port: int | None = typer.Option(None, help="TCP port to listen on (default: 8600)."),
    data_dir: Path | None = typer.Option(
        None,
        help="Directory for the embedded SQLite database and the sandbox store "
        "(default: ~/.local/share/pilotwms).",
    ),
    database_url: str | None = typer.Option(
        None,
        help="SQLAlchemy URL of the job database, e.g. postgresql+psycopg://u:pw@host/db "
        "(default: SQLite in the data directory).",
    ),
    sandbox_dir: Path | None = typer.Option(
        None, help="Sandbox store directory (default: DATA_DIR/sandboxes)."
    ),
    ssl_certfile: Path | None = typer.Option(
        None, "--ssl-certfile", help="PEM certificate (chain) to serve HTTPS."
    ),
    ssl_keyfile: Path | None = typer.Option(
        None, "--ssl-keyfile", help="PEM private key matching --ssl-certfile."
    ),
    no_migrate: bool = typer.Option(
        False,
        "--no-migrate",
        help="Do not upgrade the database schema; refuse to start if it is behind.",
    ),
    log_level: str | None = typer.Option(
        None, help="critical, error, warning, info, debug or trace (default: info)."
    ),
    show_settings: bool = typer.Option(
        False, "--show-settings", help="Print the effective settings as JSON and exit."
    ),
) -> None:
    """Run the WMS server: REST API, job store, sandbox store, expiry."""
    from pydantic import ValidationError
    from sqlalchemy.exc import OperationalError

    from pilotwms.core.errors import ConfigurationError
    from pilotwms.core.settings import ServerSettings

    try:
        settings = ServerSettings.load(
            config,
            host=host,
            port=port,
            data_dir=data_dir,
            database_url=database_url,
            sandbox_dir=sandbox_dir,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            migrate_on_start=False if no_migrate else None,
            log_level=log_level,
        )
    except (ValidationError, ValueError) as exc:
        typer.echo(f"pilotwms server: invalid settings:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    if show_settings:
        typer.echo(json.dumps(settings.model_dump(mode="json"), indent=2))
        raise typer.Exit()

    import uvicorn

    from pilotwms.server.app import Server, create_app, prepare_database

    try:
        prepare_database(settings).dispose()
    except ConfigurationError as exc:
        typer.echo(f"pilotwms server: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    except OperationalError as exc:
        typer.echo(
            f"pilotwms server: cannot open the database {settings.effective_database_url!r}: "
            f"{exc.orig}",
            err=True,
        )
        raise typer.Exit(2) from exc
    scheme = "https" if settings.ssl_certfile else "http"
    typer.echo(f"pilotwms server {scheme}://{settings.host}:{settings.port}/api/v1", err=True)
    # uvicorn.run, with the server that releases long polls at once on a stop.
    uvicorn_server = Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
            ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            log_level=settings.log_level,
        )
    )
    uvicorn_server.run()
    if not uvicorn_server.started:
        raise typer.Exit(3)  # uvicorn's status for a failed start-up
