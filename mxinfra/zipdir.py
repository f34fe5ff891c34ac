"""A ZIP central directory read in bounded memory into a compact member table.

Hand-written because `zipfile` has no streaming directory API: `ZipFile()` reads the whole central
directory into one bytes object and builds a `ZipInfo` (~0.6 KB with its strings) for every member
before anything else can run, so memory grows with the member count (~45 MB for a 70,000-member
MDA). This reader parses the directory in chunks of `_CHUNK` bytes and keeps 28 bytes plus the raw
name per member in arrays (44 once a ZIP64 value needs 64-bit fields).

It follows zipfile's `_EndRecData`, `_EndRecData64` and `ZipFile._RealGetContents` step by step:
the same end-record search, the same ZIP64 handling, the same tolerance of short reads at the end of
the directory, the same name decoding (UTF-8 with flag 0x800, else cp437; cut at a NUL; the Info-ZIP
Unicode Path field where this Python's zipfile honours it) and the same exceptions and messages, so
an archive reads here exactly as `zipfile` would read it (tests/test_zipdir.py compares the two).
Standard library only, like `mda`.
"""

from __future__ import annotations

import bz2
import os
import struct
import sys
import zipfile
import zlib
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["MemberTable", "iter_content", "read_directory", "read_member"]

_CHUNK = 256 << 10
_MAX_EXTRACT_VERSION = 63  # zipfile.MAX_EXTRACT_VERSION: newer features it refuses to read
_UTF8_FLAG = 0x800
_PATCHED_FLAG = 0x20
_STRONG_ENCRYPTION_FLAG = 0x40

_END = struct.Struct("<4s4H2LH")  # end of central directory record (22 bytes)
_END64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes
_END64 = struct.Struct("<4sQ2H2L4Q")  # 56 bytes, without 'zip64 extensible data' (as zipfile assumes)
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header (46 bytes)
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # local file header (30 bytes)
_EXTRA_HEAD = struct.Struct("<HH")
_Q = struct.Struct("<Q")
_UNICODE_PATH = struct.Struct("<BL")

# zipfile reads the Info-ZIP Unicode Path extra field (0x7075) from Python 3.12 on; follow the running
# interpreter so these names always match the ones extraction (which goes through zipfile) writes.
_HONOURS_UNICODE_PATH = sys.version_info >= (3, 12)
_U32 = "I" if array("I").itemsize == 4 else "L"
_MAX32 = 0xFFFF_FFFF


def _sanitize(name: str) -> str:
    """ZipInfo's filename from its orig_filename: cut at the first NUL, native separators to '/'."""
    nul = name.find("\0")
    if nul >= 0:
        name = name[:nul]
    if os.sep != "/" and os.sep in name:
        name = name.replace(os.sep, "/")
    if _HONOURS_UNICODE_PATH and os.altsep and os.altsep != "/" and os.altsep in name:
        name = name.replace(os.altsep, "/")
    return name


def _decode(raw: bytes | memoryview, flags: int) -> str:
    """A name as zipfile decodes it: UTF-8 under flag 0x800, else cp437 (identical to ASCII on ASCII bytes)."""
    if flags & _UTF8_FLAG:
        return str(raw, "utf-8")
    try:
        return str(raw, "ascii")  # the C fast path; the cp437 codec is a Python-level table lookup
    except UnicodeDecodeError:
        return str(raw, "cp437")


