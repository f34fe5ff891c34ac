"""Fuzzing the MDA reader: whatever the bytes, only MdaError escapes, and nothing is left half-written."""

from __future__ import annotations

import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mxinfra import mda
from mxinfra.mda import (
    CompressionRatioError,
    CorruptArchiveError,
    DuplicateMemberError,
    EncryptedMemberError,
    ExtractionLimits,
    MdaError,
    SizeLimitError,
    SpecialFileError,
    SymlinkError,
    _check_table,
    _member_parts,
    open_mda,
)
from mxinfra.zipdir import MemberTable
from tests.mda_builders import app_members, zip_bytes

VALID = zip_bytes(app_members() + [("web/dist/index.js", b"console.log('hi');\n" * 50), ("native/x", b"n")])
# tight limits so fuzzed headers that claim huge sizes are refused quickly rather than written
LIMITS = ExtractionLimits(max_total_bytes=1 << 20, max_members=1000)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _exercise(data: bytes) -> None:
    """Open, check and extract; only MdaError may escape, and a failed extraction leaves nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive = root / "fuzz.mda"
        archive.write_bytes(data)
        try:
            pkg = open_mda(archive)
            pkg.check_members(LIMITS)
            pkg.sha256()
            out = pkg.extract(root / "out", LIMITS)
            assert out.is_dir()
        except MdaError as exc:
            assert str(exc).startswith(str(archive))
            assert sorted(p.name for p in root.iterdir()) == ["fuzz.mda"]


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _exercise(data)


@SETTINGS
@given(st.binary(max_size=64).map(lambda b: b"PK\x03\x04" + b))
def test_random_bytes_with_zip_magic(data: bytes) -> None:
    _exercise(data)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(VALID) - 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, len(VALID) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(VALID)), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, len(VALID) - 1), st.integers(1, 64)),
)


def _mutate(data: bytes, ops: list[tuple]) -> bytes:
    buf = bytearray(data)
    for kind, at, arg in ops:
        at = min(at, len(buf))
        if kind == "flip" and at < len(buf):
            buf[at] ^= arg
        elif kind == "cut":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = arg
        elif kind == "delete":
            del buf[at : at + arg]
    return bytes(buf)


@SETTINGS
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_valid_archive(ops: list[tuple]) -> None:
    _exercise(_mutate(VALID, ops))


# the central directory and local headers are where parsers break: aim flips there
CENTRAL = VALID.find(b"PK\x01\x02")


@SETTINGS
@given(st.lists(st.tuples(st.integers(CENTRAL, len(VALID) - 1), st.integers(1, 255)), min_size=1, max_size=6))
def test_mutated_central_directory(flips: list[tuple[int, int]]) -> None:
    _exercise(_mutate(VALID, [("flip", at, x) for at, x in flips]))


def test_valid_archive_passes_the_harness() -> None:
    _exercise(VALID)


# --------------------------------------------------------------------------------------------
# the member rules over the compact table give exactly the verdicts of the dict-of-names version


def _reference_check(archive: str, infos: list[zipfile.ZipInfo], limits: ExtractionLimits) -> None:
    """The rules as they were written over ZipInfos with a dict of every normalised name (the oracle)."""
    if len(infos) > limits.max_members:
        raise SizeLimitError(archive, None, f"{len(infos)} members: expected at most {limits.max_members}")
    total = 0
    seen: dict[str, bool] = {}
    for info in infos:
        name = info.filename
        if info.flag_bits & 0x1:
            raise EncryptedMemberError(archive, name, "encrypted: expected unencrypted members as MxBuild writes them")
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise SymlinkError(archive, name, "symbolic link: expected regular files and directories only")
        if mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise SpecialFileError(archive, name, "device, FIFO or socket: expected regular files and directories only")
        key = "/".join(_member_parts(archive, name))
        is_dir = name.endswith("/") or (mode != 0 and stat.S_ISDIR(mode))
        if key in seen and not (is_dir and seen[key]):
            raise DuplicateMemberError(archive, name, "appears more than once: expected unique member names")
        seen[key] = is_dir or seen.get(key, False)
        if info.compress_type not in (0, 8, 12, 14):
            raise CorruptArchiveError(archive, name, f"compression method {info.compress_type}: expected deflate or stored")
        if not is_dir:
            total += info.file_size
            if total > limits.max_total_bytes:
                raise SizeLimitError(archive, name, f"total uncompressed size passes {limits.max_total_bytes} bytes: expected at most that")
            if info.file_size > limits.ratio_min_bytes:
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > limits.max_ratio:
                    raise CompressionRatioError(
                        archive, name,
                        f"compression ratio {ratio:.0f}:1 ({info.file_size} bytes from {info.compress_size}): "
                        f"expected at most {limits.max_ratio:.0f}:1",
                    )  # fmt: skip
    for key in seen:
        cut = key.find("/")
        while cut != -1:
            if seen.get(key[:cut]) is False:
                raise DuplicateMemberError(archive, key[:cut], f"is a file and also the parent of {key}: expected one or the other")
            cut = key.find("/", cut + 1)


def _verdict(check: Callable[[], None]) -> tuple | None:
    try:
        check()
    except MdaError as exc:
        return (type(exc), exc.member, str(exc))
    return None


_COMPONENT = st.sampled_from(["a", "b", "a.js", ".", "..", "", "c"])
_ANY_NAME = st.builds(
    lambda root, rest, slash: "/".join([root, *rest]) + ("/" if slash else ""),
    st.sampled_from(["model", "web", "web", "native", "evil", "C:", ""]),
    st.lists(_COMPONENT, max_size=4),
    st.booleans(),
)
# valid names from a tiny alphabet: duplicates, '//' and './' spellings, files that are also parents
_CLEAN_NAME = st.builds(
    lambda root, rest, slash: "/".join([root, *rest]) + ("/" if slash else ""),
    st.sampled_from(["web", "model"]),
    st.lists(st.sampled_from(["a", "b", "a", "", "."]), min_size=1, max_size=3),
    st.booleans(),
)
_ANY_MEMBER = st.tuples(
    _ANY_NAME, st.sampled_from([0, 0o100644, 0o040755, 0o120777, 0o010644, 0o020644]), st.sampled_from([0, 8, 99]),
    st.integers(0, 3 << 20), st.integers(0, 2 << 20), st.sampled_from([0, 0, 0, 1]),
)  # fmt: skip
_CLEAN_MEMBER = st.tuples(
    _CLEAN_NAME, st.sampled_from([0, 0o100644, 0o040755]), st.just(8), st.integers(0, 3 << 20), st.integers(1 << 10, 2 << 20), st.just(0)
)
_MEMBERS = st.one_of(st.lists(_ANY_MEMBER, max_size=12), st.lists(_CLEAN_MEMBER, max_size=12))


def _infos(members: list[tuple]) -> list[zipfile.ZipInfo]:
    infos = []
    for name, mode, method, size, compressed, flags in members:
        info = zipfile.ZipInfo(name)
        info.external_attr, info.compress_type, info.file_size, info.compress_size = mode << 16, method, size, compressed
        info.flag_bits |= flags
        info.header_offset = info.CRC = 0  # set by zipfile when it reads an archive
        infos.append(info)
    return infos


@settings(max_examples=500, deadline=None)
@given(_MEMBERS, st.integers(1, 14), st.integers(1 << 20, 12 << 20))
def test_table_rules_match_the_dict_rules(members: list[tuple], max_members: int, max_total: int) -> None:
    infos = _infos(members)
    limits = ExtractionLimits(max_members=max_members, max_total_bytes=max_total)
    table = MemberTable.from_infos(infos)
    assert _verdict(lambda: _check_table("a.mda", table, limits)) == _verdict(lambda: _reference_check("a.mda", infos, limits))


@settings(max_examples=200, deadline=None)
@given(_MEMBERS)
def test_hash_collisions_never_change_a_verdict(members: list[tuple]) -> None:
    # every name hashes alike: each hit has to be settled on the real names
    infos = _infos(members)
    expected = _verdict(lambda: _reference_check("a.mda", infos, ExtractionLimits()))
    with patch.object(mda, "hash", lambda _: 42, create=True):
        assert _verdict(lambda: _check_table("a.mda", MemberTable.from_infos(infos), ExtractionLimits())) == expected


def test_many_directory_entries_of_one_name_stay_linear() -> None:
    # duplicate directory entries are allowed; they must not build ever longer probe chains
    infos = _infos([("web/", 0o040755, 0, 0, 0, 0)] * 50_000 + [("web/index.html", 0o100644, 8, 10, 10, 0)])
    _check_table("a.mda", MemberTable.from_infos(infos), ExtractionLimits())
