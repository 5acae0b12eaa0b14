"""Safe tar.gz reading and writing: one test per attack, and the round trip that must still work."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pilotwms.core.archives import extract_tar_gz, safe_member_name, write_tar_gz
from pilotwms.core.errors import BadRequest, UnsafeArchive

MB = 1024 * 1024
LIMITS = {"max_members": 100, "max_total_size": 10 * MB, "max_member_size": None}


def tar_gz(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar.gz built member by member, so that any header a hostile client may send is possible."""
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=fmt) as tar,
    ):
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(
    name: str, data: bytes = b"", type_: bytes = tarfile.REGTYPE, **attrs: object
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.size = len(data) if type_ == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, (data if type_ == tarfile.REGTYPE else None)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its content (None for a directory), links not followed."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = (
                b"link:" + os.readlink(p).encode() if os.path.islink(p) else Path(p).read_bytes()
            )
    return out


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """An existing destination with one file in it, inside a parent holding nothing else."""
    d = tmp_path / "work" / "dest"
    d.mkdir(parents=True)
    (d / "already-there.txt").write_bytes(b"keep me")
    return d


def refuse(archive: bytes, dest: Path, member: str, reason: str, **limits: object) -> None:
    """Extraction must raise UnsafeArchive(member, reason...) and leave the filesystem as it was."""
    before = snapshot(dest.parent)
    with pytest.raises(UnsafeArchive) as caught:
        extract_tar_gz(io.BytesIO(archive), dest, **{**LIMITS, **limits})
    assert caught.value.member == member
    assert caught.value.reason.startswith(reason), caught.value.reason
    assert snapshot(dest.parent) == before


# --- safe_member_name ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("out/result.txt", "out/result.txt"),
        ("./out//result.txt", "out/result.txt"),
        ("out/", "out"),
        ("a/./b/c", "a/b/c"),
        ("spaces and ünïcode.txt", "spaces and ünïcode.txt"),
        ("..hidden", "..hidden"),
        ("a..b/c...", "a..b/c..."),
    ],
)
def test_safe_member_name_normalises_relative_names(name: str, expected: str) -> None:
    assert safe_member_name(name) == expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/passwd", "absolute path"),
        ("//server/share", "absolute path"),
        ("C:/Windows/system.ini", "absolute path"),
        ("../x", "'..' component"),
        ("a/../../x", "'..' component"),
        ("a/b/..", "'..' component"),
        ("..\\x", "backslash in name"),
        ("a\\b", "backslash in name"),
        ("", "empty name"),
        (".", "empty name"),
        ("./", "empty name"),
        ("a\nb", "control character in name"),
        ("a\x00b", "control character in name"),
        ("x" * 256, "name component longer than 255 bytes"),
    ],
)
def test_safe_member_name_refuses_escapes(name: str, reason: str) -> None:
    with pytest.raises(UnsafeArchive) as caught:
        safe_member_name(name)
    assert caught.value.member == name
    assert caught.value.reason == reason
    assert isinstance(caught.value, BadRequest)


# --- round trip ---------------------------------------------------------------------------------


def test_round_trip_with_nested_directories(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_bytes(b"#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    big = os.urandom(3 * MB)
    members = [
        ("run.sh", script),
        ("out/result.txt", (io.BytesIO(b"42\n"), 3)),
        ("./out/deep/er/data.bin", (io.BytesIO(big), len(big))),
        ("empty", (io.BytesIO(b""), 0)),
    ]
    buf = io.BytesIO()
    assert write_tar_gz(buf, members) == [
        "run.sh",
        "out/result.txt",
        "out/deep/er/data.bin",
        "empty",
    ]
    target = tmp_path / "extracted"
    names = extract_tar_gz(io.BytesIO(buf.getvalue()), target, **LIMITS)
    assert names == ["run.sh", "out/result.txt", "out/deep/er/data.bin", "empty"]
    assert (target / "run.sh").read_bytes() == script.read_bytes()
    assert (target / "run.sh").stat().st_mode & 0o100
    assert not (target / "out/result.txt").stat().st_mode & 0o111
    assert (target / "out/result.txt").read_bytes() == b"42\n"
    assert (target / "out/deep/er/data.bin").read_bytes() == big
    assert (target / "empty").read_bytes() == b""
    # Nothing but the destination appears next to it (the staging directory is gone).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extracted", "run.sh"]


def test_archives_from_tar_itself_extract(tmp_path: Path) -> None:
    """`tar czf x.tgz -C dir .` makes a "./" entry first, and directory members."""
    archive = tar_gz(
        member("./", type_=tarfile.DIRTYPE, mode=0o755),
        member("./sub/", type_=tarfile.DIRTYPE, mode=0o000),
        member("./sub/a.txt", b"a"),
    )
    path = tmp_path / "x.tgz"
    path.write_bytes(archive)
    names = extract_tar_gz(path, tmp_path / "d", **LIMITS)
    assert names == ["sub", "sub/a.txt"]
    assert (tmp_path / "d/sub/a.txt").read_bytes() == b"a"
    # A directory mode of 000 from the archive is not applied: it would make the tree unusable.
    assert os.access(tmp_path / "d/sub", os.R_OK | os.W_OK | os.X_OK)


def test_extraction_merges_into_an_existing_directory(dest: Path) -> None:
    (dest / "data").mkdir()
    archive = tar_gz(member("data/new.txt", b"new"), member("top.txt", b"top"))
    names = extract_tar_gz(io.BytesIO(archive), dest, **LIMITS)
    assert names == ["data/new.txt", "top.txt"]
    assert snapshot(dest) == {
        "already-there.txt": b"keep me",
        "data": None,
        "data/new.txt": b"new",
        "top.txt": b"top",
    }
    assert sorted(p.name for p in dest.parent.iterdir()) == ["dest"]


# --- one test per attack ------------------------------------------------------------------------


def test_absolute_path_is_refused(dest: Path) -> None:
    refuse(
        tar_gz(member("ok.txt", b"x"), member("/etc/passwd", b"x")),
        dest,
        "/etc/passwd",
        "absolute path",
    )


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "a/b/../../../evil.txt"])
def test_dotdot_is_refused(dest: Path, name: str) -> None:
    refuse(tar_gz(member("ok.txt", b"x"), member(name, b"x")), dest, name, "'..' component")


