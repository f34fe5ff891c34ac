"""Read Mendix deployment archives (MDA): metadata, digest, member checks and safe extraction.

An MDA is a plain ZIP written by MxBuild with the roots `model/`, `web/` and (Mx9+) `native/`.
An unpacked app directory is accepted too: it is valid when `model/`, `web/` and
`model/metadata.json` exist (the Cloud Foundry buildpack's detect rule).

Everything here treats the archive as hostile: every failure caused by the input surfaces as an
`MdaError` subclass whose message names the archive, the member or field at fault and what was
expected. Pure standard library on purpose: the CLI imports this before anything heavy.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mxinfra.digest import _BackgroundHash, _ForkedHash, sha256_file, take_early
from mxinfra.mda_errors import (
    ARCHIVE_ERRORS,
    AbsolutePathError,
    CompressionRatioError,
    CorruptArchiveError,
    DestinationError,
    DisallowedMemberError,
    DuplicateMemberError,
    EncryptedMemberError,
    LayoutError,
    MdaError,
    MetadataError,
    NotAZipError,
    PackageNotFoundError,
    PathTraversalError,
    RuntimeVersionError,
    SizeLimitError,
    SpecialFileError,
    SymlinkError,
    UnsafeMemberError,
)
from mxinfra.zipdir import MemberTable, read_directory, read_member


__all__ = [
    "AbsolutePathError",
    "CompressionRatioError",
    "Constant",
    "CorruptArchiveError",
    "DestinationError",
    "DisallowedMemberError",
    "DuplicateMemberError",
    "EncryptedMemberError",
    "ExtractionLimits",
    "LayoutError",
    "MdaError",
    "MdaPackage",
    "Metadata",
    "MetadataError",
    "NotAZipError",
    "PackageNotFoundError",
    "PathTraversalError",
    "RequestHandler",
    "RuntimeVersion",
    "RuntimeVersionError",
    "ScheduledEvent",
    "SizeLimitError",
    "SpecialFileError",
    "SymlinkError",
    "UnsafeMemberError",
    "UserRole",
    "open_mda",
    "sha256_file",
]

METADATA_MEMBER = "model/metadata.json"
ROOTS = ("model", "web", "native")
REQUIRED_ROOTS = ("model", "web")
# Real metadata.json files are a few KB (hundreds of KB for huge apps); anything far bigger is an attack.
MAX_METADATA_BYTES = 16 << 20
_CHUNK = 1 << 20
_MiB = 1 << 20
_GiB = 1 << 30
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08", b"PK\x01\x02")
_SUPPORTED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}



# --------------------------------------------------------------------------------------------
# metadata


def _show(value: Any) -> str:
    """Render a hostile value for a message: repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."



_VERSION_PART = re.compile(r"[0-9]{1,12}")
# A pre-release suffix as modelers wrote it (`5.8.0-rc1`), which the buildpacks' version parser reads too.
_PRERELEASE = re.compile(r"[0-9A-Za-z]+(?:[.-][0-9A-Za-z]+)*")


@dataclass(frozen=True, order=True)
class RuntimeVersion:
    """A Mendix runtime version; orders numerically (10.24.15 > 9.6.0, 5.8.0-rc1 < 5.8.0), shows as written."""

    major: int
    minor: int
    patch: int
    build: int = 0
    final: bool = True  # False for a pre-release: it sorts before the release of the same numbers
    prerelease: str = ""
    # The text as metadata.json has it: users, the repository and the Operator see what MxBuild wrote.
    written: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> RuntimeVersion:
        """Parse `10.24.15.93102`, `9.6.0` (build 0) or `5.8.0-rc1`; raise ValueError otherwise."""
        if not isinstance(text, str):
            raise ValueError(f"runtime version must be a string, not {type(text).__name__}")
        numbers_text, dash, prerelease = text.partition("-")
        parts = numbers_text.split(".")
        if len(parts) not in (3, 4) or not all(_VERSION_PART.fullmatch(p) for p in parts) or (dash and not _PRERELEASE.fullmatch(prerelease)):
            raise ValueError(
                f"{_show(text)} is not a runtime version: expected three or four dot-separated numbers like "
                "10.24.15.93102 or 9.6.0, optionally with a pre-release suffix like 5.8.0-rc1"
            )
        numbers = [int(p) for p in parts] + [0] * (4 - len(parts))
        return cls(*numbers, final=not dash, prerelease=prerelease, written=text)

    def __str__(self) -> str:
        return self.written or f"{self.major}.{self.minor}.{self.patch}.{self.build}"


