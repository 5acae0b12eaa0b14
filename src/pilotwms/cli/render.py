"""How the user verbs print: rich tables for people, JSON for scripts, one message per error.

Colours follow the terminal: none when the output is not a terminal (rich's own detection) or
when ``NO_COLOR`` is set; tables are not cut to 80 columns when piped.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pilotwms.client import (
    ChildCounts,
    JobEvent,
    JobStatus,
    MatchResult,
    NodeStatus,
    Pilot,
)

#: Width used when stdout is not a terminal: wide enough that a pipe gets whole lines.
PIPE_WIDTH = 200

_STATE_STYLES = {
    "SUBMITTED": "cyan",
    "WAITING": "cyan",
    "READY": "blue",
    "SCHEDULED": "blue",
    "RUNNING": "bold blue",
    "DONE": "green",
    "CLEARED": "green",
    "ABORTED": "bold red",
    "CANCELLED": "yellow",
    "PURGED": "dim",
}
_STATE_ORDER = list(_STATE_STYLES)


def console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) with colours only on a terminal without NO_COLOR."""
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    return Console(
        file=stream,
        soft_wrap=not terminal,
        highlight=False,
        no_color=bool(os.environ.get("NO_COLOR")) or not terminal,
        width=None if terminal else PIPE_WIDTH,
    )


def print_json(data: Any) -> None:
    """One JSON document on stdout (no colour, no wrapping: for tools)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


def when(value: datetime | None) -> str:
    """A timestamp in local time, to the second."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def styled_state(state: str, text: str | None = None) -> str:
    style = _STATE_STYLES.get(state, "")
    shown = escape(text or state)
    return f"[{style}]{shown}[/{style}]" if style else shown


def describe_state(status: JobStatus | NodeStatus) -> str:
    """gLite's status wording with the exit code, coloured."""
    text = status.describe()
    return styled_state(status.state, text)


def counts_line(counts: ChildCounts) -> str:
    """``5 nodes: 2 RUNNING, 3 DONE`` in lifecycle order."""
    ordered = sorted(
        counts.states.items(),
        key=lambda kv: _STATE_ORDER.index(kv[0]) if kv[0] in _STATE_ORDER else len(_STATE_ORDER),
    )
    parts = ", ".join(f"{n} {styled_state(s)}" for s, n in ordered if n)
    return f"{counts.total} nodes: {parts or 'none'}"


