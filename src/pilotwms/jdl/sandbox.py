"""The input sandbox of a job, as the server must fetch or receive it.

Each InputSandbox entry is one of:

- ``local``: a file on the submitter's side, a path relative to the JDL's directory (or
  absolute); the client uploads it with the job.
- ``uri``: an ``http://``, ``https://`` or ``file://`` URI the server (or the pilot) fetches.
- ``unsupported``: any other scheme (``gsiftp://``, ``srm://``, ``lfn:``...), which pilotwms
  cannot fetch; the server rejects such a job with a clear error rather than failing later.

``InputSandboxBaseURI`` is prefixed to entries that are neither URIs nor absolute paths, as in
gLite; ``base_uri`` plays the same role when the JDL has none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from pilotwms.classad import ClassAd
from pilotwms.jdl.values import leaf, string_list, string_of

SandboxKind = Literal["local", "uri", "unsupported"]
FETCHABLE_SCHEMES = frozenset({"http", "https", "file"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class SandboxRef:
    """One InputSandbox entry: the file name on the worker, where it comes from, its kind."""

    name: str
    source: str
    kind: SandboxKind


def scheme_of(entry: str) -> str | None:
    """The URI scheme of ``entry`` (lower case), ``None`` for a plain path.

    A one-letter "scheme" is a Windows drive (``C:``), not a URI.
    """
    m = _SCHEME.match(entry)
    if m is None or len(m.group(1)) == 1:
        return None
    return m.group(1).lower()


def _name_of(source: str, scheme: str | None) -> str:
    if scheme is None:
        return leaf(source)
    path = urlsplit(source).path if "://" in source else source.split(":", 1)[1]
    return unquote(leaf(path))


def classify(entry: str, base_uri: str | None = None) -> SandboxRef:
    """The :class:`SandboxRef` of one InputSandbox entry."""
    scheme = scheme_of(entry)
    source = entry
    if scheme is None and base_uri and not entry.startswith("/"):
        source = base_uri.rstrip("/") + "/" + entry
        scheme = scheme_of(source)
    name = _name_of(source, scheme)
    if scheme is None:
        return SandboxRef(name, source, "local")
    if scheme in FETCHABLE_SCHEMES:
        return SandboxRef(name, source, "uri")
    return SandboxRef(name, source, "unsupported")


def input_sandbox(ad: ClassAd, base_uri: str | None = None) -> list[SandboxRef]:
    """The InputSandbox entries of ``ad`` (a job or an expanded node), in order.

    Entries that are not strings (for instance unresolved ``root.InputSandbox`` references of a
    node that was not expanded) are skipped; empty entries too.
    """
    base = string_of(ad, "InputSandboxBaseURI") or base_uri
    return [classify(entry, base) for entry in string_list(ad, "InputSandbox") if entry.strip()]


__all__ = ["SandboxKind", "SandboxRef", "classify", "input_sandbox"]
