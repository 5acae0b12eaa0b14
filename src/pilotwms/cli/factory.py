"""``pilotwms factory``: run the pilot factory daemon and operate it.

``run`` is the daemon (``pilotwms factory --config F`` is the same). ``status`` reads the
``status.json`` the daemon rewrites every cycle. ``resume`` and ``cancel-pilots`` act on a
running daemon through a request file in ``state_dir/control`` that it answers on its next
cycle; on a factory that is not running they edit its state directly, under its lock.
``check`` validates a configuration and prints each queue's slot ad.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, NoReturn

import typer

from pilotwms.factory.config import FactoryConfig, FactorySettings

TOKEN_ENV = "PILOTWMS_FACTORY_TOKEN"
EXIT_FAILED = 1
EXIT_USAGE = 2

app = typer.Typer(
    name="factory",
    help="The pilot factory: keeps batch queues supplied with pilots for the waiting jobs.",
    invoke_without_command=True,
)

CONFIG = typer.Option(None, "--config", "-c", help="Factory configuration file (TOML).")


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.echo(f"pilotwms factory: {message}", err=True)
    raise typer.Exit(code)


def _load(config: Path | None) -> FactoryConfig:
    from pilotwms.core.errors import PilotWMSError
    from pilotwms.factory.config import load_factory_config

    if config is None:
        _fail("give the configuration file with --config FILE (see examples/factory.toml)", 2)
    try:
        return load_factory_config(config)
    except PilotWMSError as exc:
        _fail(exc.message, 2)


def _settings(config: Path | None) -> FactorySettings:
    return _load(config).settings if config is not None else FactorySettings()


def _admin_token(settings: FactorySettings) -> str:
    if settings.token_file is not None:
        path = settings.token_file.expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            _fail(f"cannot read the factory's token file {path}: {exc.strerror}")
        if not token:
            _fail(f"the factory's token file {path} is empty; put an admin token in it")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        _fail(
            "the factory needs an admin token: set [factory] token_file to a file holding one "
            f"(pilotwms admin token create USER --role admin), or {TOKEN_ENV}"
        )
    return token


@app.callback()
def _factory(
    ctx: typer.Context,
    config: Path | None = CONFIG,
) -> None:
    """Without a sub-command: the same as 'pilotwms factory run'."""
    if ctx.invoked_subcommand is None:
        if config is None:
            typer.echo(ctx.get_help())
            raise typer.Exit(EXIT_USAGE)
        run(config=config, log_level="info")


@app.command()
def run(
    config: Path | None = CONFIG,
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    """Run the factory daemon until SIGTERM or Ctrl-C (its pilots keep running)."""
    from pilotwms.core.errors import PilotWMSError
    from pilotwms.factory.daemon import run_factory
    from pilotwms.factory.server_api import ServerApi

    loaded = _load(config)
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # One line per HTTP request drowns what the factory decides; keep those for debug.
    if log_level.lower() != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)
    api = ServerApi(loaded.settings.server_url, _admin_token(loaded.settings))
    try:
        code = run_factory(loaded, api, agent_url=api.agent_url, config_path=config)
    except PilotWMSError as exc:
        _fail(exc.message)
    finally:
        api.close()
    raise typer.Exit(code)


def _read_status(settings: FactorySettings) -> dict[str, Any] | None:
    from pilotwms.factory.state import STATUS_FILE

    try:
        data = json.loads((settings.state_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _daemon_running(settings: FactorySettings) -> bool:
    from pilotwms.factory.state import StateLock

    lock = StateLock(settings.state_dir)
    if not settings.state_dir.is_dir():
        return False
    if lock.acquire():
        lock.release()
        return False
    return True


def _ago(when: object) -> str:
    if not isinstance(when, int | float):
        return "never"
    return f"{max(0.0, time.time() - when):.0f}s ago"


@app.command()
def status(
    config: Path | None = CONFIG,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Queues, pilots per phase, paused queues and why, and the last cycle."""
    settings = _settings(config)
    running = _daemon_running(settings)
    data = _read_status(settings)
    if as_json:
        typer.echo(json.dumps({"daemon_running": running, "status": data}, indent=1))
        raise typer.Exit(0 if running else EXIT_FAILED)
    if not running:
        typer.echo(f"the factory is NOT running (state directory {settings.state_dir})")
    if data is None:
        typer.echo("no status yet: the factory has not completed a cycle in this state directory")
        raise typer.Exit(EXIT_FAILED)
    head = f"factory {data.get('name')} -> {data.get('server_url')}"
    if running:
        head += f", pid {data.get('pid')}"
    typer.echo(f"{head}; last cycle {_ago(data.get('last_cycle_at'))}")
    if data.get("agent_version"):
        typer.echo(f"server agent version {data['agent_version']}")
    for name, q in data.get("queues", {}).items():
        phases = ", ".join(f"{n} {p}" for p, n in sorted(q.get("pilots", {}).items())) or "none"
        typer.echo(
            f"queue {name} ({q.get('backend')}, sched {q.get('sched_min')}..{q.get('sched_max')},"
            f" poll {q.get('poll')}s): pilots {phases}"
        )
        if q.get("cancelling"):
            typer.echo(f"  {q['cancelling']} pilot(s) cancelled, draining their jobs")
        if q.get("paused"):
            typer.echo(f"  PAUSED: {q.get('pause_reason')}")
        elif q.get("rate_limit"):
            typer.echo(f"  held back: {q['rate_limit']}")
        decision = q.get("last_decision")
        if decision:
            typer.echo(f"  last decision: {decision.get('reason')}")
        if q.get("last_error"):
            typer.echo(f"  last error: {q['last_error']}")
    unmatched = data.get("unmatched_task_queues") or {}
    if unmatched:
        jobs = sum(unmatched.values())
        typer.echo(f"{jobs} waiting job(s) in {len(unmatched)} task queue(s) match no queue")
    for error in data.get("errors") or []:
        typer.echo(f"error: {error}")
    raise typer.Exit(0 if running else EXIT_FAILED)


