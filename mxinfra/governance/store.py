"""Blob stores behind the package repository and the activity log, chosen by URL.

    file://PATH                         a directory (relative to the project), the embedded default
    s3://bucket/prefix                  Amazon S3 (boto3; AWS_ENDPOINT_URL, the usual credential chain)
    azblob://account/container/prefix   Azure Blob Storage (azure-storage-blob; DefaultAzureCredential,
                                        or AZURE_STORAGE_CONNECTION_STRING for emulators)

Every backend gives the same guarantees, which the repository and the activity log build on:
`put(..., if_absent=True)` is an atomic conditional create (exactly one of several concurrent writers
wins), and an object is visible either complete or not at all. The cloud SDKs are imported only by
the backend that needs them, so the core and the file backend work without them installed.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import UserError

URL_FORMS = "file://PATH, s3://BUCKET/PREFIX or azblob://ACCOUNT/CONTAINER/PREFIX"

Progress = Callable[[int], None]

# keys are relative POSIX paths of plain names: no traversal, no hidden names (temp files are hidden)
_KEY_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=@-]*")


class StoreError(UserError):
    """The repository cannot be used: missing, unreachable, denied. The message names the URL and the cause."""

    def __init__(self, url: str, cause: str | None = None) -> None:
        self.url = url
        self.cause = cause
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


def _parse(url: str, base_dir: Path | None) -> tuple[str, ...]:
    """The backend and its location for `url`, without any I/O; StoreError if malformed."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("file", "s3", "azblob"):
        raise StoreError(url, f"unknown repository URL: expected {URL_FORMS}")
    if scheme == "file":
        if not rest:
            raise StoreError(url, f"no path: expected {URL_FORMS}")
        path = Path(rest).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        return ("file", str(path))
    bucket, _, prefix = rest.partition("/")
    if scheme == "s3":
        if not bucket:
            raise StoreError(url, f"no bucket: expected {URL_FORMS}")
        return ("s3", bucket, _clean_prefix(url, prefix))
    account = bucket
    container, _, prefix = prefix.partition("/")
    if not account or not container:
        raise StoreError(url, f"no account or container: expected {URL_FORMS}")
    return ("azblob", account, container, _clean_prefix(url, prefix))


def check_url(url: str) -> None:
    """Validate a repository URL's form (no I/O): StoreError naming what is wrong."""
    _parse(url, None)


def open_store(url: str, *, base_dir: Path | None = None) -> Store:
    """Open the store at `url`; StoreError (naming the URL and the cause) if it is missing or unreachable."""
    kind, *where = _parse(url, base_dir)
    if kind == "file":
        from .store_file import FileStore

        return FileStore(url, Path(where[0]))
    if kind == "s3":
        from .store_s3 import S3Store

        return S3Store(url, where[0], where[1])
    from .store_azure import AzureBlobStore

    return AzureBlobStore(url, where[0], where[1], where[2])


def _clean_prefix(url: str, prefix: str) -> str:
    """The key prefix of a bucket/container URL, normalised to '' or 'a/b/'."""
    prefix = prefix.strip("/")
    if not prefix:
        return ""
    try:
        check_key(prefix)
    except ValueError:
        raise StoreError(url, f"invalid prefix {prefix!r}: expected names of [A-Za-z0-9_.+=@-] separated by '/'") from None
    return prefix + "/"


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
