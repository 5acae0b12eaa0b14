"""Reading /proc: stat lines with awkward command names, sessions, and the shared scan."""

from __future__ import annotations

from pathlib import Path

from pilotwms.agent import processes


def stat_line(pid: int, comm: str, session: int, pgrp: int, state: str = "S") -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice threads itreal starttime vsize rss ...
    fields = [state, "1", str(pgrp), str(session), "0", "-1", "0", "0", "0", "0", "0",
              "100", "50", "10", "5", "20", "0", "1", "0", "0", "1000", "256", "0"]  # fmt: skip
    return f"{pid} ({comm}) " + " ".join(fields) + "\n"


def fake_proc(tmp_path: Path, lines: dict[int, str]) -> Path:
    for pid, line in lines.items():
        (tmp_path / str(pid)).mkdir(parents=True)
        (tmp_path / str(pid) / "stat").write_text(line)
    (tmp_path / "self").mkdir()
    return tmp_path


def test_parse_stat_with_spaces_and_parentheses_in_the_name() -> None:
    stat = processes.parse_stat(stat_line(42, "my (odd) prog", session=40, pgrp=41))
    assert stat is not None
    assert (stat.pid, stat.session, stat.pgrp, stat.cpu_ticks, stat.rss_pages) == (
        42, 40, 41, 165, 256,
    )  # fmt: skip
    assert processes.parse_stat("garbage") is None


def test_session_members_include_other_groups_and_skip_zombies(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        {
            10: stat_line(10, "sh", session=10, pgrp=10),
            11: stat_line(11, "sleep", session=10, pgrp=11),  # its own group, same session
            12: stat_line(12, "dead", session=10, pgrp=10, state="Z"),
            20: stat_line(20, "other", session=20, pgrp=20),
        },
    )
    assert sorted(s.pid for s in processes.session_members(10, proc)) == [10, 11]
    used = processes.usage(processes.session_members(10, proc))
    assert used.pids == 2
    assert used.rss_mb == 2 * 256 * processes.PAGE_SIZE / (1 << 20)


def test_process_table_scans_once_per_period(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {10: stat_line(10, "sh", session=10, pgrp=10)})
    now = [0.0]
    table = processes.ProcessTable(proc, max_age=1.0, clock=lambda: now[0])
    assert [s.pid for s in table.members(10)] == [10]
    (proc / "11").mkdir()
    (proc / "11" / "stat").write_text(stat_line(11, "new", session=10, pgrp=10))
    assert [s.pid for s in table.members(10)] == [10]  # still the cached scan
    now[0] = 2.0
    assert sorted(s.pid for s in table.members(10)) == [10, 11]