def test_windows_dotdot_is_refused(dest: Path) -> None:
    refuse(tar_gz(member("..\\evil.txt", b"x")), dest, "..\\evil.txt", "backslash in name")


def test_symlink_is_refused(dest: Path) -> None:
    archive = tar_gz(
        member("ok.txt", b"x"), member("link", type_=tarfile.SYMTYPE, linkname="/etc/passwd")
    )
    refuse(archive, dest, "link", "symbolic link")


def test_hard_link_is_refused(dest: Path) -> None:
    archive = tar_gz(
        member("ok.txt", b"x"), member("link", type_=tarfile.LNKTYPE, linkname="/etc/passwd")
    )
    refuse(archive, dest, "link", "hard link")


@pytest.mark.parametrize(
    ("type_", "reason"),
    [(tarfile.CHRTYPE, "character device"), (tarfile.BLKTYPE, "block device")],
)
def test_device_is_refused(dest: Path, type_: bytes, reason: str) -> None:
    archive = tar_gz(member("ok.txt", b"x"), member("null", type_=type_, devmajor=1, devminor=3))
    refuse(archive, dest, "null", reason)


def test_fifo_is_refused(dest: Path) -> None:
    refuse(
        tar_gz(member("ok.txt", b"x"), member("pipe", type_=tarfile.FIFOTYPE)), dest, "pipe", "FIFO"
    )


def test_unknown_member_type_is_refused(dest: Path) -> None:
    """GNU and vendor types that tarfile would otherwise extract as regular files."""
    refuse(tar_gz(member("odd", type_=b"Z")), dest, "odd", "member type b'Z'")


def test_member_count_bomb_is_refused(dest: Path) -> None:
    archive = tar_gz(*(member(f"f{i}") for i in range(1000)))
    refuse(archive, dest, "f100", "more than 100 members", max_members=100)


def test_decompression_bomb_is_refused_without_writing(dest: Path) -> None:
    # 200 MB of zeros in about 200 KB: gzip members concatenate (RFC 1952), as `cat a.gz b.gz`
    # makes, so the bomb is built from one compressed megabyte instead of compressing 200 MB.
    header = tarfile.TarInfo("zeros.bin")
    header.size = 200 * MB
    zeros = gzip.compress(b"\0" * MB, mtime=0)
    archive = gzip.compress(header.tobuf(tarfile.PAX_FORMAT), mtime=0) + zeros * 200
    assert len(archive) < 300 * 1024
    refuse(archive, dest, "zeros.bin", "archive expands to more than 10485760 bytes")


def test_bomb_spread_over_small_members_is_refused(dest: Path) -> None:
    """No member is over its own limit; their sum is over the archive's."""
    archive = tar_gz(*(member(f"part{i}", b"\0" * MB) for i in range(50)))
    assert len(archive) < 1 * MB
    refuse(
        archive,
        dest,
        "part10",
        "archive expands to more than 10485760 bytes",
        max_member_size=2 * MB,
    )


def test_member_over_its_size_limit_is_refused(dest: Path) -> None:
    archive = tar_gz(member("small", b"x"), member("big", b"\0" * (2 * MB)))
    refuse(
        archive,
        dest,
        "big",
        "member is 2097152 bytes, over the limit of 1048576",
        max_member_size=MB,
    )


def test_pax_header_bomb_is_refused_before_tarfile_reads_it(dest: Path) -> None:
    """tarfile reads a pax header into memory whole; the stream budget stops it first."""
    info, _ = member("innocent.txt")
    info.pax_headers = {"comment": "0" * (30 * MB)}
    refuse(
        tar_gz((info, b"")),
        dest,
        "<archive>",
        "archive expands to more than 1048576 bytes",
        max_total_size=MB,
    )


