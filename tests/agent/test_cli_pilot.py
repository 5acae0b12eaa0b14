"""`pilotwms pilot` passes every argument through to the agent's own parser."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from pilotwms.agent import AGENT_VERSION
from pilotwms.cli import pilot as pilot_cli


def main_like_app() -> typer.Typer:
    """Mounted the way the main CLI mounts it (see the module docstring of cli/pilot.py)."""
    app = typer.Typer()
    app.command("pilot", **pilot_cli.COMMAND_SETTINGS)(pilot_cli.pilot)

    @app.command()
    def other() -> None:
        """Another command, so that `pilot` is a sub-command as in the real CLI."""

    return app


def test_version_describe_and_help_pass_through(tmp_path: Path) -> None:
    runner = CliRunner()
    app = main_like_app()
    version = runner.invoke(app, ["pilot", "--version"])
    assert version.exit_code == 0 and version.stdout.strip() == AGENT_VERSION
    described = runner.invoke(
        app, ["pilot", "--describe", "--site", "S", "--work-dir", str(tmp_path)]
    )
    assert described.exit_code == 0, described.output
    assert json.loads(described.stdout)["Site"] == "S"
    helped = runner.invoke(app, ["pilot", "--help"])
    assert helped.exit_code == 0 and "--wait-term" in helped.stdout
    assert "usage: pilotwms pilot" in helped.stdout


def test_missing_server_is_reported_with_exit_status_2() -> None:
    result = CliRunner().invoke(main_like_app(), ["pilot", "--token", "t"])
    assert result.exit_code == 2
    assert "--server" in result.output


def test_standalone_app_runs_the_same_command() -> None:
    result = CliRunner().invoke(pilot_cli.app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == AGENT_VERSION
