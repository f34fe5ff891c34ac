"""Full verification of an MDA: every member inflated and checked against its CRC-32 and size.

Reading the central directory (what `open_mda` and `check_members` do) cannot see a flipped byte
inside a member; only decompressing it can. This streams every member (flat memory: one chunk per
worker) while the archive's SHA-256 is computed beside it. hashlib and zlib release the GIL on
large buffers, so plain threads keep both cores busy: one thread hashes the file, the others pull
members in file order from a shared queue (big members balance themselves) and inflate them.
Pure standard library, like `mda`.
"""

from __future__ import annotations

import os
import struct
import threading
import zipfile
import zlib
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .digest import sha256_file
from .mda_errors import ARCHIVE_ERRORS, CorruptArchiveError
from .zipdir import MemberTable, iter_content

_CHUNK = 1 << 20
_OUT_CHUNK = 4 << 20
# Enough to say what is wrong and where without flooding the terminal for an archive damaged throughout.
MAX_REPORTED = 20


class DamagedMembersError(CorruptArchiveError):
    """One or more members fail decompression, their CRC-32 or their declared size."""

    def __init__(self, archive: str, problems: list[tuple[str, str]], total: int) -> None:
        lines = [f"  - {member}: {problem}" for member, problem in problems[:MAX_REPORTED]]
        if total > len(lines):
            lines.append(f"  - ... and {total - len(lines)} more")
        head = f"{total} damaged member(s): the archive is corrupt, rebuild or download it again"
        super().__init__(archive, None, head + "\n" + "\n".join(lines))
        self.problems = problems


_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature ... name length, extra length (30 bytes)
_UTF8_FLAG = 0x800


def _inflate(fd: int, members: MemberTable, i: int, buf: bytearray) -> str | None:
    """Stream one member's data through its decompressor and CRC-32; the problem found, or None.

    Reads the member straight from the offsets the central directory gave (already parsed once by
    `open_mda`), so verifying costs no second parse of a directory of tens of thousands of entries;
    positioned reads (pread) let the workers share nothing but the queue.
    """
    file_size = members.file_sizes[i]
    try:
        offset = members.header_offset(i)
        header = os.pread(fd, _LOCAL_HEADER.size, offset)
        if len(header) != _LOCAL_HEADER.size:
            return "its local header is cut off"
        fields = _LOCAL_HEADER.unpack(header)
        if fields[0] != b"PK\x03\x04":
            return "its local header is missing (bad offset in the central directory)"
        name_len, extra_len = fields[9], fields[10]
        name = os.pread(fd, name_len, offset + _LOCAL_HEADER.size)
        # zipfile's rule when it opens a member: the local name, decoded by the local flags, is the central one
        try:
            local_name = name.decode("utf-8" if fields[2] & _UTF8_FLAG else "cp437")
        except UnicodeDecodeError:
            local_name = None
        if local_name != members.orig_name(i):
            return "its local header names another file than the central directory"
        method = members.methods[i]
        if method == zipfile.ZIP_STORED:
            decompress = None
        elif method == zipfile.ZIP_DEFLATED:
            decompress = zlib.decompressobj(-zlib.MAX_WBITS)
        else:
            return _inflate_other(fd, members, i, offset + _LOCAL_HEADER.size + name_len + extra_len)
        pos = offset + _LOCAL_HEADER.size + name_len + extra_len
        left = members.compress_sizes[i]
        produced = 0
        crc = 0
        view = memoryview(buf)
        while left > 0:
            n = os.preadv(fd, [view[: min(left, len(buf))]], pos)
            if not n:
                return f"is cut off: {left} compressed bytes missing"
            pos += n
            left -= n
            if decompress is None:
                produced += n
                crc = zlib.crc32(view[:n], crc)
            else:
                data: bytes | memoryview = view[:n]
                # bounded output per call: a highly compressed chunk never inflates all at once
                while data:
                    chunk = decompress.decompress(data, _OUT_CHUNK)
                    produced += len(chunk)
                    crc = zlib.crc32(chunk, crc)
                    if produced > file_size:
                        break
                    data = decompress.unconsumed_tail
            if produced > file_size:
                return f"decompresses past its declared {file_size} bytes"
        if decompress is not None:
            tail = decompress.flush()
            produced += len(tail)
            crc = zlib.crc32(tail, crc)
            if not decompress.eof:
                return "its compressed data ends before the deflate stream does"
    except (zlib.error, OSError, ValueError, OverflowError) as exc:
        return f"cannot be decompressed: {exc}"
    return _outcome(members, i, produced, crc)