def _request(config: Path | None, request: dict[str, Any], timeout: float | None) -> None:
    """Hand ``request`` to the running daemon, or carry it out under the lock."""
    from pilotwms.core.errors import PilotWMSError
    from pilotwms.factory.daemon import Factory, request_id
    from pilotwms.factory.server_api import ServerApi
    from pilotwms.factory.state import CONTROL_DIR, StateLock, write_atomic

    loaded = _load(config)
    settings = loaded.settings
    lock = StateLock(settings.state_dir)
    if lock.acquire():
        api = ServerApi(settings.server_url, "")  # never called: nothing here needs it
        try:
            factory = Factory(loaded, api)
            answer = factory.apply_request(request)
            factory.write_status(stopped=True)
        except PilotWMSError as exc:  # a damaged state.json
            _fail(exc.message)
        finally:
            api.close()
            lock.release()
        _answered(answer, "the factory is not running; done directly on its state")
        return
    folder = settings.state_dir / CONTROL_DIR
    name = request_id()
    write_atomic(folder / f"request-{name}.json", json.dumps(request) + "\n")
    answer_path = folder / f"answer-{name}.json"
    wait = timeout or max(q.poll for q in loaded.queues) * 2 + 30.0
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if answer_path.exists():
            answer = json.loads(answer_path.read_text(encoding="utf-8"))
            answer_path.unlink()
            _answered(answer, "")
            return
        time.sleep(0.2)
    _fail(
        f"the factory (pid {lock.holder()}) did not answer within {wait:.0f}s; the request "
        f"stays in {folder} and is carried out at its next cycle"
    )


def _answered(answer: dict[str, Any], note: str) -> None:
    if not answer.get("ok"):
        _fail(str(answer.get("message")))
    typer.echo(answer.get("message"))
    if note:
        typer.echo(note)


@app.command()
def resume(
    queue: str = typer.Argument(..., help="The paused queue."),
    config: Path | None = CONFIG,
    timeout: float | None = typer.Option(None, help="Seconds to wait for the daemon."),
) -> None:
    """Lift a queue's rate-limit pause (after fixing its cause) and clear its back-off."""
    _request(config, {"action": "resume", "queue": queue}, timeout)


@app.command("cancel-pilots")
def cancel_pilots(
    queue: str | None = typer.Option(None, "--queue", "-q", help="Only this queue's pilots."),
    config: Path | None = CONFIG,
    timeout: float | None = typer.Option(None, help="Seconds to wait for the daemon."),
) -> None:
    """Cancel the factory's pilots through their batch system; running jobs are requeued.

    The agents drain: their running jobs are requeued as shallow retries, not lost.
    """
    _request(config, {"action": "cancel-pilots", "queue": queue}, timeout)


@app.command()
def check(config: Path | None = CONFIG) -> None:
    """Validate a configuration and print each queue with the slot ad its pilots will have."""
    from pilotwms.factory.config import slot_attributes

    loaded = _load(config)
    settings = loaded.settings
    typer.echo(f"{loaded.source}: valid; server {settings.server_url}, state {settings.state_dir}")
    for q in loaded.queues:
        typer.echo(
            f"queue {q.name}: backend {q.backend}, sched_min {q.sched_min}, sched_max "
            f"{q.sched_max}, poll {q.poll}s, wait_new {q.wait_new}s, wait_term {q.wait_term}s"
        )
        for key, value in slot_attributes(q).items():
            typer.echo(f"  {key} = {json.dumps(value)}")