class MemberTable:
    """The central directory as arrays: member i's fields at index i, raw names in one blob.

    28 bytes plus the name per member (44 when ZIP64 values need 64 bits), where a `ZipInfo` costs
    ~600. Names are decoded on demand (`name`, `orig_name`, `names`), exactly as zipfile decodes them.
    """

    __slots__ = (
        "header_offsets",
        "compress_sizes",
        "file_sizes",
        "crcs",
        "methods",
        "flags",
        "external_attrs",
        "comment",
        "concat",
        "_names",
        "_name_ends",
        "_renamed",
    )

    def __init__(self) -> None:
        # 32-bit until a value needs more (ZIP64): 12 bytes a member saved on every real MDA
        self.header_offsets = array(_U32)
        self.compress_sizes = array(_U32)
        self.file_sizes = array(_U32)
        self.crcs = array(_U32)
        self.methods = array("H")
        self.flags = array("H")
        self.external_attrs = array(_U32)
        self.comment = b""
        # header_offsets hold the directory's values; zipfile adds this shift (non-zero when the archive
        # was appended to something else) to each. Kept apart so every value fits an unsigned array.
        self.concat = 0
        self._names = bytearray()
        self._name_ends = array(_U32)
        # index -> filename where a Unicode Path field replaced the decoded name (rare: Info-ZIP only)
        self._renamed: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._name_ends)

    def _widen(self) -> None:
        """Switch the offset, size and name-end arrays to 64 bits (a ZIP64 value does not fit 32)."""
        self.header_offsets = array("Q", self.header_offsets)
        self.compress_sizes = array("Q", self.compress_sizes)
        self.file_sizes = array("Q", self.file_sizes)
        self._name_ends = array("Q", self._name_ends)

    @property
    def _wide(self) -> bool:
        return self._name_ends.typecode == "Q"

    def raw_name(self, i: int) -> bytes:
        """Member i's name bytes as the central directory holds them."""
        start = self._name_ends[i - 1] if i else 0
        return bytes(self._names[start : self._name_ends[i]])

    def orig_name(self, i: int) -> str:
        """ZipInfo.orig_filename: the name decoded, UTF-8 under flag 0x800, else cp437."""
        return _decode(self.raw_name(i), self.flags[i])

    def name(self, i: int) -> str:
        """ZipInfo.filename: the name extraction uses (cut at a NUL, or the Unicode Path field's)."""
        renamed = self._renamed.get(i)
        return renamed if renamed is not None else _sanitize(self.orig_name(i))

    def names(self) -> Iterator[str]:
        """Every member's `name(i)` in directory order, decoded one at a time (none are kept)."""
        blob = memoryview(self._names)
        flags = self.flags
        renamed = self._renamed
        start = 0
        try:
            for i, end in enumerate(self._name_ends):
                if renamed and i in renamed:
                    name = renamed[i]
                else:
                    name = _decode(blob[start:end], flags[i])
                    if "\0" in name or os.sep != "/":
                        name = _sanitize(name)
                yield name
                start = end
        finally:
            blob.release()  # a live view would keep the blob from being resized

    def header_offset(self, i: int) -> int:
        """ZipInfo.header_offset: where member i's local header starts (negative in a damaged archive)."""
        return self.header_offsets[i] + self.concat

    def is_dir(self, i: int) -> bool:
        """ZipInfo.is_dir(): the name ends with '/'."""
        return self.name(i).endswith("/")

    def append(
        self, raw_name: bytes, flags: int, method: int, crc: int, compress_size: int, file_size: int, header_offset: int, external_attr: int
    ) -> None:
        """Add a member (the reader inlines this; kept for `from_infos` and tests)."""
        if not self._wide and max(compress_size, file_size, header_offset, len(self._names) + len(raw_name)) > _MAX32:
            self._widen()
        self._names += raw_name
        self._name_ends.append(len(self._names))
        self.flags.append(flags)
        self.methods.append(method)
        self.crcs.append(crc)
        self.compress_sizes.append(compress_size)
        self.file_sizes.append(file_size)
        self.header_offsets.append(header_offset)
        self.external_attrs.append(external_attr)

    @classmethod
    def from_infos(cls, infos: Iterable[zipfile.ZipInfo], comment: bytes = b"") -> MemberTable:
        """The table of members zipfile has read (extraction checks its own ZipFile's view with the same rules)."""
        table = cls()
        table.comment = comment
        infos = list(infos)
        # zipfile's offsets may be negative (a damaged directory): shift them into the unsigned array
        table.concat = min([0, *(i.header_offset for i in infos)])
        for info in infos:
            flags = info.flag_bits
            try:
                raw = info.orig_filename.encode("utf-8" if flags & _UTF8_FLAG else "cp437")
            except UnicodeEncodeError:  # a ZipInfo made in memory, not read from an archive
                raw, flags = info.orig_filename.encode("utf-8", "surrogateescape"), flags | _UTF8_FLAG
            offset = min(info.header_offset - table.concat, 0xFFFF_FFFF_FFFF_FFFF)
            table.append(raw, flags, info.compress_type, info.CRC, info.compress_size, info.file_size, offset, info.external_attr)
            if info.filename != _sanitize(info.orig_filename):
                table._renamed[len(table) - 1] = info.filename
        return table


