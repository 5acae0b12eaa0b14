"""DAG throttling, rescue (resubmit) and release recomputed from the database, through the
pilot protocol on SQLite and PostgreSQL; the pure parts (slot arithmetic, the rescue choice,
the CLI's DAG layout) without any server."""

from __future__ import annotations

import re
import threading

import httpx
import pytest
from sqlalchemy import select, update

from pilot_client import ProtocolPilot, job_state, new_tag, wait_for
from pilotwms.cli.render import dag_levels, name_list
from pilotwms.core.errors import Conflict
from pilotwms.core.states import IN_FLIGHT, JobState
from pilotwms.server.logic.dag_release import free_slots, succeeded
from pilotwms.server.logic.rescue import NodeEnd, choose_rerun
from wms_server import RunningServer

# -- pure ------------------------------------------------------------------------------------


def test_free_slots_under_a_limit() -> None:
    assert free_slots(None, 7) is None
    assert free_slots(3, 0) == 3
    assert free_slots(3, 2) == 1
    assert free_slots(3, 3) == 0
    assert free_slots(3, 5) == 0  # never negative, even past a lowered limit


def test_in_flight_counts_waiting_and_held_nodes_only() -> None:
    assert {s.value for s in IN_FLIGHT} == {"WAITING", "READY", "SCHEDULED", "RUNNING"}


@pytest.mark.parametrize(
    ("state", "done_code", "exit_code", "ok"),
    [
        ("DONE", "ok", 0, True),
        ("DONE", "ok", None, True),
        ("CLEARED", "ok", 0, True),
        ("DONE", "ok", 3, False),
        ("DONE", "failed", 0, False),
        ("ABORTED", None, None, False),
        ("CANCELLED", None, None, False),
        ("RUNNING", None, None, False),
    ],
)
def test_what_counts_as_success_for_children(
    state: str, done_code: str | None, exit_code: int | None, ok: bool
) -> None:
    assert succeeded(state, done_code, exit_code) is ok


def test_rerun_picks_every_node_that_did_not_succeed() -> None:
    nodes = [
        NodeEnd(1, "a", "DONE", "ok", 0),
        NodeEnd(2, "b", "DONE", "failed", 2),
        NodeEnd(3, "c", "CLEARED", "ok", 0),
        NodeEnd(4, "d", "ABORTED"),
        NodeEnd(5, "e", "CANCELLED"),
        NodeEnd(6, "f", "CLEARED", "failed", 1),
    ]
    assert choose_rerun(9, "dag", nodes) == [2, 4, 5, 6]


@pytest.mark.parametrize(
    ("kind", "nodes", "words"),
    [
        ("dag", [NodeEnd(1, "a", "DONE", "ok", 0), NodeEnd(2, "b", "RUNNING")], "b (2) RUNNING"),
        ("job", [NodeEnd(1, None, "WAITING")], "only a finished job"),
        ("parametric", [NodeEnd(1, "n", "DONE", "ok", 0)], "nothing to resubmit"),
        ("job", [NodeEnd(1, None, "DONE", "ok", 0)], "nothing to resubmit"),
        ("dag", [NodeEnd(1, "a", "PURGED"), NodeEnd(2, "b", "ABORTED")], "purged"),
    ],
)
def test_rerun_refusals_say_why(kind: str, nodes: list[NodeEnd], words: str) -> None:
    with pytest.raises(Conflict, match=re.escape(words)):
        choose_rerun(9, kind, nodes)


def test_dag_levels_follow_the_longest_path_and_lists_stay_short() -> None:
    # a -> b -> d, a -> d, c alone
    levels = dag_levels([1, 2, 3, 4], [(1, 2), (2, 4), (1, 4)])
    assert levels == {1: 0, 2: 1, 3: 0, 4: 2}
    assert name_list([]) == "-"
    assert name_list(["b", "a"]) == "a, b"
    assert name_list([f"n{i:02d}" for i in range(10)], limit=3) == "n00, n01, n02 +7"


# -- through the protocol ----------------------------------------------------------------------


def _node(name: str, req: str, exe: str = "/bin/true") -> str:
    return f'{name} = [ description = [ Executable = "{exe}"; Requirements = {req}; ]; ];'


