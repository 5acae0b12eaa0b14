"""What the pilot factory reads each cycle: the waiting task queues and the pilots' states.

The waiting task queues come from the dispatcher's live ``TaskQueueIndex`` (the counts the
matcher itself uses; no scan of the jobs), in the matcher's priority order as far as it does not
depend on a pilot: the group furthest below its fair share first, then the queue's priority, its
oldest job and its id. (The matcher ranks by each job's Rank against the pilot first; that is
for the factory to evaluate against its queues' static ads, with the ``ad`` given here: the
representative job's Requirements, Rank and every attribute they read.)

The pilots are the registered ones still alive, and those that ended within the last hour, so
that the factory learns that a pilot ended even when it looks only every few minutes. Each is
``idle``, ``busy``, ``draining`` or ``ended``, with the cores it has free: the slot's ``Cpus``
less the cores of the attempts it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from pilotwms.classad import ClassAdSyntaxError, unparse
from pilotwms.server.db import attempts, jobs, pilots, utcnow
from pilotwms.server.logic.dispatch import Dispatcher
from pilotwms.server.logic.matchmaking import TaskQueue
from pilotwms.server.logic.pilots import DRAINING, ENDED_STATES, LIVE_STATES

#: How long ended pilots stay in the demand reply.
ENDED_WINDOW = timedelta(hours=1)


def waiting_task_queues(dispatcher: Dispatcher) -> list[dict[str, Any]]:
    """The task queues with waiting jobs, in priority order, each with a representative ad."""
    with dispatcher.lock:
        index = dispatcher.index
        queues = [tq for tq in index.queues() if tq.waiting > 0]
        usage = {
            tq.owner_group: index.running(tq.owner_group) / index.fair_share.weight(tq.owner_group)
            for tq in queues
        }
    queues.sort(key=lambda tq: (usage[tq.owner_group], -tq.priority, tq.oldest_submitted, tq.id))
    out: list[dict[str, Any]] = []
    for tq in queues:
        ad = _ad_text(tq)
        if ad is None:
            continue  # its texts do not parse: no pilot can ever match it
        out.append(
            {
                "tq_id": str(tq.id),
                "waiting": tq.waiting,
                "cores": tq.cpus,
                "whole_node": tq.whole_node,
                "memory_mb": tq.memory_mb,
                "wall_time_s": tq.wall_time_s,
                "owner_group": tq.owner_group,
                "priority": tq.priority,
                "ad": ad,
            }
        )
    return out


def _ad_text(tq: TaskQueue) -> str | None:
    # The ad depends on the queue's texts and resources only, not on its counts: cache it so
    # that a factory polling every few seconds does not parse every queue's ad every time.
    return _ad_of(replace(tq, waiting=0, oldest_submitted=0.0))


@lru_cache(maxsize=8192)
def _ad_of(tq: TaskQueue) -> str | None:
    try:
        return unparse(tq.template_ad())
    except (ClassAdSyntaxError, ValueError, TypeError):
        return None


def demand_pilots(conn: Connection, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Registered pilots alive or ended within ``ENDED_WINDOW``, one per (queue, batch id)."""
    now = now or utcnow()
    rows = conn.execute(
        select(
            pilots.c.id,
            pilots.c.queue,
            pilots.c.batch_job_id,
            pilots.c.state,
            pilots.c.version,
            pilots.c.ad,
            pilots.c.exit_reason,
        )
        .where(
            pilots.c.registered_at.is_not(None),
            or_(
                pilots.c.state.in_(LIVE_STATES),
                and_(pilots.c.state.in_(ENDED_STATES), pilots.c.ended_at >= now - ENDED_WINDOW),
            ),
        )
        .order_by(pilots.c.id)
    ).all()
    used = _cores_in_use(conn, [r.id for r in rows if r.state in LIVE_STATES])
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    unkeyed: list[dict[str, Any]] = []
    for r in rows:
        held = used.get(r.id)
        if r.state in ENDED_STATES:
            state = "ended"
        elif r.state == DRAINING:
            state = "draining"
        else:
            state = "busy" if held else "idle"
        item = {
            "id": str(r.id),
            "queue": r.queue or "",
            "batch_id": r.batch_job_id or "",
            "state": state,
            "free_cores": _free_cores(r.ad, held) if state != "ended" else None,
            "running_jobs": held[0] if held else 0,
            "version": r.version or "",
            "reason": r.exit_reason if state == "ended" else None,
        }
        if not item["batch_id"]:
            unkeyed.append(item)
            continue
        key = (str(item["queue"]), str(item["batch_id"]))
        # A live row wins over an ended one (an agent that registered again after its lease
        # expired); otherwise the newest row wins (rows come oldest first).
        if key not in chosen or chosen[key]["state"] == "ended" or state != "ended":
            chosen[key] = item
    return [*chosen.values(), *unkeyed]


def _cores_in_use(conn: Connection, pilot_ids: Sequence[int]) -> dict[int, tuple[int, int, bool]]:
    """Per pilot: attempts held, their cores, and whether one takes the whole node."""
    if not pilot_ids:
        return {}
    out: dict[int, tuple[int, int, bool]] = {}
    for pilot_id, cpus, whole in conn.execute(
        select(attempts.c.pilot_id, jobs.c.cpus, jobs.c.whole_node)
        .join(jobs, jobs.c.id == attempts.c.job_id)
        .where(attempts.c.pilot_id.in_(list(pilot_ids)), attempts.c.finished_at.is_(None))
    ):
        n, cores, any_whole = out.get(int(pilot_id), (0, 0, False))
        out[int(pilot_id)] = (n + 1, cores + int(cpus or 1), any_whole or bool(whole))
    return out


def _free_cores(ad: Any, held: tuple[int, int, bool] | None) -> int | None:
    total = ad.get("Cpus") if isinstance(ad, dict) else None
    if not isinstance(total, int) or isinstance(total, bool):
        return None
    if held is None:
        return total
    _, cores, whole = held
    return 0 if whole else max(0, total - cores)


__all__ = ["ENDED_WINDOW", "demand_pilots", "waiting_task_queues"]
