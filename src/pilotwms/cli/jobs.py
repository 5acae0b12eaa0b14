"""The user verbs for jobs: ``submit``, ``status``, ``wait``, ``output``, ``cancel``,
``resubmit``, ``logging-info`` and ``peek`` (gLite's glite-wms-job-* commands, DIRAC's
dirac-wms-job-*).

They speak only HTTP, through :mod:`pilotwms.client`. Every read verb has ``--json`` (one JSON
document on stdout, the server's own fields); errors are one message on stderr. Exit codes:

- 0: success (``wait`` and ``submit --wait``: every job ended DONE with exit code 0);
- 1: a job ended unsuccessfully (``wait``), or the user declined a confirmation;
- 2: usage error (bad option, unreadable file, client not configured, no terminal to confirm);
- 3: the request was refused, by the server or locally (invalid JDL shown with
  file:line:column and a caret, cancel of a finished job, resubmit of an unfinished or
  successful job, output of an unfinished job, output that would overwrite files);
- 4: no such job (or not yours);
- 5: authentication or authorisation failed;
- 6: the server is unreachable or unavailable;
- 7: ``wait --timeout`` expired before the jobs ended.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from pilotwms.cli import render
from pilotwms.cli.session import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    append_ids,
    collect_ids,
    exit_code_of,
    make_client,
    parse_since,
    report,
    reported,
)
from pilotwms.client import (
    Client,
    ClientError,
    Compound,
    Job,
    JobStatus,
    ServerUnavailable,
    UploadProgress,
    WaitTimeout,
)
from pilotwms.client.jobs import backoff_intervals

JSON = typer.Option(False, "--json", help="Print one JSON document (for scripts).")
IDS = typer.Argument(None, help="Job ids.", show_default=False)
INPUT = typer.Option(
    None, "-i", "--input", help="Read job ids from FILE (one per line, as -o writes them)."
)
VERBOSITY = typer.Option(1, "-v", "--verbosity", min=0, max=3, help="Detail level 0..3.")
TIMEOUT = typer.Option(None, "--timeout", help="Give up after SECONDS (exit code 7).")
POLL = typer.Option(10.0, "--poll", min=0.1, help="Longest interval between polls (seconds).")


def _ids_or_usage(ids: Sequence[int] | None, input_file: Path | None) -> list[int]:
    found = collect_ids(ids, input_file)
    if not found:
        raise typer.BadParameter("give at least one job id (or -i FILE)")
    return found


# -- submit ------------------------------------------------------------------------------


class _UploadBar:
    """A progress bar on stderr for sandbox uploads (only on a terminal)."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task: Any = None

    def __call__(self, event: UploadProgress) -> None:
        if self.progress is None:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=render.console(stderr=True),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("uploading", total=event.total_size)
        verb = "have" if event.skipped else "uploading"
        self.progress.update(
            self.task, completed=event.total_sent, description=f"{verb} {escape(event.entry)}"
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def submit(  # noqa: PLR0917 - Typer options
    file: Path = typer.Argument(
        ..., help="The JDL file.", exists=True, dir_okay=False, readable=True
    ),
    output_file: Path | None = typer.Option(
        None, "-o", "--output", help="Append the job id(s) to FILE (gLite's -o)."
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the job until it ends."),
    timeout: float | None = TIMEOUT,
    poll: float = POLL,
    quiet: bool = typer.Option(False, "-q", "--nomsg", help="Print only the job id."),
    as_json: bool = JSON,
) -> None:
    """Submit a JDL file; its local InputSandbox files are uploaded (each content once)."""
    with reported(), make_client() as client:
        prepared = client.prepare(file)
        bar = _UploadBar() if sys.stderr.isatty() and not as_json and prepared.files else None
        try:
            job = client.submit_prepared(prepared, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        nodes = job.nodes() if isinstance(job, Compound) else []
        if output_file is not None:
            append_ids(output_file, [job.id])
        _print_warnings(job, prepared.filename)
        result: dict[str, Any] = {
            "id": job.id,
            "kind": job.kind if isinstance(job, Compound) else "job",
            "nodes": [{"id": n.id, "name": n.name} for n in nodes],
            "warnings": list(job.warnings),
        }
        if not as_json:
            _print_submitted(job, nodes, quiet, output_file)
        if not wait:
            if as_json:
                render.print_json(result)
            return
        final = _follow(client, [job.id], timeout=timeout, poll=poll, live=not as_json)
        if as_json:
            result["final"] = dict(final[job.id].raw)
            render.print_json(result)
        elif not quiet:
            _print_final(final)
        raise typer.Exit(EXIT_OK if final[job.id].succeeded else EXIT_FAILED)


def _print_warnings(job: Job, filename: str) -> None:
    err = render.console(stderr=True)
    for w in job.warnings:
        where = f"{filename}:{w.get('line')}:{w.get('column')}" if w.get("line") else filename
        hint = f" ({w['hint']})" if w.get("hint") else ""
        err.print(
            f"[yellow]warning:[/yellow] {escape(where)}: {escape(str(w.get('message')))}"
            f"{escape(hint)}"
        )


def _print_submitted(job: Job, nodes: list[Job], quiet: bool, output_file: Path | None) -> None:
    if quiet:
        typer.echo(job.id)
        return
    out = render.console()
    if isinstance(job, Compound):
        out.print(f"Submitted {job.kind} job [bold]{job.id}[/bold] with {len(nodes)} nodes:")
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("NODE")
        table.add_column("ID", justify="right")
        for n in nodes:
            table.add_row(escape(n.name or "-"), str(n.id))
        out.print(table)
    else:
        out.print(f"Submitted job [bold]{job.id}[/bold]")
    if output_file is not None:
        out.print(f"The job identifier has been saved in {escape(str(output_file))}")


# -- wait --------------------------------------------------------------------------------


def _progress_table(statuses: dict[int, JobStatus], ids: Sequence[int]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", justify="right")
    table.add_column("STATUS")
    table.add_column("PROGRESS")
    for i in ids:
        s = statuses.get(i)
        if s is None:
            table.add_row(str(i), "?", "")
            continue
        counts = render.counts_line(s.children) if s.children else ""
        table.add_row(str(i), render.describe_state(s), counts)
    return table


def _follow(
    client: Client, ids: Sequence[int], *, timeout: float | None, poll: float, live: bool
) -> dict[int, JobStatus]:
    """Poll the jobs until all finished; shows a live table on a terminal, a line per state
    change otherwise (nothing with ``live`` off). Raises ``WaitTimeout`` at the deadline."""
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = backoff_intervals(poll)
    latest: dict[int, JobStatus] = {}
    pending = list(ids)
    out = render.console()
    terminal = live and sys.stdout.isatty()
    display = Live(_progress_table(latest, ids), console=out) if terminal else None
    if display is not None:
        display.start()
    try:
        while pending:
            for i in list(pending):
                try:
                    s = Job(client, i).status(nodes=False)
                except ServerUnavailable:
                    continue
                before = latest.get(i)
                latest[i] = s
                changed = before is None or (before.state, before.children) != (
                    s.state,
                    s.children,
                )
                if live and not terminal and changed:
                    counts = f" ({render.counts_line(s.children)})" if s.children else ""
                    out.print(f"job {i}: {render.describe_state(s)}{counts}")
                if s.finished:
                    pending.remove(i)
            if display is not None:
                display.update(_progress_table(latest, ids))
            if not pending:
                break
            sleep = interval()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    waiting = ", ".join(f"{i} ({latest[i].state})" for i in pending if i in latest)
                    raise WaitTimeout(f"timed out after {timeout:g}s; still waiting for {waiting}")
                sleep = min(sleep, left)
            time.sleep(sleep)
    finally:
        if display is not None:
            display.stop()
    return latest


def _print_final(final: dict[int, JobStatus]) -> None:
    out = render.console()
    good = sum(1 for s in final.values() if s.succeeded)
    if not sys.stdout.isatty():
        out.print(render.jobs_table(list(final.values()), 0))
    out.print(f"{good} of {len(final)} job(s) succeeded")


def wait(
    ids: list[int] = IDS,
    input_file: Path | None = INPUT,
    timeout: float | None = TIMEOUT,
    poll: float = POLL,
    as_json: bool = JSON,
) -> None:
    """Follow jobs until they end; exit code 0 only if all of them succeeded."""
    wanted = _ids_or_usage(ids, input_file)
    with reported(), make_client() as client:
        final = _follow(client, wanted, timeout=timeout, poll=poll, live=not as_json)
        if as_json:
            render.print_json({"jobs": [dict(final[i].raw) for i in wanted]})
        else:
            _print_final(final)
        ok = all(final[i].succeeded for i in wanted)
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


# -- status ------------------------------------------------------------------------------


def status(  # noqa: PLR0917 - Typer options
    ids: list[int] = IDS,
    verbosity: int = VERBOSITY,
    input_file: Path | None = INPUT,
    all_jobs: bool = typer.Option(False, "--all", help="All the jobs you can see."),
    state: list[str] = typer.Option(
        None, "-s", "--state", help="Only jobs in STATE (repeatable: any of them)."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only jobs submitted since a date or a duration (6h, 2d)."
    ),
    owner: str | None = typer.Option(None, "--owner", help="Only jobs of this user."),
    nonodes: bool = typer.Option(False, "--nonodes", help="Leave out compound jobs' nodes."),
    as_json: bool = JSON,
) -> None:
    """Status of jobs: a table; a compound job adds its per-state summary and its nodes
    (-v 2 adds a DAG's dependencies and reasons, -v 3 the JDL)."""
    wanted = collect_ids(ids, input_file)
    states = [s.upper() for s in state or []]
    since_at = parse_since(since) if since else None
    if not wanted and not (all_jobs or states or since_at or owner):
        raise typer.BadParameter("give job ids, -i FILE, --all or a filter (--state, --since)")
    errors: list[ClientError] = []
    with reported(), make_client() as client:
        statuses: list[JobStatus] = []
        if wanted:
            for i in wanted:
                try:
                    s = Job(client, i).status(nodes=not nonodes)
                except ClientError as exc:
                    if isinstance(exc, ServerUnavailable):
                        raise
                    errors.append(exc)
                    continue
                if states and s.state not in states:
                    continue
                if since_at and (s.submitted_at is None or s.submitted_at < since_at):
                    continue
                statuses.append(s)
        else:
            statuses = list(client.jobs(state=states or None, since=since_at, owner=owner))
        jdls = {s.id: Job(client, s.id).jdl("expanded") for s in statuses} if verbosity >= 3 else {}
    if as_json:
        render.print_json(
            {"jobs": [{**s.raw, **({"jdl": jdls[s.id]} if s.id in jdls else {})} for s in statuses]}
        )
    else:
        _print_statuses(statuses, verbosity, jdls)
    for problem in errors:
        report(problem)
    if errors:
        raise typer.Exit(max(exit_code_of(e) for e in errors))


def _print_statuses(statuses: list[JobStatus], verbosity: int, jdls: dict[int, str]) -> None:
    out = render.console()
    if not statuses:
        out.print("no jobs")
        return
    out.print(render.jobs_table(statuses, verbosity))
    for s in statuses:
        if s.children is not None and verbosity >= 1:
            out.print()
            out.print(f"[bold]{s.kind} job {s.id}[/bold]: {render.counts_line(s.children)}")
            if s.kind == "dag" and s.nodes and verbosity >= 2:
                out.print(f"dependencies: {render.dag_summary(s)}")
            if s.nodes:
                out.print(render.nodes_table(s, dependencies=verbosity >= 2))
        if s.id in jdls:
            out.print()
            out.print(f"[bold]JDL of job {s.id}[/bold]:")
            out.print(escape(jdls[s.id]))


# -- logging-info ------------------------------------------------------------------------


def logging_info(
    ids: list[int] = IDS,
    verbosity: int = VERBOSITY,
    input_file: Path | None = INPUT,
    as_json: bool = JSON,
) -> None:
    """The event history of jobs, oldest first (gLite's logging-info)."""
    wanted = _ids_or_usage(ids, input_file)
    with reported(), make_client() as client:
        history = {i: Job(client, i).events() for i in wanted}
    if as_json:
        render.print_json(
            {"jobs": [{"id": i, "events": [dict(e.raw) for e in history[i]]} for i in wanted]}
        )
        return
    out = render.console()
    for n, i in enumerate(wanted):
        if n:
            out.print()
        out.print(f"[bold]Events of job {i}[/bold]")
        out.print(render.events_table(history[i], verbosity))


# -- cancel ------------------------------------------------------------------------------


def cancel(
    ids: list[int] = IDS,
    input_file: Path | None = INPUT,
    yes: bool = typer.Option(False, "-y", "--yes", "--noint", help="Do not ask for confirmation."),
    as_json: bool = JSON,
) -> None:
    """Cancel jobs (every unfinished node of a compound job); asks first unless --yes."""
    wanted = _ids_or_usage(ids, input_file)
    if not yes:
        if not sys.stdin.isatty():
            render.console(stderr=True).print(
                "[bold red]error:[/bold red] cancel asks for confirmation but stdin is not a "
                "terminal; pass --yes to cancel without asking"
            )
            raise typer.Exit(EXIT_USAGE)
        listed = ", ".join(str(i) for i in wanted)
        if not typer.confirm(f"Cancel job(s) {listed}?", default=False):
            render.console(stderr=True).print("nothing cancelled")
            raise typer.Exit(EXIT_FAILED)

    def cancel_one(client: Client, i: int) -> tuple[dict[str, Any], list[str]]:
        r = Job(client, i).cancel()
        lines = []
        if r.cancelled:
            lines.append(f"job {i}: cancelled {_count(r.cancelled, i)}")
        if r.cancel_requested:
            lines.append(
                f"job {i}: cancellation requested for {_count(r.cancel_requested, i)}"
                " (running; their pilot stops them)"
            )
        result = {"id": r.id, "cancelled": r.cancelled, "cancel_requested": r.cancel_requested}
        return result, lines

    _for_each_job(wanted, cancel_one, as_json)


# -- resubmit ----------------------------------------------------------------------------


def resubmit(
    ids: list[int] = IDS,
    input_file: Path | None = INPUT,
    as_json: bool = JSON,
) -> None:
    """Run again what failed in finished jobs (a rescue): the nodes of a DAG, collection or
    parametric job that did not end DONE with exit code 0, and a DAG's descendants of them;
    nodes that succeeded are kept. A failed normal job runs again as a whole."""

    def resubmit_one(client: Client, i: int) -> tuple[dict[str, Any], list[str]]:
        result = client.resubmit(i)
        return result, [_resubmitted_line(i, result)]

    _for_each_job(_ids_or_usage(ids, input_file), resubmit_one, as_json)


def _resubmitted_line(job_id: int, result: dict[str, Any]) -> str:
    again = [int(x) for x in result.get("resubmitted") or []]
    released = len(result.get("released") or [])
    kept = int(result.get("kept") or 0)
    if again == [job_id]:
        return f"job {job_id}: resubmitted"
    shown = ", ".join(str(x) for x in again[:20]) + (" ..." if len(again) > 20 else "")
    held = len(again) - released
    later = f", {held} waiting for parents or max_nodes_running" if held else ""
    return (
        f"job {job_id}: resubmitted {len(again)} node(s) ({shown}): {released} eligible now"
        f"{later}; {kept} kept"
    )


def _for_each_job(
    wanted: Sequence[int],
    act: Callable[[Client, int], tuple[dict[str, Any], list[str]]],
    as_json: bool,
) -> None:
    """Apply ``act`` to each job: it returns the job's result (for ``--json``) and the lines to
    print. A refused job is reported on stderr while the others still go ahead, and the exit
    code is the worst refusal's; an unreachable server stops everything at once."""
    results: list[dict[str, Any]] = []
    errors: list[ClientError] = []
    out = render.console()
    with reported(), make_client() as client:
        for i in wanted:
            try:
                result, lines = act(client, i)
            except ClientError as exc:
                if isinstance(exc, ServerUnavailable):
                    raise
                errors.append(exc)
                continue
            results.append(result)
            if not as_json:
                for line in lines:
                    out.print(line)
    if as_json:
        render.print_json({"jobs": results})
    for problem in errors:
        report(problem)
    if errors:
        raise typer.Exit(max(exit_code_of(e) for e in errors))


def _count(ids: list[int], job_id: int) -> str:
    if ids == [job_id]:
        return "the job"
    return f"{len(ids)} node(s)"


# -- output ------------------------------------------------------------------------------


def output(
    ids: list[int] = IDS,
    directory: Path = typer.Option(
        Path("."), "--dir", help="Put each job's files in DIR/<id>/ (default: here)."
    ),
    input_file: Path | None = INPUT,
    clear: bool = typer.Option(
        False, "--clear", help="Tell the server the output was retrieved (the job is CLEARED)."
    ),
    as_json: bool = JSON,
) -> None:
    """Download and unpack output sandboxes (one folder per job; per node for compound jobs)."""

    def fetch(client: Client, i: int) -> tuple[dict[str, Any], list[str]]:
        job = Job(client, i)
        s = job.status(nodes=False)
        if not s.finished:
            raise ClientError(
                f"job {i} is {s.state}: its output sandbox is available once it ends "
                f"(pilotwms wait {i})",
                status=409,
            )
        dest = directory / str(i)
        files = job.output(dest, clear=clear)
        if files:
            lines = [f"Output files of job {i} are stored in {escape(str(dest))}"]
            lines += [f"  {escape(str(f.relative_to(dest)))}" for f in files]
        else:
            lines = [f"job {i} has no output files"]
        return {"id": i, "dir": str(dest), "files": [str(f) for f in files]}, lines

    _for_each_job(_ids_or_usage(ids, input_file), fetch, as_json)


# -- peek --------------------------------------------------------------------------------


def peek(
    job_id: int = typer.Argument(..., help="The job id (a single job or a node)."),
    wait_s: float = typer.Option(
        15.0, "--wait", min=0.0, help="How long to wait for the pilot's answer (seconds)."
    ),
    as_json: bool = JSON,
) -> None:
    """The current tail of a running job's standard output (gLite's perusal)."""
    with reported(), make_client() as client:
        tail = Job(client, job_id).peek(wait=wait_s)
    if as_json:
        render.print_json(
            {
                "id": tail.id,
                "attempt": tail.attempt,
                "stdout_tail": tail.text,
                "fresh": tail.fresh,
                "running": tail.running,
            }
        )
        return
    err = render.console(stderr=True)
    if not tail.running:
        err.print(f"job {job_id} is not running; its last known output:")
    elif not tail.fresh:
        err.print(f"no new output from the pilot within {wait_s:g}s; the last known output:")
    sys.stdout.write(tail.text if tail.text.endswith("\n") or not tail.text else tail.text + "\n")


def register(app: typer.Typer) -> None:
    """Add the user verbs (jobs, resources, configuration) to the ``pilotwms`` command."""
    from pilotwms.cli import resources

    app.command("submit")(submit)
    app.command("status")(status)
    app.command("wait")(wait)
    app.command("output")(output)
    app.command("cancel")(cancel)
    app.command("resubmit")(resubmit)
    app.command("logging-info")(logging_info)
    app.command("peek")(peek)
    # gLite's verbs without the glite-wms- prefix, for fingers that remember them.
    for alias, verb in (
        ("job-submit", submit),
        ("job-status", status),
        ("job-output", output),
        ("job-cancel", cancel),
        ("job-logging-info", logging_info),
    ):
        app.command(alias, hidden=True)(verb)
    resources.register(app)


__all__ = [
    "cancel",
    "logging_info",
    "output",
    "peek",
    "register",
    "resubmit",
    "status",
    "submit",
    "wait",
]
