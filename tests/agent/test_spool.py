"""Reports on disk: atomic, ordered, kept across a restart, removed only once acknowledged."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pilotwms.agent.spool import Spool


class FakeServer:
    """Deduplicates by report_id as the protocol requires; can be made unreachable."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self.down = False
        self.stale: set[int] = set()

    def send(self, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls += 1
        if self.down:
            raise ConnectionError("server down")
        results = []
        for report in reports:
            rid = report["report_id"]
            if report.get("attempt") in self.stale:
                outcome = "stale"
            elif rid in self.seen:
                outcome = "duplicate"
            else:
                self.seen[rid] = report
                outcome = "accepted"
            results.append({"report_id": rid, "outcome": outcome})
        return results


def test_finished_reports_survive_a_restart_and_are_flushed_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    ids = [spool.add({"job_id": j, "attempt": 1, "type": "finished"}) for j in ("a", "b")]
    spool.add({"job_id": "a", "attempt": 1, "type": "started"})  # progress: memory only
    assert len(set(ids)) == 2 and len(spool) == 3
    journal = tmp_path / "spool" / Spool.JOURNAL
    assert [json.loads(line)["report_id"] for line in journal.read_text().splitlines()] == ids
    server = FakeServer()
    server.down = True
    with pytest.raises(ConnectionError):
        spool.flush(server.send)
    spool.close()  # the pilot "crashes" here, in the middle of writing a third report
    with journal.open("a") as handle:
        handle.write('{"job_id": "c", "attempt": 1, "report_id": "torn')
    (tmp_path / "spool" / "000000000099-half.tmp").write_text("{")  # an older agent's

    reopened = Spool(tmp_path / "spool")
    assert [r["report_id"] for r in reopened.pending()] == ids
    assert not list((tmp_path / "spool").glob("*.tmp"))
    # The torn line is kept aside for inspection, and out of the journal.
    assert '"torn' in (tmp_path / "spool" / "journal.bad").read_text()
    assert len(journal.read_text().splitlines()) == 2
    later = reopened.add({"job_id": "k", "attempt": 1, "type": "finished"})
    server.down = False
    assert reopened.flush(server.send) == 3
    assert list(server.seen) == [*ids, later]
    assert len(reopened) == 0
    assert journal.stat().st_size == 0  # everything answered: the journal is emptied


def test_a_journal_that_never_empties_is_compacted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, compact_bytes=2000)
    server = FakeServer()
    kept = spool.add({"job_id": "slow", "attempt": 1, "type": "finished", "status": "done"})
    for n in range(40):  # a steady stream, with one report that is never answered
        rid = spool.add({"job_id": str(n), "attempt": 1, "type": "finished", "status": "done"})
        server.send([r for r in spool.pending() if r["report_id"] == rid])
        spool.remove([rid])
    assert (tmp_path / Spool.JOURNAL).stat().st_size <= 2000 + 200
    spool.close()
    # After a restart the unanswered report is sent again, with at most the answered ones
    # since the last compaction (the server answers those "duplicate").
    again = [r["report_id"] for r in Spool(tmp_path).pending()]
    assert again[0] == kept and set(again[1:]) <= set(server.seen) and len(again) < 40


def test_reports_an_older_agent_left_as_files_are_sent_and_removed(tmp_path: Path) -> None:
    legacy = {"report_id": "r-old", "job_id": "j", "attempt": 1, "type": "finished"}
    (tmp_path / "000000000007-r-old.json").write_text(json.dumps(legacy))
    spool = Spool(tmp_path)
    new = spool.add({"job_id": "k", "attempt": 1, "type": "finished"})
    server = FakeServer()
    assert spool.flush(server.send) == 2
    assert list(server.seen) == ["r-old", new]
    assert not list(tmp_path.glob("*.json"))


def test_fsync_mode_writes_the_same_journal(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=True)
    rid = spool.add({"type": "finished", "job_id": "j", "attempt": 1})
    assert [r["report_id"] for r in Spool(tmp_path).pending()] == [rid]
    assert spool.flush(FakeServer().send) == 1
    assert (tmp_path / Spool.JOURNAL).stat().st_size == 0