def test_header_claiming_more_data_than_present_is_refused(dest: Path) -> None:
    info = tarfile.TarInfo("liar.bin")
    info.size = 5 * MB
    # The header promises 5 MB; 1000 bytes follow and the stream ends.
    archive = gzip.compress(info.tobuf(tarfile.PAX_FORMAT) + b"x" * 1000, mtime=0)
    refuse(archive, dest, "liar.bin", "not a valid tar.gz archive")


def test_header_claiming_less_data_cannot_smuggle_a_member(dest: Path) -> None:
    """The bytes after the claimed size are read as the next header and checked like any other."""
    smuggled = tarfile.TarInfo("../evil.txt")
    smuggled.size = 4
    hidden = smuggled.tobuf(tarfile.USTAR_FORMAT) + b"evil".ljust(512, b"\0")
    carrier = tarfile.TarInfo("carrier.txt")
    carrier.size = 0
    archive = gzip.compress(carrier.tobuf(tarfile.USTAR_FORMAT) + hidden + b"\0" * 1024, mtime=0)
    refuse(archive, dest, "../evil.txt", "'..' component")


def test_negative_size_is_refused(dest: Path) -> None:
    info = tarfile.TarInfo("negative")
    info.size = -1
    archive = gzip.compress(info.tobuf(tarfile.GNU_FORMAT) + b"\0" * 1024, mtime=0)
    refuse(archive, dest, "negative", "negative size in header")


def test_duplicate_member_is_refused(dest: Path) -> None:
    archive = tar_gz(member("a.txt", b"first"), member("a.txt", b"second"))
    refuse(archive, dest, "a.txt", "duplicate member name")


def test_file_used_as_directory_is_refused(dest: Path) -> None:
    archive = tar_gz(member("a", b"file"), member("a/b", b"below a file"))
    refuse(archive, dest, "a/b", "its directory 'a' is a file in this archive")


def test_overwriting_an_existing_file_is_refused(dest: Path) -> None:
    archive = tar_gz(member("new.txt", b"n"), member("already-there.txt", b"replaced"))
    refuse(archive, dest, "already-there.txt", "would overwrite an existing file")


def test_link_already_in_destination_cannot_be_followed_out(dest: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "data").symlink_to(outside)
    refuse(
        tar_gz(member("data/x.txt", b"x")), dest, "data", "lands outside the destination directory"
    )
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    "archive",
    [b"", b"not gzip at all", gzip.compress(b"not a tar archive" * 100, mtime=0)],
)
def test_corrupt_archive_is_refused(dest: Path, archive: bytes) -> None:
    refuse(archive, dest, "<archive>", "not a valid tar.gz archive")


def test_truncated_gzip_is_refused(dest: Path) -> None:
    archive = tar_gz(member("a.txt", os.urandom(100_000)))
    refuse(archive[: len(archive) // 2], dest, "a.txt", "not a valid tar.gz archive")


# --- writing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "bad", "reason"),
    [
        (["/etc/passwd"], "/etc/passwd", "absolute path"),
        (["../x"], "../x", "'..' component"),
        (["a", "./a"], "./a", "duplicate member name"),
        (["a", "a/b"], "a/b", "its directory 'a' is also a file member"),
        (["a/b", "a"], "a", "also the directory of another member"),
    ],
)
def test_writer_refuses_unsafe_or_ambiguous_names(names: list[str], bad: str, reason: str) -> None:
    with pytest.raises(UnsafeArchive) as caught:
        write_tar_gz(io.BytesIO(), [(n, (io.BytesIO(b"x"), 1)) for n in names])
    assert (caught.value.member, caught.value.reason) == (bad, reason)


def test_writer_refuses_a_directory_as_source(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive) as caught:
        write_tar_gz(io.BytesIO(), [("d", tmp_path)])
    assert (caught.value.member, caught.value.reason) == ("d", "source is not a regular file")


def test_writer_output_is_a_plain_tar_gz_without_owners(tmp_path: Path) -> None:
    buf = io.BytesIO()
    write_tar_gz(buf, [("a/b.txt", (io.BytesIO(b"hello"), 5))])
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue()), mode="r:gz") as tar:
        (info,) = tar.getmembers()
        assert (info.name, info.size, info.uid, info.gid, info.uname, info.gname) == (
            "a/b.txt",
            5,
            0,
            0,
            "",
            "",
        )
        assert info.mode == 0o644


class EndlessZeros(io.RawIOBase):
    """A member body that never ends, whatever its header said; counts what was asked of it."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = len(buffer)
        buffer[:n] = b"\0" * n
        self.served += n
        return n


def test_written_bytes_are_counted_not_taken_from_headers(
    dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the tar reader to hand over more bytes than a header claims, the copy still stops."""
    body = EndlessZeros()
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, info: body)
    refuse(
        tar_gz(member("small.txt", b"tiny")),
        dest,
        "small.txt",
        "archive expands beyond its size limit",
        max_total_size=MB,
    )
    assert body.served <= MB + 1