@dataclass(frozen=True)
class Constant:
    """A model constant; `default_value` is always a string, as MxBuild writes it."""

    name: str
    type: str
    default_value: str
    description: str

    @property
    def module(self) -> str:
        """The module part of `Module.Constant`."""
        return self.name.split(".", 1)[0]


@dataclass(frozen=True)
class ScheduledEvent:
    """A scheduled event declared in the model."""

    name: str
    description: str


@dataclass(frozen=True)
class RequestHandler:
    """A runtime request handler (`/api/`, `/rest/`, ...) and whether it is on by default."""

    name: str
    default_enabled: bool
    match_exactly: bool


@dataclass(frozen=True)
class UserRole:
    """A project user role; `manageable_roles` are role ids."""

    id: str
    name: str
    manageable_roles: tuple[str, ...]


_JSON_TYPES = {
    str: "a string",
    int: "an integer",
    bool: "a boolean (true/false)",
    list: "an array",
    dict: "an object",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__  # pragma: no cover - json.loads yields only the above


_MISSING = object()
_KNOWN_KEYS = frozenset(
    {
        "RuntimeVersion",
        "ModelVersion",
        "ProjectID",
        "ProjectName",
        "AdminUser",
        "AdminRole",
        "JavaVersion",
        "Roles",
        "Constants",
        "ScheduledEvents",
        "RequestHandlers",
        "Languages",
    }
)


class _Reader:
    """Typed access to the decoded JSON; every failure names the field path and expected type."""

    def __init__(self, archive: str, member: str | None) -> None:
        self.archive = archive
        self.member = member

    def fail(self, path: str, problem: str, cls: type[MetadataError] = MetadataError) -> MetadataError:
        return cls(self.archive, self.member, f"field '{path}' {problem}", field=path)

    def get(self, obj: dict[str, Any], key: str, kind: type, path: str, default: Any = _MISSING) -> Any:
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise self.fail(path, f"is missing: expected {_JSON_TYPES[kind]}")
            return default
        # bool is an int subclass in Python but not in JSON
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise self.fail(path, f"is {_show(value)} ({_json_type(value)}): expected {_JSON_TYPES[kind]}")
        return value

    def optional(self, obj: dict[str, Any], key: str, kind: type, path: str) -> Any:
        """Absent or null -> None."""
        if obj.get(key) is None:
            return None
        return self.get(obj, key, kind, path)

    def items(self, obj: dict[str, Any], key: str, path: str) -> list[dict[str, Any]]:
        """An optional array of objects."""
        values = self.get(obj, key, list, path, default=[])
        for i, item in enumerate(values):
            if not isinstance(item, dict):
                raise self.fail(f"{path}[{i}]", f"is {_show(item)} ({_json_type(item)}): expected an object")
        return values

    def strings(self, obj: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
        values = self.get(obj, key, list, path, default=[])
        for i, item in enumerate(values):
            if not isinstance(item, str):
                raise self.fail(f"{path}[{i}]", f"is {_show(item)} ({_json_type(item)}): expected a string")
        return tuple(values)


@dataclass(frozen=True)
class Metadata:
    """The parts of `model/metadata.json` that deployers use; unknown keys are kept in `extra`."""

    runtime_version: RuntimeVersion
    model_version: str
    project_id: str
    project_name: str
    admin_user: str
    admin_role: str | None
    java_version: int | None
    roles: tuple[UserRole, ...]
    constants: tuple[Constant, ...]
    scheduled_events: tuple[ScheduledEvent, ...]
    request_handlers: tuple[RequestHandler, ...]
    languages: tuple[str, ...]
    # Newer Mendix versions add keys (Description, Configuration, DataBrokerConfiguration, ...);
    # kept verbatim, read-only at the top level. Not hashed: the values are JSON dicts/lists.
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def constant(self, name: str) -> Constant | None:
        """The constant called `Module.Constant`, or None."""
        for constant in self.constants:
            if constant.name == name:
                return constant
        return None

    @classmethod
    def from_json(cls, data: bytes | str, *, source: str) -> Metadata:
        """Parse metadata.json text; `source` prefixes every error message."""
        return _parse_metadata(data, archive=source, member=None)


def _has_lone_surrogate(value: Any) -> bool:
    """True if any string in a parsed JSON value holds a surrogate (it cannot be printed or stored)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= ch <= "\udfff" for ch in item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _parse_metadata(data: bytes | str, *, archive: str, member: str | None) -> Metadata:
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            # MxBuild writes UTF-8; tolerate a BOM that an editor may have added
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MetadataError(archive, member, f"is not UTF-8 text (byte {exc.start}): expected a JSON object") from None
    else:
        text = data
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(
            archive, member, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise MetadataError(archive, member, "is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise MetadataError(archive, member, f"is not valid JSON: {exc}") from None
    if _has_lone_surrogate(doc):
        raise MetadataError(archive, member, "contains an unpaired UTF-16 surrogate (\\ud800-\\udfff): expected valid Unicode text")
    if not isinstance(doc, dict):
        raise MetadataError(archive, member, f"is a JSON {_json_type(doc)}: expected a JSON object")

    r = _Reader(archive, member)
    raw_version = r.get(doc, "RuntimeVersion", str, "RuntimeVersion")
    try:
        runtime_version = RuntimeVersion.parse(raw_version)
    except ValueError:
        raise r.fail(
            "RuntimeVersion",
            f"is {_show(raw_version)}: expected three or four dot-separated numbers like 10.24.15.93102 or 9.6.0 "
            "(a pre-release suffix like -rc1 may follow)",
            RuntimeVersionError,
        ) from None

    roles_raw = r.get(doc, "Roles", dict, "Roles", default={})
    roles = []
    for role_id, role in roles_raw.items():
        path = f"Roles[{_show(role_id)}]"
        if not isinstance(role, dict):
            raise r.fail(path, f"is {_show(role)} ({_json_type(role)}): expected an object")
        roles.append(
            UserRole(
                id=role_id,
                name=r.get(role, "Name", str, f"{path}.Name"),
                manageable_roles=r.strings(role, "ManageableRoles", f"{path}.ManageableRoles"),
            )
        )

    constants = tuple(
        Constant(
            name=r.get(c, "Name", str, f"Constants[{i}].Name"),
            type=r.get(c, "Type", str, f"Constants[{i}].Type"),
            default_value=r.get(c, "DefaultValue", str, f"Constants[{i}].DefaultValue", default=""),
            description=r.get(c, "Description", str, f"Constants[{i}].Description", default=""),
        )
        for i, c in enumerate(r.items(doc, "Constants", "Constants"))
    )
    events = tuple(
        ScheduledEvent(
            name=r.get(e, "Name", str, f"ScheduledEvents[{i}].Name"),
            description=r.get(e, "Description", str, f"ScheduledEvents[{i}].Description", default=""),
        )
        for i, e in enumerate(r.items(doc, "ScheduledEvents", "ScheduledEvents"))
    )
    handlers = tuple(
        RequestHandler(
            name=r.get(h, "Name", str, f"RequestHandlers[{i}].Name"),
            default_enabled=r.get(h, "DefaultEnabled", bool, f"RequestHandlers[{i}].DefaultEnabled"),
            # older models have no MatchExactly: prefix matching was the only behaviour
            match_exactly=r.get(h, "MatchExactly", bool, f"RequestHandlers[{i}].MatchExactly", default=False),
        )
        for i, h in enumerate(r.items(doc, "RequestHandlers", "RequestHandlers"))
    )

    return Metadata(
        runtime_version=runtime_version,
        model_version=r.get(doc, "ModelVersion", str, "ModelVersion"),
        project_id=r.get(doc, "ProjectID", str, "ProjectID"),
        # every known MxBuild version writes it; required so resources can be named after the app
        project_name=r.get(doc, "ProjectName", str, "ProjectName"),
        admin_user=r.get(doc, "AdminUser", str, "AdminUser", default="MxAdmin"),
        admin_role=r.optional(doc, "AdminRole", str, "AdminRole"),
        java_version=r.optional(doc, "JavaVersion", int, "JavaVersion"),
        roles=tuple(roles),
        constants=constants,
        scheduled_events=events,
        request_handlers=handlers,
        languages=r.strings(doc, "Languages", "Languages"),
        extra=MappingProxyType({k: v for k, v in doc.items() if k not in _KNOWN_KEYS}),
    )


# --------------------------------------------------------------------------------------------
# limits and member rules


@dataclass(frozen=True)
class ExtractionLimits:
    """Bounds that keep a hostile archive from filling the disk.

    `max_ratio` applies only to members larger than `ratio_min_bytes` uncompressed: small text files
    (a run of spaces, an empty JSON array) legitimately compress hundreds of times, and a member below
    1 MiB cannot hurt on its own (the total and the member count bound the sum). Real MDA content
    (model.mdp, jars, JS bundles) compresses well under 20:1; a zip bomb reaches ~1000:1.
    Exceeding `max_members` raises SizeLimitError.
    """

    max_total_bytes: int = 4 * _GiB
    max_ratio: float = 200.0
    max_members: int = 200_000
    ratio_min_bytes: int = _MiB


_DRIVE = re.compile(r"^[A-Za-z]:")
_SPECIAL_KINDS = frozenset({stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK})


def _member_key(archive: str, name: str) -> str:
    """Validate a member name and return it normalised: components joined by '/', no '' or '.'."""
    if name.startswith(("/", "\\")) or (name[1:2] == ":" and _DRIVE.match(name)):
        raise AbsolutePathError(archive, name, "absolute path: expected a path relative to the archive root")
    if "\\" in name:
        # a Windows extractor would treat it as a separator; MxBuild writes only '/'
        raise PathTraversalError(archive, name, "backslash in member name: expected '/' separators only")
    parts = name.split("/")
    if "" in parts or "." in parts:
        parts = [p for p in parts if p != "" and p != "."]
    if ".." in parts:
        raise PathTraversalError(archive, name, "'..' component: expected a path inside the archive")
    if not parts or parts[0] not in ROOTS or (len(parts) == 1 and not name.endswith("/")):
        raise DisallowedMemberError(archive, name, "outside the app: expected a member under model/, web/ or native/")
    return "/".join(parts)


def _member_parts(archive: str, name: str) -> tuple[str, ...]:
    """Validate a member name and return its normalised components (no '', '.')."""
    return tuple(_member_key(archive, name).split("/"))


def _check_table(archive: str, table: MemberTable, limits: ExtractionLimits) -> None:
    """Apply every extraction rule to the central directory, member by member in directory order.

    No name is kept as a string per member. Duplicates are found through an open-addressing table
    of 64-bit hashes of the normalised names (12 bytes a slot, 1.5 to 3 slots a member) in which
    every hit is confirmed on the real names, so a collision never reports a false error. A name that
    is a file and also a parent directory is detected against the set of distinct parent directories
    (a few per thousand members in a real app); only then is the table walked again, to report it
    in directory order as a dict of every name would.
    """
    count = len(table)
    if count > limits.max_members:
        raise SizeLimitError(archive, None, f"{count} members: expected at most {limits.max_members}")

    def key_of(i: int) -> str:
        # the normalised name of a member that already passed _member_key
        return _member_key(archive, table.name(i))

    def file_slot(key: str, h: int) -> int:
        """The slot of the first member named `key` if that member is a file, else -1."""
        slot = h & mask
        while stored := hashes[slot]:
            if stored == h and not is_dir_at[first := firsts[slot]] and key_of(first) == key:
                return slot
            slot = (slot + 1) & mask
        return -1

    flags, modes, methods = table.flags, table.external_attrs, table.methods
    file_sizes, compress_sizes = table.file_sizes, table.compress_sizes
    max_total, ratio_floor, max_ratio = limits.max_total_bytes, limits.ratio_min_bytes, limits.max_ratio
    is_dir_at = bytearray(count)
    # hash -> index of the first member with that normalised name; hash 0 marks an empty slot
    capacity = 1 << max(4, (count + count // 2).bit_length())
    mask = capacity - 1
    hashes = array("Q", [0]) * capacity
    firsts = array("I" if array("I").itemsize >= 4 else "L", [0]) * capacity
    parents: set[str] = set()  # every proper parent directory of a name seen so far
    conflict = False
    total = 0
    for i, name in enumerate(table.names()):
        if flags[i] & 0x1:
            raise EncryptedMemberError(archive, name, "encrypted: expected unencrypted members as MxBuild writes them")
        # the file type bits of a Unix mode (S_IFMT), checked whatever create_system claims: an
        # attacker picks that field too
        kind = (modes[i] >> 16) & 0o170000
        if kind == stat.S_IFLNK:
            raise SymlinkError(archive, name, "symbolic link: expected regular files and directories only")
        if kind in _SPECIAL_KINDS:
            raise SpecialFileError(archive, name, "device, FIFO or socket: expected regular files and directories only")
        key = _member_key(archive, name)
        is_dir = kind == stat.S_IFDIR or name.endswith("/")
        h = (hash(key) & 0xFFFF_FFFF_FFFF_FFFF) or 1
        slot = h & mask
        while stored := hashes[slot]:
            if stored == h and key_of(first := firsts[slot]) == key:
                if not (is_dir and is_dir_at[first]):
                    raise DuplicateMemberError(archive, name, "appears more than once: expected unique member names")
                break  # a directory listed again: its first entry stands for both
            slot = (slot + 1) & mask
        else:
            hashes[slot] = h
            firsts[slot] = i
            is_dir_at[i] = is_dir
            if not is_dir and key in parents:
                conflict = True
        # the parents not seen before; the walk stops at the first known one (its own are known too)
        cut = key.rfind("/")
        while cut > 0 and (parent := key[:cut]) not in parents:
            parents.add(parent)
            if not conflict and file_slot(parent, (hash(parent) & 0xFFFF_FFFF_FFFF_FFFF) or 1) >= 0:
                conflict = True
            cut = key.rfind("/", 0, cut)
        method = methods[i]
        if method not in _SUPPORTED_METHODS:
            raise CorruptArchiveError(archive, name, f"compression method {method}: expected deflate or stored")
        if not is_dir:
            size = file_sizes[i]
            total += size
            if total > max_total:
                raise SizeLimitError(archive, name, f"total uncompressed size passes {max_total} bytes: expected at most that")
            if size > ratio_floor:
                compressed = compress_sizes[i]
                ratio = size / max(compressed, 1)
                if ratio > max_ratio:
                    raise CompressionRatioError(
                        archive,
                        name,
                        f"compression ratio {ratio:.0f}:1 ({size} bytes from {compressed}): expected at most {max_ratio:.0f}:1",
                    )
    if not conflict:
        return
    # a name used as a file and as a parent directory cannot be extracted (and hints at an attack):
    # report the first name in directory order and its shortest such parent, as the rule always has
    for i in range(count):
        key = key_of(i)
        cut = key.find("/")
        while cut != -1:
            prefix = key[:cut]
            if file_slot(prefix, (hash(prefix) & 0xFFFF_FFFF_FFFF_FFFF) or 1) >= 0:
                raise DuplicateMemberError(archive, prefix, f"is a file and also the parent of {key}: expected one or the other")
            cut = key.find("/", cut + 1)
    raise AssertionError("a file that is also a parent directory was detected but not found again")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# directory trees


@dataclass(frozen=True)
class _TreeEntry:
    rel: str  # POSIX path relative to the app root
    path: Path
    is_dir: bool
    size: int


def _walk_tree(root: Path, *, strict: bool = True) -> Iterator[_TreeEntry]:
    """Entries under model/, web/, native/ in sorted order; symlinks and special files raise (or are skipped)."""
    archive = os.fspath(root)

    # an explicit stack rather than recursion: a deep hostile tree must not hit the recursion limit
    stack = [(root / top, top) for top in reversed(ROOTS) if top in REQUIRED_ROOTS or os.path.lexists(root / top)]
    while stack:
        path, rel = stack.pop()
        try:
            st = path.lstat()
        except OSError as exc:
            raise CorruptArchiveError(archive, rel, f"cannot be read: {exc.strerror or exc}") from None
        if stat.S_ISLNK(st.st_mode):
            if strict:
                raise SymlinkError(archive, rel, "symbolic link: expected regular files and directories only")
        elif stat.S_ISDIR(st.st_mode):
            yield _TreeEntry(rel, path, True, 0)
            try:
                names = sorted(os.listdir(path), reverse=True)
            except OSError as exc:
                raise CorruptArchiveError(archive, rel, f"cannot be read: {exc.strerror or exc}") from None
            stack.extend((path / name, f"{rel}/{name}") for name in names)
        elif stat.S_ISREG(st.st_mode):
            yield _TreeEntry(rel, path, False, st.st_size)
        elif strict:
            raise SpecialFileError(archive, rel, "device, FIFO or socket: expected regular files and directories only")


# --------------------------------------------------------------------------------------------
# the package


class MdaPackage:
    """An opened MDA (ZIP) or unpacked app directory; get one from `open_mda`."""

    def __init__(
        self,
        path: Path,
        *,
        is_archive: bool,
        metadata: Metadata,
        size_bytes: int,
        members: MemberTable | None = None,
        prefetch: _BackgroundHash | _ForkedHash | None = None,
    ) -> None:
        self.path = path
        self._prefetch = prefetch  # the file's hash, started when the archive was opened
        self.is_archive = is_archive
        self.metadata = metadata
        self.size_bytes = size_bytes
        # the central directory, compact (see mxinfra.zipdir); None for a directory
        self._members = members
        self._sha256: str | None = None
        self._hashed_bytes = 0
        self._verified = False
        self._checked: ExtractionLimits | None = None  # the limits the directory last passed

    def __repr__(self) -> str:
        kind = "archive" if self.is_archive else "directory"
        return f"MdaPackage({os.fspath(self.path)!r}, {kind}, runtime {self.metadata.runtime_version})"

    @property
    def _name(self) -> str:
        return os.fspath(self.path)

    def sha256(self, progress: Callable[[int], None] | None = None) -> str:
        """Hex SHA-256: of the file for an archive; for a directory, of its tree (see below). Cached.

        Directory digest: for each regular file under model/, web/, native/, sorted by the bytes of
        its relative POSIX path, feed `path (UTF-8, surrogateescape) + NUL + size (8 bytes big-endian)
        + content`. Directories themselves, modes and times do not count. It differs from the
        digest of the same app zipped: compare like with like.
        `progress` receives the byte count of each chunk hashed (on a cached call, the total once).
        """
        if self._sha256 is not None:
            if progress is not None:
                progress(self._hashed_bytes)
            return self._sha256
        counted = 0

        def count(n: int) -> None:
            nonlocal counted
            counted += n
            if progress is not None:
                progress(n)

        if self.is_archive and self._prefetch is not None:
            try:
                self._sha256, _ = self._prefetch.result(count)
            except OSError as exc:
                raise CorruptArchiveError(self._name, None, f"cannot be read: {exc.strerror or exc}") from None
            finally:
                self._prefetch = None
        elif self.is_archive:
            try:
                self._sha256 = sha256_file(self.path, count)
            except OSError as exc:
                raise CorruptArchiveError(self._name, None, f"cannot be read: {exc.strerror or exc}") from None
        else:
            self._sha256 = self._tree_sha256(count)
        self._hashed_bytes = counted
        return self._sha256

    def _tree_sha256(self, count: Callable[[int], None]) -> str:
        digest = hashlib.sha256()
        buf = bytearray(_MiB)
        view = memoryview(buf)
        files = sorted((e for e in _walk_tree(self.path) if not e.is_dir), key=lambda e: os.fsencode(e.rel))
        for entry in files:
            digest.update(os.fsencode(entry.rel) + b"\0" + entry.size.to_bytes(8, "big"))
            try:
                with open(entry.path, "rb", buffering=0) as f:
                    while n := f.readinto(buf):
                        digest.update(view[:n])
                        count(n)
            except OSError as exc:
                raise CorruptArchiveError(self._name, entry.rel, f"cannot be read: {exc.strerror or exc}") from None
        return digest.hexdigest()

    def verify(self, progress: Callable[[int], None] | None = None) -> str:
        """`check_members`, then every member inflated against its CRC-32 and size while hashing; the SHA-256.

        Costs one pass over the archive on all cores (see `mxinfra.integrity`); cached. A directory has
        no checksums to verify: its members are checked and its tree hashed.
        """
        self.check_members()
        if self._members is None:
            return self.sha256(progress)
        if not self._verified:
            from .integrity import verify_archive

            if self._prefetch is not None:  # verify hashes in its own pass: no second reader
                self._prefetch.cancel()
                self._prefetch = None
            counted = 0

            def count(n: int) -> None:
                nonlocal counted
                counted += n
                if progress is not None:
                    progress(n)

            self._sha256 = verify_archive(self.path, self._members, count)
            self._hashed_bytes = counted
            self._verified = True
        elif progress is not None:
            progress(self._hashed_bytes)
        return self._sha256  # type: ignore[return-value]

    def check_members(self, limits: ExtractionLimits = ExtractionLimits()) -> int:
        """Validate every member against the extraction rules without decompressing; return the count.

        For an archive the central directory is enough. For a directory the tree under model/, web/,
        native/ is walked (files and directories counted); other top-level entries are ignored, as
        extraction ignores them.
        """
        if self._members is not None:
            if self._checked != limits:  # the table never changes: one pass per set of limits
                _check_table(self._name, self._members, limits)
                self._checked = limits
            return len(self._members)
        count = 0
        total = 0
        for entry in _walk_tree(self.path):
            count += 1
            total += entry.size
            if count > limits.max_members:
                raise SizeLimitError(self._name, entry.rel, f"more than {limits.max_members} entries: expected at most that")
            if total > limits.max_total_bytes:
                raise SizeLimitError(
                    self._name, entry.rel, f"total size passes {limits.max_total_bytes} bytes: expected at most that"
                )
        return count

    def extract(self, dest: str | os.PathLike[str], limits: ExtractionLimits = ExtractionLimits()) -> Path:
        """Safely unpack model/, web/, native/ into `dest` (which must not exist); all or nothing.

        Works in a temporary sibling of `dest` and renames it into place at the end; on any error
        the temporary directory is removed. Sizes are enforced while writing, whatever the headers
        claim. Files get mode 0644 and directories 0755 (umask applies): modes in the archive are ignored.
        """
        dest = Path(dest)
        if os.path.lexists(dest):
            raise DestinationError(self._name, None, f"destination {os.fspath(dest)} already exists: expected a new path")
        parent = dest.parent
        if not parent.is_dir():
            raise DestinationError(
                self._name, None, f"destination parent {os.fspath(parent)} is not a directory: create it first"
            )
        self.check_members(limits)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the result should look like a normal directory
            if self._members is not None:
                self._extract_archive(tmp, limits)
            else:
                self._copy_tree(tmp, limits)
            if os.path.lexists(dest):
                raise DestinationError(self._name, None, f"destination {os.fspath(dest)} appeared during extraction")
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    def _extract_archive(self, tmp: Path, limits: ExtractionLimits) -> None:
        name = self._name
        budget = limits.max_total_bytes
        try:
            zf = zipfile.ZipFile(self.path)
        except ARCHIVE_ERRORS as exc:
            raise CorruptArchiveError(name, None, f"cannot be read: {exc}") from None
        with zf:
            # zipfile's own view of the archive (whatever it will write) passes the same rules first;
            # this path writes files, so its ZipInfo per member is no concern
            _check_table(name, MemberTable.from_infos(zf.infolist(), zf.comment), limits)
            for info in zf.infolist():
                target = tmp.joinpath(*_member_parts(name, info.filename))
                is_dir = info.filename.endswith("/") or stat.S_ISDIR(info.external_attr >> 16)
                if is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    src = zf.open(info)
                except ARCHIVE_ERRORS as exc:
                    raise CorruptArchiveError(name, info.filename, f"cannot be read: {exc}") from None
                with src, open(target, "xb") as out:
                    written = 0
                    while True:
                        try:
                            chunk = src.read(_CHUNK)
                        except ARCHIVE_ERRORS as exc:
                            raise CorruptArchiveError(name, info.filename, f"cannot be decompressed: {exc}") from None
                        if not chunk:
                            break
                        written += len(chunk)
                        # never trust the header: count what the decompressor really produces
                        if written > info.file_size:
                            raise SizeLimitError(
                                name, info.filename, f"decompresses past its declared {info.file_size} bytes"
                            )
                        budget -= len(chunk)
                        if budget < 0:
                            raise SizeLimitError(
                                name, info.filename, f"extraction passes {limits.max_total_bytes} bytes: expected at most that"
                            )
                        out.write(chunk)
                    if written != info.file_size:
                        raise CorruptArchiveError(
                            name, info.filename, f"decompresses to {written} bytes: its header declares {info.file_size}"
                        )

    def _copy_tree(self, tmp: Path, limits: ExtractionLimits) -> None:
        name = self._name
        budget = limits.max_total_bytes
        for entry in _walk_tree(self.path):
            target = tmp / entry.rel
            if entry.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            try:
                # O_NOFOLLOW: the file may have been swapped for a link since the walk looked at it
                fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise SymlinkError(name, entry.rel, "symbolic link: expected regular files only") from None
                raise CorruptArchiveError(name, entry.rel, f"cannot be read: {exc.strerror or exc}") from None
            with open(fd, "rb") as src, open(target, "xb") as out:
                while True:
                    try:
                        chunk = src.read(_CHUNK)
                    except OSError as exc:
                        raise CorruptArchiveError(name, entry.rel, f"cannot be read: {exc.strerror or exc}") from None
                    if not chunk:
                        break
                    budget -= len(chunk)
                    if budget < 0:
                        raise SizeLimitError(
                            name, entry.rel, f"copy passes {limits.max_total_bytes} bytes: expected at most that"
                        )
                    out.write(chunk)


# --------------------------------------------------------------------------------------------
# opening


def open_mda(path: str | os.PathLike[str], *, hash_ahead: bool = False) -> MdaPackage:
    """Open an .mda ZIP or unpacked app directory, reading only the central directory and metadata.json.

    `hash_ahead`: the caller will want `sha256()` (not `verify()`, which hashes in its own pass): an
    archive's hash starts at once, beside the directory read."""
    p = Path(path)
    name = os.fspath(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise PackageNotFoundError(name, None, "does not exist: expected an .mda file or an unpacked app directory") from None
    except OSError as exc:
        raise CorruptArchiveError(name, None, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        return _open_directory(p, name)
    if not stat.S_ISREG(st.st_mode):
        raise NotAZipError(name, None, "is not a regular file: expected an .mda (ZIP) file or an app directory")
    return _open_archive(p, name, st.st_size, hash_ahead)


def _open_directory(p: Path, name: str) -> MdaPackage:
    for root in REQUIRED_ROOTS:
        if not (p / root).is_dir():
            raise LayoutError(name, f"{root}/", "is missing: an unpacked app needs model/, web/ and model/metadata.json")
    meta_path = p / METADATA_MEMBER
    try:
        st = meta_path.lstat()
    except FileNotFoundError:
        raise LayoutError(name, METADATA_MEMBER, "is missing: an unpacked app needs model/, web/ and model/metadata.json") from None
    except OSError as exc:
        raise CorruptArchiveError(name, METADATA_MEMBER, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise SymlinkError(name, METADATA_MEMBER, "symbolic link: expected a regular file")
    if not stat.S_ISREG(st.st_mode):
        raise LayoutError(name, METADATA_MEMBER, "is not a regular file: expected the app's metadata JSON")
    if st.st_size > MAX_METADATA_BYTES:
        raise MetadataError(name, METADATA_MEMBER, f"is {st.st_size} bytes: expected at most {MAX_METADATA_BYTES}")
    try:
        with open(meta_path, "rb") as f:
            data = f.read(MAX_METADATA_BYTES + 1)
    except OSError as exc:
        raise CorruptArchiveError(name, METADATA_MEMBER, f"cannot be read: {exc.strerror or exc}") from None
    metadata = _parse_metadata(data, archive=name, member=METADATA_MEMBER)
    # opening only reports; symlinks and special files are rejected by check_members/extract/sha256
    size = sum(e.size for e in _walk_tree(p, strict=False))
    return MdaPackage(p, is_archive=False, metadata=metadata, size_bytes=size)


def _open_archive(p: Path, name: str, size: int, hash_ahead: bool = False) -> MdaPackage:
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError as exc:
        raise CorruptArchiveError(name, None, f"cannot be read: {exc.strerror or exc}") from None
    # The same open file for both: the hash is of exactly the bytes whose directory is read.
    prefetch = (take_early(fd) or _BackgroundHash(os.dup(fd))) if hash_ahead else None
    try:
        pkg = _read_archive(fd, p, name, size)
    except BaseException:
        if prefetch is not None:
            prefetch.cancel()
        raise
    finally:
        os.close(fd)
    pkg._prefetch = prefetch
    return pkg


def _read_archive(fd: int, p: Path, name: str, size: int) -> MdaPackage:
    try:
        members = read_directory(fd)
    except OSError as exc:
        raise CorruptArchiveError(name, None, f"cannot be read: {exc.strerror or exc}") from None
    except ARCHIVE_ERRORS as exc:
        try:
            head = os.pread(fd, 4, 0)
        except OSError:
            head = b""
        if head in _ZIP_MAGICS:
            raise CorruptArchiveError(name, None, f"damaged or truncated ZIP ({exc}): expected a complete .mda") from None
        raise NotAZipError(name, None, "is not a ZIP archive: expected an .mda file as written by MxBuild") from None
    try:
        # one pass over the names, none kept: the layout and the one metadata.json
        roots_seen = {root: False for root in REQUIRED_ROOTS}
        meta: list[int] = []
        for i, member in enumerate(members.names()):
            top, sep, _ = member.partition("/")
            if sep and top in roots_seen:
                roots_seen[top] = True
            if member == METADATA_MEMBER:
                meta.append(i)
        for root in REQUIRED_ROOTS:
            if not roots_seen[root]:
                raise LayoutError(name, f"{root}/", "is missing: an MDA has model/, web/ and model/metadata.json")
        if not meta:
            raise LayoutError(name, METADATA_MEMBER, "is missing: an MDA has model/, web/ and model/metadata.json")
        if len(meta) > 1:
            # two copies could show one app to `inspect` and deploy another
            raise DuplicateMemberError(name, METADATA_MEMBER, "appears more than once: expected unique member names")
        i = meta[0]
        if members.flags[i] & 0x1:
            raise EncryptedMemberError(name, METADATA_MEMBER, "encrypted: expected unencrypted members")
        if members.file_sizes[i] > MAX_METADATA_BYTES:
            raise MetadataError(name, METADATA_MEMBER, f"is {members.file_sizes[i]} bytes: expected at most {MAX_METADATA_BYTES}")
        data = read_member(fd, members, i)
    except MdaError:
        raise
    except ARCHIVE_ERRORS as exc:
        raise CorruptArchiveError(name, METADATA_MEMBER, f"cannot be read: {exc}") from None
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(name, METADATA_MEMBER, f"is larger than {MAX_METADATA_BYTES} bytes: expected less")
    metadata = _parse_metadata(data, archive=name, member=METADATA_MEMBER)
    return MdaPackage(p, is_archive=True, metadata=metadata, size_bytes=size, members=members)
