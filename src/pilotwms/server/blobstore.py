"""The content-addressed store of sandbox files.

Every sandbox file (an input file uploaded with a submission, an output file sent back by a
pilot) is stored once under the hex sha256 digest of its content, so a file shared by the
10,000 nodes of a parametric job costs one copy, and a digest in the database is all a job needs
to name its files. The server only ever talks to the ``BlobStore`` protocol, so an object store
can replace the directory tree later; ``FileBlobStore`` is the embedded default.

Guarantees a caller relies on:

- A digest is 64 lowercase hex characters and nothing else; anything else is a ``BadRequest``
  before it comes near a path, so a digest can never be used to walk the filesystem.
- A blob is visible only once complete: uploads are written to a temporary file on the same
  filesystem, fsynced and renamed into place, so readers never see a partial file and a crash
  leaves at most a stale temporary file that ``discard_stale_uploads`` removes.
- Storing content that is already there is harmless and refreshes its modification time, which
  is what keeps a re-uploaded blob alive through garbage collection (see ``collect_garbage``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from pilotwms.core.errors import BadRequest, BlobNotFound, TooLarge

__all__ = [
    "CHUNK_SIZE",
    "BlobInfo",
    "BlobStat",
    "BlobStore",
    "FileBlobStore",
    "collect_garbage",
    "validate_digest",
]

logger = logging.getLogger(__name__)

#: Bytes read from an upload at a time: large enough for throughput, small enough that the
#: size limit is enforced within one chunk of being exceeded.
CHUNK_SIZE = 1024 * 1024

_DIGEST = re.compile(r"[0-9a-f]{64}")
# Blobs are immutable once stored; read-only files make an accidental in-place edit fail loudly.
_BLOB_MODE = 0o444
_INCOMING = "incoming"


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a sha256 hex digest (64 lowercase hex characters).

    Raises ``BadRequest`` otherwise, so user input such as ``../../etc/passwd`` never becomes a
    path.
    """
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
        raise BadRequest(
            f"{digest!r} is not a sha256 digest; expected 64 lowercase hexadecimal characters"
        )
    return digest


@dataclass(frozen=True)
class BlobInfo:
    """What a stored blob is: its sha256 hex digest and its size in bytes."""

    digest: str
    size: int


@dataclass(frozen=True)
class BlobStat:
    """A stored blob with its last modification time (seconds since the epoch), for GC."""

    digest: str
    size: int
    mtime: float


class BlobStore(Protocol):
    """The interface the server uses for sandbox files; every digest argument is validated."""

    def put(
        self,
        stream: BinaryIO,
        *,
        max_size: int | None = None,
        expected_digest: str | None = None,
        label: str = "sandbox file",
    ) -> BlobInfo:
        """Store everything read from ``stream`` and return its digest and size.

        Raises ``TooLarge`` (naming ``label``) as soon as more than ``max_size`` bytes have been
        read, and ``BadRequest`` if the content does not hash to ``expected_digest``; in both
        cases nothing is stored.
        """
        ...

    def put_bytes(
        self,
        data: bytes,
        *,
        max_size: int | None = None,
        expected_digest: str | None = None,
        label: str = "sandbox file",
    ) -> BlobInfo:
        """``put`` for content already in memory."""
        ...

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for reading; raises ``BlobNotFound``."""
        ...

    def exists(self, digest: str) -> bool:
        """Whether the blob is stored."""
        ...

    def size(self, digest: str) -> int:
        """The blob's size in bytes; raises ``BlobNotFound``."""
        ...

    def stat(self, digest: str) -> BlobStat:
        """Size and modification time; raises ``BlobNotFound``."""
        ...

    def local_path(self, digest: str) -> Path | None:
        """A local file holding the blob, for zero-copy responses; ``None`` if the store is
        not local. Raises ``BlobNotFound`` for a missing blob of a local store."""
        ...

    def delete(self, digest: str, *, modified_before: float | None = None) -> bool:
        """Remove a blob; return whether it was removed (deleting a missing blob is no error).

        With ``modified_before``, remove it only if it was last stored before that time, checked
        so that a concurrent ``put`` of the same content is never lost.
        """
        ...

    def digests(self) -> Iterator[str]:
        """Every stored digest, in no particular order."""
        ...

    def discard_stale_uploads(self, *, modified_before: float) -> int:
        """Remove leftovers of uploads that stopped before that time (crashed or abandoned
        writers) and return how many were removed."""
        ...


