"""Submission: JDL text in, job rows out, in one transaction.

Two steps. ``plan`` (no database) parses, validates and expands a JDL, resolves its input
sandbox against the files the client provided and computes every row to insert. ``persist``
writes any number of plans with bulk Core inserts (``executemany`` with RETURNING in parameter
order): one statement for the top-level rows, one for all nodes, one for the events, one for
the sandbox references. That is what lets a 10,000-node parametric job or a 1,000-JDL bulk
request be accepted in a fraction of a second.

Parametric nodes differ from each other only where ``_PARAM_`` appears. When it appears in
none of the attributes the store derives columns from (Requirements, Rank, resources, sandbox,
retries, expiry), those are computed once from the first node and shared, and no node's JDL is
parsed; otherwise every node is parsed (correct, slower).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, String, Text, literal, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pilotwms.classad import ERROR, UNDEFINED, ClassAd, unparse
from pilotwms.core.errors import BadRequest, TooLarge
from pilotwms.core.settings import ServerSettings
from pilotwms.core.states import JobKind, JobState, derive_parent_state
from pilotwms.jdl import (
    Defaults,
    JDLValidationError,
    expand,
    input_sandbox,
    parse_jdl,
    resources,
    validate,
)
from pilotwms.server.db import dag_edges, job_events, job_inputs, jobs, task_queues, utcnow
from pilotwms.server.db.bulk import allocate_ids, insert_rows
from pilotwms.server.db.metadata import UTCDateTime
from pilotwms.server.logic.expiry import effective_expiry
from pilotwms.server.logic.lifecycle import registration_events

PLACEHOLDER = "_PARAM_"
SUPPORTED_SCHEMES = ("http", "https", "file")
# Attributes (lower case) whose value feeds a stored column: if _PARAM_ appears in none of them,
# every node of a parametric job shares the columns computed from the first node.
_DERIVED = frozenset(
    name.lower()
    for name in (
        "Requirements",
        "Rank",
        "InputSandbox",
        "InputSandboxBaseURI",
        "CpuNumber",
        "NodeNumber",
        "SMPGranularity",
        "HostNumber",
        "WholeNodes",
        "PerCoreMemory",
        "Memory",
        "MaxWallTime",
        "WallTime",
        "CPUTime",
        "MaxCPUTime",
        "RetryCount",
        "ShallowRetryCount",
        "ExpiryTime",
    )
)


@dataclass(frozen=True)
class SubmitOptions:
    """What submission needs from the settings, computed once per server."""

    defaults: Defaults
    max_retry_count: int
    max_shallow_retry_count: int
    expiry_period: timedelta | None
    max_nodes: int
    max_jdl_bytes: int

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> SubmitOptions:
        return cls(
            defaults=Defaults(
                requirements=settings.default_requirements or None,
                rank=settings.default_rank or None,
                retry_count=settings.default_retry_count,
                shallow_retry_count=settings.default_shallow_retry_count,
            ),
            max_retry_count=settings.max_retry_count,
            max_shallow_retry_count=settings.max_shallow_retry_count,
            expiry_period=(
                timedelta(seconds=settings.expiry_period_s) if settings.expiry_period_s else None
            ),
            max_nodes=settings.max_nodes,
            max_jdl_bytes=settings.max_jdl_bytes,
        )


def effective_retries(
    retry: int | None, shallow: int | None, caps: tuple[int, int]
) -> tuple[int, int]:
    """gLite's limits: ``max(0, min(job value, cap))``.

    ShallowRetryCount -1 is kept as -1: it does not mean "no shallow retries" but "no shallow
    resubmission at all", so a failure before the payload started counts against RetryCount
    (gLite creates no token then); ``retries.RetryBudget`` reads it that way.
    """
    deep = max(0, min(retry or 0, caps[0]))
    shallow_limit = -1 if shallow == -1 else max(0, min(shallow or 0, caps[1]))
    return deep, shallow_limit


@dataclass
class _Derived:
    """The columns computed from one concrete job ad."""

    requirements: str
    rank: str
    cpus: int
    whole_node: bool
    memory_mb: int | None
    wall_time_s: int | None
    cpu_time_s: int | None
    retry_count: int
    shallow_retry_count: int
    expiry: datetime | None
    # InputSandbox entry as written -> (file name in the job's directory, kind)
    sandbox: list[tuple[str, str, str]]


@dataclass
class Plan:
    """Everything one JDL becomes, before ids exist."""

    kind: JobKind
    top: dict[str, Any]
    nodes: list[dict[str, Any]] = field(default_factory=list)
    node_names: list[str | None] = field(default_factory=list)
    # per row (top for a normal job, else per node): [(name, digest, uri)]
    inputs: list[list[tuple[str, str | None, str | None]]] = field(default_factory=list)
    # DAG edges as (parent node index, child node index)
    edges: list[tuple[int, int]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    tq_keys: list[str] = field(default_factory=list)
    tq_rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return max(1, len(self.nodes))


def problem_dict(problem: Any) -> dict[str, Any]:
    return {
        "attribute": getattr(problem, "attribute", None),
        "line": getattr(problem, "line", None),
        "column": getattr(problem, "column", None),
        "message": getattr(problem, "message", str(problem)),
        "hint": getattr(problem, "hint", None),
    }


def plan(
    text: str,
    *,
    owner: str,
    group: str,
    provided: Mapping[str, str],
    options: SubmitOptions,
    filename: str = "<jdl>",
    now: datetime | None = None,
) -> Plan:
    """Parse, validate and expand ``text`` for ``owner``; ``provided`` maps InputSandbox entries
    (as written in the JDL) to the digests of files already in the blob store.

    Raises ``JDLError`` subclasses for bad JDL, ``BadRequest`` for sandbox problems (naming every
    missing entry or unsupported URI at once), ``TooLarge`` past the configured limits.
    """
    now = now or utcnow()
    if len(text.encode()) > options.max_jdl_bytes:
        raise TooLarge(f"JDL {filename}", len(text.encode()), options.max_jdl_bytes)
    ad = parse_jdl(text, filename)
    report = validate(ad)
    if report.errors:
        raise JDLValidationError(report.errors, filename)
    warnings = [problem_dict(p) for p in report.warnings]
    expansion = expand(ad, None, options.defaults)
    kind = JobKind(expansion.kind)
    nodes = expansion.nodes
    if len(nodes) > options.max_nodes:
        raise TooLarge(f"job {filename} ({len(nodes)} nodes)", len(nodes), options.max_nodes)

    derive: Callable[[int], _Derived]
    if kind == JobKind.PARAMETRIC and not _varies(ad):
        shared = _derive(nodes[0].ad, options, now)
        derive = lambda _i: shared  # noqa: E731
    else:
        derive = lambda i: _derive(nodes[i].ad, options, now)  # noqa: E731

    result = Plan(kind=kind, top={}, warnings=warnings)
    missing: dict[str, None] = {}
    unsupported: dict[str, None] = {}
    derived_rows: list[_Derived] = []
    resolved: dict[int, list[tuple[str, str | None, str | None]]] = {}
    for i in range(len(nodes)):
        d = derive(i)
        derived_rows.append(d)
        key = id(d.sandbox)
        if key not in resolved:
            resolved[key] = _resolve_sandbox(d.sandbox, provided, missing, unsupported)
        result.inputs.append(resolved[key])
    if unsupported:
        raise BadRequest(
            "InputSandbox entries with unsupported schemes: "
            + ", ".join(unsupported)
            + "; pilots fetch only http://, https:// and file:// URIs, or upload the file "
            "with the submission"
        )
    if missing:
        raise BadRequest(
            "InputSandbox files not provided: "
            + ", ".join(missing)
            + "; send each one with the submission (multipart, field named as in the JDL) or "
            "upload it first and refer to it by digest"
        )

    base = {
        "owner": owner,
        "owner_group": group,
        "submitted_at": now,
        "updated_at": now,
    }
    node_rows: list[dict[str, Any]] = []
    has_parents = [bool(n.parents) for n in nodes]
    released = 0
    tq_of: dict[int, str] = {}
    for i, node in enumerate(nodes):
        d = derived_rows[i]
        tq = tq_of.get(id(d))
        if tq is None:
            tq = tq_of[id(d)] = _task_queue_key(group, d)
        if tq not in result.tq_rows:
            result.tq_rows[tq] = _task_queue_row(tq, group, d, now)
        result.tq_keys.append(tq)
        # Nodes without parents are eligible at once, within max_nodes_running (the rest are
        # held SUBMITTED and released as nodes end: dag_release).
        eligible = not has_parents[i] and (
            expansion.max_nodes_running is None or released < expansion.max_nodes_running
        )
        released += eligible
        state = JobState.WAITING if eligible else JobState.SUBMITTED
        node_rows.append(
            {
                **base,
                "kind": JobKind.JOB.value,
                "node_name": node.name,
                "state": state.value,
                "jdl_submitted": None,
                "jdl": node.jdl,
                "requirements": d.requirements,
                "rank": d.rank,
                "cpus": d.cpus,
                "whole_node": d.whole_node,
                "memory_mb": d.memory_mb,
                "wall_time_s": d.wall_time_s,
                "cpu_time_s": d.cpu_time_s,
                "retry_count": d.retry_count,
                "shallow_retry_count": d.shallow_retry_count,
                "expiry_time": d.expiry,
                "max_nodes_running": None,
                "node_count": 0,
            }
        )
    if kind == JobKind.JOB:
        result.top = {**node_rows[0], "jdl_submitted": text}
        result.node_names = [None]
        return result
    counts: dict[JobState, int] = {}
    for row in node_rows:
        counts[JobState(row["state"])] = counts.get(JobState(row["state"]), 0) + 1
    parent_state, _ = derive_parent_state(counts)
    result.top = {
        **base,
        "kind": kind.value,
        "node_name": None,
        "state": parent_state.value,
        "jdl_submitted": text,
        "jdl": unparse(ad),
        "requirements": None,
        "rank": None,
        "cpus": 1,
        "whole_node": False,
        "memory_mb": None,
        "wall_time_s": None,
        "cpu_time_s": None,
        "retry_count": 0,
        "shallow_retry_count": 0,
        "expiry_time": None,
        "max_nodes_running": expansion.max_nodes_running,
        "node_count": len(nodes),
    }
    result.nodes = node_rows
    result.node_names = [n.name for n in nodes]
    if expansion.edges:
        index = {n.name: i for i, n in enumerate(nodes)}
        result.edges = [(index[p], index[c]) for p, c in expansion.edges]
    return result


def persist(
    conn: Connection,
    plans: Sequence[Plan],
    *,
    source: str,
    blob_exists: Callable[[str], bool] | None = None,
) -> list[dict[str, Any]]:
    """Insert every plan in the caller's (write) transaction; return ``{id, kind, nodes}`` per
    plan.

    ``blob_exists`` re-checks the referenced blobs once the transaction holds the lock that
    excludes sandbox garbage collection (see ``purge.collect_unreferenced``).
    """
    now = utcnow()
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE job_inputs IN ROW EXCLUSIVE MODE"))
    if blob_exists is not None:
        digests = {d for p in plans for refs in p.inputs for _, d, _ in refs if d is not None}
        gone = sorted(d for d in digests if not blob_exists(d))
        if gone:
            raise BadRequest(
                "sandbox files vanished before the submission was stored (garbage collected): "
                + ", ".join(gone)
                + "; upload them again"
            )
    tq_ids = _ensure_task_queues(conn, plans)
    total = sum(1 + len(p.nodes) for p in plans)
    ids = iter(allocate_ids(conn, jobs, total))

    job_rows: list[tuple[Any, ...]] = []
    results: list[dict[str, Any]] = []
    events: list[tuple[Any, ...]] = []
    inputs: list[tuple[Any, ...]] = []
    edges: list[tuple[int, int, int]] = []
    node_sets: list[tuple[int, set[str], list[tuple[str, str | None, str | None]] | None]] = []
    get = itemgetter(*_ROW_COLUMNS)
    for p in plans:
        top_id = next(ids)
        events.extend(_events(top_id, p.top["state"], source, now))
        if p.kind == JobKind.JOB:
            job_rows.append((top_id, None, tq_ids[p.tq_keys[0]], *get(p.top)))
            inputs.extend((top_id, name, digest, uri) for name, digest, uri in p.inputs[0])
            results.append({"id": top_id, "kind": p.kind.value, "nodes": []})
        else:
            job_rows.append((top_id, None, None, *get(p.top)))
            node_ids = [next(ids) for _ in p.nodes]
            shared_refs = p.inputs[0] if all(r is p.inputs[0] for r in p.inputs) else None
            for node_id, row, key, refs in zip(node_ids, p.nodes, p.tq_keys, p.inputs, strict=True):
                job_rows.append((node_id, top_id, tq_ids[key], *get(row)))
                if shared_refs is None:
                    inputs.extend((node_id, name, digest, uri) for name, digest, uri in refs)
            # Nodes' events and shared sandbox references are written by the database itself
            # (INSERT ... SELECT over the new nodes) once the nodes are in.
            node_sets.append((top_id, {row["state"] for row in p.nodes}, shared_refs))
            edges.extend((top_id, node_ids[a], node_ids[b]) for a, b in p.edges)
            results.append(
                {
                    "id": top_id,
                    "kind": p.kind.value,
                    "nodes": [
                        {"id": i, "name": n} for i, n in zip(node_ids, p.node_names, strict=True)
                    ],
                }
            )
        if p.warnings:
            results[-1]["warnings"] = p.warnings
    insert_rows(conn, jobs, ("id", "parent_id", "task_queue_id", *_ROW_COLUMNS), job_rows)
    insert_rows(conn, job_events, _EVENT_COLUMNS, events)
    insert_rows(conn, job_inputs, ("job_id", "name", "digest", "uri"), inputs)
    insert_rows(conn, dag_edges, ("dag_id", "parent_job_id", "child_job_id"), edges)
    for parent_id, states, shared_refs in node_sets:
        _insert_node_events(conn, parent_id, states, source, now)
        for name, digest, uri in shared_refs or ():
            conn.execute(
                job_inputs.insert().from_select(
                    ["job_id", "name", "digest", "uri"],
                    select(
                        jobs.c.id,
                        literal(name, String),
                        literal(digest, String),
                        literal(uri, Text),
                    ).where(jobs.c.parent_id == parent_id),
                )
            )
    return results


def _insert_node_events(
    conn: Connection, parent_id: int, states: set[str], source: str, now: datetime
) -> None:
    """The registration events of every node of ``parent_id``, in one statement per event.

    Running the RegJob statement before the Accepted one keeps each job's events in order."""
    for state in sorted(states):
        for event in registration_events([0], [JobState(state)], source=source, now=now):
            conn.execute(
                job_events.insert().from_select(
                    ["job_id", "time", "event", "state_from", "state_to", "source"],
                    select(
                        jobs.c.id,
                        literal(now, UTCDateTime),
                        literal(event["event"], String),
                        literal(event["state_from"], String),
                        literal(event["state_to"], String),
                        literal(source, String),
                    ).where(jobs.c.parent_id == parent_id, jobs.c.state == state),
                )
            )