def _pread(fd: int, size: int, offset: int) -> bytes:
    """Up to `size` bytes at `offset`; fewer only at the end of the file (like a file's read())."""
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _end_record(fd: int, filesize: int) -> tuple[int, int, bytes, int, bool] | None:
    """zipfile's _EndRecData: (directory size, directory offset, comment, record position, ZIP64?) or None."""
    if filesize < _END.size:
        return None
    data = _pread(fd, _END.size, filesize - _END.size)
    if len(data) == _END.size and data[:4] == b"PK\x05\x06" and data[-2:] == b"\0\0":
        # no archive comment: the record is the last thing in the file
        fields = _END.unpack(data)
        return _end_record64(fd, filesize, -_END.size, fields[5], fields[6], b"", filesize - _END.size)
    # a comment (up to 64 KiB) follows the record: find the last signature in the tail
    tail_start = max(filesize - (1 << 16) - _END.size, 0)
    data = _pread(fd, filesize - tail_start, tail_start)
    start = data.rfind(b"PK\x05\x06")
    if start < 0:
        return None
    record = data[start : start + _END.size]
    if len(record) != _END.size:
        return None
    fields = _END.unpack(record)
    comment = data[start + _END.size : start + _END.size + fields[7]]
    location = tail_start + start
    return _end_record64(fd, filesize, location - filesize, fields[5], fields[6], comment, location)


def _end_record64(
    fd: int, filesize: int, offset: int, size_cd: int, offset_cd: int, comment: bytes, location: int
) -> tuple[int, int, bytes, int, bool]:
    """zipfile's _EndRecData64: the ZIP64 record, when a locator precedes the end record, overrides it."""
    at = filesize + offset - _END64_LOCATOR.size
    if at < 0:
        return size_cd, offset_cd, comment, location, False
    data = _pread(fd, _END64_LOCATOR.size, at)
    if len(data) != _END64_LOCATOR.size:
        return size_cd, offset_cd, comment, location, False
    sig, diskno, _reloff, disks = _END64_LOCATOR.unpack(data)
    if sig != b"PK\x06\x07":
        return size_cd, offset_cd, comment, location, False
    if diskno != 0 or disks > 1:
        raise zipfile.BadZipFile("zipfiles that span multiple disks are not supported")
    at -= _END64.size
    if at < 0:
        # zipfile's seek fails here with OSError, which ZipFile() reports as this
        raise zipfile.BadZipFile("File is not a zip file")
    data = _pread(fd, _END64.size, at)
    if len(data) != _END64.size:
        return size_cd, offset_cd, comment, location, False
    fields = _END64.unpack(data)
    if fields[0] != b"PK\x06\x06":
        return size_cd, offset_cd, comment, location, False
    return fields[8], fields[9], comment, location, True


def _decode_extra(extra: bytes, raw_name: bytes, file_size: int, compress_size: int, header_offset: int) -> tuple[int, int, int, str | None]:
    """ZipInfo._decodeExtra: ZIP64 sizes and offset (and the Unicode Path name where zipfile reads it)."""
    renamed = None
    while len(extra) >= 4:
        kind, length = _EXTRA_HEAD.unpack_from(extra)
        if length + 4 > len(extra):
            raise zipfile.BadZipFile("Corrupt extra field %04x (size=%d)" % (kind, length))
        if kind == 0x0001:
            data = extra[4 : length + 4]
            field = ""
            try:
                if file_size in (0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF):
                    field = "File size"
                    (file_size,) = _Q.unpack(data[:8])
                    data = data[8:]
                if compress_size == 0xFFFF_FFFF:
                    field = "Compress size"
                    (compress_size,) = _Q.unpack(data[:8])
                    data = data[8:]
                if header_offset == 0xFFFF_FFFF:
                    field = "Header offset"
                    (header_offset,) = _Q.unpack(data[:8])
            except struct.error:
                raise zipfile.BadZipFile(f"Corrupt zip64 extra field. {field} not found.") from None
        elif kind == 0x7075 and _HONOURS_UNICODE_PATH:
            data = extra[4 : length + 4]
            try:
                version, name_crc = _UNICODE_PATH.unpack(data[:5])
            except struct.error as exc:
                raise zipfile.BadZipFile("Corrupt unicode path extra field (0x7075)") from exc
            # the field applies only to the name it was written for (its CRC-32 says which)
            if version == 1 and name_crc == zlib.crc32(raw_name):
                try:
                    unicode_name = data[5:].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise zipfile.BadZipFile("Corrupt unicode path extra field (0x7075): invalid utf-8 bytes") from exc
                if unicode_name:
                    renamed = _sanitize(unicode_name)
        extra = extra[length + 4 :]
    return file_size, compress_size, header_offset, renamed


