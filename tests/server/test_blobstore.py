"""The content-addressed sandbox store and its garbage collection."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pilotwms.core.errors import BadRequest, BlobNotFound, TooLarge
from pilotwms.server import blobstore
from pilotwms.server.blobstore import BlobInfo, BlobStore, FileBlobStore, collect_garbage

MB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


def stored_files(store: FileBlobStore) -> list[Path]:
    """Every file under the store's root, temporaries included."""
    return sorted(p for p in store.root.rglob("*") if p.is_file())


def set_age(store: FileBlobStore, digest: str, mtime: float) -> None:
    os.utime(store.local_path(digest), (mtime, mtime))


class EndlessStream(io.RawIOBase):
    """An upload that never ends; counts the bytes handed out."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        buffer[:] = b"x" * len(buffer)
        self.served += len(buffer)
        return len(buffer)


def test_put_then_open_round_trips_and_digest_is_sha256(store: FileBlobStore) -> None:
    data = os.urandom(3 * MB + 17)  # several chunks and a partial one
    info = store.put(io.BytesIO(data))
    assert info == BlobInfo(hashlib.sha256(data).hexdigest(), len(data))
    with store.open(info.digest) as f:
        assert f.read() == data
    assert store.exists(info.digest)
    assert store.size(info.digest) == len(data)


def test_layout_is_two_level_fan_out(store: FileBlobStore) -> None:
    digest = store.put_bytes(b"hello").digest
    assert store.local_path(digest) == store.root / digest[:2] / digest[2:4] / digest
    assert list(store.digests()) == [digest]


def test_empty_content_is_a_blob_too(store: FileBlobStore) -> None:
    info = store.put_bytes(b"")
    assert info == BlobInfo(hashlib.sha256(b"").hexdigest(), 0)
    assert store.open(info.digest).read() == b""


def test_same_content_twice_is_stored_once(store: FileBlobStore) -> None:
    first = store.put_bytes(b"shared input")
    second = store.put(io.BytesIO(b"shared input"))
    assert first == second
    assert stored_files(store) == [store.local_path(first.digest)]


def test_file_store_satisfies_the_protocol(store: FileBlobStore) -> None:
    as_protocol: BlobStore = store
    assert as_protocol.put_bytes(b"x").size == 1


def test_too_large_raises_and_keeps_nothing(store: FileBlobStore) -> None:
    with pytest.raises(TooLarge) as caught:
        store.put(io.BytesIO(b"y" * (3 * MB)), max_size=MB, label="input.tar.gz")
    assert caught.value.limit == MB
    assert caught.value.size > MB
    assert caught.value.what == "input.tar.gz"
    assert stored_files(store) == []
    with pytest.raises(TooLarge):
        store.put_bytes(b"y" * 11, max_size=10)
    assert stored_files(store) == []


def test_too_large_stops_reading_at_the_limit(store: FileBlobStore) -> None:
    stream = EndlessStream()
    with pytest.raises(TooLarge):
        store.put(stream, max_size=5 * MB)
    assert stream.served == 5 * MB + 1
    assert stored_files(store) == []


def test_exactly_max_size_is_accepted(store: FileBlobStore) -> None:
    assert store.put_bytes(b"z" * 10, max_size=10).size == 10
    assert store.put(io.BytesIO(b"z" * MB), max_size=MB).size == MB


def test_expected_digest_is_checked(store: FileBlobStore) -> None:
    data = b"payload"
    good = hashlib.sha256(data).hexdigest()
    assert store.put_bytes(data, expected_digest=good).digest == good
    store.delete(good)
    with pytest.raises(BadRequest, match="not the announced"):
        store.put_bytes(data, expected_digest=hashlib.sha256(b"other").hexdigest())
    assert stored_files(store) == []


VALID = hashlib.sha256(b"valid").hexdigest()


@pytest.mark.parametrize(
    "digest",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "../" + VALID[3:],
        VALID.upper(),
        VALID[:63],
        VALID + "0",
        VALID + "\n",
        "g" * 64,
        "",
        "ab/cd/" + VALID[6:],
    ],
)
def test_invalid_digests_are_bad_requests_never_paths(store: FileBlobStore, digest: str) -> None:
    for call in (
        store.open,
        store.exists,
        store.size,
        store.stat,
        store.local_path,
        store.delete,
        lambda d: store.put_bytes(b"valid", expected_digest=d),
    ):
        with pytest.raises(BadRequest) as caught:
            call(digest)
        assert not isinstance(caught.value, BlobNotFound)
    assert stored_files(store) == []


def test_missing_blob_is_not_found(store: FileBlobStore) -> None:
    for call in (store.open, store.size, store.stat, store.local_path):
        with pytest.raises(BlobNotFound) as caught:
            call(VALID)
        assert caught.value.digest == VALID
    assert not store.exists(VALID)
    assert store.delete(VALID) is False


def test_concurrent_puts_of_the_same_content_are_safe(store: FileBlobStore) -> None:
    data = os.urandom(2 * MB)
    barrier = threading.Barrier(16)
    results: list[BlobInfo] = []
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            barrier.wait()
            results.append(store.put(io.BytesIO(data)))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=upload) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(results) == {BlobInfo(hashlib.sha256(data).hexdigest(), len(data))}
    assert stored_files(store) == [store.local_path(results[0].digest)]
    assert store.open(results[0].digest).read() == data


def test_digests_lists_blobs_and_ignores_anything_else(store: FileBlobStore) -> None:
    digests = {store.put_bytes(bytes([i])).digest for i in range(20)}
    (store.root / "README").write_text("not a blob")
    (store.root / "zz").mkdir()
    (store.root / "incoming" / "upload-crashed").write_bytes(b"partial")
    some = next(iter(digests))
    (store.root / some[:2] / some[2:4] / "junk").write_text("x")
    assert set(store.digests()) == digests


# --- garbage collection -------------------------------------------------------------------------


NOW = 2_000_000_000.0
HOUR = 3600.0


def test_gc_keeps_referenced_and_young_blobs_and_deletes_the_rest(store: FileBlobStore) -> None:
    referenced_old = store.put_bytes(b"referenced by a live job").digest
    young = store.put_bytes(b"uploaded for a submission in flight").digest
    unreferenced_old = store.put_bytes(b"its jobs were purged").digest
    also_old = store.put_bytes(b"another orphan").digest
    set_age(store, referenced_old, NOW - 10 * HOUR)
    set_age(store, young, NOW - 60)
    set_age(store, unreferenced_old, NOW - 10 * HOUR)
    set_age(store, also_old, NOW - 2 * HOUR)

    deleted = collect_garbage(store, {referenced_old}, grace_seconds=HOUR, now=NOW)

    assert sorted(deleted) == sorted([unreferenced_old, also_old])
    assert set(store.digests()) == {referenced_old, young}
    assert collect_garbage(store, {referenced_old}, grace_seconds=HOUR, now=NOW) == []


def test_gc_with_real_clock_spares_a_blob_uploaded_just_now(store: FileBlobStore) -> None:
    digest = store.put_bytes(b"fresh").digest
    assert collect_garbage(store, [], grace_seconds=HOUR) == []
    assert store.exists(digest)


def test_reuploading_an_old_blob_saves_it_from_gc(store: FileBlobStore) -> None:
    long_ago = time.time() - 10 * HOUR
    wanted = store.put_bytes(b"old but wanted again").digest
    orphan = store.put_bytes(b"old and forgotten").digest
    set_age(store, wanted, long_ago)
    set_age(store, orphan, long_ago)
    store.put_bytes(b"old but wanted again")  # a new submission uploads it again
    assert collect_garbage(store, [], grace_seconds=HOUR) == [orphan]
    assert store.exists(wanted)


def test_gc_loses_no_blob_to_a_put_racing_with_it(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put of the same content landing between GC's age check and its delete wins."""
    digest = store.put_bytes(b"contested").digest
    set_age(store, digest, 1000.0)
    real_rename = os.rename

    def put_first_then_rename(src: str | Path, dst: str | Path) -> None:
        if Path(dst).parent.name == "incoming":  # GC moving the blob aside
            store.put_bytes(b"contested")
        real_rename(src, dst)

    monkeypatch.setattr(blobstore.os, "rename", put_first_then_rename)
    assert collect_garbage(store, [], grace_seconds=HOUR) == []
    assert store.open(digest).read() == b"contested"
    assert [p.name for p in (store.root / "incoming").iterdir()] == []


def test_gc_discards_abandoned_uploads(store: FileBlobStore) -> None:
    stale = store.root / "incoming" / "upload-crashed"
    stale.write_bytes(b"half an upload")
    os.utime(stale, (NOW - 10 * HOUR, NOW - 10 * HOUR))
    running = store.root / "incoming" / "upload-running"
    running.write_bytes(b"still arriving")
    os.utime(running, (NOW - 5, NOW - 5))
    collect_garbage(store, [], grace_seconds=HOUR, now=NOW)
    assert not stale.exists()
    assert running.exists()


def test_gc_treats_referenced_digests_case_insensitively(store: FileBlobStore) -> None:
    digest = store.put_bytes(b"kept").digest
    set_age(store, digest, NOW - 10 * HOUR)
    assert collect_garbage(store, [digest.upper()], grace_seconds=HOUR, now=NOW) == []


def test_conditional_delete_spares_younger_blobs(store: FileBlobStore) -> None:
    digest = store.put_bytes(b"new").digest
    set_age(store, digest, NOW)
    assert store.delete(digest, modified_before=NOW - 1) is False
    assert store.delete(digest, modified_before=NOW + 1) is True
    assert not store.exists(digest)
