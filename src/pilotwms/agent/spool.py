"""Job reports kept until the server has acknowledged them.

``finished`` reports (the result of an attempt) are written to disk before they are sent: each is
one line of JSON appended to a journal (``journal.jsonl``) with a single ``write``, so an agent
killed at any moment leaves the whole report or, at worst, a torn last line that the next start
sets aside; a restarted agent sends what it finds. Once every report in the journal has been
answered, the journal is truncated, and it is rewritten with only the pending reports should it
grow past ``compact_bytes`` without ever emptying. A file per report (create, rename, unlink) cost
about a quarter of a millisecond per short job in file-system metadata; an append costs a few
microseconds. Reports that an older agent left as one file each (``NNN-ID.json``) are still read
and sent. Progress reports (``started``, ``payload_started``, ``peek``) are kept in memory only:
they matter while the attempt runs, and an agent that died has lost its attempts anyway.

The journal is not fsync'ed by default: a write survives the agent's own death, and if the node
itself goes down, its jobs die with it and the server retries them after the lease; paying an
fsync per job would cap the throughput of short jobs for no gain. ``fsync=True`` is there for
set-ups where the spool outlives the node (a shared file system).

A ``finished`` report replaces the progress reports of its attempt that are still pending: the
server takes the end as implying them (the protocol document), so a short job that ended before its
``started`` and ``payload_started`` went out costs one report, not three.

Reports are sent in creation order and forgotten only once the server answered for them; the
server deduplicates by ``report_id``, so sending one twice after a crash between "sent" and
"forgotten" (or before the journal was truncated) is harmless. This is how a pilot keeps its
results while the server is down.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

log = logging.getLogger(__name__)

FINAL_OUTCOMES = ("accepted", "duplicate", "stale")
"""Outcomes after which a report is never sent again (see the protocol document)."""

DURABLE_TYPES = ("finished",)
"""Report types written to disk."""

IMPLIED_TYPES = ("started", "payload_started")
"""Progress reports that the attempt's ``finished`` report implies (and replaces if pending)."""


def new_report_id() -> str:
    """A fresh report id: 128 random bits in hex (a uuid4's length), so ids from different
    pilots never collide; without building a ``UUID`` object, as every job makes three."""
    return os.urandom(16).hex()


