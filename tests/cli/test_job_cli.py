"""The user verbs (submit, status, wait, output, cancel, logging-info, list-match, pilots,
config show) run through the real command against a real server on SQLite; jobs are moved
through their lifecycle with the server's own transition function where no pilot is needed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from pilotwms.cli.main import app
from wms_server import (
    RunningServer,
    add_output,
    advance,
    fresh_database,
    make_settings,
    serving,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

runner = CliRunner()


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with (
        fresh_database("sqlite", tmp_path_factory.mktemp("cli-db")) as database,
        serving(make_settings(database, tmp_path_factory.mktemp("cli-server"))) as running,
    ):
        yield running


@pytest.fixture
def env(cli_server: RunningServer, tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh user: URL and token in variables, no configuration file."""
    token = cli_server.token(cli_server.add_user())
    return {
        "PILOTWMS_URL": cli_server.base_url,
        "PILOTWMS_TOKEN": token,
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "PILOTWMS_CONFIG": "",
        "NO_COLOR": "1",
    }


def run(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), env=env, input=input)


def submit_id(env: dict[str, str], jdl: Path | str) -> int:
    result = run(env, "submit", "--json", str(jdl))
    assert result.exit_code == 0, result.output
    return int(json.loads(result.stdout)["id"])


def simple_jdl(tmp_path: Path, body: str = 'Executable = "/bin/true";') -> Path:
    path = tmp_path / "simple.jdl"
    path.write_text(body + "\n")
    return path


def test_submit_with_sandbox_prints_the_id_and_appends_it_to_a_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids"
    result = run(env, "submit", str(EXAMPLES / "hello.jdl"), "-o", str(ids_file))
    assert result.exit_code == 0, result.output
    job_id = int(re.search(r"Submitted job (\d+)", result.stdout).group(1))
    assert ids_file.read_text().splitlines() == ["###Submitted Job Ids###", str(job_id)]
    again = run(env, "submit", "-q", str(EXAMPLES / "hello.jdl"), "-o", str(ids_file))
    assert again.exit_code == 0 and again.stdout.strip().isdigit()
    assert len(ids_file.read_text().splitlines()) == 3
    status = run(env, "status", "-i", str(ids_file), "--json")
    assert status.exit_code == 0, status.output
    jobs = json.loads(status.stdout)["jobs"]
    assert [j["state"] for j in jobs] == ["WAITING", "WAITING"]


def test_submit_parametric_prints_parent_and_nodes(env: dict[str, str]) -> None:
    result = run(env, "submit", str(EXAMPLES / "parametric.jdl"))
    assert result.exit_code == 0, result.output
    assert re.search(r"Submitted parametric job \d+ with 5 nodes", result.stdout)
    assert "Node_4" in result.stdout
    as_json = json.loads(run(env, "submit", "--json", str(EXAMPLES / "parametric.jdl")).stdout)
    assert as_json["kind"] == "parametric" and len(as_json["nodes"]) == 5


def test_submit_dag_with_a_file_node(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "b.jdl").write_text('Executable = "/bin/echo"; Arguments = "from file";')
    dag = tmp_path / "dag.jdl"
    dag.write_text(
        '[ Type = "dag"; nodes = [ A = [ description = [ Executable = "/bin/true"; ] ];\n'
        '  B = [ file = "b.jdl" ]; ]; dependencies = { {A, B} }; ]\n'
    )
    dag_id = submit_id(env, dag)
    result = run(env, "status", str(dag_id), "-v", "2")
    assert result.exit_code == 0, result.output
    assert "dag job" in result.stdout and "2 nodes:" in result.stdout
    line_b = next(line for line in result.stdout.splitlines() if line.startswith("B "))
    assert line_b.split()[-1] == "A"  # B runs after A
    data = json.loads(run(env, "status", str(dag_id), "--json").stdout)["jobs"][0]
    assert data["kind"] == "dag" and len(data["edges"]) == 1
    assert data["children"]["total"] == 2


