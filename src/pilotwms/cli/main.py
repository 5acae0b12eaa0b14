"""Entry point of the ``pilotwms`` command.

Each component contributes a Typer sub-application from its own module in this package;
this module only assembles them. Heavy imports (FastAPI, SQLAlchemy) stay inside the
command functions so that ``pilotwms --help`` and the client verbs start fast.
"""

from __future__ import annotations

import typer

from pilotwms import __version__
from pilotwms.cli import admin as admin_cli
from pilotwms.cli import classad as classad_cli
from pilotwms.cli import factory as factory_cli
from pilotwms.cli import jdl as jdl_cli
from pilotwms.cli import jobs as jobs_cli
from pilotwms.cli import pilot as pilot_cli
from pilotwms.cli import server as server_cli
from pilotwms.cli import up as up_cli

app = typer.Typer(
    name="pilotwms",
    help="pilotwms: a pilot-job workload management system speaking gLite JDL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(jdl_cli.app, name="jdl")
app.add_typer(classad_cli.app, name="classad")
app.command("pilot", **pilot_cli.COMMAND_SETTINGS)(pilot_cli.pilot)
app.add_typer(server_cli.app, name="server")
app.add_typer(admin_cli.app, name="admin")
jobs_cli.register(app)
app.command("up")(up_cli.up)
app.add_typer(factory_cli.app, name="factory")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pilotwms {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """pilotwms: a pilot-job workload management system speaking gLite JDL."""


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
