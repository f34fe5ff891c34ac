"""Build MDA archives (well-formed and hostile) for the MDA reader's tests."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile
from collections.abc import Iterable
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
