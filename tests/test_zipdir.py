"""The streaming central-directory reader agrees with zipfile, member for member and error for error."""

from __future__ import annotations

import os
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mxinfra.mda import CorruptArchiveError, NotAZipError, SizeLimitError, open_mda
from mxinfra.zipdir import MemberTable, read_directory, read_member
from tests.mda_builders import (
    RawMember,
    app_members,
    raw_zip,
    unicode_path_extra,
    write_many,
    write_zip,
    zinfo,
    zip64_extra,
    zip_bytes,
)
from tests.test_mda_hostile import HOSTILE

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "orders" / "orders-1.4.2.mda"
FIELDS = ("filename", "orig_filename", "flag_bits", "compress_type", "CRC", "compress_size", "file_size", "header_offset", "external_attr")


def _row(info: zipfile.ZipInfo) -> tuple:
    return (*(getattr(info, f) for f in FIELDS), info.is_dir())


def _table_rows(table: MemberTable) -> list[tuple]:
    rows = []
    for i, name in enumerate(table.names()):
        assert name == table.name(i)
        rows.append((
            name, table.orig_name(i), table.flags[i], table.methods[i], table.crcs[i], table.compress_sizes[i],
            table.file_sizes[i], table.header_offset(i), table.external_attrs[i], table.is_dir(i),
        ))  # fmt: skip
    return rows


def zipfile_view(path: Path) -> tuple:
    """What zipfile reads: the comment and every member's fields, or the exception's type and message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with zipfile.ZipFile(path) as zf:
                return ("ok", zf.comment, [_row(i) for i in zf.infolist()])
    except Exception as exc:  # noqa: BLE001 - the point is to compare whatever it raises
        return ("error", type(exc), str(exc))


def reader_view(path: Path) -> tuple:
    """The same from read_directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        table = read_directory(fd)
    except Exception as exc:  # noqa: BLE001
        return ("error", type(exc), str(exc))
    finally:
        os.close(fd)
    return ("ok", table.comment, _table_rows(table))


def assert_agrees(path: Path) -> tuple:
    expected = zipfile_view(path)
    assert reader_view(path) == expected
    if expected[0] == "ok":  # the extraction path's table, built from zipfile's ZipInfos, is the same too
        with zipfile.ZipFile(path) as zf:
            assert _table_rows(MemberTable.from_infos(zf.infolist(), zf.comment)) == expected[2]
    return expected


def _write(tmp_path: Path, data: bytes, name: str = "a.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_the_example_app(tmp_path: Path) -> None:
    assert assert_agrees(EXAMPLE)[0] == "ok"


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives(case: str, tmp_path: Path) -> None:
    _, _, members = HOSTILE[case]
    assert assert_agrees(write_zip(tmp_path / "h.mda", members))[0] == "ok"


def test_more_than_65535_members_use_the_zip64_end_record(tmp_path: Path) -> None:
    path = _write(tmp_path, raw_zip([RawMember(f"web/{n}".encode()) for n in range(70_000)], zip64=True))
    view = zipfile_view(path)
    assert view[0] == "ok" and len(view[2]) == 70_000
    assert reader_view(path) == view


def test_the_zip64_end_record_zipfile_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # zipfile writes ZIP64 end records past 65,535 members; lowering its threshold makes a small one
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)
    path = write_zip(tmp_path / "z64.mda", app_members())
    monkeypatch.undo()
    assert b"PK\x06\x06" in path.read_bytes()[-120:]
    assert len(assert_agrees(path)[2]) == 3


def test_zip64_sizes_and_offset_over_4_gib_declared_in_the_directory(tmp_path: Path) -> None:
    big = RawMember(
        b"web/huge.bin", b"tiny", file_size=0xFFFF_FFFF, compress_size=0xFFFF_FFFF, header_offset=0xFFFF_FFFF,
        extra=zip64_extra(5 << 30, 6 << 30, 7 << 30),
    )  # fmt: skip
    path = _write(tmp_path, raw_zip([RawMember(b"web/a", b"a"), big, RawMember(b"web/b", b"b")], zip64=True))
    view = assert_agrees(path)
    assert [row[5:8] for row in view[2]][1] == (6 << 30, 5 << 30, 7 << 30)