_ROW_COLUMNS = (
    "kind",
    "node_name",
    "owner",
    "owner_group",
    "state",
    "jdl_submitted",
    "jdl",
    "requirements",
    "rank",
    "cpus",
    "whole_node",
    "memory_mb",
    "wall_time_s",
    "cpu_time_s",
    "retry_count",
    "shallow_retry_count",
    "expiry_time",
    "max_nodes_running",
    "node_count",
    "submitted_at",
    "updated_at",
)
_EVENT_COLUMNS = ("job_id", "time", "event", "state_from", "state_to", "source")


def _events(job_id: int, state: str, source: str, now: datetime) -> list[tuple[Any, ...]]:
    return [
        (e["job_id"], e["time"], e["event"], e["state_from"], e["state_to"], e["source"])
        for e in registration_events([job_id], [JobState(state)], source=source, now=now)
    ]


def _ensure_task_queues(conn: Connection, plans: Sequence[Plan]) -> dict[str, int]:
    wanted: dict[str, dict[str, Any]] = {}
    for p in plans:
        wanted.update(p.tq_rows)
    keys = list(wanted)
    query = select(task_queues.c.key, task_queues.c.id).where(task_queues.c.key.in_(keys))
    found: dict[str, int] = {row.key: row.id for row in conn.execute(query)}
    missing = [wanted[k] for k in keys if k not in found]
    if missing:
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(
            dialect_insert(task_queues).on_conflict_do_nothing(index_elements=["key"]), missing
        )
        found.update(
            (key, tq_id)
            for key, tq_id in conn.execute(
                select(task_queues.c.key, task_queues.c.id).where(
                    task_queues.c.key.in_([m["key"] for m in missing])
                )
            )
        )
    return {k: int(v) for k, v in found.items()}