def jobs_table(statuses: Sequence[JobStatus], verbosity: int) -> Table:
    """One row per job; more columns as ``verbosity`` grows (gLite's -v 0..3)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", justify="right")
    table.add_column("STATUS")
    if verbosity >= 1:
        table.add_column("KIND")
        table.add_column("EXIT", justify="right")
        table.add_column("SUBMITTED")
        table.add_column("UPDATED")
    if verbosity >= 2:
        table.add_column("OWNER")
        table.add_column("ATTEMPT", justify="right")
        table.add_column("REASON")
    for s in statuses:
        row = [str(s.id), describe_state(s)]
        if verbosity >= 1:
            total = s.children.total if s.children else s.raw.get("node_count")
            kind = f"{s.kind} ({total})" if s.compound and total else s.kind
            exit_code = "-" if s.exit_code is None else str(s.exit_code)
            row += [kind, exit_code, when(s.submitted_at), when(s.updated_at)]
        if verbosity >= 2:
            row += [
                escape(s.owner or "-"),
                str(s.attempt if s.attempt is not None else "-"),
                escape(s.reason or ""),
            ]
        table.add_row(*row)
    return table


def dag_levels(node_ids: Iterable[int], edges: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Each node's level: 0 for a node without parents, else one more than its deepest parent
    (the longest path from a root). Nodes on a cycle, which the server never accepts, get
    no level."""
    ids = list(node_ids)
    children: dict[int, list[int]] = {i: [] for i in ids}
    waiting: dict[int, int] = dict.fromkeys(ids, 0)
    for parent, child in edges:
        children.setdefault(parent, []).append(child)
        waiting[child] = waiting.get(child, 0) + 1
    level = {i: 0 for i, n in waiting.items() if n == 0}
    ready = list(level)
    while ready:
        node = ready.pop()
        for child in children.get(node, ()):
            level[child] = max(level.get(child, 0), level[node] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return {i: lv for i, lv in level.items() if waiting.get(i, 0) == 0}


def name_list(names: Sequence[str], limit: int = 4) -> str:
    """``A, B, C, D +12``: the first ``limit`` names (in natural order: n2 before n10) and how
    many more, so that a node of a wide fan-in or fan-out stays one line."""
    ordered = sorted(names, key=_natural)
    if not ordered:
        return "-"
    shown = ", ".join(ordered[:limit])
    return shown if len(ordered) <= limit else f"{shown} +{len(ordered) - limit}"


def _natural(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]


def dag_summary(status: JobStatus) -> str:
    """``2,950 edges, 21 levels; roots: A; leaves: Z1, Z2 +18`` for a DAG's status."""
    names = {n.id: n.name or str(n.id) for n in status.nodes}
    levels = dag_levels(names, status.edges)
    has_parent = {c for _, c in status.edges}
    has_child = {p for p, _ in status.edges}
    roots = [names[i] for i in names if i not in has_parent]
    leaves = [names[i] for i in names if i not in has_child]
    depth = max(levels.values(), default=-1) + 1
    return (
        f"{len(status.edges):,} edges, {depth} level{'s' if depth != 1 else ''}; "
        f"roots: {escape(name_list(roots))}; leaves: {escape(name_list(leaves))}"
    )


def nodes_table(status: JobStatus, *, dependencies: bool = True) -> Table:
    """The nodes of a compound job; with ``dependencies``, a DAG's in level order with the
    nodes each one waits for (PARENTS, last) and the nodes waiting for it (CHILDREN)."""
    names = {n.id: n.name or str(n.id) for n in status.nodes}
    parents: dict[int, list[str]] = {}
    children: dict[int, list[str]] = {}
    for parent, child in status.edges:
        parents.setdefault(child, []).append(names.get(parent, str(parent)))
        children.setdefault(parent, []).append(names.get(child, str(child)))
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("NODE")
    table.add_column("ID", justify="right")
    table.add_column("STATUS")
    table.add_column("EXIT", justify="right")
    dag = dependencies and status.kind == "dag"
    nodes = list(status.nodes)
    levels: dict[int, int] = {}
    if dag:
        table.add_column("LEVEL", justify="right")
        table.add_column("CHILDREN")
        table.add_column("PARENTS")
        levels = dag_levels(names, status.edges)
        nodes.sort(key=lambda n: (levels.get(n.id, len(nodes)), n.id))
    for n in nodes:
        row = [
            escape(n.name or "-"),
            str(n.id),
            describe_state(n),
            "-" if n.exit_code is None else str(n.exit_code),
        ]
        if dag:
            level = levels.get(n.id)
            row += [
                "-" if level is None else str(level),
                escape(name_list(children.get(n.id, []))),
                escape(name_list(parents.get(n.id, []))),
            ]
        table.add_row(*row)
    return table


def events_table(events: Iterable[JobEvent], verbosity: int) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("TIME")
    table.add_column("EVENT")
    table.add_column("STATE")
    table.add_column("SOURCE")
    if verbosity >= 1:
        table.add_column("ATTEMPT", justify="right")
    table.add_column("REASON")
    for e in events:
        change = (
            f"{e.state_from} -> {e.state_to}"
            if e.state_from and e.state_to and e.state_from != e.state_to
            else e.state_to or "-"
        )
        row = [when(e.time), escape(e.event), escape(change), escape(e.source or "-")]
        if verbosity >= 1:
            row.append(str(e.attempt) if e.attempt is not None else "-")
        row.append(escape(e.reason or ""))
        table.add_row(*row)
    return table


_PILOT_STYLES = {
    "running": "green",
    "idle": "cyan",
    "draining": "yellow",
    "failed": "red",
    "submitted": "blue",
    "queued": "blue",
}


def pilots_table(pilots: Sequence[Pilot]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (
        ("ID", "right"),
        ("STATE", "left"),
        ("QUEUE", "left"),
        ("SITE", "left"),
        ("RUNNING", "right"),
        ("JOBS RUN", "right"),
        ("LAST HEARTBEAT", "left"),
        ("VERSION", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for p in pilots:
        style = _PILOT_STYLES.get(p.state, "dim")
        table.add_row(
            escape(p.id),
            f"[{style}]{escape(p.state)}[/{style}]",
            escape(p.queue or "-"),
            escape(p.site or "-"),
            str(p.running_jobs),
            str(p.jobs_run),
            when(p.last_heartbeat_at),
            escape(p.version or "-"),
        )
    return table


def _value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def match_tables(result: MatchResult, verbosity: int) -> list[Table | str]:
    """gLite's list-match: matching resources best Rank first, then why the others do not."""
    out: list[Table | str] = []
    if result.matching:
        out.append("[bold]Resources matching your job requirements (best Rank first):[/bold]")
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("KIND")
        table.add_column("ID")
        table.add_column("RANK", justify="right")
        for m in result.matching:
            table.add_row(escape(m.kind), escape(m.id), f"{m.rank:g}")
        out.append(table)
    else:
        out.append("[bold red]No resource matching your job requirements has been found![/]")
    if result.not_matching:
        out.append("[bold]Not matching:[/bold]")
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("KIND")
        table.add_column("ID")
        table.add_column("SIDE")
        table.add_column("FAILING CLAUSE")
        table.add_column("VALUE")
        for r in result.not_matching:
            clauses = r.clauses if verbosity >= 2 else r.failed
            for i, c in enumerate(clauses):
                mark = "" if not c.ok else " (ok)"
                table.add_row(
                    escape(r.kind) if i == 0 else "",
                    escape(r.id) if i == 0 else "",
                    escape(c.side or "-"),
                    escape(c.clause) + mark,
                    escape(_value(c.value)),
                )
        out.append(table)
    out.append(f"Requirements = {escape(result.requirements)}; Rank = {escape(result.rank)}")
    return out


def key_values(rows: Mapping[str, Any]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(escape(key), escape(str(value)))
    return table
