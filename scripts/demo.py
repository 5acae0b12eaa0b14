"""``make demo``: the whole system end to end on this machine, in about a minute.

Checks the example JDLs, starts ``pilotwms up`` (server and two local pilots) in the background
on a throw-away data directory, submits every file in ``examples/`` with the command line a user
would type, follows the jobs live, prints their outputs and a summary, and stops the service.

Everything lives in one temporary directory, the client configuration included
(``PILOTWMS_CONFIG``), so the user's own configuration and data are never touched. The service
is stopped on every way out (success, failure, Ctrl-C, SIGTERM) and the demo checks that none of
its processes is left. Exit status: 0 only if every demo job ended DONE with exit code 0.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PILOTWMS = str(BIN / "pilotwms")
READY_DEADLINE_S = 120.0
WAIT_TIMEOUT_S = 180
STOP_DEADLINE_S = 60.0
#: The demo jobs in submission order: (file in examples/, what it shows).
EXAMPLES = [
    ("hello.jdl", "script and files in, output files back"),
    ("parametric.jdl", "one JDL, five jobs (_PARAM_ = 0..4)"),
    ("collection.jdl", "three independent jobs, one from its own file"),
    ("dag.jdl", "diamond: A, then B and C, then D"),
    ("requirements.jdl", "runs only where the software tag pilotwms-demo is"),
]

# soft_wrap: long command lines are not cut at 80 columns when the output is not a terminal.
console = Console(highlight=False, soft_wrap=True)


class Interrupted(Exception):
    """SIGTERM, handled like Ctrl-C: the service is stopped on the way out."""


@dataclass
class Service:
    """The background ``pilotwms up`` and where it keeps its files."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    log: Path


def step(title: str) -> None:
    console.print(f"\n[bold]== {title}[/bold]")


def show(argv: list[str]) -> None:
    """Print a command as the user would type it."""
    words = ["pilotwms", *argv[1:]] if argv[0] == PILOTWMS else argv
    console.print(f"[dim]$[/dim] {shlex.join(words)}")


def pilotwms(env: dict[str, str], *args: str, check: bool = True) -> int:
    argv = [PILOTWMS, *args]
    show(argv)
    code = subprocess.run(argv, env=env, cwd=ROOT, check=False).returncode
    if check and code != 0:
        raise SystemExit(f"demo: 'pilotwms {args[0]}' failed with exit code {code}")
    return code


def demo_environment(work: Path) -> dict[str, str]:
    """This process's environment with every pilotwms and XDG location inside ``work``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTWMS_")}
    env.update(
        PILOTWMS_CONFIG=str(work / "client.toml"),
        XDG_CONFIG_HOME=str(work / "config"),
        XDG_DATA_HOME=str(work / "share"),
    )
    return env


def start_service(work: Path, env: dict[str, str]) -> Service:
    data_dir = work / "data"
    log = work / "up.log"
    argv = [PILOTWMS, "up", "--data-dir", str(data_dir), "--port", "0", "--pilots", "2"]
    argv += ["--cores", "2", "--client-config", env["PILOTWMS_CONFIG"], "--grace", "20"]
    show(argv)
    with log.open("wb") as sink:
        # A session of its own: Ctrl-C reaches only this script, which then stops the service
        # in order (one signal) instead of both getting it at once.
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Service(process, data_dir, log)


def wait_until_ready(service: Service) -> str:
    """The service's URL once it answers health checks and its pilots were started."""
    deadline = time.monotonic() + READY_DEADLINE_S
    state_file = service.data_dir / "up.json"
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise SystemExit(f"demo: pilotwms up exited early:\n{service.log.read_text()}")
        try:
            url = str(json.loads(state_file.read_text())["url"])
            if httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200:
                return url
        except (OSError, ValueError, KeyError, httpx.TransportError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"demo: pilotwms up not ready after {READY_DEADLINE_S:.0f}s")


