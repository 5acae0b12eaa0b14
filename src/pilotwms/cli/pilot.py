"""``pilotwms pilot``: run the pilot agent from the installed package.

The options are the agent's own (one parser, in ``pilotwms.agent.settings``), so this command
and ``python3 agent.pyz`` accept exactly the same arguments; Typer only passes them through.
The main CLI mounts it as a command, not a group, so that ``pilotwms pilot --server URL`` needs
no sub-command name::

    app.command("pilot", **pilot_cli.COMMAND_SETTINGS)(pilot_cli.pilot)
"""

from __future__ import annotations

from typing import Any

import typer

COMMAND_SETTINGS: dict[str, Any] = {
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True},
    "add_help_option": False,
    "help": "Run the pilot agent: pilotwms pilot --server URL --token T [options] "
    "(--help lists every option).",
}
"""Keyword arguments of ``Typer.command`` that pass every argument through to the agent."""


def pilot(ctx: typer.Context) -> None:
    """Describe this slot, pull matching jobs from the server and run them."""
    from pilotwms.agent.__main__ import main

    raise typer.Exit(main(list(ctx.args), prog="pilotwms pilot"))


app = typer.Typer(add_completion=False)
"""A stand-alone application with the one command (``typer.main.get_command(app)``)."""
app.command("pilot", **COMMAND_SETTINGS)(pilot)