class FileBlobStore(BlobStore):
    """Blobs as files under ``root/ab/cd/<digest>``.

    The two-level fan-out keeps every directory small (65,536 leaf directories hold millions of
    blobs). Temporary files live in ``root/incoming`` (a name no digest prefix can take), on the
    same filesystem as the blobs so that the final rename is atomic.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._incoming = self.root / _INCOMING
        self._incoming.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    def _path(self, digest: str) -> Path:
        validate_digest(digest)
        return self.root / digest[:2] / digest[2:4] / digest

    def put(
        self,
        stream: BinaryIO,
        *,
        max_size: int | None = None,
        expected_digest: str | None = None,
        label: str = "sandbox file",
    ) -> BlobInfo:
        if expected_digest is not None:
            validate_digest(expected_digest)
        hasher = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self._incoming, prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as tmp:
                while True:
                    want = CHUNK_SIZE if max_size is None else min(CHUNK_SIZE, max_size - size + 1)
                    chunk = stream.read(want)
                    if not chunk:
                        break
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        # Only a lower bound of the real size is known: reading on to learn it
                        # would defeat the limit.
                        raise TooLarge(label, size, max_size)
                    hasher.update(chunk)
                    tmp.write(chunk)
                tmp.flush()
                os.fchmod(tmp.fileno(), _BLOB_MODE)
                os.fsync(tmp.fileno())
            digest = hasher.hexdigest()
            if expected_digest is not None and digest != expected_digest:
                raise BadRequest(
                    f"{label} has sha256 digest {digest}, not the announced {expected_digest}; "
                    "the upload was corrupted or the digest was computed over other content"
                )
            final = self._path(digest)
            _make_dirs(final.parent)
            # Replacing an existing blob swaps identical content, so concurrent puts of the same
            # file are safe; the fresh modification time is what tells GC the blob is wanted.
            os.replace(tmp_name, final)
            _fsync_dir(final.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        return BlobInfo(digest, size)

    def put_bytes(
        self,
        data: bytes,
        *,
        max_size: int | None = None,
        expected_digest: str | None = None,
        label: str = "sandbox file",
    ) -> BlobInfo:
        if max_size is not None and len(data) > max_size:
            raise TooLarge(label, len(data), max_size)
        return self.put(
            io.BytesIO(data), max_size=max_size, expected_digest=expected_digest, label=label
        )

    def open(self, digest: str) -> BinaryIO:
        try:
            return self._path(digest).open("rb")
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(digest) from None

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def stat(self, digest: str) -> BlobStat:
        try:
            st = self._path(digest).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(digest) from None
        return BlobStat(digest, st.st_size, st.st_mtime)

    def size(self, digest: str) -> int:
        return self.stat(digest).size

    def local_path(self, digest: str) -> Path:
        path = self._path(digest)
        if not path.is_file():
            raise BlobNotFound(digest)
        return path

    def delete(self, digest: str, *, modified_before: float | None = None) -> bool:
        path = self._path(digest)
        if modified_before is None:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            return True
        try:
            if path.stat().st_mtime >= modified_before:
                return False
            # Between that check and an unlink, a put of the same content could replace the
            # file and then see it vanish. Moving it aside first makes the check race-free: a put
            # that landed before the move shows as a fresh mtime on the moved file (put back),
            # and one that lands after the move creates a new file that stays.
            aside = self._incoming / f"gc-{digest}-{uuid.uuid4().hex}"
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        try:
            if aside.stat().st_mtime >= modified_before:
                os.replace(aside, path)
                return False
            aside.unlink()
        except FileNotFoundError:  # a concurrent collection discarded it as a stale leftover
            return False
        return True

    def digests(self) -> Iterator[str]:
        for first in _scan_dirs(self.root):
            for second in _scan_dirs(Path(first.path)):
                prefix = first.name + second.name
                with os.scandir(second.path) as entries:
                    for entry in entries:
                        name = entry.name
                        if _DIGEST.fullmatch(name) and name.startswith(prefix):
                            yield name

    def discard_stale_uploads(self, *, modified_before: float) -> int:
        removed = 0
        with os.scandir(self._incoming) as entries:
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < modified_before:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed


def _scan_dirs(parent: Path) -> list[os.DirEntry[str]]:
    """The two-hex-character subdirectories of a fan-out level."""
    with os.scandir(parent) as entries:
        return [
            e
            for e in entries
            if len(e.name) == 2
            and all(c in "0123456789abcdef" for c in e.name)
            and e.is_dir(follow_symlinks=False)
        ]


def _make_dirs(leaf: Path) -> None:
    """Create the fan-out directories of a blob, syncing each new entry so it survives a crash."""
    missing: list[Path] = []
    p = leaf
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent put created it
            d.mkdir()
            _fsync_dir(d.parent)


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (POSIX needs the directory synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def collect_garbage(
    store: BlobStore,
    referenced: Collection[str],
    *,
    grace_seconds: float,
    now: float | None = None,
) -> list[str]:
    """Delete the blobs nobody references any more and return their digests.

    ``referenced`` is every digest still named by a job that is not purged. A blob outside it is
    kept while younger than ``grace_seconds``: it may have been uploaded for a submission that is
    not committed yet, so a grace period longer than the slowest submission is what makes the
    upload-then-submit protocol safe. Uploads abandoned for longer than the grace period are
    discarded too.
    """
    if grace_seconds < 0:
        raise ValueError(f"grace_seconds must be >= 0, not {grace_seconds}")
    cutoff = (time.time() if now is None else now) - grace_seconds
    # Digests from the database should already be lowercase; normalising costs nothing and means
    # a differently cased reference can never get a blob deleted.
    keep = {d.lower() for d in referenced}
    deleted: list[str] = []
    for digest in list(store.digests()):
        if digest in keep:
            continue
        try:
            if store.stat(digest).mtime >= cutoff:
                continue
        except BlobNotFound:
            continue
        if store.delete(digest, modified_before=cutoff):
            deleted.append(digest)
    stale = store.discard_stale_uploads(modified_before=cutoff)
    if deleted or stale:
        logger.info(
            "sandbox GC: deleted %d unreferenced blobs and %d stale uploads", len(deleted), stale
        )
    return deleted