def test_resending_after_a_lost_acknowledgement_is_harmless(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    rid = spool.add({"job_id": "j", "attempt": 1, "type": "finished", "exit_code": 0})
    server = FakeServer()
    server.send(Spool(tmp_path).pending())  # delivered, but the reply was lost: still on disk
    assert spool.flush(server.send) == 1
    assert len(server.seen) == 1 and rid in server.seen
    assert len(spool) == 0


def test_adding_the_same_report_id_twice_keeps_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.add({"report_id": "r1", "type": "started"})
    spool.add({"report_id": "r1", "type": "started"})
    assert [r["report_id"] for r in spool.pending()] == ["r1"]


def test_stale_reports_are_dropped_and_unknown_outcomes_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.add({"report_id": "old", "attempt": 1})
    spool.add({"report_id": "new", "attempt": 2})
    spool.add({"report_id": "odd", "attempt": 3})
    server = FakeServer()
    server.stale = {1}

    def send(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = server.send(reports)
        return [
            r if r["report_id"] != "odd" else {"report_id": "odd", "outcome": "?"} for r in results
        ]

    assert spool.flush(send) == 2
    assert [r["report_id"] for r in spool.pending()] == ["odd"]


def test_batches_and_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "000000000100-broken.json").write_text("{not json")
    spool = Spool(tmp_path)
    for n in range(5):
        spool.add({"n": n, "type": "finished"})
    sizes: list[int] = []
    server = FakeServer()

    def send(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
        sizes.append(len(reports))
        return server.send(reports)

    assert spool.flush(send, batch_size=2) == 5
    assert sizes == [2, 2, 1]
    assert (tmp_path / "000000000100-broken.bad").exists()
    assert [json.loads(json.dumps(r))["n"] for r in server.seen.values()] == [0, 1, 2, 3, 4]


def test_an_end_replaces_the_pending_progress_reports_of_its_attempt(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.add({"job_id": "a", "attempt": 1, "type": "started"})
    spool.add({"job_id": "a", "attempt": 1, "type": "payload_started"})
    other = spool.add({"job_id": "b", "attempt": 1, "type": "started"})
    older = spool.add({"job_id": "a", "attempt": 0, "type": "started"})
    peek = spool.add({"job_id": "a", "attempt": 1, "type": "peek", "stdout_tail": "x"})
    end = spool.add(
        {"job_id": "a", "attempt": 1, "type": "finished", "status": "done", "payload_started": True}
    )
    # The end implies the start and the payload start; other attempts and peeks are untouched.
    assert [r["report_id"] for r in spool.pending()] == [other, older, peek, end]
    server = FakeServer()
    assert spool.flush(server.send) == 4 and len(spool) == 0


def test_a_progress_report_already_sent_is_acknowledged_as_usual(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    started = spool.add({"job_id": "a", "attempt": 1, "type": "started"})
    in_flight = spool.pending()  # a flush thread took it...
    end = spool.add({"job_id": "a", "attempt": 1, "type": "finished", "status": "done"})
    server = FakeServer()
    results = server.send(in_flight)  # ...and the server answers after the end was made
    assert spool.remove([r["report_id"] for r in results]) == 0
    assert [r["report_id"] for r in spool.pending()] == [end]
    assert spool.flush(server.send) == 1
    assert list(server.seen) == [started, end]


def test_a_refused_attempt_keeps_nothing_implied(tmp_path: Path) -> None:
    # A refused attempt never started, so its end implies no progress; should progress reports
    # exist (they do not, in the agent), they are sent as made.
    spool = Spool(tmp_path / "spool")
    started = spool.add({"job_id": "a", "attempt": 1, "type": "started"})
    end = spool.add({"job_id": "a", "attempt": 1, "type": "finished", "status": "refused"})
    assert [r["report_id"] for r in spool.pending()] == [started, end]


def test_a_last_line_without_its_newline_does_not_swallow_the_next_report(
    tmp_path: Path,
) -> None:
    # Killed after writing a whole report but before its newline: the report is kept, and the
    # next one starts on a line of its own.
    line = json.dumps({"report_id": "r1", "job_id": "j", "attempt": 1, "type": "finished"})
    (tmp_path / Spool.JOURNAL).write_text(line)
    spool = Spool(tmp_path)
    later = spool.add({"job_id": "k", "attempt": 1, "type": "finished"})
    spool.close()
    assert [r["report_id"] for r in Spool(tmp_path).pending()] == ["r1", later]
    assert not (tmp_path / "journal.bad").exists()


def test_a_short_write_keeps_nothing_and_leaves_the_journal_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)
    first = spool.add({"job_id": "a", "attempt": 1, "type": "finished"})
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data)[:10]))
    with pytest.raises(OSError, match="disk full"):
        spool.add({"job_id": "b", "attempt": 1, "type": "finished"})
    monkeypatch.setattr(os, "write", real_write)
    third = spool.add({"job_id": "c", "attempt": 1, "type": "finished"})
    spool.close()
    assert [r["report_id"] for r in Spool(tmp_path).pending()] == [first, third]


def test_a_large_backlog_is_not_rewritten_on_every_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, compact_bytes=1000)
    ids = [spool.add({"job_id": str(n), "attempt": 1, "type": "finished"}) for n in range(200)]
    rewrites = 0
    real = Spool._rewrite

    def counted(self: Spool) -> None:
        nonlocal rewrites
        rewrites += 1
        real(self)

    monkeypatch.setattr(Spool, "_rewrite", counted)
    for n in range(0, 190, 10):
        spool.remove(ids[n : n + 10])
    # Rewritten only when answered reports made up half of the journal: a handful of times,
    # not once per answer.
    assert 1 <= rewrites <= 5
    # A restart sends the unanswered ones again, with at most as many answered ones (the
    # server answers those "duplicate").
    again = [r["report_id"] for r in Spool(tmp_path).pending()]
    assert again[-10:] == ids[190:] and set(again[:-10]) <= set(ids[:190])
    assert len(again) <= 2 * 10