def read_directory(fd: int) -> MemberTable:
    """Every member of the ZIP open at `fd`, read in bounded chunks; zipfile's exceptions on a damaged one."""
    filesize = os.fstat(fd).st_size
    try:
        end = _end_record(fd, filesize)
    except OSError:
        raise zipfile.BadZipFile("File is not a zip file") from None
    if end is None:
        raise zipfile.BadZipFile("File is not a zip file")
    size_cd, offset_cd, comment, location, is_zip64 = end
    # non-zero when the archive was appended to something else (a self-extractor stub)
    concat = location - size_cd - offset_cd
    if is_zip64:
        concat -= _END64.size + _END64_LOCATOR.size
    start_dir = offset_cd + concat
    if start_dir < 0:
        raise zipfile.BadZipFile("Bad offset for central directory")

    table = MemberTable()
    table.comment = comment
    table.concat = concat
    names = table._names
    name_ends = table._name_ends.append
    flags_add = table.flags.append
    methods_add = table.methods.append
    crcs_add = table.crcs.append
    csizes_add = table.compress_sizes.append
    fsizes_add = table.file_sizes.append
    offsets_add = table.header_offsets.append
    attrs_add = table.external_attrs.append
    wide = False
    unpack_central = _CENTRAL.unpack_from
    central_size = _CENTRAL.size

    # zipfile reads exactly size_cd bytes from start_dir (fewer at the end of the file) and parses that
    # window, where a short read of a name, extra field or comment is silently short: so does this.
    window_end = start_dir + size_cd
    next_read = start_dir
    buf = b""
    at = 0
    total = 0
    index = 0
    while total < size_cd:
        if len(buf) - at < central_size:
            buf, at, next_read = _refill(fd, buf, at, next_read, window_end, central_size)
            if len(buf) - at < central_size:
                raise zipfile.BadZipFile("Truncated central directory")
        (
            sig, _cv, _cs, extract_version, _res, flags, method, _t, _d, crc, compress_size, file_size,
            name_len, extra_len, comment_len, _disk, _iattr, external_attr, header_offset,
        ) = unpack_central(buf, at)  # fmt: skip
        if sig != b"PK\x01\x02":
            raise zipfile.BadZipFile("Bad magic number for central directory")
        at += central_size
        variable = name_len + extra_len + comment_len
        if len(buf) - at < variable:
            buf, at, next_read = _refill(fd, buf, at, next_read, window_end, variable)
        raw_name = buf[at : at + name_len]
        extra = buf[at + name_len : at + name_len + extra_len]
        at += variable
        if flags & _UTF8_FLAG:
            raw_name.decode("utf-8")  # zipfile decodes every name on open: invalid UTF-8 fails the archive
        if extract_version > _MAX_EXTRACT_VERSION:
            raise NotImplementedError("zip file version %.1f" % (extract_version / 10))
        if extra:
            file_size, compress_size, header_offset, renamed = _decode_extra(extra, raw_name, file_size, compress_size, header_offset)
            if renamed is not None:
                table._renamed[index] = renamed
        names += raw_name
        if not wide and (compress_size > _MAX32 or file_size > _MAX32 or header_offset > _MAX32 or len(names) > _MAX32):
            table._widen()
            wide = True
            name_ends = table._name_ends.append
            csizes_add = table.compress_sizes.append
            fsizes_add = table.file_sizes.append
            offsets_add = table.header_offsets.append
        name_ends(len(names))
        flags_add(flags)
        methods_add(method)
        crcs_add(crc)
        csizes_add(compress_size)
        fsizes_add(file_size)
        offsets_add(header_offset)
        attrs_add(external_attr)
        index += 1
        total += central_size + variable
    return table


def _refill(fd: int, buf: bytes, at: int, next_read: int, window_end: int, need: int) -> tuple[bytes, int, int]:
    """Keep the unread part of `buf` and read at least `need` more bytes of the window (fewer at its end)."""
    rest = buf[at:]
    want = min(max(need - len(rest), _CHUNK), window_end - next_read)
    if want <= 0:
        return rest, 0, next_read
    data = _pread(fd, want, next_read)
    return rest + data, 0, next_read + len(data)


# --------------------------------------------------------------------------------------------
# member data


