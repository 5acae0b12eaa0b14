"""Reading and writing tar.gz archives that come from, or go to, people we do not trust.

Archives cross the trust boundary in both directions: users upload zipped input sandboxes, pilots
send back compound-job output, users download output sandboxes. A hostile archive must not write
outside its directory, plant a link that a later write follows, create a device, or fill the disk
from a few kilobytes of gzip. ``tarfile.extractall`` offers none of that by itself, and the
extraction filters of PEP 706 are missing from some of the Python versions the agent supports
(and allow more than we want: links inside the tree, any size), so the rules are written out
here: only regular files and directories, normalised relative names, byte limits counted on what
is actually decompressed and written, and all-or-nothing extraction.

Everything here depends only on the standard library and ``pilotwms.core.errors``, so that the
agent (standard library only, Python >= 3.9) can carry the same rules.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import stat
import tarfile
import time
import uuid
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from pilotwms.core.errors import UnsafeArchive

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["MemberSource", "extract_tar_gz", "safe_member_name", "write_tar_gz"]

#: What ``write_tar_gz`` stores under a name: a file path, or an open stream and its size.
MemberSource = str | os.PathLike[str] | tuple[BinaryIO, int]

_CHUNK = 1024 * 1024
# Longest name component most filesystems accept; longer ones would fail half-way through an
# extraction with an OSError instead of a clear refusal.
_MAX_COMPONENT_BYTES = 255
# Decompressed tar bytes allowed per member beyond its data: the 512-byte header, the padding of
# the data to 512 bytes, and pax or GNU long-name records (long paths, extended attributes).
_METADATA_PER_MEMBER = 8 * 1024
# The end-of-archive blocks and the padding of the last record.
_METADATA_FIXED = 64 * 1024
_ARCHIVE = "<archive>"
_KIND = {
    tarfile.SYMTYPE: "symbolic link",
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
}


def _normalise(name: str) -> str:
    """The canonical relative form of ``name`` (``""`` for the top directory itself)."""
    if not name:
        raise UnsafeArchive(name, "empty name")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise UnsafeArchive(name, "control character in name")
    # On Windows a backslash separates directories, so "..\\x" would escape there even though
    # it is one harmless file name here; names meant to travel to any host refuse it.
    if "\\" in name:
        raise UnsafeArchive(name, "backslash in name")
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":" and name[0].isalpha()):
        raise UnsafeArchive(name, "absolute path")
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise UnsafeArchive(name, "'..' component")
        if len(part.encode("utf-8", "surrogateescape")) > _MAX_COMPONENT_BYTES:
            raise UnsafeArchive(name, f"name component longer than {_MAX_COMPONENT_BYTES} bytes")
        parts.append(part)
    return "/".join(parts)


def safe_member_name(name: str) -> str:
    """Return ``name`` as a normalised relative path, or raise ``UnsafeArchive(name, reason)``.

    ``out/result.txt``, ``./out//result.txt`` and ``out/`` are fine (the last two become
    ``out/result.txt`` and ``out``); absolute paths (``/etc/passwd``, ``C:x``), ``..``
    components, backslashes, control characters and empty names are refused. The same rule
    guards archive members and the sandbox file names users write in their JDL.
    """
    normalised = _normalise(name)
    if not normalised:
        raise UnsafeArchive(name, "empty name")
    return normalised


def write_tar_gz(dest: BinaryIO, members: Iterable[tuple[str, MemberSource]]) -> list[str]:
    """Write a tar.gz of ``members`` to ``dest`` and return the normalised member names.

    Each member is a name and either a path to a regular file or a ``(stream, size)`` pair from
    which exactly ``size`` bytes are read. Names go through ``safe_member_name``; a name used
    twice, or used both as a file and as a directory of another member, is refused, so that
    what is written extracts unambiguously. Only regular files are written, with the mode
    reduced to 0644 or 0755 and no owner names. ``dest`` is written sequentially (it may be a
    pipe or a response body) and is left open; after an error it holds a truncated archive.
    """
    names: list[str] = []
    files: set[str] = set()
    parents: set[str] = set()
    with (
        gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=dest, mtime=0) as gz,
        tarfile.open(fileobj=cast(BinaryIO, gz), mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for raw_name, source in members:
            name = safe_member_name(raw_name)
            if name in files:
                raise UnsafeArchive(raw_name, "duplicate member name")
            if name in parents:
                raise UnsafeArchive(raw_name, "also the directory of another member")
            dirs = _parents(name)
            clash = next((d for d in dirs if d in files), None)
            if clash is not None:
                raise UnsafeArchive(raw_name, f"its directory {clash!r} is also a file member")
            files.add(name)
            parents.update(dirs)
            info = tarfile.TarInfo(name)
            if isinstance(source, tuple):
                stream, size = source
                info.size = size
                info.mode = 0o644
                info.mtime = int(time.time())
                tar.addfile(info, stream)
            else:
                # Checked before opening: opening a FIFO would block.
                if not stat.S_ISREG(os.stat(source).st_mode):
                    raise UnsafeArchive(raw_name, "source is not a regular file")
                with open(source, "rb") as f:
                    st = os.fstat(f.fileno())
                    info.size = st.st_size
                    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                    info.mtime = int(st.st_mtime)
                    tar.addfile(info, f)
            names.append(name)
    return names


def _parents(name: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class _BudgetReader(io.RawIOBase):
    """The decompressed tar stream, cut off after ``budget`` bytes.

    ``tarfile`` reads pax and GNU long-name records into memory whole, before any member is
    handed to us; counting here bounds that memory and the work done on any archive, whatever
    its headers claim.
    """

    def __init__(self, raw: BinaryIO, budget: int) -> None:
        super().__init__()
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self._left = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._left <= 0:
            if self._gz.read(1):
                raise _BudgetExceeded
            return 0
        data = self._gz.read(min(len(view), self._left))
        self._left -= len(data)
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._gz.close()  # leaves the caller's stream open
        super().close()


class _BudgetExceeded(Exception):
    """The decompressed stream ran past its budget (raised through ``tarfile``)."""


# What reading a broken or truncated tar.gz raises, as opposed to errors of our own writes.
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def extract_tar_gz(
    src: BinaryIO | Path,
    dest_dir: Path,
    *,
    max_members: int,
    max_total_size: int,
    max_member_size: int | None = None,
) -> list[str]:
    """Extract a tar.gz into ``dest_dir`` all or nothing; return the member names extracted.

    Raises ``UnsafeArchive(member, reason)`` for an absolute name, a ``..`` component, a
    symbolic or hard link, a device, a FIFO or any other member that is not a regular file or a
    directory, a name used twice, more than ``max_members`` members, a member over
    ``max_member_size`` bytes, more than ``max_total_size`` bytes in all (counted on the bytes
    written, not on what headers claim), a corrupt or truncated archive, and a member that would
    overwrite a file already in ``dest_dir`` or land outside it through a link there.

    The archive is extracted into a fresh directory next to ``dest_dir`` and moved into place
    only once complete, so a refused archive leaves nothing behind. ``dest_dir`` may exist, in
    which case the archive's tree is merged into it. Modes are reduced to 0644/0755 for files
    and left to the umask for directories, ownership is never restored, and file modification
    times are kept.
    """
    dest_dir = Path(dest_dir)
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    # Not mkdtemp: its 0700 mode would become dest_dir's once renamed into place.
    tmp = dest_dir.parent / f".{dest_dir.name}.extract-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        if isinstance(src, Path):
            with src.open("rb") as f:
                names = _extract_into(f, tmp, max_members, max_total_size, max_member_size)
        else:
            names = _extract_into(src, tmp, max_members, max_total_size, max_member_size)
        if not os.path.lexists(dest_dir):
            os.rename(tmp, dest_dir)
        else:
            _check_merge(tmp, dest_dir)
            _merge(tmp, dest_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return names


def _extract_into(
    raw: BinaryIO,
    root: Path,
    max_members: int,
    max_total_size: int,
    max_member_size: int | None,
) -> list[str]:
    budget = max_total_size + (max_members + 1) * _METADATA_PER_MEMBER + _METADATA_FIXED
    names: list[str] = []
    kinds: dict[str, str] = {}  # name -> "file" | "dir", for duplicates and file/dir clashes
    total = 0
    count = 0
    current = _ARCHIVE
    try:
        # Unbuffered on purpose: tarfile reads one record at a time, and a read-ahead buffer
        # would report a corrupt stream before the member it belongs to.
        with (
            _BudgetReader(raw, budget) as reader,
            tarfile.open(fileobj=cast(BinaryIO, reader), mode="r|") as tar,
        ):
            while True:
                current = _ARCHIVE  # until the next header is read, errors concern no member
                info = tar.next()
                if info is None:
                    break
                current = info.name
                count += 1
                if count > max_members:
                    raise UnsafeArchive(info.name, f"more than {max_members} members")
                if not (info.isreg() or info.isdir()):
                    kind = _KIND.get(info.type, f"member type {info.type!r}")
                    raise UnsafeArchive(info.name, f"{kind}: only regular files and directories")
                name = _normalise(info.name)
                if not name:
                    if info.isdir():
                        continue  # "./": the destination itself
                    raise UnsafeArchive(info.name, "empty name")
                _claim(kinds, info.name, name, "dir" if info.isdir() else "file")
                target = root / name
                _check_inside(root, target, info.name)
                if info.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    names.append(name)
                    continue
                if info.size < 0:
                    raise UnsafeArchive(info.name, "negative size in header")
                if max_member_size is not None and info.size > max_member_size:
                    raise UnsafeArchive(
                        info.name,
                        f"member is {info.size} bytes, over the limit of {max_member_size} bytes",
                    )
                if total + info.size > max_total_size:
                    raise UnsafeArchive(info.name, _too_much(max_total_size))
                data = tar.extractfile(info)
                if data is None:  # cannot happen for a regular file; kept for the type checker
                    raise UnsafeArchive(info.name, "member has no data")
                target.parent.mkdir(parents=True, exist_ok=True)
                written = _write_file(data, target, info, max_total_size - total, max_member_size)
                total += written
                names.append(name)
    except _BudgetExceeded:
        raise UnsafeArchive(current, _too_much(max_total_size)) from None
    except _CORRUPT as e:
        raise UnsafeArchive(current, f"not a valid tar.gz archive ({e})") from None
    return names


def _too_much(limit: int) -> str:
    return f"archive expands to more than {limit} bytes (decompression bomb?)"


def _claim(kinds: dict[str, str], raw: str, name: str, kind: str) -> None:
    """Record ``name`` as a file or directory, refusing duplicates and file/dir clashes."""
    for parent in _parents(name):
        if kinds.get(parent) == "file":
            raise UnsafeArchive(raw, f"its directory {parent!r} is a file in this archive")
        kinds.setdefault(parent, "dir")
    previous = kinds.get(name)
    if previous is not None and (kind == "file" or previous == "file"):
        raise UnsafeArchive(raw, "duplicate member name")
    kinds[name] = kind


def _check_inside(root: Path, target: Path, raw: str) -> None:
    """Belt and braces: with links refused nothing should resolve outside, but check anyway."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(target)
    if os.path.commonpath([real_root, real]) != real_root:
        raise UnsafeArchive(raw, "lands outside the destination directory")


