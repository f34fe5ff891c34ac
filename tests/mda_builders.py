"""Build MDA archives (well-formed and hostile) for the MDA reader's tests."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metadata"
FIXED_TIME = (2025, 1, 2, 3, 4, 6)

MINIMAL_METADATA: dict[str, Any] = {
    "RuntimeVersion": "10.24.15.93102",
    "ProjectID": "00000000-0000-4000-8000-000000000001",
    "ProjectName": "Tiny",
    "ModelVersion": "unversioned",
    "AdminUser": "MxAdmin",
    "Roles": {},
    "Constants": [],
    "ScheduledEvents": [],
    "RequestHandlers": [{"Name": "/api/", "DefaultEnabled": True, "MatchExactly": False}],
}

Member = tuple["str | zipfile.ZipInfo", bytes]


def fixture_files() -> list[Path]:
    """The real metadata.json fixtures, sorted."""
    return sorted(FIXTURES.glob("*.json"))


def app_members(metadata: bytes | dict[str, Any] | None = None) -> list[Member]:
    """The members of a minimal valid app: metadata, model, one web page."""
    if metadata is None:
        metadata = MINIMAL_METADATA
    if isinstance(metadata, dict):
        metadata = json.dumps(metadata, indent=2).encode()
    return [
        ("model/metadata.json", metadata),
        ("model/model.mdp", b"MDP\x00" + bytes(range(256)) * 4),
        ("web/index.html", b"<!doctype html><title>app</title>"),
    ]


def zinfo(name: str, *, mode: int | None = None, flag_bits: int = 0, compress: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    """A ZipInfo with a fixed timestamp, an optional Unix mode and extra flag bits."""
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = compress
    info.create_system = 3
    if mode is not None:
        info.external_attr = mode << 16
    info.flag_bits |= flag_bits
    return info


def write_zip(path: Path, members: Iterable[Member]) -> Path:
    """Write members in order (duplicates allowed); str names get deflate and a fixed time."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names, which some tests want
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members:
                info = zinfo(name, mode=0o100644) if isinstance(name, str) else name
                zf.writestr(info, data)
    return path


def zip_bytes(members: Iterable[Member]) -> bytes:
    """The same as write_zip, in memory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(zinfo(name, mode=0o100644) if isinstance(name, str) else name, data)
    return buf.getvalue()


def write_dir(root: Path, members: Iterable[Member]) -> Path:
    """Unpack members as a plain directory tree (the unpacked-app form)."""
    for name, data in members:
        assert isinstance(name, str)
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def _patch_headers(path: Path, member: str, local_off: int, central_off: int, fmt: str, value: int, *, merge: bool = False) -> None:
    """Overwrite one field of a member's local and central header (bitwise-or it in with merge)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    local = info.header_offset
    assert data[local : local + 4] == b"PK\x03\x04"
    pos = data.find(b"PK\x01\x02")
    encoded = member.encode()
    while pos >= 0:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46 : pos + 46 + name_len]) == encoded:
            break
        pos = data.find(b"PK\x01\x02", pos + 4)
    else:
        raise AssertionError(f"{member} not in the central directory")
    for at in (local + local_off, pos + central_off):
        old = struct.unpack_from(fmt, data, at)[0]
        struct.pack_into(fmt, data, at, (old | value) if merge else value)
    path.write_bytes(bytes(data))


def set_declared_size(path: Path, member: str, size: int) -> None:
    """Rewrite a member's uncompressed size in its local and central header (a lying header)."""
    _patch_headers(path, member, 22, 24, "<I", size)


def set_encrypted(path: Path, member: str) -> None:
    """Set the 'encrypted' general-purpose flag on a member (zipfile clears it when writing)."""
    _patch_headers(path, member, 6, 8, "<H", 0x1, merge=True)


def tree(root: Path) -> list[str]:
    """Every path under root, relative and sorted (to prove nothing was left behind)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def write_many(path: Path, count: int) -> Path:
    """A valid MDA with `count` members in all: the minimal app plus tiny stored web/ files, 500 a directory."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in app_members():
            zf.writestr(zinfo(name, mode=0o100644), data)
        for n in range(count - len(app_members())):
            zf.writestr(zinfo(f"web/dist/{n // 500:03d}/module-{n:06d}.js", mode=0o100644, compress=zipfile.ZIP_STORED), b"x;")
    return path