def test_status_of_a_compound_job_summarises_its_nodes(
    cli_server: RunningServer, env: dict[str, str]
) -> None:
    result = json.loads(run(env, "submit", "--json", str(EXAMPLES / "parametric.jdl")).stdout)
    nodes = [n["id"] for n in result["nodes"]]
    advance(cli_server, nodes[0], "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
    advance(cli_server, nodes[1], "READY", "RUNNING")
    text = run(env, "status", str(result["id"]))
    assert text.exit_code == 0, text.output
    assert "5 nodes: 3 WAITING, 1 RUNNING, 1 DONE" in text.stdout
    assert "Done (Success)" in text.stdout
    quiet = run(env, "status", str(result["id"]), "-v", "0")
    assert "Node_0" not in quiet.stdout and str(result["id"]) in quiet.stdout


def test_status_all_and_filters(
    cli_server: RunningServer, env: dict[str, str], tmp_path: Path
) -> None:
    first = submit_id(env, simple_jdl(tmp_path))
    second = submit_id(env, simple_jdl(tmp_path))
    advance(cli_server, first, "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
    everything = json.loads(run(env, "status", "--all", "--json").stdout)["jobs"]
    assert [j["id"] for j in everything] == [first, second]
    done = json.loads(run(env, "status", "--state", "done", "--json").stdout)["jobs"]
    assert [j["id"] for j in done] == [first]
    recent = json.loads(run(env, "status", "--since", "1h", "--json").stdout)["jobs"]
    assert len(recent) == 2
    table = run(env, "status", "--all", "-v", "2")
    assert table.exit_code == 0 and "OWNER" in table.stdout
    assert run(env, "status").exit_code == 2


def test_status_verbosity_3_shows_the_jdl(env: dict[str, str], tmp_path: Path) -> None:
    job = submit_id(env, simple_jdl(tmp_path))
    result = run(env, "status", str(job), "-v", "3")
    assert result.exit_code == 0 and "Executable" in result.stdout


def test_unknown_job_is_one_message_and_exit_4(env: dict[str, str], tmp_path: Path) -> None:
    job = submit_id(env, simple_jdl(tmp_path))
    result = run(env, "status", str(job), "999999999")
    assert result.exit_code == 4
    assert str(job) in result.stdout
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output


def test_logging_info_shows_the_event_history(env: dict[str, str], tmp_path: Path) -> None:
    job = submit_id(env, simple_jdl(tmp_path))
    run(env, "cancel", "--yes", str(job))
    result = run(env, "logging-info", str(job))
    assert result.exit_code == 0, result.output
    assert all(name in result.stdout for name in ("RegJob", "Accepted", "Cancel"))
    data = json.loads(run(env, "logging-info", str(job), "--json").stdout)
    events = data["jobs"][0]["events"]
    assert [e["event"] for e in events][:2] == ["RegJob", "Accepted"]
    assert events[-1]["state_to"] == "CANCELLED"


def test_cancel_needs_a_terminal_or_yes(env: dict[str, str], tmp_path: Path) -> None:
    job = submit_id(env, simple_jdl(tmp_path))
    refused = run(env, "cancel", str(job))
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert json.loads(run(env, "status", str(job), "--json").stdout)["jobs"][0]["state"] == (
        "WAITING"
    )
    done = run(env, "cancel", "--yes", str(job), "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["jobs"][0]["cancelled"] == [job]
    again = run(env, "cancel", "-y", str(job))
    assert again.exit_code == 3 and "CANCELLED" in again.stderr


def test_cancel_running_job_is_requested(
    cli_server: RunningServer, env: dict[str, str], tmp_path: Path
) -> None:
    job = submit_id(env, simple_jdl(tmp_path))
    advance(cli_server, job, "READY", "RUNNING")
    result = run(env, "cancel", "--yes", str(job))
    assert result.exit_code == 0 and "cancellation requested" in result.stdout


def test_output_downloads_every_finished_job(
    cli_server: RunningServer, env: dict[str, str], tmp_path: Path
) -> None:
    job = submit_id(env, simple_jdl(tmp_path))
    advance(cli_server, job, "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
    add_output(cli_server, job, "hello.out", b"hello pilotwms\n")
    add_output(cli_server, job, "logs/run.log", b"ok")
    para = json.loads(run(env, "submit", "--json", str(EXAMPLES / "parametric.jdl")).stdout)
    for index, node in enumerate(para["nodes"]):
        advance(cli_server, node["id"], "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
        add_output(cli_server, node["id"], f"square_{index}.out", str(index * index).encode())
    dest = tmp_path / "results"
    result = run(env, "output", str(job), str(para["id"]), "--dir", str(dest))
    assert result.exit_code == 0, result.output
    assert (dest / str(job) / "hello.out").read_text() == "hello pilotwms\n"
    assert (dest / str(job) / "logs" / "run.log").read_bytes() == b"ok"
    squares = sorted(p.read_text() for p in (dest / str(para["id"])).rglob("square_*.out"))
    assert squares == ["0", "1", "16", "4", "9"]
    second = run(env, "output", str(job), "--dir", str(tmp_path / "again"), "--clear", "--json")
    assert second.exit_code == 0, second.output
    assert len(json.loads(second.stdout)["jobs"][0]["files"]) == 2
    assert json.loads(run(env, "status", str(job), "--json").stdout)["jobs"][0]["state"] == (
        "CLEARED"
    )


def test_output_of_an_unfinished_job_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    job = submit_id(env, simple_jdl(tmp_path))
    result = run(env, "output", str(job), "--dir", str(tmp_path))
    assert result.exit_code == 3 and "WAITING" in result.stderr


def test_wait_exit_code_says_whether_all_succeeded(
    cli_server: RunningServer, env: dict[str, str], tmp_path: Path
) -> None:
    good = submit_id(env, simple_jdl(tmp_path))
    bad = submit_id(env, simple_jdl(tmp_path))
    advance(cli_server, good, "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
    assert run(env, "wait", str(good), "--poll", "0.2").exit_code == 0
    timed_out = run(env, "wait", str(good), str(bad), "--timeout", "0.5", "--poll", "0.1")
    assert timed_out.exit_code == 7 and str(bad) in timed_out.stderr
    advance(cli_server, bad, "READY", "RUNNING", "DONE", done_code="failed", exit_code=2)
    result = run(env, "wait", str(good), str(bad), "--poll", "0.2", "--json")
    assert result.exit_code == 1
    states = {j["id"]: (j["state"], j["exit_code"]) for j in json.loads(result.stdout)["jobs"]}
    assert states == {good: ("DONE", 0), bad: ("DONE", 2)}
    text = run(env, "wait", str(good), "--poll", "0.2")
    assert "1 of 1 job(s) succeeded" in text.stdout


def test_bad_jdl_is_shown_with_caret_and_exit_3(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jdl"
    bad.write_text('Executable = "/bin/true";\nArguments = ;\n')
    result = run(env, "submit", str(bad))
    assert result.exit_code == 3
    assert f"{bad}:2:13:" in result.stderr
    assert "Arguments = ;\n" + " " * 12 + "^" in result.stderr
    assert "Traceback" not in result.output
    invalid = tmp_path / "invalid.jdl"
    invalid.write_text('Executable = "/bin/true";\nRetryCount = "three";\n')
    problems = run(env, "submit", str(invalid))
    assert problems.exit_code == 3 and f"{invalid}:2:" in problems.stderr


def test_auth_errors_and_missing_configuration(env: dict[str, str], tmp_path: Path) -> None:
    job = simple_jdl(tmp_path)
    bad_token = run({**env, "PILOTWMS_TOKEN": "wrong"}, "submit", str(job))
    assert bad_token.exit_code == 5 and "config show" in bad_token.stderr
    nothing = {**env, "PILOTWMS_URL": "", "PILOTWMS_TOKEN": ""}
    unconfigured = run(nothing, "status", "1")
    assert unconfigured.exit_code == 2
    assert "client.toml" in unconfigured.stderr and "PILOTWMS_TOKEN" in unconfigured.stderr
    unreachable = run({**env, "PILOTWMS_URL": "http://127.0.0.1:9"}, "status", "1")
    assert unreachable.exit_code == 6 and "cannot reach" in unreachable.stderr


def test_config_show_reads_the_file_and_the_environment(
    cli_server: RunningServer, env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "xdg" / "pilotwms" / "client.toml"
    config.parent.mkdir(parents=True)
    token = env["PILOTWMS_TOKEN"]
    config.write_text(f'url = "{cli_server.base_url}"\ntoken = "{token}"\ntimeout = 30\n')
    from_file = {**env, "PILOTWMS_URL": "", "PILOTWMS_TOKEN": ""}
    shown = run(from_file, "config", "show", "--json", "--check")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["file"] == str(config) and data["file_exists"]
    assert data["url"] == cli_server.base_url and data["sources"]["url"] == str(config)
    assert token not in shown.stdout and data["timeout"] == 30
    assert data["server"]["api"] == "v1"
    overridden = json.loads(
        run({**from_file, "PILOTWMS_URL": "http://elsewhere:1"}, "config", "show", "--json").stdout
    )
    assert overridden["url"] == "http://elsewhere:1" and overridden["sources"]["url"] == (
        "$PILOTWMS_URL"
    )
    assert run(from_file, "config", "show").exit_code == 0
    assert submit_id(from_file, simple_jdl(tmp_path)) > 0


def test_list_match_shows_matches_and_failing_clauses(
    cli_server: RunningServer, env: dict[str, str], tmp_path: Path
) -> None:
    admin = cli_server.user_client(admin=True)
    reply = admin.put(
        "/api/v1/admin/queues/cli-test-queue",
        json={"ad": {"Cpus": 8, "GlueCEStateFreeCPUs": 8, "GlueCEStateStatus": "Production"}},
    )
    assert reply.status_code == 200, reply.text
    jdl = simple_jdl(
        tmp_path,
        'Executable = "/bin/true"; Requirements = other.Cpus >= 4;'
        " Rank = other.GlueCEStateFreeCPUs;",
    )
    result = run(env, "list-match", str(jdl), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"requirements", "rank", "matching", "not_matching"} <= set(data)
    match = next(m for m in data["matching"] if m["id"] == "cli-test-queue")
    assert match["kind"] == "queue" and match["rank"] == 8
    text = run(env, "list-match", str(jdl))
    assert "cli-test-queue" in text.stdout and "RANK" in text.stdout
    never = simple_jdl(tmp_path, 'Executable = "/bin/true"; Requirements = other.Cpus >= 400;')
    failing = run(env, "list-match", str(never))
    assert failing.exit_code == 1
    assert "No resource matching" in failing.stdout and "other.Cpus >= 400" in failing.stdout


def test_pilots_lists_registered_pilots(cli_server: RunningServer, env: dict[str, str]) -> None:
    from pilotwms.agent import AGENT_VERSION

    pilot = cli_server.client(cli_server.token(cli_server.add_user(), "pilot"))
    reply = pilot.post(
        "/api/v1/pilot/register",
        json={
            "ad": {"Cpus": 1},
            "agent_version": AGENT_VERSION,
            "queue": "cli-q",
            "batch_id": "b7",
        },
    )
    assert reply.status_code == 200, reply.text
    pilot_id = str(reply.json()["pilot_id"])
    data = json.loads(run(env, "pilots", "--json").stdout)
    assert pilot_id in [p["id"] for p in data["pilots"]]
    text = run(env, "pilots", "--state", "idle")  # registered, running no job
    assert text.exit_code == 0 and "cli-q" in text.stdout and AGENT_VERSION in text.stdout


#: Short protocol timings (as the end-to-end tests use) so that the agent polls often.
E2E_SETTINGS = {
    "heartbeat_interval_s": 0.5,
    "lease_timeout_s": 3.0,
    "work_max_wait_s": 1.0,
    "task_queue_resync_s": 1.0,
}


@pytest.fixture
def e2e_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server of its own: the agent must not take the jobs of the other tests."""
    with (
        fresh_database("sqlite", tmp_path / "e2e-db") as database,
        serving(make_settings(database, tmp_path / "e2e-server", **E2E_SETTINGS)) as running,
    ):
        yield running


@pytest.mark.slow
def test_hello_example_runs_on_a_real_agent_end_to_end(
    e2e_server: RunningServer, tmp_path: Path
) -> None:
    user = e2e_server.token(e2e_server.add_user())
    env = {
        "PILOTWMS_URL": e2e_server.base_url,
        "PILOTWMS_TOKEN": user,
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "PILOTWMS_CONFIG": "",
    }
    job = submit_id(env, EXAMPLES / "hello.jdl")
    pilot_token = e2e_server.token(e2e_server.add_user("factory"), "pilot")
    agent_env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTWMS_")}
    agent_env["PILOTWMS_TOKEN"] = pilot_token
    log = tmp_path / "agent.log"
    with log.open("wb") as sink:
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pilotwms.agent",
                "--server",
                e2e_server.base_url,
                "--work-dir",
                str(tmp_path / "pilot"),
                "--cores",
                "1",
                "--wait-term",
                "30",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=agent_env,
        )
    try:
        waited = run(env, "wait", str(job), "--timeout", "120", "--poll", "1")
        assert waited.exit_code == 0, waited.output + log.read_text(errors="replace")
        fetched = run(env, "output", str(job), "--dir", str(tmp_path / "out"))
        assert fetched.exit_code == 0, fetched.output
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=40)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(timeout=10)
    out = tmp_path / "out" / str(job)
    assert (out / "hello.out").read_text().splitlines()[1] == "arguments: pilotwms"
    assert (out / "greeting.txt").read_text() == "greeting for pilotwms\n"
    assert (out / "hello.err").read_text() == "done\n"


def test_submit_wait_times_out_with_exit_7_and_aliases_work(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = run(
        env, "submit", "--wait", "--timeout", "0.5", "--poll", "0.1", str(simple_jdl(tmp_path))
    )
    assert result.exit_code == 7, result.output
    job = int(re.search(r"Submitted job (\d+)", result.stdout).group(1))
    assert "timed out" in result.stderr
    alias = run(env, "job-status", str(job), "--json")
    assert alias.exit_code == 0 and json.loads(alias.stdout)["jobs"][0]["id"] == job


def test_upload_progress_bar_follows_the_events() -> None:
    from pilotwms.cli.jobs import _UploadBar
    from pilotwms.client import UploadProgress

    bar = _UploadBar()
    bar(UploadProgress("a.sh", 5, 10, 5, 20))
    bar(UploadProgress("b.dat", 10, 10, 20, 20, skipped=True))
    assert bar.progress is not None
    assert bar.progress.tasks[0].completed == 20 and bar.progress.tasks[0].total == 20
    bar.close()


def test_peek_shows_the_tail_the_running_jobs_pilot_sends(
    e2e_server: RunningServer, tmp_path: Path
) -> None:
    from pilot_client import ProtocolPilot, new_tag, tagged_jdl

    env = {
        "PILOTWMS_URL": e2e_server.base_url,
        "PILOTWMS_TOKEN": e2e_server.token(e2e_server.add_user()),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "PILOTWMS_CONFIG": "",
    }
    tag = new_tag()
    job = submit_id(env, simple_jdl(tmp_path, tagged_jdl(tag)))
    waiting = run(env, "peek", str(job), "--json")
    assert waiting.exit_code == 0, waiting.output
    assert json.loads(waiting.stdout)["running"] is False
    pilot = ProtocolPilot(e2e_server, e2e_server.token(e2e_server.add_user(), "pilot"), tag=tag)
    (spec,) = pilot.work()
    pilot.report(spec, "started")
    answered = threading.Event()

    def pilot_loop() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(c.get("action") == "peek" for c in pilot.heartbeat([spec])):
                pilot.report(spec, "peek", stdout_tail="event 900/1000\n")
                answered.set()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=pilot_loop, daemon=True)
    thread.start()
    result = run(env, "peek", str(job), "--wait", "60")
    thread.join(timeout=60)
    assert answered.is_set()
    assert result.exit_code == 0, result.output
    assert result.stdout == "event 900/1000\n"
    pilot.finish(spec)
    after = run(env, "peek", str(job), "--wait", "5")
    assert after.stdout == "event 900/1000\n" and "not running" in after.stderr


def test_output_never_overwrites_files_already_there(
    cli_server: RunningServer, env: dict[str, str], tmp_path: Path
) -> None:
    job = submit_id(env, simple_jdl(tmp_path))
    advance(cli_server, job, "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
    add_output(cli_server, job, "result.txt", b"new")
    (tmp_path / "dest" / str(job)).mkdir(parents=True)
    (tmp_path / "dest" / str(job) / "result.txt").write_bytes(b"mine")
    result = run(env, "output", str(job), "--dir", str(tmp_path / "dest"))
    assert result.exit_code == 3 and "result.txt" in result.stderr
    assert (tmp_path / "dest" / str(job) / "result.txt").read_bytes() == b"mine"
