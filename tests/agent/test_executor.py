"""The executor with real subprocesses and real files: staging, streams, limits, cancel."""

from __future__ import annotations

import functools
import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilotwms.agent import executor
from pilotwms.agent.staging import sha256_file

from .conftest import JobKit, RecordingSink, pid_alive, read_pids, wait_for

SCRIPT = b"""#!/bin/sh
echo "args: $1|$2"
echo "greeting=$GREETING"
echo "job=$PILOTWMS_JOB_ID attempt=$PILOTWMS_ATTEMPT token=${PILOTWMS_TOKEN:-none}"
cat
cat data/input.txt > result_1.dat
echo second > result_2.dat
echo oops >&2
"""


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server for a directory of files; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_job_with_sandboxes_arguments_environment_and_streams(kit: JobKit, tmp_path: Path) -> None:
    script = kit.blobs.add(SCRIPT)
    stdin = kit.blobs.add(b"from stdin\n")
    (tmp_path / "input.txt").write_text("from a file URI\n")
    result = kit.run(
        executable="job.sh",
        arguments=["two words", "x"],
        environment={"GREETING": "hello world"},
        input_sandbox=[
            {"name": "job.sh", "digest": script, "size": len(SCRIPT)},
            {"name": "in.txt", "digest": "sha256:" + stdin},
            {"name": "data/input.txt", "url": (tmp_path / "input.txt").as_uri()},
        ],
        stdin="in.txt",
        stdout="std.out",
        stderr="std.err",
        output_sandbox=["std.out", "std.err", "result_*.dat", "missing.txt"],
    )
    assert result.status == executor.DONE, result.reason
    assert result.exit_code == 0
    assert result.payload_started
    assert result.missing_outputs == ["missing.txt"]
    files = {name: data for (_job, _attempt, name), data in kit.sink.files.items()}
    assert sorted(files) == ["result_1.dat", "result_2.dat", "std.err", "std.out"]
    out = files["std.out"].decode()
    assert "args: two words|x" in out
    assert "greeting=hello world" in out
    assert "job=job1 attempt=1 token=none" in out  # the pilot's token never reaches a job
    assert "from stdin" in out
    assert files["result_1.dat"] == b"from a file URI\n"
    assert files["std.err"] == b"oops\n"
    assert [kind for kind, _ in kit.events] == ["started", "payload_started", "finished"]
    assert not any(kit.context.jobs_root.iterdir()), "work directory was not removed"


def test_http_input_and_file_uri_outputs(kit: JobKit, tmp_path: Path, http_files: str) -> None:
    (tmp_path / "www" / "remote.txt").write_text("over http\n")
    dest = tmp_path / "dest"
    result = kit.run(
        executable="/bin/sh",
        arguments=["-c", "cp remote.txt a.txt; echo b > b.txt"],
        input_sandbox=[{"name": "remote.txt", "url": f"{http_files}/remote.txt"}],
        output_sandbox=["a.txt", "b.txt"],
        output_destinations={"a.txt": (dest / "renamed.txt").as_uri()},
        output_base_uri=(dest / "base").as_uri(),
    )
    assert result.status == executor.DONE, result.reason
    assert (dest / "renamed.txt").read_text() == "over http\n"
    assert (dest / "base" / "b.txt").read_text() == "b\n"
    assert kit.sink.files == {}


def test_failed_upload_is_reported_missing_and_the_others_still_go(kit: JobKit) -> None:
    sink = kit.context.sink = RecordingSink(fail=("bad.txt",))
    result = kit.run(
        executable="/bin/sh",
        arguments=["-c", "echo 1 > bad.txt; echo 2 > good.txt"],
        output_sandbox=["bad.txt", "good.txt"],
    )
    assert result.status == executor.DONE
    assert result.missing_outputs == ["bad.txt"]
    assert "upload failed" in result.reason
    assert list(sink.files) == [("job1", 1, "good.txt")]


def test_prologue_failure_is_a_setup_failure_and_the_payload_never_starts(kit: JobKit) -> None:
    result = kit.run(
        executable="/bin/sh",
        arguments=["-c", "touch ran"],
        prologue={"path": "/bin/sh", "arguments": ["-c", "exit 3"]},
    )
    assert result.status == executor.SETUP_FAILED
    assert "prologue exited with 3" in result.reason
    assert not result.payload_started
    assert ("payload_started", "job1/1") not in kit.events