class Spool:
    """Pending reports in creation order; safe to use from job threads and the main loop."""

    JOURNAL = "journal.jsonl"
    LEGACY_SUFFIX = ".json"

    def __init__(self, directory: Path, fsync: bool = False, compact_bytes: int = 4 << 20):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.compact_bytes = compact_bytes
        self._lock = threading.Lock()
        # sequence number -> (report, its journal line's length or 0, legacy file or None);
        # dicts keep insertion order.
        self._pending: Dict[int, "tuple[Dict[str, Any], int, Optional[Path]]"] = {}
        self._ids: Dict[str, int] = {}
        # (job id, attempt) -> sequence numbers of its pending progress reports.
        self._progress: Dict["tuple[str, str]", List[int]] = {}
        self._seq = 0
        self._live_bytes = 0  # journal bytes of the reports still pending
        self._journal_bytes = 0  # the journal's size
        self._fd = -1
        self._load_legacy()
        self._load_journal()
        if self._fd < 0:
            self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if self.fsync:
                self._sync_directory()  # the journal's own directory entry

    @property
    def journal(self) -> Path:
        return self.directory / self.JOURNAL

    def _load_legacy(self) -> None:
        """Reports an older agent wrote one file each; removed once answered."""
        for stale_tmp in self.directory.glob("*.tmp"):
            stale_tmp.unlink()
        files = [
            p
            for p in self.directory.iterdir()
            if p.name.endswith(self.LEGACY_SUFFIX) and p.name.split("-", 1)[0].isdigit()
        ]
        for path in sorted(files, key=lambda p: int(p.name.split("-", 1)[0])):
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
                report_id = str(report["report_id"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("spooled report %s is unreadable (%s); moved aside", path.name, exc)
                path.rename(path.with_suffix(".bad"))
                continue
            self._keep(report, report_id, 0, path)

    def _load_journal(self) -> None:
        """The reports of the journal, in order. Lines that do not parse (a write torn by the
        agent's death) are moved to ``journal.bad`` for inspection, and the journal is rewritten
        without them; so is one whose last line lacks its newline, which the next append would
        otherwise run into."""
        try:
            data = self.journal.read_bytes()
        except FileNotFoundError:
            return
        bad: List[bytes] = []
        for line in data.splitlines(keepends=True):
            try:
                report = json.loads(line)
                report_id = str(report["report_id"])
            except (ValueError, KeyError, TypeError):
                if line.strip():
                    bad.append(line if line.endswith(b"\n") else line + b"\n")
                continue
            if report_id not in self._ids:
                self._keep(report, report_id, len(line), None)
        self._journal_bytes = len(data)
        if bad:
            log.error("%d unreadable journal line(s) moved to journal.bad", len(bad))
            with open(self.directory / "journal.bad", "ab") as handle:
                handle.writelines(bad)
        if bad or (data and not data.endswith(b"\n")):
            self._rewrite()

    def _keep(
        self, report: Dict[str, Any], report_id: str, line_bytes: int, legacy: Optional[Path]
    ) -> None:
        self._seq += 1
        self._pending[self._seq] = (report, line_bytes, legacy)
        self._ids[report_id] = self._seq
        self._live_bytes += line_bytes

    def add(self, report: Dict[str, Any]) -> str:
        """Keep ``report`` (a ``report_id`` and ``time`` are added if missing); returns the id.

        Adding a report whose id is already pending keeps the earlier copy, so retrying an add
        never duplicates it. Raises ``OSError`` when a durable report cannot be written (a full
        disk): then it was not kept, and the journal is as it was.
        """
        report = dict(report)
        if "report_id" not in report:
            report["report_id"] = new_report_id()
        if "time" not in report:
            report["time"] = time.time()
        report_id = str(report["report_id"])
        durable = report.get("type") in DURABLE_TYPES
        line = (json.dumps(report, sort_keys=True) + "\n").encode("utf-8") if durable else b""
        attempt = (str(report.get("job_id")), str(report.get("attempt")))
        with self._lock:
            if report_id in self._ids:
                return report_id
            if durable:
                self._append(line)
                if report.get("status") != "refused":  # a refused attempt never started
                    self._drop_progress(attempt)
            self._keep(report, report_id, len(line), None)
            if not durable and report.get("type") in IMPLIED_TYPES:
                self._progress.setdefault(attempt, []).append(self._seq)
        return report_id

    def _append(self, line: bytes) -> None:
        """One report line at the journal's end (under the lock), in one ``write``; a short or
        failed write is cut off again, so the next line starts on a line of its own."""
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(f"spool journal: wrote {written} of {len(line)} bytes (disk full?)")
            if self.fsync:
                os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._journal_bytes)
            raise
        self._journal_bytes += written

    def _rewrite(self) -> None:
        """Write the journal anew with only the pending journal reports (a temporary file
        renamed over it), so that it holds no more than what is still unanswered. The new
        file's descriptor is the one appended to afterwards: nothing is reopened."""
        lines = [
            (json.dumps(report, sort_keys=True) + "\n").encode("utf-8")
            for report, line_bytes, _ in self._pending.values()
            if line_bytes
        ]
        tmp = self.journal.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            data = b"".join(lines)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
            os.replace(tmp, self.journal)
        except BaseException:
            os.close(fd)
            raise
        if self.fsync:
            self._sync_directory()
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._journal_bytes = self._live_bytes = len(data)

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the journal (what is pending stays in it for the next start)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _drop_progress(self, attempt: "tuple[str, str]") -> None:
        """Forget the attempt's pending progress reports (under the lock). One already on its
        way to the server is answered as usual; if that send fails, the end still says it."""
        for seq in self._progress.pop(attempt, ()):
            entry = self._pending.pop(seq, None)
            if entry is not None:
                self._ids.pop(str(entry[0]["report_id"]), None)

    def pending(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """The oldest pending reports, at most ``limit``."""
        with self._lock:
            entries = itertools.islice(self._pending.values(), limit)
            return [report for report, _, _ in entries]

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def remove(self, report_ids: List[str]) -> int:
        """Forget the reports with these ids; returns how many were removed. The journal is
        emptied once nothing in it is pending, and rewritten when answered reports make up
        more than half of it (and it is over ``compact_bytes``)."""
        removed = 0
        with self._lock:
            for report_id in report_ids:
                seq = self._ids.pop(report_id, None)
                if seq is None:
                    continue
                report, line_bytes, legacy = self._pending.pop(seq)
                removed += 1
                self._live_bytes -= line_bytes
                if legacy is not None:
                    with contextlib.suppress(FileNotFoundError):
                        legacy.unlink()
                elif not line_bytes and report.get("type") in IMPLIED_TYPES:
                    key = (str(report.get("job_id")), str(report.get("attempt")))
                    seqs = self._progress.get(key)
                    if seqs is not None:
                        with contextlib.suppress(ValueError):
                            seqs.remove(seq)
                        if not seqs:
                            del self._progress[key]
            if self._fd >= 0 and self._journal_bytes:
                if self._live_bytes == 0:
                    os.ftruncate(self._fd, 0)  # appends (O_APPEND) start again at 0
                    self._journal_bytes = 0
                elif self._journal_bytes > max(self.compact_bytes, 2 * self._live_bytes):
                    self._rewrite()
        return removed

    def flush(
        self,
        send: Callable[[List[Dict[str, Any]]], List[Dict[str, Any]]],
        batch_size: int = 100,
        max_batches: Optional[int] = None,
    ) -> int:
        """Send pending reports in batches through ``send`` until none is left (or
        ``max_batches`` were sent).

        ``send`` takes a list of reports and returns the server's ``results`` list; a report is
        forgotten when its outcome is final. Exceptions from ``send`` propagate, leaving the
        rest for the next flush. Returns the number of reports settled.
        """
        settled = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            batches += 1
            batch = self.pending(batch_size)
            if not batch:
                return settled
            results = send(batch)
            done = [
                str(r.get("report_id"))
                for r in results
                if isinstance(r, dict) and r.get("outcome") in FINAL_OUTCOMES
            ]
            for r in results:
                if isinstance(r, dict) and r.get("outcome") == "stale":
                    log.warning("server refused report %s: stale attempt", r.get("report_id"))
            if not done:
                return settled
            settled += self.remove(done)
        return settled
