"""Blob stores behind the package repository and the activity log, chosen by URL.

    file://PATH                         a directory (relative to the project), the embedded default
    s3://bucket/prefix                  Amazon S3 (boto3; AWS_ENDPOINT_URL, the usual credential chain)
    azblob://account/container/prefix   Azure Blob Storage (azure-storage-blob; DefaultAzureCredential,
                                        or AZURE_STORAGE_CONNECTION_STRING for emulators)

Every backend gives the same guarantees, which the repository and the activity log build on:
`put(..., if_absent=True)` is an atomic conditional create (exactly one of several concurrent writers
wins), and an object is visible either complete or not at all. The cloud SDKs are imported only by
the backend that needs them, so the core and the file backend work without them installed.

Transient failures (throttling, 5xx, a connection reset mid-request) are retried inside each backend by
its SDK's own retry policy; a StoreError raised after that says whether the cause was transient, so
that a caller with a time budget (the activity log's append) may try again.
"""

from __future__ import annotations

from pathlib import Path

from .store_base import MissingKeyError, Progress, Store, StoreError, check_key, retry_transient, stream_to_file

__all__ = ["MissingKeyError", "Progress", "Store", "StoreError", "URL_FORMS", "check_key", "check_url", "open_store", "retry_transient", "stream_to_file"]

URL_FORMS = "file://PATH, s3://BUCKET/PREFIX or azblob://ACCOUNT/CONTAINER/PREFIX"


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
