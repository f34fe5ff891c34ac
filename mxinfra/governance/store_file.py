"""The file backend: a directory, one file per key; the embedded default (`file://.mxinfra`)."""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .store_base import MissingKeyError, Progress, Store, StoreError, check_key, stream_to_file

_CHUNK = 1024 * 1024
# A temporary's name says who writes it (`.<name>.<pid>@<host>.<random>.tmp`): a cleaner on the same host
# can tell a killed writer's leftover from a live writer's file without waiting for it to age.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "localhost"
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)\.[A-Za-z0-9_]+\.tmp")
_LEGACY_TEMP = re.compile(r"\..+\.tmp")


def _writer_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie counts as running: it was not reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _fsync_dir(path: Path) -> None:
    # makes the new directory entry itself durable, not only the file's bytes
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class FileStore(Store):
    """Objects as files under a root directory, created on first write.

    Every write goes to a hidden temporary file in the target directory, fsynced, then is published
    with os.link (fails if the name exists: the atomic conditional create) or os.replace. A reader
    therefore never sees a half-written object, and listings skip the hidden temporaries. A writer
    killed meanwhile leaves its temporary behind: its name carries the writer's pid and host, so that
    `clean_temporaries` removes it once that process is gone, and never a live writer's.
    """

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root
        if root.exists() and not root.is_dir():
            raise StoreError(url, f"{root} is not a directory")

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _fail(self, exc: OSError, what: str) -> StoreError:
        return StoreError(self.url, f"cannot {what}: {exc.strerror or exc}")

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None."""
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._fail(exc, f"read {key}") from None

    def _publish(self, write: Callable[[BinaryIO], object], key: str, if_absent: bool) -> bool:
        final = self._path(key)
        try:
            if if_absent and final.exists():
                return False  # cheap early answer; the link below is what makes it atomic
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}@{_HOST}.", suffix=".tmp", dir=final.parent)
        except OSError as exc:
            raise self._fail(exc, f"write {key}") from None
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; stored objects are ordinary files
            if if_absent:
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, final)
            _fsync_dir(final.parent)
            return True
        except OSError as exc:
            raise self._fail(exc, f"write {key}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Write the object; with if_absent only if absent (atomic: os.link)."""
        return self._publish(lambda f: f.write(data), key, if_absent)

    def put_file(self, key: str, path: Path, *, if_absent: bool = False, progress: Progress | None = None) -> bool:
        """Copy a file in, streamed; with if_absent only if absent."""

        def copy(out: BinaryIO) -> None:
            with open(path, "rb") as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    if progress is not None:
                        progress(len(chunk))

        if if_absent and self.exists(key):
            return False
        return self._publish(copy, key, if_absent)

    def download(self, key: str, dest: Path, *, progress: Progress | None = None) -> None:
        """Copy the object to `dest`, streamed, via a temporary file."""
        src = self._path(key)
        dest = Path(dest)
        try:
            fin = open(src, "rb")
        except (FileNotFoundError, NotADirectoryError):
            raise MissingKeyError(self.url, f"{key} does not exist") from None
        except OSError as exc:
            raise self._fail(exc, f"read {key}") from None
        with fin:
            stream_to_file(dest, iter(lambda: fin.read(_CHUNK), b""), progress)

    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted (hidden temporaries skipped)."""
        # walk only the deepest directory the prefix names, not the whole store
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*head.split("/")) if head else self.root
        keys: list[str] = []
        if not start.is_dir():
            return keys
        try:
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for name in filenames:
                    if name.startswith("."):
                        continue
                    key = name if rel == "." else f"{rel}/{name}"
                    if key.startswith(prefix):
                        keys.append(key)
        except OSError as exc:
            raise self._fail(exc, f"list {prefix}") from None
        return sorted(keys)

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the object if present."""
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def clean_temporaries(self, prefix: str, *, older_than: float) -> int:
        """Remove hidden temporaries under `prefix` whose writer is gone: a process of this host that no
        longer runs, or (another host's, or an older name without the writer) untouched for `older_than` s."""
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*head.split("/")) if head else self.root
        if not start.is_dir():
            return 0
        removed = 0
        now = time.time()
        for dirpath, _dirnames, filenames in os.walk(start):
            for name in filenames:
                if not name.startswith(".") or not name.endswith(".tmp"):
                    continue
                path = Path(dirpath) / name
                m = _TEMP.fullmatch(name)
                if m is None and not _LEGACY_TEMP.fullmatch(name):
                    continue
                try:
                    age = now - path.stat().st_mtime
                except FileNotFoundError:
                    continue  # its writer published or removed it meanwhile
                dead = m is not None and m["host"] == _HOST and not _writer_alive(int(m["pid"]))
                if dead or age > older_than:
                    # a live writer never reuses a name, so removing a dead one's file cannot hurt it
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        removed += 1
        return removed

    def identity(self) -> str:
        """'<os user> <git user.email>' (the e-mail only when git knows one)."""
        try:
            user = getpass.getuser()
        except Exception:  # no passwd entry and no LOGNAME/USER: still say something true
            user = f"uid:{os.getuid()}"
        email = _git_email(self.root)
        return f"{user} {email}" if email else user


def _git_email(cwd: Path) -> str:
    """git's user.email as seen from `cwd` (or its nearest existing parent), '' if none or no git."""
    where = cwd
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        out = subprocess.run(
            ["git", "config", "user.email"], cwd=where, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""