def test_prologue_and_epilogue_run_around_the_payload(kit: JobKit) -> None:
    pro = kit.blobs.add(b"#!/bin/sh\necho pro > order.txt\n")
    result = kit.run(
        executable="/bin/sh",
        arguments=["-c", "echo payload >> order.txt"],
        input_sandbox=[{"name": "pro.sh", "digest": pro}],
        prologue={"path": "pro.sh"},
        epilogue={"path": "/bin/sh", "arguments": ["-c", "echo epi >> order.txt"]},
        output_sandbox=["order.txt"],
    )
    assert result.status == executor.DONE, result.reason
    assert kit.sink.files[("job1", 1, "order.txt")] == b"pro\npayload\nepi\n"


def test_failing_epilogue_fails_a_successful_job(kit: JobKit) -> None:
    result = kit.run(executable="/bin/true", epilogue={"path": "/bin/false"})
    assert result.status == executor.FAILED
    assert "epilogue" in result.reason


def test_exit_code_and_signal_are_reported(kit: JobKit) -> None:
    failed = kit.run(executable="/bin/sh", arguments=["-c", "exit 7"])
    assert (failed.status, failed.exit_code, failed.signal) == (executor.FAILED, 7, None)
    killed = kit.run(executable="/bin/sh", arguments=["-c", "kill -9 $$"])
    assert (killed.status, killed.exit_code, killed.signal) == (executor.FAILED, None, 9)


def test_unknown_executable_and_missing_stdin_are_setup_failures(kit: JobKit) -> None:
    assert kit.run(executable="no-such-program-here").status == executor.SETUP_FAILED
    missing = kit.run(executable="/bin/cat", stdin="absent.txt")
    assert missing.status == executor.SETUP_FAILED
    assert "StdInput" in missing.reason


def test_corrupted_blob_is_a_setup_failure(kit: JobKit) -> None:
    digest = kit.blobs.add(b"good content")
    (kit.blobs.directory / digest).write_bytes(b"tampered")
    result = kit.run(executable="/bin/true", input_sandbox=[{"name": "f", "digest": digest}])
    assert result.status == executor.SETUP_FAILED
    assert "corrupted" in result.reason
    assert not (kit.context.cache.directory / digest).exists()


def test_blob_cache_downloads_a_shared_file_once_for_two_jobs(kit: JobKit) -> None:
    shared = kit.blobs.add(b"shared input\n" * 1000)
    runners = [
        kit.start(
            kit.spec(
                executable="/bin/sh",
                arguments=["-c", "cmp shared.dat shared.dat"],
                input_sandbox=[{"name": "shared.dat", "digest": shared}],
            )
        )
        for _ in range(2)
    ]
    for runner in runners:
        assert runner.wait(30)
        assert runner.result is not None and runner.result.status == executor.DONE
    assert kit.blobs.fetches == [shared]
    assert sha256_file(kit.context.cache.directory / shared) == shared


def _wait_for_pids(runner: executor.JobRunner) -> list[int]:
    pids: list[int] = wait_for(
        lambda: read_pids(runner.work_dir / "pids"), what="the job's pid file"
    )
    assert all(pid_alive(pid) for pid in pids)
    return pids


def test_cancel_kills_the_whole_process_group(kit: JobKit) -> None:
    runner = kit.start(
        kit.spec(executable="/bin/sh", arguments=["-c", "sleep 300 & echo $$ $! > pids; wait"])
    )
    pids = _wait_for_pids(runner)
    runner.cancel()
    assert runner.wait(20)
    assert runner.result is not None
    assert runner.result.status == executor.CANCELLED
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), what="the job's processes to die")


def test_cancel_uses_sigkill_after_the_grace_period_and_reaches_other_groups(
    kit: JobKit,
) -> None:
    # The shell ignores SIGTERM (so does its child), and `set -m` puts the child in a process
    # group of its own: only the session-wide SIGKILL after the grace period ends both.
    runner = kit.start(
        kit.spec(
            executable="/bin/sh",
            arguments=["-c", "trap '' TERM; set -m; sleep 300 & echo $$ $! > pids; wait; wait"],
        )
    )
    pids = _wait_for_pids(runner)
    runner.cancel()
    assert runner.wait(30)
    assert runner.result is not None and runner.result.status == executor.CANCELLED
    assert runner.result.wall_s >= kit.context.cancel_grace * 0.9
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), what="the job's processes to die")


def test_drain_reports_drained(kit: JobKit) -> None:
    runner = kit.start(kit.spec(executable="/bin/sleep", arguments=["300"]))
    wait_for(lambda: runner.payload_started, what="the payload")
    runner.drain("pilot is leaving")
    assert runner.wait(20)
    assert runner.result is not None
    assert (runner.result.status, runner.result.reason) == (executor.DRAINED, "pilot is leaving")


def test_wall_clock_limit_kills_and_is_reported(kit: JobKit) -> None:
    result = kit.run(executable="/bin/sleep", arguments=["300"], max_wall_time_s=1)
    assert result.status == executor.KILLED_WALLTIME
    assert "wall-clock" in result.reason
    assert result.wall_s < 15


