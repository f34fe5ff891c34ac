"""What every blob store backend is and shares: the Store interface with its guarantees, its errors, key
rules, the transient-retry helper and the atomic download. The backends (store_file, store_s3,
store_azure) build on this module; `store.open_store` picks one by URL."""


from __future__ import annotations

import contextlib
import os
import random
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from ..errors import UserError

Progress = Callable[[int], None]
T = TypeVar("T")

# keys are relative POSIX paths of plain names: no traversal, no hidden names (temp files are hidden)
_KEY_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=@-]*")


class StoreError(UserError):
    """The repository cannot be used: missing, unreachable, denied. The message names the URL and the cause.

    `transient` is True when the cause may pass by itself (throttling, a server error, a dropped
    connection) even after the SDK's retries; for a write it also means the outcome is unknown: the
    store may have kept it."""

    def __init__(self, url: str, cause: str | None = None, *, transient: bool = False) -> None:
        self.url = url
        self.cause = cause
        self.transient = transient
        super().__init__(url if cause is None else f"{url}: {cause}")


class MissingKeyError(StoreError):
    """An object that should be in the store is not."""


def check_key(key: str) -> str:
    """Return `key` if it is a valid store key (relative, plain names separated by '/'), else raise ValueError."""
    parts = key.split("/")
    if not key or not all(_KEY_PART.fullmatch(p) for p in parts):
        raise ValueError(f"invalid store key {key!r}: expected names of [A-Za-z0-9_.+=@-] separated by '/'")
    return key


class Store(ABC):
    """A flat key -> bytes store with atomic conditional create; keys are '/'-separated names."""

    url: str

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is no such key."""

    @abstractmethod
    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Store `data`; with if_absent, atomically only if the key does not exist (False if it did)."""

    @abstractmethod
    def put_file(self, key: str, path: Path, *, if_absent: bool = False, progress: Progress | None = None) -> bool:
        """Upload a file, streamed (multipart when big); visible only once complete. False as for put."""

    @abstractmethod
    def download(self, key: str, dest: Path, *, progress: Progress | None = None) -> None:
        """Stream the object into `dest` (via a temporary file renamed at the end); MissingKeyError if absent."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key starting with `prefix`, sorted."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the key exists."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the key if present (tests use it to tamper; governance never deletes)."""

    @abstractmethod
    def identity(self) -> str:
        """Who is acting, as the backend knows them (ARN, token principal, OS user and git e-mail)."""

    def clean_temporaries(self, prefix: str, *, older_than: float) -> int:
        """Remove what killed writers left under `prefix` (never a live writer's); the number removed.

        Cloud stores publish an object in one request, so a killed writer leaves nothing behind there."""
        return 0


def retry_transient(call: Callable[[], T], *, budget: float) -> T:
    """`call()`, tried again after a transient StoreError (full-jitter backoff) until `budget` seconds passed.

    For the few calls around an append that its own budget does not cover (opening the store, asking who
    acts): a burst of 503s must not fail a deployment that was applied."""
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        try:
            return call()
        except StoreError as exc:
            attempt += 1
            pause = random.uniform(0.0, min(1.0, 0.01 * 2 ** min(attempt, 16)))
            if not exc.transient or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)


def stream_to_file(dest: Path, chunks: Iterable[bytes], progress: Progress | None = None) -> None:
    """Write chunks into a hidden temporary sibling of `dest`, fsync, then rename it into place."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; a downloaded file is an ordinary file
        os.replace(tmp_name, dest)
    except BaseException:
        # an interrupted download must not leave a partial file behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
