"""Input sandbox files arriving with a submission, or referred to by digest.

Uploads go straight into the content-addressed store with the per-file limit enforced while
reading, and the per-submission total checked as files arrive; a file shared by many jobs (or
uploaded twice) is stored once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import BinaryIO

from pilotwms.core.errors import BadRequest, TooLarge
from pilotwms.server.blobstore import BlobInfo, BlobStore, validate_digest


def store_uploads(
    store: BlobStore,
    files: Iterable[tuple[str, BinaryIO]],
    *,
    max_file_bytes: int,
    max_total_bytes: int,
) -> dict[str, BlobInfo]:
    """Store each ``(entry, stream)``; return ``{entry: BlobInfo}``.

    Raises ``TooLarge`` naming the file over ``max_file_bytes``, or the submission when the
    files together exceed ``max_total_bytes``.
    """
    stored: dict[str, BlobInfo] = {}
    total = 0
    for entry, stream in files:
        if entry in stored:
            raise BadRequest(f"sandbox file {entry!r} was sent twice")
        info = store.put(stream, max_size=max_file_bytes, label=f"sandbox file {entry!r}")
        total += info.size
        if total > max_total_bytes:
            raise TooLarge("the input sandbox of this submission", total, max_total_bytes)
        stored[entry] = info
    return stored


def check_references(store: BlobStore, sandbox: Mapping[str, str]) -> dict[str, str]:
    """Validate ``{entry: digest}`` given by a client; every digest must be stored already."""
    unknown: list[str] = []
    out: dict[str, str] = {}
    for entry, digest in sandbox.items():
        if not isinstance(digest, str):
            raise BadRequest(f"sandbox entry {entry!r}: the digest must be a string")
        checked = validate_digest(digest.lower())
        if not store.exists(checked):
            unknown.append(f"{entry} ({checked})")
        out[entry] = checked
    if unknown:
        raise BadRequest(
            "sandbox files not uploaded: "
            + ", ".join(unknown)
            + "; upload them first with POST /api/v1/sandboxes"
        )
    return out
