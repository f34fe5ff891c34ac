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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .mda import _ARCHIVE_ERRORS, CorruptArchiveError, sha256_file

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


def _inflate(fd: int, info: zipfile.ZipInfo, buf: bytearray) -> str | None:
    """Stream one member's data through its decompressor and CRC-32; the problem found, or None.

    Reads the member straight from the offsets the central directory gave (already parsed once by
    `open_mda`), so verifying costs no second parse of a directory of tens of thousands of entries;
    positioned reads (pread) let the workers share nothing but the queue.
    """
    try:
        header = os.pread(fd, _LOCAL_HEADER.size, info.header_offset)
        if len(header) != _LOCAL_HEADER.size:
            return "its local header is cut off"
        fields = _LOCAL_HEADER.unpack(header)
        if fields[0] != b"PK\x03\x04":
            return "its local header is missing (bad offset in the central directory)"
        name_len, extra_len = fields[9], fields[10]
        name = os.pread(fd, name_len, info.header_offset + _LOCAL_HEADER.size)
        if name.decode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace") != info.orig_filename:
            return "its local header names another file than the central directory"
        if info.compress_type == zipfile.ZIP_STORED:
            decompress = None
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            decompress = zlib.decompressobj(-zlib.MAX_WBITS)
        else:
            return _inflate_other(fd, info)
        pos = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        left = info.compress_size
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
                    if produced > info.file_size:
                        break
                    data = decompress.unconsumed_tail
            if produced > info.file_size:
                return f"decompresses past its declared {info.file_size} bytes"
        if decompress is not None:
            tail = decompress.flush()
            produced += len(tail)
            crc = zlib.crc32(tail, crc)
            if not decompress.eof:
                return "its compressed data ends before the deflate stream does"
    except (zlib.error, OSError, ValueError) as exc:
        return f"cannot be decompressed: {exc}"
    if produced != info.file_size:
        return f"decompresses to {produced} bytes: its header declares {info.file_size}"
    if crc != info.CRC:
        return "CRC-32 mismatch: its content does not match the checksum recorded in the archive"
    return None


def _inflate_other(fd: int, info: zipfile.ZipInfo) -> str | None:
    """bzip2 and LZMA members (MxBuild writes neither): through zipfile, which checks the CRC itself."""
    try:
        with open(os.dup(fd), "rb") as fh, zipfile.ZipFile(fh) as zf, zf.open(info) as src:
            produced = 0
            while chunk := src.read(_CHUNK):
                produced += len(chunk)
                if produced > info.file_size:
                    return f"decompresses past its declared {info.file_size} bytes"
    except zipfile.BadZipFile as exc:
        if str(exc).startswith("Bad CRC-32"):
            return "CRC-32 mismatch: its content does not match the checksum recorded in the archive"
        return f"cannot be read: {exc}"
    except _ARCHIVE_ERRORS as exc:
        return f"cannot be decompressed: {exc}"
    if produced != info.file_size:
        return f"decompresses to {produced} bytes: its header declares {info.file_size}"
    return None


def verify_archive(path: Path, infos: list[zipfile.ZipInfo], progress: Callable[[int], None] | None = None, workers: int | None = None) -> str:
    """SHA-256 of the file, after every member inflated cleanly; DamagedMembersError names the bad ones."""
    name = os.fspath(path)
    members = sorted((i for i in infos if not i.is_dir()), key=lambda i: i.header_offset)
    lock = threading.Lock()
    queue = iter(members)
    problems: list[tuple[str, str]] = []

    def take() -> zipfile.ZipInfo | None:
        with lock:
            return next(queue, None)

    def inflate_all() -> None:
        # One file handle and one buffer per worker: its position is its own (no lock around reads).
        buf = bytearray(_CHUNK)
        fd = os.open(path, os.O_RDONLY)
        try:
            while (info := take()) is not None:
                problem = _inflate(fd, info, buf)
                if problem is not None:
                    with lock:
                        problems.append((info.filename, problem))
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
        order = {i.filename: n for n, i in enumerate(members)}
        problems.sort(key=lambda p: order.get(p[0], -1))
        raise DamagedMembersError(name, problems, len(problems))
    return sha