# --------------------------------------------------------------------------------------------
# ZIPs written byte by byte, for central directories zipfile would never write


@dataclass
class RawMember:
    """One member of `raw_zip`: stored data and every header field a test may want to falsify."""

    name: bytes
    data: bytes = b""
    flags: int = 0
    method: int = zipfile.ZIP_STORED
    crc: int | None = None  # None: the data's CRC-32
    compress_size: int | None = None  # None: len(data)
    file_size: int | None = None  # None: len(data)
    header_offset: int | None = None  # None: where the local header really is
    extract_version: int = 20
    external_attr: int = 0o100644 << 16
    extra: bytes = b""  # central directory extra field
    local_name: bytes | None = None  # None: the same as name
    local_flags: int | None = None  # None: the same as flags
    comment: bytes = b""


def zip64_extra(*values: int) -> bytes:
    """A ZIP64 extended information extra field (0x0001) holding these 8-byte values in order."""
    return struct.pack("<HH", 1, 8 * len(values)) + b"".join(struct.pack("<Q", v) for v in values)


def unicode_path_extra(for_name: bytes, unicode_name: str, version: int = 1) -> bytes:
    """An Info-ZIP Unicode Path extra field (0x7075) naming `for_name` by its CRC-32."""
    body = struct.pack("<BL", version, zlib.crc32(for_name)) + unicode_name.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


def raw_zip(
    members: Iterable[RawMember],
    *,
    comment: bytes = b"",
    prefix: bytes = b"",
    zip64: bool = False,
    entries: int | None = None,
    cd_size: int | None = None,
    cd_offset: int | None = None,
    zip64_disks: tuple[int, int] = (0, 1),
    appended: bool = False,
    order: list[int] | None = None,
) -> bytes:
    """A ZIP (stored data) written field by field after `prefix`; any end-record value may be falsified.

    With `zip64`, a ZIP64 end record and locator carry the counts, size and offset, and the classic
    end record holds 0xFFFF/0xFFFFFFFF in their place, as ZIP64 writers do. With `appended`, offsets
    count from the end of `prefix`, as in a ZIP concatenated to a stub (zipfile shifts them back).
    `order` lists the members in the order of their central directory entries (file order if None).
    """
    base = 0 if appended else len(prefix)
    out = bytearray()
    entries_at: list[bytes] = []
    members = list(members)
    for m in members:
        local_offset = len(out)
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        csize = len(m.data) if m.compress_size is None else m.compress_size
        fsize = len(m.data) if m.file_size is None else m.file_size
        local_name = m.name if m.local_name is None else m.local_name
        local_flags = m.flags if m.local_flags is None else m.local_flags
        out += struct.pack(
            "<4s2B4HL2L2H", b"PK\x03\x04", m.extract_version, 0, local_flags, m.method, 0, 0x21, crc,
            len(m.data), len(m.data), len(local_name), 0,
        )  # fmt: skip
        out += local_name + m.data
        offset = local_offset + base if m.header_offset is None else m.header_offset
        entry = struct.pack(
            "<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, m.extract_version, 0, m.flags, m.method, 0, 0x21, crc,
            min(csize, 0xFFFF_FFFF), min(fsize, 0xFFFF_FFFF), len(m.name), len(m.extra), len(m.comment), 0, 0,
            m.external_attr, min(offset, 0xFFFF_FFFF),
        )  # fmt: skip
        entries_at.append(entry + m.name + m.extra + m.comment)
    central = b"".join(entries_at[k] for k in (range(len(members)) if order is None else order))
    start = base + len(out)
    count = len(members) if entries is None else entries
    size = len(central) if cd_size is None else cd_size
    offset = start if cd_offset is None else cd_offset
    out += central
    if zip64:
        end64_at = base + len(out)
        out += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, offset)
        disk, disks = zip64_disks
        out += struct.pack("<4sLQL", b"PK\x06\x07", disk, end64_at, disks)
        count, size, offset = 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), size, offset, len(comment))
    return prefix + bytes(out) + comment
