"""Hostile archives: every safe-extraction rule rejects its attack before anything is written."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from mxinfra.mda import (
    AbsolutePathError,
    CompressionRatioError,
    CorruptArchiveError,
    DisallowedMemberError,
    DuplicateMemberError,
    EncryptedMemberError,
    ExtractionLimits,
    MdaError,
    PathTraversalError,
    SizeLimitError,
    SpecialFileError,
    SymlinkError,
    UnsafeMemberError,
    open_mda,
)
from tests.mda_builders import app_members, set_declared_size, set_encrypted, tree, write_dir, write_zip, zinfo

BOMB_BYTES = 50 << 20  # 50 MiB of zeros deflates to ~50 KiB: ratio ~1000


def _with(*extra: tuple) -> list:
    return app_members() + list(extra)


HOSTILE = {
    "outside-roots": (DisallowedMemberError, "evil.sh", _with(("evil.sh", b"#!/bin/sh\n"))),
    "outside-roots-dotdir": (DisallowedMemberError, ".git/config", _with((".git/config", b"x"))),
    "root-file": (DisallowedMemberError, "web", _with(("web", b"not a dir"))),
    "absolute": (AbsolutePathError, "/etc/cron.d/x", _with(("/etc/cron.d/x", b"x"))),
    "absolute-backslash": (AbsolutePathError, "\\windows\\x", _with(("\\windows\\x", b"x"))),
    "drive-letter": (AbsolutePathError, "C:/Windows/x.dll", _with(("C:/Windows/x.dll", b"x"))),
    "drive-letter-relative": (AbsolutePathError, "c:model/x", _with(("c:model/x", b"x"))),
    "traversal": (PathTraversalError, "model/../../escape.txt", _with(("model/../../escape.txt", b"x"))),
    "traversal-inside": (PathTraversalError, "web/../web/x", _with(("web/../web/x", b"x"))),
    "backslash": (PathTraversalError, "web\\..\\..\\x", _with(("web\\..\\..\\x", b"x"))),
    "symlink": (SymlinkError, "web/passwd", _with((zinfo("web/passwd", mode=stat.S_IFLNK | 0o777), b"/etc/passwd"))),
    "char-device": (SpecialFileError, "model/null", _with((zinfo("model/null", mode=stat.S_IFCHR | 0o666), b""))),
    "block-device": (SpecialFileError, "model/sda", _with((zinfo("model/sda", mode=stat.S_IFBLK | 0o660), b""))),
    "fifo": (SpecialFileError, "web/pipe", _with((zinfo("web/pipe", mode=stat.S_IFIFO | 0o644), b""))),
    "socket": (SpecialFileError, "web/sock", _with((zinfo("web/sock", mode=stat.S_IFSOCK | 0o644), b""))),
    "duplicate": (DuplicateMemberError, "web/index.html", _with(("web/index.html", b"<script>evil()</script>"))),
    "duplicate-normalised": (DuplicateMemberError, "web//./index.html", _with(("web//./index.html", b"evil"))),
    "file-and-dir": (DuplicateMemberError, "web/index.html", _with(("web/index.html/x", b"evil"))),
    "bomb": (CompressionRatioError, "web/bomb.bin", _with(("web/bomb.bin", bytes(BOMB_BYTES)))),
}


@pytest.fixture(params=sorted(HOSTILE), ids=str)
def hostile(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[type[MdaError], str, Path]:
    cls, member, members = HOSTILE[request.param]
    return cls, member, write_zip(tmp_path / "hostile.mda", members)


def _assert_rejected(exc: MdaError, cls: type[MdaError], member: str, archive: Path) -> None:
    assert type(exc) is cls
    assert exc.member == member
    assert exc.archive == str(archive)
    assert member in str(exc) and archive.name in str(exc)
    assert "expected" in str(exc)


def test_extract_rejects_and_writes_nothing(hostile: tuple, tmp_path: Path) -> None:
    cls, member, archive = hostile
    before = tree(tmp_path)
    pkg = open_mda(archive)  # the central directory alone is not an attack: opening works
    with pytest.raises(UnsafeMemberError) as info:
        pkg.extract(tmp_path / "out")
    _assert_rejected(info.value, cls, member, archive)
    assert tree(tmp_path) == before == ["hostile.mda"]
    assert not (tmp_path / "out").exists()


def test_check_members_rejects_without_extracting(hostile: tuple, tmp_path: Path) -> None:
    cls, member, archive = hostile
    with pytest.raises(UnsafeMemberError) as info:
        open_mda(archive).check_members()
    _assert_rejected(info.value, cls, member, archive)
    assert tree(tmp_path) == ["hostile.mda"]


def test_encrypted_member(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "hostile.mda", _with(("web/secret.js", b"x" * 100)))
    set_encrypted(archive, "web/secret.js")
    pkg = open_mda(archive)
    with pytest.raises(EncryptedMemberError) as info:
        pkg.check_members()
    _assert_rejected(info.value, EncryptedMemberError, "web/secret.js", archive)
    with pytest.raises(EncryptedMemberError):
        pkg.extract(tmp_path / "out")
    assert tree(tmp_path) == ["hostile.mda"]


def test_encrypted_metadata_is_rejected_on_open(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "hostile.mda", app_members())
    set_encrypted(archive, "model/metadata.json")
    with pytest.raises(EncryptedMemberError, match="model/metadata.json"):
        open_mda(archive)


def test_duplicate_metadata_is_rejected_on_open(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "hostile.mda", _with(("model/metadata.json", b"{}")))
    with pytest.raises(DuplicateMemberError, match="model/metadata.json"):
        open_mda(archive)


def test_total_size_limit(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "hostile.mda", _with(("web/a.bin", b"a" * 4000), ("web/b.bin", b"b" * 4000)))
    limits = ExtractionLimits(max_total_bytes=6000)
    pkg = open_mda(archive)
    with pytest.raises(SizeLimitError) as info:
        pkg.check_members(limits)
    _assert_rejected(info.value, SizeLimitError, "web/b.bin", archive)
    with pytest.raises(SizeLimitError):
        pkg.extract(tmp_path / "out", limits)
    assert tree(tmp_path) == ["hostile.mda"]


def test_ratio_is_only_checked_above_the_floor(tmp_path: Path) -> None:
    # 512 KiB of zeros compresses ~1000:1 but stays under the 1 MiB floor: legitimate
    archive = write_zip(tmp_path / "a.mda", _with(("web/blank.txt", bytes(512 << 10))))
    pkg = open_mda(archive)
    pkg.check_members()
    with pytest.raises(CompressionRatioError):
        pkg.check_members(ExtractionLimits(ratio_min_bytes=0))


def test_lying_header_is_caught_while_decompressing(tmp_path: Path) -> None:
    # 8 MiB of zeros whose headers claim 1 KiB: the ratio check sees 1 KiB / ~8 KiB and passes,
    # so only counting real output during extraction can stop it
    archive = write_zip(tmp_path / "hostile.mda", _with(("web/liar.bin", bytes(8 << 20))))
    set_declared_size(archive, "web/liar.bin", 1024)
    pkg = open_mda(archive)
    assert pkg.check_members() == 4
    with pytest.raises((SizeLimitError, CorruptArchiveError)) as info:
        pkg.extract(tmp_path / "out")
    assert info.value.member == "web/liar.bin"
    assert tree(tmp_path) == ["hostile.mda"]


def test_header_claiming_more_than_the_data_holds(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "hostile.mda", _with(("web/short.bin", b"x" * 1000)))
    set_declared_size(archive, "web/short.bin", 5000)
    with pytest.raises(CorruptArchiveError) as info:
        open_mda(archive).extract(tmp_path / "out")
    assert info.value.member == "web/short.bin"
    assert tree(tmp_path) == ["hostile.mda"]


def test_bad_crc_is_corrupt(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "hostile.mda", _with((zinfo("web/x.txt", compress=zipfile.ZIP_STORED), b"A" * 64)))
    data = archive.read_bytes()
    archive.write_bytes(data.replace(b"A" * 64, b"A" * 63 + b"B", 1))
    with pytest.raises(CorruptArchiveError, match="web/x.txt"):
        open_mda(archive).extract(tmp_path / "out")
    assert tree(tmp_path) == ["hostile.mda"]


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_archive_is_corrupt(keep: float, tmp_path: Path) -> None:
    full = write_zip(tmp_path / "full.mda", app_members())
    cut = tmp_path / "cut.mda"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CorruptArchiveError, match="cut.mda"):
        open_mda(cut)


def test_unpacked_directory_with_symlink_and_fifo(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "app", app_members())
    (root / "web" / "passwd").symlink_to("/etc/passwd")
    pkg = open_mda(root)
    with pytest.raises(SymlinkError, match="web/passwd"):
        pkg.check_members()
    with pytest.raises(SymlinkError):
        pkg.extract(tmp_path / "out")
    with pytest.raises(SymlinkError):
        pkg.sha256()
    (root / "web" / "passwd").unlink()
    os.mkfifo(root / "model" / "pipe")
    with pytest.raises(SpecialFileError, match="model/pipe"):
        pkg.extract(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]


def test_unpacked_directory_size_limit(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "app", _with(("web/big.bin", b"x" * 10_000)))
    with pytest.raises(SizeLimitError):
        open_mda(root).extract(tmp_path / "out", ExtractionLimits(max_total_bytes=5_000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]