def stop_service(service: Service) -> bool:
    """SIGINT (as Ctrl-C would), then make sure nothing of it is left; True when clean."""
    from pilotwms.embedded import STATE_FILE, pilot_log_dir, processes_of
    from pilotwms.factory.backends.local import LocalBackend

    state_file = service.data_dir / STATE_FILE
    try:
        pilot_ids = [str(i) for i in json.loads(state_file.read_text()).get("pilots", [])]
    except (OSError, ValueError):
        pilot_ids = []
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGINT)
    try:
        service.process.wait(STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        console.print("demo: pilotwms up did not stop in time; killing it and its pilots")
        service.process.kill()
        service.process.wait()
    # Pilots are detached from ``up``; if it could not stop them, they are stopped here.
    leftovers = processes_of(int(i.partition("-")[0]) for i in pilot_ids)
    if leftovers:
        LocalBackend(log_dir=pilot_log_dir(service.data_dir)).terminate(pilot_ids, 0)
    return service.process.returncode == 0 and not leftovers


def submit_examples(env: dict[str, str], ids_file: Path) -> list[int]:
    for name, _ in EXAMPLES:
        pilotwms(env, "submit", f"examples/{name}", "-o", str(ids_file), "--nomsg")
    lines = ids_file.read_text().splitlines()
    return [int(line) for line in lines if line.strip().isdigit()]


def print_file(path: Path) -> None:
    console.print(f"[cyan]{path.name}[/cyan]: " + path.read_text(errors="replace").rstrip())


def show_outputs(ids: list[int], out: Path) -> None:
    hello, parametric, collection, dag, _ = (out / str(i) for i in ids)
    console.print("[bold]hello[/bold]")
    print_file(hello / "hello.out")
    print_file(hello / "greeting.txt")
    console.print("[bold]parametric, node 3 of 0..4[/bold]")
    print_file(parametric / "Node_3" / "square_3.txt")
    console.print("[bold]collection[/bold]")
    print_file(collection / "english" / "greeting.txt")
    console.print("[bold]dag: A, then B and C, then D[/bold]")
    for node in "ABCD":
        print_file(dag / node / f"{node}.out")
    console.print("[bold]requirements[/bold]")
    print_file(out / str(ids[4]) / "requirements.out")


def summary(url: str, token: str, ids: list[int]) -> bool:
    """The summary table; True when every job (and every node) ended DONE with exit code 0."""
    from pilotwms.client import Client

    table = Table(title="Demo jobs")
    for column in ("id", "file", "kind", "state", "nodes", "wall time"):
        table.add_column(column, justify="right" if column in ("id", "wall time") else "left")
    all_ok = True
    with Client(url, token) as client:
        for job_id, (name, _) in zip(ids, EXAMPLES, strict=True):
            status = client.job(job_id).status()
            if status.nodes:
                ok = all(n.state == "DONE" and n.exit_code == 0 for n in status.nodes)
                done = sum(n.state == "DONE" and n.exit_code == 0 for n in status.nodes)
                nodes = f"{done}/{len(status.nodes)} ok"
            else:
                ok = status.state == "DONE" and status.exit_code == 0
                nodes = "-"
            ok = ok and status.state == "DONE"
            all_ok = all_ok and ok
            wall = "-"
            if status.submitted_at and status.finished_at:
                wall = f"{(status.finished_at - status.submitted_at).total_seconds():.1f}s"
            state = status.state + (f" (exit {status.exit_code})" if not status.nodes else "")
            table.add_row(
                str(job_id),
                name,
                status.kind,
                f"[green]{state}[/green]" if ok else f"[red]{state}[/red]",
                nodes,
                wall,
            )
    console.print(table)
    return all_ok


def run_demo(work: Path, env: dict[str, str]) -> bool:
    step("1. The JDL tools: check every example (no server needed)")
    pilotwms(
        env, "jdl", "check", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("examples/*.jdl"))
    )

    step("2. Start the all-in-one service in the background: server, SQLite, 2 local pilots")
    service = start_service(work, env)
    try:
        url = wait_until_ready(service)
        console.print(service.log.read_text().rstrip())
        token = _client_token(Path(env["PILOTWMS_CONFIG"]))

        step("3. Submit the examples")
        for name, what in EXAMPLES:
            console.print(f"  [cyan]{name:17}[/cyan] {what}")
        ids = submit_examples(env, work / "ids")

        step("4. Follow them until they end")
        ids_file = str(work / "ids")
        pilotwms(
            env,
            "wait",
            "-i",
            ids_file,
            "--timeout",
            str(WAIT_TIMEOUT_S),
            "--poll",
            "1",
            check=False,
        )

        step("5. Download and show their outputs")
        pilotwms(env, "output", "-i", ids_file, "--dir", str(work / "output"), check=False)
        try:
            show_outputs(ids, work / "output")
        except OSError as exc:
            console.print(f"[red]an expected output file is missing: {exc}[/red]")

        step("6. Summary")
        ok = summary(url, token, ids)
    finally:
        step("7. Stop the service (Ctrl-C does the same)")
        clean = stop_service(service)
        said = service.log.read_text().rstrip().splitlines()
        console.print(said[-1] if said else "pilotwms up stopped before it started")
    if not clean:
        console.print("[red]pilotwms up did not stop cleanly; its log:[/red]")
        console.print(service.log.read_text())
    return ok and clean


def _client_token(config: Path) -> str:
    import tomllib

    return str(tomllib.loads(config.read_text())["token"])


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def main() -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="pilotwms-demo-"))
    env = demo_environment(work)
    ok = False
    keep = True  # the logs and outputs of a failed run help to find out why
    try:
        ok = run_demo(work, env)
    except (KeyboardInterrupt, Interrupted):
        console.print("\ndemo interrupted; the service was stopped")
        keep = False
        return 130
    finally:
        if ok or not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            console.print(f"files of this run (logs, outputs) kept in {work}")
    elapsed = time.monotonic() - started
    if ok:
        done = "every job ended DONE with exit code 0"
        console.print(f"\n[green]demo finished in {elapsed:.0f}s: {done}[/green]")
        console.print(
            "Run it yourself: pilotwms up, then pilotwms submit examples/hello.jdl --wait"
        )
        return 0
    console.print(f"\n[red]demo failed after {elapsed:.0f}s: see the messages above[/red]")
    return 1


if __name__ == "__main__":
    sys.exit(main())