def test_memory_limit_kills_and_is_reported(kit: JobKit) -> None:
    hog = "import time; data = b'x' * (300 * 1024 * 1024); time.sleep(300)"
    result = kit.run(executable=sys.executable, arguments=["-c", hog], max_memory_mb=100)
    assert result.status == executor.KILLED_MEMORY, result.reason
    assert result.max_rss_mb > 100
    assert result.wall_s < 60


def test_stdout_tail_can_be_peeked_while_the_job_runs(kit: JobKit) -> None:
    runner = kit.start(
        kit.spec(
            executable="/bin/sh",
            arguments=["-c", "echo first line; echo progress 42%; exec sleep 300"],
            stdout="out.log",
            perusal=True,
        )
    )
    wait_for(lambda: "progress 42%" in runner.stdout_tail(), what="the job's output")
    assert runner.stdout_tail(10).endswith("42%\n")
    runner.cancel()
    assert runner.wait(20)


def test_cpu_time_is_measured(kit: JobKit) -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    result = kit.run(executable=sys.executable, arguments=["-c", burn])
    assert result.status == executor.DONE
    assert result.cpu_s >= 0.25


def test_a_script_without_shebang_runs_with_the_shell(kit: JobKit) -> None:
    script = kit.blobs.add(b"echo plain > out.txt\n")
    result = kit.run(
        executable="plain.sh",
        input_sandbox=[{"name": "plain.sh", "digest": script}],
        output_sandbox=["out.txt"],
    )
    assert result.status == executor.DONE, result.reason
    assert kit.sink.files[("job1", 1, "out.txt")] == b"plain\n"


def test_a_missing_epilogue_fails_the_job_but_keeps_its_outputs(kit: JobKit) -> None:
    result = kit.run(
        executable="/bin/sh",
        arguments=["-c", "echo x > out.txt"],
        epilogue={"path": "/no/such/epilogue"},
        output_sandbox=["out.txt"],
    )
    assert result.status == executor.FAILED
    assert result.reason.startswith("epilogue:")
    assert ("job1", 1, "out.txt") in kit.sink.files


def test_an_empty_work_directory_is_handed_on_and_a_used_one_removed(tmp_path: Path) -> None:
    dirs = executor.WorkDirs(tmp_path / "jobs")
    first = tmp_path / "jobs" / "1.1"
    dirs.make(first)
    dirs.done(first)  # left empty: kept aside for the next job
    assert not first.exists() and len(list(dirs.spare.iterdir())) == 1
    second = tmp_path / "jobs" / "2.1"
    dirs.make(second)
    assert second.is_dir() and not any(second.iterdir())
    assert not any(dirs.spare.iterdir())
    (second / "output.txt").write_text("left behind")
    dirs.done(second)  # not empty: removed, never handed on
    assert not second.exists() and not any(dirs.spare.iterdir())
    third = tmp_path / "jobs" / "3.1"
    dirs.make(third)
    third.chmod(0o500)
    dirs.done(third)  # permissions changed by the job: removed
    assert not third.exists() and not any(dirs.spare.iterdir())
    with pytest.raises(FileExistsError):
        dirs.make(tmp_path / "jobs")
    dirs.close()
    assert not dirs.spare.exists()


def test_the_next_job_runs_in_the_finished_jobs_thread_and_can_be_cancelled_there(
    kit: JobKit,
) -> None:
    # A pilot hands the job its slot's next job from on_done; the thread, its exit waiter and
    # its wake-up pipe (written to by the first job's cancel) serve the second job too.
    threads: set[int] = set()
    runners: list[executor.JobRunner] = []

    def on_event(kind: str, runner: executor.JobRunner) -> None:
        threads.add(threading.get_ident())

    def on_done(runner: executor.JobRunner) -> executor.JobRunner | None:
        if len(runners) > 1:
            return None
        spec = kit.spec(executable="/bin/sleep", arguments=["300"])
        runners.append(executor.JobRunner(spec, kit.context, 1, on_event, on_done))
        return runners[-1]

    spec = kit.spec(executable="/bin/sleep", arguments=["300"])
    runners.append(executor.JobRunner(spec, kit.context, 1, on_event, on_done))
    runners[0].start()
    wait_for(lambda: runners[0].payload_started, what="the first payload")
    runners[0].cancel()
    assert runners[0].wait(20) and len(runners) == 2  # on_done ran before wait() returned
    wait_for(lambda: runners[1].payload_started, what="the second payload")
    runners[1].cancel()
    assert runners[1].wait(20)
    assert [r.result.status for r in runners if r.result] == [executor.CANCELLED] * 2
    assert len(threads) == 1
