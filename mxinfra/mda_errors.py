"""What can be wrong with a package the user supplied: one exception per kind, each naming the archive,
the member and what was expected; and what the zipfile module raises on damaged input. Pure."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib

from mxinfra.errors import UserError

try:  # lzma is an optional part of CPython builds; zipfile only needs it for LZMA members
    import lzma

    _LZMA_ERRORS: tuple[type[BaseException], ...] = (lzma.LZMAError,)
except ImportError:  # pragma: no cover - depends on the interpreter build
    _LZMA_ERRORS = ()

# What the zipfile module (and the decompressors under it) raise on damaged input. Only calls that
# read the archive are wrapped, so a full disk while writing the extraction is not blamed on it.
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    IndexError,
    KeyError,
    *_LZMA_ERRORS,
)


class MdaError(UserError):
    """A package the user supplied is unusable; names the archive, the member and what was expected."""

    def __init__(self, archive: str | os.PathLike[str], member: str | None, problem: str) -> None:
        super().__init__(os.fspath(archive), member, problem)
        self.archive: str = os.fspath(archive)
        self.member: str | None = member
        self.problem = problem

    def __str__(self) -> str:
        where = f"{self.archive}: {self.member}" if self.member else self.archive
        return f"{where}: {self.problem}"


class PackageNotFoundError(MdaError):
    """The given path does not exist."""


class NotAZipError(MdaError):
    """The file is not a ZIP archive (nor an unpacked app directory)."""


class CorruptArchiveError(MdaError):
    """The ZIP is truncated, fails its CRC or cannot be read."""


class LayoutError(MdaError):
    """`model/`, `web/` or `model/metadata.json` is missing."""


class MetadataError(MdaError):
    """`model/metadata.json` is not valid JSON or a field is missing or of the wrong type."""

    def __init__(
        self,
        archive: str | os.PathLike[str],
        member: str | None,
        problem: str,
        field: str | None = None,
    ) -> None:
        super().__init__(archive, member, problem)
        self.field = field


class RuntimeVersionError(MetadataError):
    """`RuntimeVersion` is not a Mendix version number."""


class UnsafeMemberError(MdaError):
    """A member breaks a safe-extraction rule."""


class DisallowedMemberError(UnsafeMemberError):
    """A member outside `model/`, `web/` and `native/`."""


class AbsolutePathError(UnsafeMemberError):
    """A member name that is absolute (`/x`, `\\x`, `C:x`)."""


class PathTraversalError(UnsafeMemberError):
    """A member name with a `..` component or a backslash separator."""


class SymlinkError(UnsafeMemberError):
    """A member (or unpacked file) that is a symbolic link."""


class SpecialFileError(UnsafeMemberError):
    """A member that is a device, FIFO or socket."""


class DuplicateMemberError(UnsafeMemberError):
    """Two members with the same normalised name, or a name that is both a file and a directory."""


class EncryptedMemberError(UnsafeMemberError):
    """A password-protected member; MxBuild never writes them."""


class SizeLimitError(UnsafeMemberError):
    """Total uncompressed size (declared or actually written) or member count over the limit."""


class CompressionRatioError(UnsafeMemberError):
    """A member whose uncompressed/compressed ratio marks it as a decompression bomb."""


class DestinationError(MdaError):
    """The extraction destination already exists or its parent is missing."""

