"""Turning what the user has (a JDL file, a JDL text, a :class:`JobDescription`) into what the
server accepts: one self-contained JDL text and the local files its InputSandbox names.

The server never reads the submitter's files, so everything local happens here:

- the JDL is parsed and validated locally first, so a mistake is reported against the user's
  own file name and lines without a round trip;
- ``file = "node.jdl"`` records of collections and DAGs are inlined (read relative to the JDL's
  directory) and the request is sent as one text;
- local InputSandbox entries (of every node: collection nodes and ``_PARAM_`` entries differ)
  are resolved relative to the JDL's directory and hashed, so that the client can ask the
  server which digests it lacks and upload only those.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pilotwms.classad import ClassAd, unparse
from pilotwms.client.errors import JDLRejected
from pilotwms.jdl import (
    JDLError,
    JDLExpansionError,
    JDLSyntaxError,
    expand,
    input_sandbox,
    load_jdl,
    parse_jdl,
    validate,
)
from pilotwms.jdl.expansion import collection_members, kind_of
from pilotwms.jdl.values import position, string_of, value_of

__all__ = ["JDLSource", "LocalFile", "Prepared", "prepare", "sha256_of"]

_CHUNK = 1024 * 1024
_PLACEHOLDER = "_PARAM_"


class JDLSource(Protocol):
    """Anything with a ``to_jdl()`` method (the :class:`JobDescription` builder)."""

    def to_jdl(self) -> str: ...


@dataclass(frozen=True)
class LocalFile:
    """A local InputSandbox entry: the entry as written (after expansion), its content."""

    entry: str
    path: Path | None
    data: bytes | None
    size: int
    digest: str

    def chunks(self) -> Iterator[bytes]:
        """The content in 1 MiB chunks (an upload body is streamed, never read whole)."""
        if self.data is not None:
            yield self.data
            return
        assert self.path is not None
        with self.path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk


@dataclass(frozen=True)
class Prepared:
    """One submission ready to send: the text, where it came from, its local files."""

    jdl: str
    filename: str
    source: str
    files: tuple[LocalFile, ...]

    @property
    def sandbox_size(self) -> int:
        return sum(f.size for f in self.files)


def sha256_of(path: Path) -> tuple[str, int]:
    """(hex digest, size) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _looks_like_path(value: str) -> bool:
    # Every JDL has an assignment; a file name has none (and no newline).
    return "=" not in value and "\n" not in value


def read_source(
    jdl: str | os.PathLike[str] | JDLSource, base_dir: str | os.PathLike[str] | None
) -> tuple[str, str, Path]:
    """(text, file name for messages, base directory of relative entries)."""
    if isinstance(jdl, os.PathLike) or (isinstance(jdl, str) and _looks_like_path(jdl)):
        path = Path(jdl)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            text = path.read_text(encoding="latin-1")
        except OSError as exc:
            raise JDLRejected(f"cannot read {path}: {exc.strerror}", filename=str(path)) from exc
        base = Path(base_dir) if base_dir is not None else path.parent
        return text, str(path), base.absolute()
    text = jdl if isinstance(jdl, str) else jdl.to_jdl()
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return text, "<jdl>", base.absolute()


def rejected(exc: JDLError, filename: str, source: str) -> JDLRejected:
    """A local JDL error as the same :class:`JDLRejected` the server's answer would give."""
    if isinstance(exc, JDLSyntaxError):
        return JDLRejected(
            exc.message,
            filename=filename,
            line=exc.line,
            column=exc.column,
            source_line=exc.source_line,
            source=source,
        )
    if isinstance(exc, JDLExpansionError):
        node = f" (node {exc.node})" if exc.node else ""
        return JDLRejected(
            exc.message + node,
            filename=filename,
            line=exc.line,
            column=exc.column,
            source=source,
        )
    return JDLRejected(exc.message, filename=filename, source=source)


def _inline_node_files(ad: ClassAd, base: Path) -> bool:
    """Replace every ``file = ...`` node record by the JDL it names; True if any was."""
    kind = kind_of(ad)
    changed = False
    if kind == "collection":
        members: list[ClassAd] = []
        for member in collection_members(ad):
            if "file" in member:
                loaded = _load(member, base)
                for key in member:
                    if str(key).lower() != "file":
                        expr = member.get(str(key))
                        if expr is not None:
                            loaded[str(key)] = expr
                members.append(loaded)
                changed = True
            else:
                members.append(member)
        if changed:
            ad["nodes"] = members
    elif kind == "dag":
        record = value_of(ad, "nodes")
        if isinstance(record, ClassAd):
            for name in list(record):
                entry = value_of(record, str(name))
                if isinstance(entry, ClassAd) and "file" in entry and "description" not in entry:
                    replacement = entry.copy()
                    del replacement["file"]
                    replacement["description"] = _load(entry, base)
                    record[str(name)] = replacement
                    changed = True
            if changed:
                ad["nodes"] = record
    return changed