def test_a_member_declaring_5_gib_is_over_the_size_limit(tmp_path: Path) -> None:
    members = [RawMember(n.encode(), d) for n, d in app_members()]
    members.append(RawMember(b"web/huge.bin", b"x", file_size=0xFFFF_FFFF, extra=zip64_extra(5 << 30)))
    path = _write(tmp_path, raw_zip(members), "big.mda")
    assert_agrees(path)
    with pytest.raises(SizeLimitError) as exc:
        open_mda(path).check_members()
    assert exc.value.member == "web/huge.bin" and exc.value.archive == str(path)


def test_cp437_utf8_and_nul_names(tmp_path: Path) -> None:
    members = [
        RawMember(bytes(range(0x80, 0x100)).replace(b"/", b"")),  # every high cp437 byte, no flag
        RawMember("web/Ünïcødé €.js".encode(), flags=0x800),
        RawMember("web/Ü-without-flag".encode()),  # UTF-8 bytes read as cp437, as zipfile reads them
        RawMember(b"web/cut\0.js/../../evil"),  # the name ends at the NUL
        RawMember("web/dir/".encode()),
    ]
    view = assert_agrees(_write(tmp_path, raw_zip(members)))
    assert view[2][3][0] == "web/cut" and view[2][3][1] == "web/cut\0.js/../../evil"


def test_invalid_utf8_under_the_utf8_flag_fails_like_zipfile(tmp_path: Path) -> None:
    view = assert_agrees(_write(tmp_path, raw_zip([RawMember(b"web/\xff\xfe", flags=0x800)])))
    assert view[1] is UnicodeDecodeError


def test_unicode_path_extra_field(tmp_path: Path) -> None:
    members = [
        RawMember(b"web/plain.js", extra=unicode_path_extra(b"web/plain.js", "web/../../etc/passwd")),
        RawMember(b"web/stale.js", extra=unicode_path_extra(b"web/other.js", "web/ignored.js")),  # CRC of another name
        RawMember(b"web/v2.js", extra=unicode_path_extra(b"web/v2.js", "web/x.js", version=2)),
    ]
    view = assert_agrees(_write(tmp_path, raw_zip(members)))
    # zipfile honours the field from 3.12 on; the reader follows the interpreter it runs on
    assert view[2][0][0] == ("web/../../etc/passwd" if sys.version_info >= (3, 12) else "web/plain.js")
    assert [row[0] for row in view[2][1:]] == ["web/stale.js", "web/v2.js"]


def test_archive_comment_and_a_stub_before_the_archive(tmp_path: Path) -> None:
    members = [RawMember(b"web/a", b"aa"), RawMember(b"model/b", b"b")]
    for data in (
        raw_zip(members, comment=b"built by MxBuild"),
        raw_zip(members, comment=b"x" * 65535),
        raw_zip(members, comment=b"holds PK\x05\x06 in it"),  # the last signature wins, as in zipfile
        raw_zip(members, prefix=b"#!/bin/sh\nexit 0\n" * 50, appended=True),  # offsets shifted back
        raw_zip(members, prefix=b"MZ" * 300, appended=True, zip64=True),
        raw_zip(members, comment=b"c", zip64=True),
    ):
        assert_agrees(_write(tmp_path, data))