def _inflate_other(fd: int, members: MemberTable, i: int, start: int) -> str | None:
    """bzip2 and LZMA members (MxBuild writes neither): the same checks through their decompressors."""
    file_size = members.file_sizes[i]
    produced = 0
    crc = 0
    try:
        for chunk in iter_content(fd, start, members.compress_sizes[i], members.methods[i], _OUT_CHUNK):
            produced += len(chunk)
            if produced > file_size:
                return f"decompresses past its declared {file_size} bytes"
            crc = zlib.crc32(chunk, crc)
    except EOFError as exc:
        return f"is cut off: {exc}"
    except ARCHIVE_ERRORS as exc:
        return f"cannot be decompressed: {exc}"
    return _outcome(members, i, produced, crc)


def _outcome(members: MemberTable, i: int, produced: int, crc: int) -> str | None:
    """The problem with member `i` once fully inflated (`produced` bytes, CRC-32 `crc`), or None."""
    file_size = members.file_sizes[i]
    if produced != file_size:
        return f"decompresses to {produced} bytes: its header declares {file_size}"
    if crc != members.crcs[i]:
        return "CRC-32 mismatch: its content does not match the checksum recorded in the archive"
    return None


def _recycle_big_blocks() -> None:
    """Make glibc reuse, rather than map afresh, blocks as big as the decompressor's output chunks.

    glibc serves a block above its mmap threshold (128 KiB at start) from a new mapping that it
    unmaps on free, so every 4 MiB output chunk would fault all its pages in again: ~300,000 page
    faults and a second of system time per GiB inflated. Freeing one mapped block raises glibc's
    dynamic threshold to that block's size (mallopt(3)), here just above an output chunk; later
    chunks then come from the heap and are recycled. bytes(n) is calloc'ed, so its pages are never
    touched. Elsewhere a no-op.
    """
    block = bytes(_OUT_CHUNK + (64 << 10))
    del block


def _file_order(members: MemberTable) -> range | array:
    """Member indices by header offset (stable: directory order breaks ties), directories included."""
    offsets = members.header_offsets
    # writers put the directory in file order: then the order is the table's own and costs nothing
    if all(offsets[k] <= offsets[k + 1] for k in range(len(offsets) - 1)):
        return range(len(offsets))
    return array("Q", sorted(range(len(offsets)), key=offsets.__getitem__))


def verify_archive(path: Path, members: MemberTable, progress: Callable[[int], None] | None = None, workers: int | None = None) -> str:
    """SHA-256 of the file, after every member inflated cleanly; DamagedMembersError names the bad ones."""
    name = os.fspath(path)
    _recycle_big_blocks()
    order = _file_order(members)
    lock = threading.Lock()
    queue = iter(range(len(order)))
    problems: list[tuple[int, str, str]] = []

    def take() -> int | None:
        with lock:
            return next(queue, None)

    def inflate_all() -> None:
        # One file handle and one buffer per worker: its position is its own (no lock around reads).
        buf = bytearray(_CHUNK)
        fd = os.open(path, os.O_RDONLY)
        try:
            while (position := take()) is not None:
                i = order[position]
                if members.is_dir(i):
                    continue
                problem = _inflate(fd, members, i, buf)
                if problem is not None:
                    with lock:
                        problems.append((position, members.name(i), problem))
        finally:
            os.close(fd)

    count = max(1, (workers or os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=count + 1, thread_name_prefix="mxinfra-verify") as pool:
        digest = pool.submit(sha256_file, path, progress)
        inflaters = [pool.submit(inflate_all) for _ in range(count)]
        for f in inflaters:
            f.result()
        try:
            sha = digest.result()
        except OSError as exc:
            raise CorruptArchiveError(name, None, f"cannot be read: {exc.strerror or exc}") from None
    if problems:
        problems.sort()  # file order, whichever worker found them
        raise DamagedMembersError(name, [(member, problem) for _, member, problem in problems], len(problems))
    return sha