def _task_queue_key(group: str, d: _Derived) -> str:
    material = json.dumps(
        [
            group,
            d.requirements,
            d.rank,
            d.cpus,
            d.whole_node,
            d.memory_mb,
            d.wall_time_s,
            d.cpu_time_s,
        ]
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _task_queue_row(key: str, group: str, d: _Derived, now: datetime) -> dict[str, Any]:
    return {
        "key": key,
        "owner_group": group,
        "requirements": d.requirements,
        "rank": d.rank,
        "cpus": d.cpus,
        "whole_node": d.whole_node,
        "memory_mb": d.memory_mb,
        "wall_time_s": d.wall_time_s,
        "cpu_time_s": d.cpu_time_s,
        "priority": 0,
        "created_at": now,
    }


def _varies(ad: ClassAd) -> bool:
    """Whether _PARAM_ appears in an attribute that feeds a stored column."""
    return any(PLACEHOLDER in unparse(ad[name]) for name in ad if name.lower() in _DERIVED)


def _int_attr(ad: ClassAd, name: str) -> int | None:
    if name not in ad:
        return None
    value = ad.evaluate(name)
    if value is UNDEFINED or value is ERROR or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    return None


def _derive(ad: ClassAd, options: SubmitOptions, now: datetime) -> _Derived:
    res = resources(ad)
    retry, shallow = effective_retries(
        _int_attr(ad, "RetryCount"),
        _int_attr(ad, "ShallowRetryCount"),
        (options.max_retry_count, options.max_shallow_retry_count),
    )
    expiry_epoch = _int_attr(ad, "ExpiryTime")
    jdl_expiry = datetime.fromtimestamp(expiry_epoch, UTC) if expiry_epoch is not None else None
    return _Derived(
        requirements=unparse(ad["Requirements"]) if "Requirements" in ad else "true",
        rank=unparse(ad["Rank"]) if "Rank" in ad else "0",
        cpus=res.cpus,
        whole_node=res.whole_node,
        memory_mb=res.memory_mb,
        wall_time_s=res.wall_time_s,
        cpu_time_s=res.cpu_time_s,
        retry_count=retry,
        shallow_retry_count=shallow,
        expiry=effective_expiry(now, jdl_expiry, options.expiry_period),
        sandbox=[(ref.source, ref.name, ref.kind) for ref in input_sandbox(ad)],
    )


def _resolve_sandbox(
    refs: list[tuple[str, str, str]],
    provided: Mapping[str, str],
    missing: dict[str, None],
    unsupported: dict[str, None],
) -> list[tuple[str, str | None, str | None]]:
    out: list[tuple[str, str | None, str | None]] = []
    seen: set[str] = set()
    for source, name, kind in refs:
        if kind == "unsupported":
            unsupported[source] = None
            continue
        if name in seen:
            raise BadRequest(
                f"two InputSandbox entries would both be staged as {name!r}; rename one"
            )
        seen.add(name)
        if kind == "uri":
            out.append((name, None, source))
            continue
        digest = provided.get(source)
        if digest is None:
            missing[source] = None
            continue
        out.append((name, digest, None))
    return out
