"""Job reports kept until the server has acknowledged them.

``finished`` reports (the result of an attempt) are written to disk, one JSON file per report
named by sequence number and unique ``report_id``, atomically (temporary file, rename), so an
agent killed at any moment leaves either the whole report or none, and a restarted agent sends
what it finds. Progress reports (``started``, ``payload_started``, ``peek``) are kept in memory
only: they matter while the attempt runs, and an agent that died has lost its attempts anyway.

Files are not fsync'ed by default: a rename survives the agent's own death, and if the node
itself goes down, its jobs die with it and the server retries them after the lease; paying an
fsync per job would cap the throughput of short jobs for no gain. ``fsync=True`` is there for
set-ups where the spool outlives the node (a shared file system).

A ``finished`` report replaces the progress reports of its attempt that are still pending: the
server takes the end as implying them (the protocol document), so a short job that ended before its
``started`` and ``payload_started`` went out costs one report, not three.

Reports are sent in creation order and forgotten only once the server answered for them; the
server deduplicates by ``report_id``, so sending one twice after a crash between "sent" and
"forgotten" is harmless. This is how a pilot keeps its results while the server is down.
"""

from __future__ import annotations

import contextlib
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

    SUFFIX = ".json"

    def __init__(self, directory: Path, fsync: bool = False):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock = threading.Lock()
        # sequence number -> (report, file or None); dicts keep insertion order.
        self._pending: Dict[int, "tuple[Dict[str, Any], Optional[Path]]"] = {}
        self._ids: Dict[str, int] = {}
        # (job id, attempt) -> sequence numbers of its pending progress reports.
        self._progress: Dict["tuple[str, str]", List[int]] = {}
        self._seq = 0
        self._load()

    def _load(self) -> None:
        for stale_tmp in self.directory.glob("*.tmp"):
            stale_tmp.unlink()
        files = [
            p
            for p in self.directory.iterdir()
            if p.name.endswith(self.SUFFIX) and p.name.split("-", 1)[0].isdigit()
        ]
        for path in sorted(files, key=lambda p: int(p.name.split("-", 1)[0])):
            seq = int(path.name.split("-", 1)[0])
            self._seq = max(self._seq, seq)
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
                report_id = str(report["report_id"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("spooled report %s is unreadable (%s); moved aside", path.name, exc)
                path.rename(path.with_suffix(".bad"))
                continue
            self._pending[seq] = (report, path)
            self._ids[report_id] = seq

    def add(self, report: Dict[str, Any]) -> str:
        """Keep ``report`` (a ``report_id`` and ``time`` are added if missing); returns the id.

        Adding a report whose id is already pending keeps the earlier copy, so retrying an add
        never duplicates it.
        """
        report = dict(report)
        report.setdefault("report_id", new_report_id())
        report.setdefault("time", time.time())
        report_id = str(report["report_id"])
        durable = report.get("type") in DURABLE_TYPES
        data = json.dumps(report, sort_keys=True).encode("utf-8") if durable else b""
        attempt = (str(report.get("job_id")), str(report.get("attempt")))
        with self._lock:
            if report_id in self._ids:
                return report_id
            self._seq += 1
            path = None
            if durable:
                path = self.directory / f"{self._seq:012d}-{report_id}{self.SUFFIX}"
                self._write(path, data)
                if report.get("status") != "refused":  # a refused attempt never started
                    self._drop_progress(attempt)
            elif report.get("type") in IMPLIED_TYPES:
                self._progress.setdefault(attempt, []).append(self._seq)
            self._pending[self._seq] = (report, path)
            self._ids[report_id] = self._seq
        return report_id

    def _drop_progress(self, attempt: "tuple[str, str]") -> None:
        """Forget the attempt's pending progress reports (under the lock). One already on its
        way to the server is answered as usual; if that send fails, the end still says it."""
        for seq in self._progress.pop(attempt, ()):
            entry = self._pending.pop(seq, None)
            if entry is not None:
                self._ids.pop(str(entry[0]["report_id"]), None)

    def _write(self, final: Path, data: bytes) -> None:
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
            if self.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, final)
        if self.fsync:
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def pending(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """The oldest pending reports, at most ``limit``."""
        with self._lock:
            reports = [report for report, _ in self._pending.values()]
        return reports if limit is None else reports[:limit]

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def remove(self, report_ids: List[str]) -> int:
        """Forget the reports with these ids; returns how many were removed."""
        removed = 0
        with self._lock:
            for report_id in report_ids:
                seq = self._ids.pop(report_id, None)
                if seq is None:
                    continue
                report, path = self._pending.pop(seq)
                removed += 1
                if path is None and report.get("type") in IMPLIED_TYPES:
                    key = (str(report.get("job_id")), str(report.get("attempt")))
                    seqs = self._progress.get(key)
                    if seqs is not None:
                        with contextlib.suppress(ValueError):
                            seqs.remove(seq)
                        if not seqs:
                            del self._progress[key]
                if path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
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