def diamond(tag: str, *, limit: int | None = None) -> str:
    req = f'other.TestTag == "{tag}"'
    throttle = f"max_nodes_running = {limit};" if limit else ""
    nodes = "".join(_node(n, req) for n in "abcd")
    return (
        f'[ Type = "dag"; {throttle} nodes = [ {nodes} ];'
        " dependencies = { {a, {b, c}}, {{b, c}, d} }; ]"
    )


def wide(tag: str, roots: int, limit: int) -> str:
    """``roots`` independent nodes, then one node after all of them."""
    req = f'other.TestTag == "{tag}"'
    names = [f"r{i}" for i in range(roots)]
    nodes = "".join(_node(n, req) for n in [*names, "z"])
    return (
        f'[ Type = "dag"; max_nodes_running = {limit}; nodes = [ {nodes} ];'
        f" dependencies = {{ {{ {{{', '.join(names)}}}, z }} }}; ]"
    )


def submit(client: httpx.Client, jdl: str) -> tuple[int, dict[str, int]]:
    reply = client.post("/api/v1/jobs", json={"jdl": jdl})
    assert reply.status_code == 201, reply.text
    body = reply.json()
    return body["id"], {n["name"]: n["id"] for n in body["nodes"]}


def in_flight(server: RunningServer, dag_id: int) -> int:
    from sqlalchemy import func

    from pilotwms.server.db import jobs

    with server.db.read() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    jobs.c.parent_id == dag_id, jobs.c.state.in_([s.value for s in IN_FLIGHT])
                )
            ).scalar_one()
        )


def pilot_for(server: RunningServer, tag: str) -> ProtocolPilot:
    return ProtocolPilot(server, server.token(server.add_user(), "pilot"), tag=tag)


def test_max_nodes_running_holds_eligible_nodes_back(
    server: RunningServer, alice: httpx.Client
) -> None:
    tag = new_tag()
    top, nodes = submit(alice, wide(tag, roots=5, limit=2))
    states = {n: job_state(alice, i)["state"] for n, i in nodes.items()}
    assert sorted(states.values()).count("WAITING") == 2  # r0, r1; r2..r4 and z held
    assert (states["r0"], states["r1"], states["r2"]) == ("WAITING", "WAITING", "SUBMITTED")
    pilot = pilot_for(server, tag)
    first = pilot.work(max_jobs=6)
    assert len(first) == 2
    assert pilot.work(max_jobs=6) == []  # the limit holds while both run
    finished = 0
    running = list(first)
    while running:
        pilot.finish(running.pop(0))
        finished += 1
        assert in_flight(server, top) <= 2
        running += pilot.work(max_jobs=6)
        assert len(running) <= 2
    assert finished == 6
    final = job_state(alice, top)
    assert (final["state"], final["done_code"]) == ("DONE", "ok")


def test_a_node_held_by_the_limit_is_released_naming_the_free_slot(
    server: RunningServer, alice: httpx.Client
) -> None:
    tag = new_tag()
    _, nodes = submit(alice, wide(tag, roots=2, limit=1))
    pilot = pilot_for(server, tag)
    (first,) = pilot.work(max_jobs=2)
    pilot.finish(first)
    history = alice.get(f"/api/v1/jobs/{nodes['r1']}/events").json()["events"]
    accepted = [e for e in history if e["event"] == "Accepted"]
    assert [e["reason"] for e in accepted] == ["a slot of max_nodes_running = 1 is free"]


def test_a_failed_node_frees_its_slot_and_dooms_only_its_descendants(
    server: RunningServer, alice: httpx.Client
) -> None:
    tag = new_tag()
    top, nodes = submit(alice, wide(tag, roots=3, limit=1))
    pilot = pilot_for(server, tag)
    (one,) = pilot.work(max_jobs=4)
    pilot.finish(one, status="failed", exit_code=1)
    # z can never run; the other roots still do, one at a time.
    assert job_state(alice, nodes["z"])["state"] == "ABORTED"
    for _ in range(2):
        (spec,) = pilot.work(max_jobs=4)
        pilot.finish(spec)
    assert pilot.work(max_jobs=4) == []
    assert job_state(alice, top)["state"] == "ABORTED"