def _load(holder: ClassAd, base: Path) -> ClassAd:
    ref = string_of(holder, "file")
    line, column = position(holder, "file")
    if ref is None:
        raise JDLExpansionError("file must be a string naming a JDL file", line=line, column=column)
    path = Path(ref) if Path(ref).is_absolute() else base / ref
    if not path.is_file():
        raise JDLExpansionError(
            f'node file "{ref}" not found (looked for {path})', line=line, column=column
        )
    try:
        return load_jdl(path)
    except JDLSyntaxError as exc:
        raise JDLExpansionError(
            f"{exc.filename}:{exc.line}:{exc.column}: {exc.message}", line=line, column=column
        ) from exc
    except OSError as exc:
        raise JDLExpansionError(
            f'cannot read node file "{ref}": {exc.strerror}', line=line, column=column
        ) from exc


def _local_entries(ad: ClassAd) -> dict[str, None]:
    """Every local InputSandbox entry of every node, as the server will look them up."""
    expansion = expand(ad)
    nodes = expansion.nodes
    if expansion.kind == "parametric":
        sandbox_text = " ".join(
            unparse(expr)
            for name in ("InputSandbox", "InputSandboxBaseURI")
            if (expr := ad.get(name)) is not None
        )
        # Nodes differ only where _PARAM_ appears: one node tells all unless the sandbox varies.
        if _PLACEHOLDER not in sandbox_text:
            nodes = nodes[:1]
    entries: dict[str, None] = {}
    for node in nodes:
        for ref in input_sandbox(node.ad):
            if ref.kind == "local":
                entries[ref.source] = None
    return entries


def _local_file(
    entry: str,
    base: Path,
    *,
    given: Mapping[str, str | os.PathLike[str] | bytes],
    filename: str,
    ad: ClassAd,
    source: str,
) -> LocalFile:
    supplied = given.get(entry)
    if isinstance(supplied, bytes):
        return LocalFile(entry, None, supplied, len(supplied), hashlib.sha256(supplied).hexdigest())
    path = Path(supplied) if supplied is not None else Path(entry)
    if not path.is_absolute():
        path = (Path.cwd() if supplied is not None else base) / path
    if not path.is_file():
        line, column = position(ad, "InputSandbox")
        raise JDLRejected(
            f'InputSandbox file "{entry}" not found (looked for {path})',
            filename=filename,
            line=line,
            column=column,
            source=source,
        )
    try:
        digest, size = sha256_of(path)
    except OSError as exc:
        raise JDLRejected(
            f'cannot read InputSandbox file "{entry}": {exc.strerror}', filename=filename
        ) from exc
    return LocalFile(entry, path, None, size, digest)


def prepare(
    jdl: str | os.PathLike[str] | JDLSource,
    files: Mapping[str, str | os.PathLike[str] | bytes] | None = None,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    with_sandbox: bool = True,
) -> Prepared:
    """Read, check and complete one submission; raises :class:`JDLRejected` when it is wrong.

    ``files`` maps InputSandbox entries to a local path or to the content itself, for entries
    that do not live where the JDL says (paths relative to the current directory); every other
    local entry is looked up relative to ``base_dir`` (default: the JDL file's directory, or the
    current directory for a JDL text).
    """
    text, filename, base = read_source(jdl, base_dir)
    try:
        ad = parse_jdl(text, filename)
        report = validate(ad)
        if report.errors:
            raise JDLRejected(
                report.errors[0].message,
                filename=filename,
                problems=[p.to_dict() for p in report.errors],
                source=text,
            )
        sent = unparse(ad) if _inline_node_files(ad, base) else text
        entries = _local_entries(ad) if with_sandbox else {}
    except JDLError as exc:
        raise rejected(exc, filename, text) from None
    given = files or {}
    local = tuple(
        _local_file(e, base, given=given, filename=filename, ad=ad, source=text) for e in entries
    )
    return Prepared(jdl=sent, filename=filename, source=text, files=local)
