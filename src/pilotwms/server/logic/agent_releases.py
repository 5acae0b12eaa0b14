"""The agent zipapp the server serves to pilots, and its replacement at run time.

The server builds the agent of its own package at start (``agent.zipapp.build_zipapp``). An
administrator can install another one while the server runs (``PUT /api/v1/admin/agent``,
``pilotwms admin agent upload``): the zipapp is checked (a zip holding ``__main__.py`` and
``pilotwms/agent/__init__.py`` with an ``AGENT_VERSION = "..."`` line), stored in the blob store
by digest and recorded in ``agent_releases``. The newest row is the current agent: every server
replica serves it, after a restart too, and pilots of any other version are drained (grace
none, so no running job is killed) and replaced by the factory -- the rolling upgrade, see
``pilots.register`` and ``pilots.heartbeat``.

At start the built-in agent is recorded unless a release with the same bytes exists: a new
server release brings its agent, while an agent installed by hand survives restarts of the same
server. Replicas read the current release from the database at most every ``refresh_s``
seconds and keep a local copy of its zipapp (``cache_dir/agent-<digest>.pyz``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from pilotwms.core.errors import BadRequest, NotFound, ServiceUnavailable
from pilotwms.server.blobstore import BlobStore
from pilotwms.server.db import Database, agent_releases, utcnow

logger = logging.getLogger(__name__)

#: Who installed the agent of the server's own package.
BUILT_IN = "built-in"
#: The members every agent zipapp has (``agent.zipapp.build_zipapp`` writes them).
REQUIRED_MEMBERS = ("__main__.py", "pilotwms/agent/__init__.py")
_VERSION_LINE = re.compile(r"""^AGENT_VERSION\s*=\s*(["'])([^"'\n]*)\1\s*(?:#.*)?$""", re.M)
_VERSION_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
#: The largest zipapp accepted (the agent is about 100 KiB).
MAX_ZIPAPP_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class AgentRelease:
    """One agent zipapp: its version, the sha256 of its bytes, its size and a local copy."""

    version: str
    digest: str
    size: int
    path: Path


def zipapp_version(data: bytes) -> str:
    """The ``AGENT_VERSION`` of an agent zipapp; ``BadRequest`` saying what is wrong otherwise."""
    if len(data) > MAX_ZIPAPP_BYTES:
        raise BadRequest(
            f"the agent zipapp is {len(data)} bytes, over {MAX_ZIPAPP_BYTES}; "
            "build it with pilotwms.agent.zipapp.build_zipapp"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise BadRequest(
            f"the agent upload is not a zip file ({exc}); send the zipapp that "
            "pilotwms.agent.zipapp.build_zipapp writes (agent.pyz)"
        ) from exc
    with archive:
        names = set(archive.namelist())
        missing = [m for m in REQUIRED_MEMBERS if m not in names]
        if missing:
            raise BadRequest(
                f"the agent zipapp lacks {', '.join(missing)}; it must hold __main__.py and the "
                "pilotwms/agent package (build it with pilotwms.agent.zipapp.build_zipapp)"
            )
        try:
            init = archive.read("pilotwms/agent/__init__.py").decode("utf-8")
        except (zipfile.BadZipFile, UnicodeDecodeError, OSError) as exc:
            raise BadRequest(f"pilotwms/agent/__init__.py cannot be read: {exc}") from exc
    found = _VERSION_LINE.search(init)
    if found is None:
        raise BadRequest(
            'pilotwms/agent/__init__.py of the agent zipapp has no AGENT_VERSION = "..." line; '
            "the server reads the agent's version from it"
        )
    version = found.group(2)
    if _VERSION_TEXT.fullmatch(version) is None:
        raise BadRequest(
            f"AGENT_VERSION {version!r} of the agent zipapp is not a version: use 1 to 64 "
            "letters, digits and . _ + -, starting with a letter or digit"
        )
    return version


class AgentReleases:
    """The current agent release of one server process (thread-safe)."""

    def __init__(
        self, db: Database, store: BlobStore, cache_dir: Path, *, refresh_s: float = 5.0
    ) -> None:
        self.db = db
        self.store = store
        self.cache_dir = cache_dir
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._current: AgentRelease | None = None
        self._checked = 0.0

    def start(self, built_in: Path) -> AgentRelease:
        """Record the built-in zipapp at ``built_in`` unless the same bytes are recorded, then
        load the current release (the built-in one if the current one's bytes are not in this
        server's blob store)."""
        data = built_in.read_bytes()
        version = zipapp_version(data)
        digest = hashlib.sha256(data).hexdigest()
        # Always in this server's store: a replica whose store is not shared still serves it.
        self.store.put_bytes(data)
        with self._lock:
            # What is served should the current release's bytes be unreadable here.
            self._current = AgentRelease(version, digest, len(data), built_in)
        with self.db.write() as conn:
            known = conn.execute(
                select(agent_releases.c.id).where(agent_releases.c.digest == digest).limit(1)
            ).first()
            if known is None:
                conn.execute(
                    agent_releases.insert().values(
                        version=version,
                        digest=digest,
                        size=len(data),
                        installed_at=utcnow(),
                        installed_by=BUILT_IN,
                    )
                )
        return self._refresh(force=True)

    def install(self, data: bytes, installed_by: str) -> AgentRelease:
        """Check and store a zipapp and make it the current agent (every replica's, within
        ``refresh_s``). Raises ``BadRequest`` for anything that is not an agent zipapp."""
        version = zipapp_version(data)
        info = self.store.put_bytes(data)
        with self.db.write() as conn:
            conn.execute(
                agent_releases.insert().values(
                    version=version,
                    digest=info.digest,
                    size=info.size,
                    installed_at=utcnow(),
                    installed_by=installed_by[:256] or "unknown",
                )
            )
        return self._refresh(force=True)

    def current(self) -> AgentRelease:
        """The agent to serve now (read again from the database every ``refresh_s``)."""
        current = self._current
        if current is not None and time.monotonic() - self._checked < self.refresh_s:
            return current
        return self._refresh()

    @property
    def version(self) -> str:
        return self.current().version

    def history(self, limit: int = 100) -> list[dict[str, object]]:
        """The agents installed, newest first (the first one is current)."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(agent_releases).order_by(agent_releases.c.id.desc()).limit(limit)
            ).all()
        return [
            {
                "version": r.version,
                "digest": r.digest,
                "size": r.size,
                "installed_at": r.installed_at.isoformat(),
                "installed_by": r.installed_by,
            }
            for r in rows
        ]

    def _refresh(self, *, force: bool = False) -> AgentRelease:
        with self._lock:
            if (
                not force
                and self._current is not None
                and time.monotonic() - self._checked < self.refresh_s
            ):
                return self._current
            with self.db.read() as conn:
                row = conn.execute(
                    select(agent_releases).order_by(agent_releases.c.id.desc()).limit(1)
                ).first()
            self._checked = time.monotonic()
            if row is None:
                if self._current is None:
                    raise ServiceUnavailable("no agent zipapp is recorded yet; the server starts")
                return self._current
            if self._current is not None and self._current.digest == row.digest:
                return self._current
            try:
                path = self._materialise(row.digest)
            except (OSError, NotFound) as exc:
                if self._current is None:
                    raise ServiceUnavailable(
                        f"the agent zipapp {row.version} (sha256 {row.digest}) cannot be read "
                        f"from the blob store: {exc}"
                    ) from exc
                logger.warning(
                    "agent %s (sha256 %s) not readable from the blob store (%s); still serving %s",
                    row.version,
                    row.digest,
                    exc,
                    self._current.version,
                )
                return self._current
            self._current = AgentRelease(row.version, row.digest, int(row.size), path)
            return self._current

    def _materialise(self, digest: str) -> Path:
        """A local copy of the blob, written once (atomically) per digest."""
        path = self.cache_dir / f"agent-{digest}.pyz"
        if path.exists():
            return path
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / f".agent-{digest}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with self.store.open(digest) as src, tmp.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, path)
        except Exception:
            tmp.unlink(missing_ok=True)
            raise
        return path


__all__ = ["BUILT_IN", "AgentRelease", "AgentReleases", "zipapp_version"]
