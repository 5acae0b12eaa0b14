"""The resource registry, the start of the information system: live pilots and the factory's
queues with their ads, filtered by a ClassAd constraint; and list-match against them.

A resource is a live pilot (its registered slot ad) or a factory queue (the static ad the
factory publishes for a pilot it would start there). A constraint is a ClassAd expression
evaluated with ``MY`` = the resource ad; a resource is listed when it evaluates to ``true``.

List-match answers "where could this job run, and why not elsewhere": the JDL is parsed,
validated and expanded as for a submission (defaults applied, no sandbox needed), and its first
node is explained against every resource with ``matchmaking.explain_match``: the resource
pre-filters, each clause of the job's Requirements, then each clause of the resource's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from pilotwms.classad import (
    ERROR,
    UNDEFINED,
    ClassAd,
    ClassAdSyntaxError,
    Expr,
    parse_expr,
    rank,
    unparse,
)
from pilotwms.core.errors import BadRequest
from pilotwms.jdl import JDLValidationError, expand, parse_jdl, resources, validate
from pilotwms.server.db import factory_queues, pilots, utcnow
from pilotwms.server.logic.matchmaking import TaskQueue, explain_match, failed_clauses
from pilotwms.server.logic.pilots import LIVE_STATES, ad_from_json
from pilotwms.server.logic.submission import SubmitOptions


@dataclass(frozen=True)
class Resource:
    """A pilot or a factory queue, with its ad."""

    kind: str  # "pilot" or "queue"
    name: str
    ad: ClassAd
    raw: Mapping[str, Any]


def put_queue(conn: Connection, name: str, ad: Mapping[str, Any]) -> None:
    """Publish (or replace) the static ad of factory queue ``name``."""
    if not name or len(name) > 256:
        raise BadRequest("a queue name has 1 to 256 characters")
    ad_from_json(ad)
    now = utcnow()
    updated = conn.execute(
        factory_queues.update()
        .where(factory_queues.c.name == name)
        .values(ad=dict(ad), updated_at=now)
    )
    if updated.rowcount == 0:
        conn.execute(factory_queues.insert().values(name=name, ad=dict(ad), updated_at=now))


def all_resources(conn: Connection) -> list[Resource]:
    """Every live pilot, then every factory queue."""
    out: list[Resource] = []
    for row in conn.execute(
        select(pilots.c.id, pilots.c.ad)
        .where(pilots.c.state.in_(LIVE_STATES))
        .order_by(pilots.c.id)
    ):
        raw = row.ad or {}
        out.append(Resource("pilot", str(row.id), ad_from_json(raw), raw))
    for row in conn.execute(
        select(factory_queues.c.name, factory_queues.c.ad).order_by(factory_queues.c.name)
    ):
        out.append(Resource("queue", row.name, ad_from_json(row.ad), row.ad))
    return out


def parse_constraint(text: str | None) -> Expr | None:
    if text is None or not text.strip():
        return None
    try:
        return parse_expr(text)
    except ClassAdSyntaxError as exc:
        raise BadRequest(f"constraint does not parse: {exc}") from exc


def select_resources(items: list[Resource], constraint: Expr | None) -> list[Resource]:
    """The resources whose ad satisfies ``constraint`` (all of them without one)."""
    if constraint is None:
        return items
    return [r for r in items if constraint.evaluate(r.ad) is True]


def _json_value(value: Any) -> Any:
    if value is UNDEFINED:
        return "undefined"
    if value is ERROR:
        return "error"
    if isinstance(value, ClassAd):
        return unparse(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def job_queue_of(jdl: str, group: str, options: SubmitOptions) -> TaskQueue:
    """The task queue a job would join, from its JDL (its first node for a compound job)."""
    ad = parse_jdl(jdl)
    report = validate(ad)
    if report.errors:
        raise JDLValidationError(report.errors, "<jdl>")
    node = expand(ad, None, options.defaults).nodes[0]
    job = node.ad
    res = resources(job)
    return TaskQueue(
        id=0,
        owner_group=group,
        requirements=unparse(job["Requirements"]) if "Requirements" in job else "true",
        rank=unparse(job["Rank"]) if "Rank" in job else "0",
        cpus=res.cpus,
        whole_node=res.whole_node,
        memory_mb=res.memory_mb,
        wall_time_s=res.wall_time_s,
        cpu_time_s=res.cpu_time_s,
        waiting=1,
        job_ad=unparse(job),
    )


def list_match(job: TaskQueue, items: list[Resource]) -> dict[str, Any]:
    """Matching resources best rank first, and for each other one the checks that failed."""
    template = job.template_ad()
    matching: list[dict[str, Any]] = []
    failing: list[dict[str, Any]] = []
    for r in items:
        results = explain_match(job, r.ad)
        failed = failed_clauses(results)
        if not failed:
            value = rank(template, r.ad)
            # JSON has no NaN or infinity: such a Rank is shown as null and sorts last.
            shown = value if math.isfinite(value) else None
            matching.append({"kind": r.kind, "id": r.name, "rank": shown})
        else:
            failing.append(
                {
                    "kind": r.kind,
                    "id": r.name,
                    "failed": [
                        {"clause": f.clause_text, "value": _json_value(f.value), "side": f.side}
                        for f in failed
                    ],
                    "clauses": [
                        {
                            "clause": c.clause_text,
                            "value": _json_value(c.value),
                            "ok": c.ok,
                            "side": c.side,
                        }
                        for c in results
                    ],
                }
            )
    matching.sort(
        key=lambda m: (-m["rank"] if m["rank"] is not None else math.inf, m["kind"], m["id"])
    )
    return {
        "requirements": job.requirements,
        "rank": job.rank,
        "matching": matching,
        "not_matching": failing,
    }


def resource_summary(r: Resource, updated: datetime | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": r.kind, "id": r.name, "ad": dict(r.raw)}
    if updated is not None:
        out["updated_at"] = updated.isoformat()
    return out


__all__ = [
    "Resource",
    "all_resources",
    "job_queue_of",
    "list_match",
    "parse_constraint",
    "put_queue",
    "resource_summary",
    "select_resources",
]