class _ZipLzma:
    """ZIP's LZMA framing (version, properties size, properties, raw LZMA1 data) with bounded output."""

    def __init__(self) -> None:
        import lzma

        self._lzma = lzma
        self._head = b""
        self._decomp: Any = None
        self.eof = False

    @property
    def needs_input(self) -> bool:
        return self._decomp is None or self._decomp.needs_input

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self._decomp is None:
            self._head += data
            if len(self._head) <= 4:
                return b""
            (psize,) = struct.unpack("<H", self._head[2:4])
            if len(self._head) <= 4 + psize:
                return b""
            lzma = self._lzma
            # the properties decoder zipfile itself uses (lzma has no public one for LZMA1)
            props = lzma._decode_filter_properties(lzma.FILTER_LZMA1, self._head[4 : 4 + psize])  # type: ignore[attr-defined]
            self._decomp = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[props])
            data = self._head[4 + psize :]
            self._head = b""
        out = self._decomp.decompress(data, max_length)
        self.eof = self._decomp.eof
        return out


def iter_content(fd: int, start: int, compress_size: int, method: int, out_chunk: int = 4 << 20) -> Iterator[bytes]:
    """A member's data from `start`, decompressed in pieces of at most `out_chunk` bytes.

    Ends when the compressed bytes run out or the stream does (trailing bytes are ignored, as zipfile
    does); raises EOFError when the file ends first. Bounded output per call: a bomb never inflates at once.
    """
    if method == zipfile.ZIP_STORED:
        decomp: Any = None
    elif method == zipfile.ZIP_DEFLATED:
        decomp = zlib.decompressobj(-zlib.MAX_WBITS)
    elif method == zipfile.ZIP_BZIP2:
        decomp = bz2.BZ2Decompressor()
    elif method == zipfile.ZIP_LZMA:
        decomp = _ZipLzma()
    else:
        raise NotImplementedError(f"compression method {method}")
    left = compress_size
    pos = start
    while left > 0:
        data = _pread(fd, min(left, _CHUNK), pos)
        if not data:
            raise EOFError(f"{left} compressed bytes missing")
        pos += len(data)
        left -= len(data)
        if decomp is None:
            yield data
        elif method == zipfile.ZIP_DEFLATED:
            while data:
                yield decomp.decompress(data, out_chunk)
                data = decomp.unconsumed_tail
            if decomp.eof:
                return
        else:
            if decomp.eof:
                return
            yield decomp.decompress(data, out_chunk)
            while not decomp.eof and not decomp.needs_input:
                yield decomp.decompress(b"", out_chunk)
    if method == zipfile.ZIP_DEFLATED:
        yield decomp.flush()


def read_member(fd: int, table: MemberTable, i: int) -> bytes:
    """Member i's content, checked as zipfile's `open()` and `read()` check it (local header, CRC-32).

    The caller bounds the size first: this returns up to the declared size.
    """
    header_offset = table.header_offset(i)
    header = _pread(fd, _LOCAL.size, header_offset)
    if len(header) != _LOCAL.size:
        raise zipfile.BadZipFile("Truncated file header")
    fields = _LOCAL.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile("Bad magic number for file header")
    name_len, extra_len = fields[10], fields[11]
    local_name = _pread(fd, name_len, header_offset + _LOCAL.size)
    flags = table.flags[i]
    if flags & _PATCHED_FLAG:
        raise NotImplementedError("compressed patched data (flag bit 5)")
    if flags & _STRONG_ENCRYPTION_FLAG:
        raise NotImplementedError("strong encryption (flag bit 6)")
    orig = table.orig_name(i)
    if local_name.decode("utf-8" if fields[3] & _UTF8_FLAG else "cp437") != orig:
        raise zipfile.BadZipFile(f"File name in directory {orig!r} and header {local_name!r} differ.")
    if flags & 0x1:
        raise RuntimeError(f"File {table.name(i)!r} is encrypted, password required for extraction")
    start = header_offset + _LOCAL.size + name_len + extra_len
    left = table.file_sizes[i]
    pieces = []
    crc = 0
    for piece in iter_content(fd, start, table.compress_sizes[i], table.methods[i]):
        piece = piece[:left]  # zipfile returns no more than the declared size
        crc = zlib.crc32(piece, crc)
        pieces.append(piece)
        left -= len(piece)
        if left <= 0:
            break
    if crc != table.crcs[i]:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {table.name(i)!r}")
    return b"".join(pieces)
