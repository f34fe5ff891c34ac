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
import threading
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .mda import _ARCHIVE_ERRORS, CorruptArchiveError, sha256_file

_CHUNK = 1 << 20
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


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """Decompress one member to nowhere; the problem found, or None. zipfile checks the CRC at EOF."""
    try:
        with zf.open(info) as src:
            produced = 0
            while chunk := src.read(_CHUNK):
                produced += len(chunk)
                if produced > info.file_size:
                    return f"decompresses past its declared {info.file_size} bytes"
    except zipfile.BadZipFile as exc:
        text = str(exc)
        if text.startswith("Bad CRC-32"):
            return "CRC-32 mismatch: its content does not match the checksum recorded in the archive"
        return f"cannot be read: {text}"
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
        # One ZipFile per worker: its file position is its own (no lock around every read).
        try:
            zf = zipfile.ZipFile(path)
        except _ARCHIVE_ERRORS as exc:
            with lock:
                problems.append(("(archive)", f"cannot be read: {exc}"))
            return
        with zf:
            while (info := take()) is not None:
                problem = _inflate(zf, info)
                if problem is not None:
                    with lock:
                        problems.append((info.filename, problem))

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