def test_resubmit_reruns_only_what_failed_and_keeps_history(
    server: RunningServer, alice: httpx.Client
) -> None:
    tag = new_tag()
    top, nodes = submit(alice, diamond(tag))
    pilot = pilot_for(server, tag)
    (a,) = pilot.work(max_jobs=4)
    pilot.finish(a)
    bc = {s["job_id"]: s for s in pilot.work(max_jobs=4)}
    pilot.finish(bc[str(nodes["b"])], status="failed", exit_code=3)
    pilot.finish(bc[str(nodes["c"])])
    assert job_state(alice, nodes["d"])["reason"] == "parent b failed"
    assert job_state(alice, top)["state"] == "ABORTED"

    reply = alice.post(f"/api/v1/jobs/{top}/resubmit")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["resubmitted"] == sorted([nodes["b"], nodes["d"]])
    assert body["released"] == [nodes["b"]] and body["kept"] == 2
    b = job_state(alice, nodes["b"])
    assert (b["state"], b["exit_code"], b["done_code"]) == ("WAITING", None, None)
    assert job_state(alice, nodes["d"])["state"] == "SUBMITTED"
    assert job_state(alice, nodes["a"])["state"] == "DONE"
    assert job_state(alice, top)["state"] == "WAITING"
    events = alice.get(f"/api/v1/jobs/{nodes['b']}/events").json()["events"]
    names = [e["event"] for e in events]
    assert names[-2:] == ["UserResubmission", "Accepted"]
    assert names.count("Done") == 1  # the first run's history is still there
    assert events[-2]["reason"] == "resubmitted by the user"

    (b_again,) = pilot.work(max_jobs=4)
    assert b_again["job_id"] == str(nodes["b"]) and b_again["attempt"] == 2
    pilot.finish(b_again)
    (d,) = pilot.work(max_jobs=4)
    assert d["job_id"] == str(nodes["d"])
    pilot.finish(d)
    final = job_state(alice, top)
    assert (final["state"], final["done_code"]) == ("DONE", "ok")
    again = alice.post(f"/api/v1/jobs/{top}/resubmit")
    assert again.status_code == 409 and "nothing to resubmit" in again.text


def test_resubmit_refuses_unfinished_jobs_and_nodes(
    server: RunningServer, alice: httpx.Client
) -> None:
    tag = new_tag()
    top, nodes = submit(alice, diamond(tag))
    busy = alice.post(f"/api/v1/jobs/{top}/resubmit")
    assert busy.status_code == 409 and "unfinished node" in busy.text
    node = alice.post(f"/api/v1/jobs/{nodes['a']}/resubmit")
    assert node.status_code == 409 and f"resubmit job {top}" in node.text
    assert alice.post(f"/api/v1/jobs/{top}/cancel").status_code == 200
    assert alice.post("/api/v1/jobs/999999999/resubmit").status_code == 404
    # Cancelled before anything ran: everything runs again, roots released at once.
    body = alice.post(f"/api/v1/jobs/{top}/resubmit").json()
    assert len(body["resubmitted"]) == 4 and body["released"] == [nodes["a"]]


def test_resubmit_of_a_parametric_job_and_of_a_failed_normal_job(
    server: RunningServer, alice: httpx.Client
) -> None:
    tag = new_tag()
    req = f'other.TestTag == "{tag}"'
    reply = alice.post(
        "/api/v1/jobs",
        json={
            "jdl": f'[ JobType = "Parametric"; Executable = "/bin/true"; Parameters = 3;'
            f" Requirements = {req}; ]"
        },
    )
    top = reply.json()["id"]
    pilot = pilot_for(server, tag)
    specs = pilot.work(max_jobs=3)
    pilot.finish(specs[0])
    pilot.finish(specs[1], status="failed", exit_code=1)
    pilot.finish(specs[2])
    body = alice.post(f"/api/v1/jobs/{top}/resubmit").json()
    assert body["resubmitted"] == [int(specs[1]["job_id"])] and body["kept"] == 2
    (again,) = pilot.work(max_jobs=3)
    pilot.finish(again)
    assert job_state(alice, top)["done_code"] == "ok"

    single = alice.post(
        "/api/v1/jobs", json={"jdl": f'[ Executable = "/bin/false"; Requirements = {req}; ]'}
    ).json()["id"]
    (spec,) = pilot.work(max_jobs=3)
    pilot.finish(spec, status="failed", exit_code=1)
    body = alice.post(f"/api/v1/jobs/{single}/resubmit").json()
    assert body == {"id": single, "resubmitted": [single], "released": [single], "kept": 0}
    assert job_state(alice, single)["state"] == "WAITING"