def _padded_directory() -> bytes:
    """10 bytes between the directory and its end record, counted in its size: the last entry is cut short."""
    data = raw_zip([RawMember(b"web/a")], cd_size=46 + 5 + 10)
    end = data.rfind(b"PK\x05\x06")
    return data[:end] + bytes(10) + data[end:]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "File is not a zip file"),
        (b"PK\x05\x06" + bytes(17), "File is not a zip file"),
        (raw_zip([RawMember(b"web/a")], cd_size=10**6), "Bad offset for central directory"),
        (raw_zip([RawMember(b"web/a")], cd_size=60), "Bad magic number for central directory"),
        (_padded_directory(), "Truncated central directory"),
        (raw_zip([RawMember(b"web/a", extract_version=64)]), "zip file version 6.4"),
        (raw_zip([RawMember(b"web/a", extra=b"\x01\x00\x10\x00abc")]), "Corrupt extra field 0001 (size=16)"),
        (raw_zip([RawMember(b"web/a", file_size=0xFFFF_FFFF, extra=zip64_extra())]), "Corrupt zip64 extra field. File size not found."),
        (raw_zip([RawMember(b"web/a", header_offset=0xFFFF_FFFF, extra=zip64_extra())]), "Corrupt zip64 extra field. Header offset not found."),
        (raw_zip([RawMember(b"web/a")], zip64=True, zip64_disks=(1, 2)), "zipfiles that span multiple disks are not supported"),
    ],
)
def test_damaged_directories_fail_as_in_zipfile(data: bytes, message: str | None, tmp_path: Path) -> None:
    view = assert_agrees(_write(tmp_path, data))
    assert view[0] == "error"
    if message is not None:
        assert view[2] == message


def test_every_truncation_fails_or_reads_as_in_zipfile(tmp_path: Path) -> None:
    data = raw_zip(
        [RawMember(b"web/a", b"x" * 40, extra=zip64_extra()), RawMember(b"model/m", b"m", comment=b"note")],
        comment=b"archive comment",
        zip64=True,
    )
    path = tmp_path / "cut.zip"
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        assert reader_view(path) == zipfile_view(path), cut


VALID = zip_bytes(app_members() + [("web/dist/index.js", b"console.log('hi');\n" * 50), ("native/x", b"n")])
CENTRAL = VALID.find(b"PK\x01\x02")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(st.tuples(st.integers(CENTRAL, len(VALID) - 1), st.integers(1, 255)), min_size=1, max_size=6),
    cut=st.integers(0, 40),
)
def test_fuzzed_directories_agree(flips: list[tuple[int, int]], cut: int, tmp_path: Path) -> None:
    data = bytearray(VALID)
    for at, x in flips:
        data[at] ^= x
    path = tmp_path / "fuzz.zip"
    path.write_bytes(bytes(data[: len(data) - cut]))
    assert reader_view(path) == zipfile_view(path)


def test_read_member_matches_zipfile(tmp_path: Path) -> None:
    path = tmp_path / "methods.zip"
    body = b"<html>" + bytes(range(256)) * 40
    with zipfile.ZipFile(path, "w") as zf:
        for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
            zf.writestr(zinfo(f"web/{method}.bin", compress=method), body)
        zf.writestr(zinfo("web/empty", compress=zipfile.ZIP_DEFLATED), b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        table = read_directory(fd)
        with zipfile.ZipFile(path) as zf:
            for i in range(len(table)):
                assert read_member(fd, table, i) == zf.read(table.name(i))
    finally:
        os.close(fd)


def test_a_truncated_directory_names_the_archive(tmp_path: Path) -> None:
    full = write_zip(tmp_path / "full.mda", app_members())
    data = full.read_bytes()
    start = data.find(b"PK\x01\x02")
    # the end record survives, the directory it points at is cut short
    cut = _write(tmp_path, data[: start + 30] + data[data.rfind(b"PK\x05\x06") :], "cut.mda")
    with pytest.raises(CorruptArchiveError) as exc:
        open_mda(cut)
    assert str(exc.value).startswith(f"{cut}: damaged or truncated ZIP (")
    assert "expected a complete .mda" in str(exc.value)


def test_not_a_zip_and_a_zip_with_no_end_record(tmp_path: Path) -> None:
    with pytest.raises(NotAZipError, match="is not a ZIP archive"):
        open_mda(_write(tmp_path, b"just text\n" * 10, "text.mda"))
    data = write_zip(tmp_path / "a.mda", app_members()).read_bytes()
    with pytest.raises(CorruptArchiveError, match="damaged or truncated ZIP \\(File is not a zip file\\)"):
        open_mda(_write(tmp_path, data[: data.rfind(b"PK\x05\x06")], "noend.mda"))


def test_large_generated_archive_agrees(tmp_path: Path) -> None:
    view = assert_agrees(write_many(tmp_path / "many.mda", 3000))
    assert len(view[2]) == 3000
