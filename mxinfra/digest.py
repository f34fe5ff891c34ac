"""The SHA-256 of a file, streamed (flat memory), alone or on a background thread. Pure."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable

_MiB = 1 << 20


class _BackgroundHash:
    """The SHA-256 of an open file, computed on a thread while the caller reads the central directory
    and metadata.json: hashlib and pread release the GIL, so the two use both cores (a plan or an
    inspect of a large archive costs about the hash alone, not the hash plus the directory)."""

    # Large reads: between two chunks the thread needs the GIL back, which the directory reader holds for
    # up to the switch interval (5 ms); 1 MiB chunks made the hash a third slower than alone.
    def __init__(self, fd: int, chunk: int = 16 * _MiB) -> None:
        self._fd = fd
        self._chunk = chunk
        self.done_bytes = 0
        self._digest: str | None = None
        self._error: OSError | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="mxinfra-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        def advance(n: int) -> bool:
            self.done_bytes += n
            return not self._cancelled

        try:
            digest = _sha256_fd(self._fd, self._chunk, advance)
            self._digest = None if self._cancelled else digest  # never a digest of part of the file
        except OSError as exc:
            self._error = exc
        finally:
            os.close(self._fd)

    def cancel(self) -> None:
        """Stop early (the archive was refused): the thread closes its descriptor."""
        self._cancelled = True

    def result(self, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
        """(hex digest, bytes hashed), waiting for the thread; `progress` gets the bytes hashed since the last call."""
        reported = 0
        while self._thread.is_alive():
            self._thread.join(0.1)
            if progress is not None and self.done_bytes > reported:
                progress(self.done_bytes - reported)
                reported = self.done_bytes
        if progress is not None and self.done_bytes > reported:
            progress(self.done_bytes - reported)
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest, self.done_bytes


class _ForkedHash:
    """The SHA-256 of an open file, computed by a forked child process: the caller's Python (inspect's
    member checks) and the hash then share no GIL, and each has a core (issue 18: inspect at the hash's
    floor). Only where nothing else runs yet (mxinfra.launch, before the CLI is imported): a fork copies
    no other thread. The child reports its progress and its digest as lines on a pipe."""

    REPORT_EVERY = 64 * _MiB

    def __init__(self, fd: int, chunk: int = _MiB) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: hash, report, and leave without the parent's cleanup or buffers
            code = 0
            try:
                os.close(read_end)
                done = reported = 0

                def advance(n: int) -> None:
                    nonlocal done, reported
                    done += n
                    if done - reported >= self.REPORT_EVERY:
                        os.write(write_end, b"%d\n" % done)
                        reported = done

                hexdigest = _sha256_fd(fd, chunk, advance)
                os.write(write_end, b"%d %s\n" % (done, hexdigest.encode()))
            except OSError as exc:
                os.write(write_end, b"E %s\n" % str(exc).encode(errors="replace"))
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write_end)
        os.close(fd)
        self._pid: int | None = pid
        self._pipe = os.fdopen(read_end, "rb")
        self.done_bytes = 0

    def cancel(self) -> None:
        """Stop early (the archive was refused): the child is killed and reaped."""
        if self._pid is not None:
            import signal

            os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            self._pid = None
            self._pipe.close()

    def result(self, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
        """(hex digest, bytes hashed), waiting for the child; `progress` gets the bytes hashed since the last call."""
        hexdigest: str | None = None
        failure = "the hashing process ended without a result"
        with self._pipe:
            for line in self._pipe:
                fields = line.split()
                if fields[:1] == [b"E"]:
                    failure = line[2:].decode(errors="replace").strip()
                    continue
                count = int(fields[0])
                if progress is not None and count > self.done_bytes:
                    progress(count - self.done_bytes)
                self.done_bytes = count
                if len(fields) == 2:
                    hexdigest = fields[1].decode()
        if self._pid is not None:
            os.waitpid(self._pid, 0)
            self._pid = None
        if hexdigest is None:
            raise OSError(failure)
        return hexdigest, self.done_bytes


def _sha256_fd(fd: int, chunk: int, advance: Callable[[int], bool | None] | None = None) -> str:
    """Hex SHA-256 of an open file, read with pread (a file offset another reader uses never moves);
    `advance` gets the byte count of each chunk and stops the read early by returning False."""
    digest = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    offset = 0
    while n := os.preadv(fd, [buf], offset):
        digest.update(view[:n])
        offset += n
        if advance is not None and advance(n) is False:
            break
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str], progress: Callable[[int], None] | None = None, chunk: int = _MiB) -> str:
    """Hex SHA-256 of a file, streamed; `progress` gets the byte count of each chunk read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return _sha256_fd(fd, chunk, progress)
    finally:
        os.close(fd)


# Hashes started before the CLI has parsed its arguments (mxinfra.launch), keyed by the file's identity:
# `open_mda(hash_ahead=True)` takes one over only for the same file, unchanged since (device, inode, size,
# modification time), so the digest is still of exactly the bytes whose directory it reads.
_EARLY: dict[tuple[int, int, int, int], _BackgroundHash | _ForkedHash] = {}


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def start_early(path: str, chunk: int = _MiB, *, fork: bool = False) -> None:
    """Start hashing `path` now, for a later `take_early`; nothing when it is not a regular file. On a
    thread, or with `fork` (only while the process runs no other thread) in a child process.

    1 MiB reads stay in the CPU's cache between the read and the hash (16 MiB ones cost a third more
    alone); on a thread, the caller makes the interpreter hand the GIL over often enough for such short turns."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return
    if fork and hasattr(os, "fork"):
        try:
            _EARLY[_identity(st)] = _ForkedHash(fd, chunk)
            return
        except OSError:  # no process to spare: the thread does it
            pass
    _EARLY[_identity(st)] = _BackgroundHash(fd, chunk)


def take_early(fd: int) -> _BackgroundHash | _ForkedHash | None:
    """The hash `start_early` began of the file open as `fd`, if it is the same file, unchanged; else None."""
    if not _EARLY:
        return None
    found = _EARLY.pop(_identity(os.fstat(fd)), None)
    for stale in _EARLY.values():  # another file, or this one changed since: nobody will ask for them
        stale.cancel()
    _EARLY.clear()
    return found