def test_cancelling_one_node_aborts_its_descendants(
    server: RunningServer, alice: httpx.Client
) -> None:
    tag = new_tag()
    top, nodes = submit(alice, diamond(tag))
    assert alice.post(f"/api/v1/jobs/{nodes['a']}/cancel").status_code == 200
    for name in "bcd":
        node = job_state(alice, nodes[name])
        assert (node["state"], node["reason"]) == ("ABORTED", "parent a failed")
    assert job_state(alice, top)["state"] == "ABORTED"


def test_reconcile_releases_what_a_bypassed_end_left_owed(
    server: RunningServer, alice: httpx.Client
) -> None:
    """A node that ended without the report path (written straight to the database, as a
    crash between two writers could leave it) is released by ``reconcile``, which the server
    runs at start."""
    from pilotwms.server.db import jobs
    from pilotwms.server.logic.dag_release import reconcile

    tag = new_tag()
    top, nodes = submit(alice, wide(tag, roots=2, limit=1))
    with server.db.write() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_([nodes["r0"], nodes["r1"]]))
            .values(state=JobState.DONE.value, done_code="ok", exit_code=0)
        )
    with server.db.write() as conn:
        assert reconcile(conn, [top])
    assert job_state(alice, nodes["z"])["state"] == "WAITING"
    with server.db.write() as conn:
        assert not reconcile(conn, [top])  # idempotent
    assert in_flight(server, top) == 1


def test_a_cyclic_dag_is_rejected_at_submission_naming_the_cycle(alice: httpx.Client) -> None:
    jdl = (
        '[ Type = "dag"; nodes = [ a = [ description = [ Executable = "/bin/true"; ]; ];'
        ' b = [ description = [ Executable = "/bin/true"; ]; ];'
        ' c = [ description = [ Executable = "/bin/true"; ]; ]; ];'
        " dependencies = { {a, b}, {b, c}, {c, a} }; ]"
    )
    reply = alice.post("/api/v1/jobs", json={"jdl": jdl})
    assert reply.status_code == 400, reply.text
    assert "a -> b -> c -> a" in reply.text
    assert alice.get("/api/v1/jobs").json()["jobs"] == []  # nothing was stored


def test_concurrent_pilots_never_exceed_the_limit_and_forget_no_node(
    server: RunningServer, alice: httpx.Client
) -> None:
    """Four pilots end nodes at once: every committed snapshot has at most 3 nodes in flight,
    and the fan-in node after all roots is released (no batch misses its last parent)."""
    tag = new_tag()
    top, _ = submit(alice, wide(tag, roots=12, limit=3))
    pilots = [pilot_for(server, tag) for _ in range(4)]
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.append(in_flight(server, top))

    def drive(pilot: ProtocolPilot) -> None:
        while not stop.is_set():
            for spec in pilot.work(max_jobs=2, wait_s=0.2):
                pilot.finish(spec)

    threads = [threading.Thread(target=sample)] + [
        threading.Thread(target=drive, args=(p,)) for p in pilots
    ]
    for t in threads:
        t.start()
    try:
        final = wait_for(
            lambda: (s := job_state(alice, top))["state"] in ("DONE", "ABORTED") and s,
            timeout=120,
            what="the DAG finished",
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert (final["state"], final["done_code"]) == ("DONE", "ok")
    assert seen and max(seen) <= 3


def test_resubmit_summary_lines() -> None:
    from pilotwms.cli.jobs import _resubmitted_line

    assert _resubmitted_line(5, {"resubmitted": [5], "released": [5], "kept": 0}) == (
        "job 5: resubmitted"
    )
    line = _resubmitted_line(1, {"resubmitted": [3, 4], "released": [3], "kept": 2})
    assert line == (
        "job 1: resubmitted 2 node(s) (3, 4): 1 eligible now, "
        "1 waiting for parents or max_nodes_running; 2 kept"
    )