def _write_file(
    data: IO[bytes], target: Path, info: tarfile.TarInfo, budget: int, max_member_size: int | None
) -> int:
    """Copy one member, counting the bytes actually written against the limits."""
    limit = budget if max_member_size is None else min(budget, max_member_size)
    mode = 0o755 if info.mode & 0o111 else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    written = 0
    try:
        fd = os.open(target, flags, mode)
    except FileExistsError:  # the same name in another case on a case-insensitive filesystem
        raise UnsafeArchive(info.name, "duplicate member name") from None
    with open(fd, "wb") as out:
        while True:
            # Never read more than one byte past the limit, whatever the header said.
            chunk = data.read(min(_CHUNK, limit - written + 1))
            if not chunk:
                break
            written += len(chunk)
            if written > limit:
                if max_member_size is not None and written > max_member_size:
                    raise UnsafeArchive(
                        info.name, f"member is over the limit of {max_member_size} bytes"
                    )
                raise UnsafeArchive(info.name, "archive expands beyond its size limit")
            out.write(chunk)
    with contextlib.suppress(OverflowError, OSError, ValueError):
        os.utime(target, (info.mtime, info.mtime))
    return written


def _check_merge(tmp: Path, dest: Path) -> None:
    """Refuse, before anything moves, a tree that would overwrite or escape ``dest``."""
    real_dest = os.path.realpath(dest)
    if not os.path.isdir(real_dest):
        raise UnsafeArchive(_ARCHIVE, f"destination {str(dest)!r} is not a directory")
    for dirpath, dirnames, filenames in os.walk(tmp):
        rel_dir = os.path.relpath(dirpath, tmp)
        for entry in dirnames + filenames:
            rel = os.path.normpath(os.path.join(rel_dir, entry))
            target = os.path.join(dest, rel)
            real = os.path.realpath(target)
            if os.path.commonpath([real_dest, real]) != real_dest:
                raise UnsafeArchive(rel, "lands outside the destination directory")
            if not os.path.lexists(target):
                continue
            existing_dir = os.path.isdir(target)
            if entry in filenames:
                what = "directory" if existing_dir else "file"
                raise UnsafeArchive(rel, f"would overwrite an existing {what}")
            if not existing_dir:
                raise UnsafeArchive(rel, "would replace an existing file with a directory")


def _merge(src: Path, dest: Path) -> None:
    """Move ``src``'s tree into the existing directory ``dest`` (checked by ``_check_merge``)."""
    for entry in os.listdir(src):
        s = os.path.join(src, entry)
        d = os.path.join(dest, entry)
        if os.path.lexists(d):
            _merge(Path(s), Path(d))
        else:
            os.rename(s, d)
