"""Input and output sandboxes of a job's work directory.

Input: server blobs are fetched by sha256 digest through a :class:`BlobSource` into a per-pilot
:class:`BlobCache`, verified, and copied into the work directory, so a file shared by the many
nodes of a parametric job or DAG crosses the network once per pilot. ``http(s)://`` and
``file://`` entries are fetched directly, without the pilot's token. Names are checked again here
(no absolute paths, no ``..``), because a work directory must never be escaped.

Output: each pattern is globbed in the work directory; every file found is uploaded (to the
server through an :class:`OutputSink`, or PUT/copied to the destination URI the job named), and
patterns that found nothing, or files whose upload failed, are reported back as missing without
losing the others.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import logging
import os
import shutil
import ssl
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Dict, List, Optional, Protocol

from .jobspec import InputFile, JobSpec, safe_relative_name
from .transport import TransportError, fetch_url, put_url

log = logging.getLogger(__name__)


class StagingError(Exception):
    """The input sandbox could not be put in place; the job is a setup failure."""


class BlobSource(Protocol):
    """Where blobs come from: the server (``PilotClient``) or a local directory."""

    def fetch_blob(self, digest: str, dest: Path) -> str:
        """Write blob ``digest`` to ``dest``; return the sha256 hex of what was written."""


class OutputSink(Protocol):
    """Where output files go when the job named no destination: the server."""

    def upload_output(self, job_id: str, attempt: int, name: str, source: Path) -> None:
        """Store ``source`` as output ``name`` of the attempt."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LocalBlobDirectory:
    """Blobs stored as ``<directory>/<digest>``: the local backend's and the tests' source."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def add(self, content: bytes) -> str:
        """Store ``content``; returns its digest."""
        digest = hashlib.sha256(content).hexdigest()
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / digest).write_bytes(content)
        return digest

    def fetch_blob(self, digest: str, dest: Path) -> str:
        """Copy blob ``digest`` to ``dest``."""
        shutil.copyfile(self.directory / digest, dest)
        return sha256_file(dest)


class BlobCache:
    """A directory of verified blobs named by digest, shared by all jobs of one pilot.

    Concurrent jobs asking for the same digest wait for one download instead of starting
    several; a download whose content does not hash to the digest is thrown away.
    """

    def __init__(self, directory: Path, source: BlobSource):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.source = source
        self.downloads = 0
        self._guard = threading.Lock()
        self._locks: Dict[str, threading.Lock] = {}

    def _lock_for(self, digest: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(digest, threading.Lock())

    def get(self, digest: str) -> Path:
        """The cached file of ``digest``, downloading and verifying it on first use."""
        path = self.directory / digest
        with self._lock_for(digest):
            if path.is_file():
                return path
            fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=".part-")
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                got = self.source.fetch_blob(digest, tmp)
                self.downloads += 1
                if got != digest or sha256_file(tmp) != digest:
                    raise StagingError(f"blob {digest} arrived corrupted (sha256 {got})")
                os.replace(tmp, path)
            finally:
                if tmp.exists():
                    tmp.unlink()
        return path


def _target(work_dir: Path, name: str) -> Path:
    why = safe_relative_name(name)
    if why:
        raise StagingError(f"input sandbox name {name!r}: {why}")
    target = work_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def stage_in(
    inputs: List[InputFile],
    work_dir: Path,
    cache: BlobCache,
    context: Optional[ssl.SSLContext] = None,
) -> None:
    """Put every input sandbox file in ``work_dir``; raises :class:`StagingError` on the first
    that cannot be fetched, naming it."""
    for entry in inputs:
        target = _target(work_dir, entry.name)
        try:
            if entry.digest:
                # A copy, not a link: a job that edits its input must not corrupt the cache.
                shutil.copyfile(cache.get(entry.digest), target)
            elif entry.url:
                fetch_url(entry.url, target, context=context)
            else:
                raise StagingError(f"input {entry.name!r} has neither digest nor url")
        except StagingError:
            raise
        except (OSError, TransportError) as exc:
            where = entry.url or entry.digest
            raise StagingError(f"cannot stage input {entry.name!r} from {where}: {exc}") from None
        if entry.size is not None and target.stat().st_size != entry.size:
            raise StagingError(
                f"input {entry.name!r} has {target.stat().st_size} bytes, expected {entry.size}"
            )


def collect_outputs(
    patterns: List[str], work_dir: Path
) -> "tuple[List[tuple[str, str]], List[str]]":
    """Files matching ``patterns`` as ``(relative name, pattern)``, and the patterns that matched
    no file. Files reached through a link leading outside ``work_dir`` are not taken."""
    root = work_dir.resolve()
    found: List["tuple[str, str]"] = []
    seen = set()
    missing: List[str] = []
    for pattern in patterns:
        if safe_relative_name(pattern):
            missing.append(pattern)
            continue
        matches = sorted(glob.glob(glob.escape(str(root)) + os.sep + pattern))
        names = []
        for match in matches:
            path = Path(match)
            resolved = path.resolve()
            if not path.is_file() or (resolved != root and root not in resolved.parents):
                continue
            names.append(path.relative_to(root).as_posix())
        if not names:
            missing.append(pattern)
        for name in names:
            if name not in seen:
                seen.add(name)
                found.append((name, pattern))
    return found, missing


@dataclasses.dataclass
class StageOutResult:
    """What stage-out achieved: uploaded names, and missing patterns/names with reasons."""

    uploaded: List[str] = dataclasses.field(default_factory=list)
    missing: List[str] = dataclasses.field(default_factory=list)
    errors: Dict[str, str] = dataclasses.field(default_factory=dict)


def destination(spec: JobSpec, name: str, pattern: str) -> Optional[str]:
    """The URI a job asked for output ``name`` (matched by ``pattern``), or None: the server."""
    for key in (name, pattern):
        if key in spec.output_destinations:
            uri = spec.output_destinations[key]
            return uri.rstrip("/") + "/" + urllib.parse.quote(name) if uri.endswith("/") else uri
    if spec.output_base_uri:
        return spec.output_base_uri.rstrip("/") + "/" + urllib.parse.quote(name)
    return None


def stage_out(
    spec: JobSpec,
    work_dir: Path,
    sink: OutputSink,
    context: Optional[ssl.SSLContext] = None,
) -> StageOutResult:
    """Upload every output file; a failure is recorded and the next file still goes."""
    result = StageOutResult()
    found, missing = collect_outputs(spec.output_sandbox, work_dir)
    for pattern in missing:
        result.missing.append(pattern)
        result.errors[pattern] = "no such file"
    for name, pattern in found:
        source = work_dir / name
        uri = destination(spec, name, pattern)
        try:
            if uri is None:
                sink.upload_output(spec.job_id, spec.attempt, name, source)
            else:
                put_url(uri, source, context=context)
            result.uploaded.append(name)
        except (OSError, TransportError) as exc:
            log.warning("job %s: output %s not uploaded: %s", spec.key, name, exc)
            result.missing.append(name)
            result.errors[name] = f"upload failed: {exc}"
    return result
