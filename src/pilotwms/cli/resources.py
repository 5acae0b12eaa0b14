"""User verbs about where jobs run and how the client is set up: ``list-match``, ``pilots``
and ``config show``. Exit codes as in :mod:`pilotwms.cli.session`; ``list-match`` exits 1 when
no resource matches, so that scripts can test it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pilotwms.cli import render
from pilotwms.cli.session import EXIT_FAILED, make_client, reported
from pilotwms.client import ClientConfig, ClientError
from pilotwms.client.config import ENV_CONFIG, ENV_TOKEN, ENV_URL

JSON = typer.Option(False, "--json", help="Print one JSON document (for scripts).")

config_app = typer.Typer(name="config", help="The client configuration.", no_args_is_help=True)


def list_match(
    file: Path = typer.Argument(
        ..., help="The JDL file.", exists=True, dir_okay=False, readable=True
    ),
    verbosity: int = typer.Option(
        1, "-v", "--verbosity", min=0, max=3, help="2 and more: every clause, not only failing."
    ),
    as_json: bool = JSON,
) -> None:
    """Pilots and queues the job would match, best Rank first; for the others, the clauses
    that fail. Nothing is submitted."""
    with reported(), make_client() as client:
        result = client.list_match(file)
    if as_json:
        render.print_json(dict(result.raw))
    else:
        out = render.console()
        for part in render.match_tables(result, verbosity):
            out.print(part)
    if not result.matching:
        raise typer.Exit(EXIT_FAILED)


pilots_app = typer.Typer(
    name="pilots",
    help="The pilots (alone: list them); 'pilots log ID' prints a pilot's own log.",
    invoke_without_command=True,
)


@pilots_app.callback()
def pilots(
    ctx: typer.Context,
    state: list[str] = typer.Option(
        None,
        "-s",
        "--state",
        help="submitted, queued, running, idle, draining, finished or failed (repeatable).",
    ),
    as_json: bool = JSON,
) -> None:
    """The pilots, newest first: state, queue, site, jobs running now and run so far, version."""
    if ctx.invoked_subcommand is not None:
        return
    with reported(), make_client() as client:
        found = client.pilots(state=[s.lower() for s in state] if state else None)
    if as_json:
        render.print_json({"pilots": [dict(p.raw) for p in found]})
        return
    out = render.console()
    if not found:
        out.print("no pilots")
        return
    out.print(render.pilots_table(found))


@pilots_app.command("log")
def pilot_log(
    pilot_id: str = typer.Argument(..., help="The pilot's id (see 'pilotwms pilots')."),
    stderr: bool = typer.Option(False, "--stderr", help="Its stderr instead of its stdout."),
) -> None:
    """A pilot's own stdout (or stderr), as the pilot factory stored it from the batch system."""
    with reported(), make_client() as client:
        text = client.pilot_log(pilot_id, "stderr" if stderr else "stdout")
    typer.echo(text, nl=not text.endswith("\n"))


def _masked(token: str | None) -> str | None:
    if not token:
        return None
    return token[:4] + "..." if len(token) > 8 else "****"


@config_app.command("show")
def config_show(
    check: bool = typer.Option(False, "--check", help="Also ask the server who answers."),
    as_json: bool = JSON,
) -> None:
    """Where the client configuration comes from and what it says (the token masked)."""
    with reported():
        config = ClientConfig.load()
        sources = dict(config.sources or {})
        info: dict[str, Any] = {
            "file": str(config.path),
            "file_exists": config.file_exists,
            "url": config.url,
            "token": _masked(config.token),
            "verify": config.verify,
            "timeout": config.timeout,
            "sources": sources,
            "environment": [ENV_URL, ENV_TOKEN, ENV_CONFIG],
        }
        if check:
            try:
                with make_client() as client:
                    info["server"] = client.version()
            except ClientError as exc:
                info["server_error"] = exc.message
    if as_json:
        render.print_json(info)
        return
    rows = {
        "file": f"{config.path}" + ("" if config.file_exists else " (does not exist)"),
        "url": _with_source(config.url, sources.get("url")),
        "token": _with_source(_masked(config.token), sources.get("token")),
        "verify": _with_source(config.verify, sources.get("verify")),
        "timeout": f"{config.timeout:g}s",
    }
    if "server" in info:
        rows["server"] = (
            f"pilotwms {info['server'].get('version')} (API {info['server'].get('api')})"
        )
    if "server_error" in info:
        rows["server"] = f"unreachable: {info['server_error']}"
    render.console().print(render.key_values(rows))
    if not config.url or not config.token:
        render.console(stderr=True).print(
            f"not configured: set url and token in {config.path}, or {ENV_URL} and {ENV_TOKEN}"
        )


def _with_source(value: object, source: str | None) -> str:
    if value is None:
        return "(not set)"
    return f"{value}  [from {source}]" if source else f"{value}  [default]"


def register(app: typer.Typer) -> None:
    app.command("list-match")(list_match)
    app.command("job-list-match", hidden=True)(list_match)
    app.add_typer(pilots_app, name="pilots")
    app.add_typer(config_app, name="config")
