"""Atomic hand-out: twenty concurrent pilots draining one task queue of 1,000 jobs get every
job exactly once, on SQLite and on PostgreSQL.

The pilots are protocol-level clients (``tests/pilot_client.py``: httpx requests of the pilot
protocol), not agents: nothing runs, so the hand-out itself is what is under load.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

import httpx
from sqlalchemy import func, select

from pilot_client import ProtocolPilot, new_tag, tagged_jdl
from pilotwms.server.db import attempts, jobs
from wms_server import RunningServer

PILOTS = 20
JOBS = 1000


def test_twenty_concurrent_pilots_get_every_job_of_a_queue_exactly_once(
    server: RunningServer, alice: httpx.Client
) -> None:
    tag = new_tag()
    reply = alice.post(
        "/api/v1/jobs",
        json={
            "jdl": tagged_jdl(
                tag, f'JobType = "Parametric"; Executable = "/bin/true"; Parameters = {JOBS};'
            )
        },
    )
    assert reply.status_code == 201, reply.text
    node_ids = {str(n["id"]) for n in reply.json()["nodes"]}
    token = server.token(server.add_user(), "pilot")
    pilots = [ProtocolPilot(server, token, tag=tag) for _ in range(PILOTS)]
    got: list[list[tuple[str, int]]] = [[] for _ in pilots]
    errors: list[BaseException] = []
    start = threading.Barrier(PILOTS)

    def drain(index: int) -> None:
        rng = random.Random(index)
        try:
            start.wait(timeout=60)
            while True:
                specs = pilots[index].work(max_jobs=rng.randint(1, 6))
                if not specs:
                    return
                got[index].extend((s["job_id"], s["attempt"]) for s in specs)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(PILOTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    handed = [job for per_pilot in got for job in per_pilot]
    counts = Counter(job_id for job_id, _ in handed)
    assert [j for j, n in counts.items() if n > 1] == []
    assert set(counts) == node_ids
    assert {attempt for _, attempt in handed} == {1}
    assert sum(1 for per_pilot in got if per_pilot) > 1  # the work was really shared
    with server.db.read() as conn:
        ids = [int(i) for i in node_ids]
        states = dict(
            conn.execute(
                select(jobs.c.state, func.count()).where(jobs.c.id.in_(ids)).group_by(jobs.c.state)
            ).all()
        )
        rows = conn.execute(
            select(func.count()).select_from(attempts).where(attempts.c.job_id.in_(ids))
        ).scalar_one()
    assert states == {"READY": JOBS}
    assert rows == JOBS


def test_claims_in_concurrent_transactions_never_overlap(
    server: RunningServer, alice: httpx.Client
) -> None:
    """Below the dispatcher's in-process lock, as several server processes would: concurrent
    transactions claiming from one queue (SKIP LOCKED on PostgreSQL, the write lock on
    SQLite) never take the same job."""
    from pilotwms.server.logic.dispatch import claim_jobs

    tag = new_tag()
    reply = alice.post(
        "/api/v1/jobs",
        json={
            "jdl": tagged_jdl(
                tag, 'JobType = "Parametric"; Executable = "/bin/true"; Parameters = 300;'
            )
        },
    )
    assert reply.status_code == 201, reply.text
    ids = [n["id"] for n in reply.json()["nodes"]]
    pilot = int(ProtocolPilot(server, server.token(server.add_user(), "pilot"), tag=tag).pilot_id)
    with server.db.read() as conn:
        tq = conn.execute(select(jobs.c.task_queue_id).where(jobs.c.id == ids[0])).scalar_one()
    taken: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claim() -> None:
        try:
            while True:
                with server.db.write() as conn:
                    claimed = claim_jobs(conn, tq, 7, pilot)
                if not claimed:
                    return
                with lock:
                    taken.extend(c.job_id for c in claimed)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert sorted(taken) == sorted(ids)
