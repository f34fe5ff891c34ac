"""The Azure Blob backend (azure-storage-blob): conditional create with `overwrite=False` (If-None-Match: *)."""

from __future__ import annotations

import base64
import json
import os
import random
from pathlib import Path
from typing import Any

from .store_base import MissingKeyError, Progress, Store, StoreError, check_key, stream_to_file

BLOCK_SIZE = 4 * 1024 * 1024  # also the single-put threshold, so multi-MB uploads report progress per block
STORAGE_SCOPE = "https://storage.azure.com/.default"
# The storage SDK's retry policy with the azure-core retry settings: 408, 5xx (Blob storage throttles with
# 503 ServerBusy) and dropped connections are retried; one that refuses connections only twice, so an
# unreachable repository fails in about a second.
RETRY = {"retry_total": 6, "retry_connect": 2, "retry_read": 4, "retry_status": 5}
# Full-jitter exponential backoff with botocore's base: 0-0.1 s, 0-0.2 s, 0-0.4 s, ... (the SDK's default
# ExponentialRetry waits 15 s before its first retry)
BACKOFF_BASE = 0.05
BACKOFF_MAX = 10.0
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def retry_policy() -> Any:
    """The storage SDK's ExponentialRetry with RETRY's settings and full-jitter backoff."""
    from azure.storage.blob import ExponentialRetry

    class JitteredRetry(ExponentialRetry):
        """ExponentialRetry whose wait is uniform in [0, BACKOFF_BASE * 2**retry] (no fixed 15 s floor)."""

        def get_backoff_time(self, settings: dict[str, Any]) -> float:
            return random.uniform(0.0, min(BACKOFF_MAX, BACKOFF_BASE * 2 ** int(settings["count"])))

    return JitteredRetry(**RETRY)


def _connection_string_account(conn: str) -> str | None:
    """The AccountName of a storage connection string, or None."""
    for part in conn.split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "accountname":
            return value.strip()
    return None


def principal_from_token(token: str) -> str:
    """A readable principal from an Entra ID access token's claims (decoded unverified: the service verifies it)."""
    try:
        payload = token.split(".")[1]
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return "unknown principal (unreadable token)"
    name = claims.get("upn") or claims.get("unique_name") or claims.get("preferred_username") or claims.get("email")
    oid = claims.get("oid")
    appid = claims.get("appid") or claims.get("azp")
    if name:
        return f"{name} (oid {oid})" if oid else str(name)
    if appid:
        # a service principal or managed identity: no user name, the application id identifies it
        return f"app:{appid} (oid {oid})" if oid else f"app:{appid}"
    if oid:
        return f"oid:{oid}"
    return f"sub:{claims.get('sub', 'unknown')}"


class AzureBlobStore(Store):
    """Blobs under `azblob://account/container/prefix`."""

    def __init__(self, url: str, account: str, container: str, prefix: str) -> None:
        try:
            from azure.core import exceptions as azure_exceptions
            from azure.storage.blob import BlobServiceClient
        except ImportError:
            raise StoreError(url, "the Azure Blob backend needs azure-storage-blob: pip install 'mxinfra[azure]'") from None
        self.url = url
        self.account = account
        self.container = container
        self.prefix = prefix
        self._exc = azure_exceptions
        self._credential: Any = None
        options: dict[str, Any] = {
            "retry_policy": retry_policy(),
            "connection_timeout": 10,
            "max_single_put_size": BLOCK_SIZE,
            "max_block_size": BLOCK_SIZE,
        }
        conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        self._conn_account: str | None = None
        try:
            if conn:
                self._conn_account = _connection_string_account(conn)
                if self._conn_account and self._conn_account != account:
                    # writing a different account than the URL names would be a silent surprise
                    raise StoreError(
                        url,
                        f"AZURE_STORAGE_CONNECTION_STRING is for account {self._conn_account}, not {account}",
                    )
                service = BlobServiceClient.from_connection_string(conn, **options)
            else:
                try:
                    from azure.identity import DefaultAzureCredential
                except ImportError:
                    raise StoreError(url, "the Azure Blob backend needs azure-identity: pip install 'mxinfra[azure]'") from None
                self._credential = DefaultAzureCredential()
                service = BlobServiceClient(f"https://{account}.blob.core.windows.net", credential=self._credential, **options)
        except ValueError as exc:
            raise StoreError(url, f"invalid Azure storage configuration: {exc}") from None
        self._container = service.get_container_client(container)
        self._check_container()

    def _error(self, exc: Exception, what: str) -> StoreError:
        """Translate an azure-core error into a StoreError naming the URL and the cause."""
        e = self._exc
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, e.ServiceRequestError):
            # never sent: a wrong endpoint should fail now, not after a budget
            return StoreError(self.url, f"unreachable: {first_line}")
        if isinstance(exc, e.ServiceResponseError):
            # sent, then the connection dropped: the service may have acted on it
            return StoreError(self.url, f"cannot {what}: the connection failed after azure-core's retries: {first_line}", transient=True)
        if isinstance(exc, e.ClientAuthenticationError):
            return StoreError(self.url, f"authentication failed while trying to {what}: {first_line}")
        if isinstance(exc, e.ResourceNotFoundError) and getattr(exc, "error_code", None) == "ContainerNotFound":
            return StoreError(self.url, f"container {self.container} does not exist")
        code = getattr(exc, "error_code", None) or getattr(exc, "status_code", None)
        if getattr(exc, "status_code", None) == 403:
            return StoreError(self.url, f"access denied ({code}) while trying to {what}")
        transient = getattr(exc, "status_code", None) in _TRANSIENT_STATUS
        # CredentialUnavailableError and friends come from azure-identity, not azure-core
        return StoreError(self.url, f"cannot {what}: {code + ': ' if isinstance(code, str) else ''}{first_line}", transient=transient)

    def _check_container(self) -> None:
        try:
            found = self._container.exists()
        except Exception as exc:  # azure-identity raises its own types when no credential works
            raise self._error(exc, "check the container") from None
        if not found:
            raise StoreError(self.url, f"container {self.container} does not exist")

    def _blob(self, key: str) -> Any:
        return self._container.get_blob_client(self.prefix + check_key(key))

    def get(self, key: str) -> bytes | None:
        """The blob's bytes, or None."""
        blob = self._blob(key)
        try:
            return bytes(blob.download_blob().readall())
        except self._exc.ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise self._error(exc, f"read {key}") from None
            return None
        except Exception as exc:
            raise self._error(exc, f"read {key}") from None

    def _upload(self, key: str, data: Any, if_absent: bool, **kwargs: Any) -> bool:
        blob = self._blob(key)
        try:
            # overwrite=False sends If-None-Match: *; a block upload commits its block list under the same
            # condition, so the blob appears complete or not at all and only one writer can create it
            blob.upload_blob(data, overwrite=not if_absent, **kwargs)
            return True
        except self._exc.ResourceExistsError as exc:
            if if_absent:
                return False
            raise self._error(exc, f"write {key}") from None
        except self._exc.HttpResponseError as exc:
            if if_absent and getattr(exc, "status_code", None) in (409, 412):
                return False
            raise self._error(exc, f"write {key}") from None
        except Exception as exc:
            raise self._error(exc, f"write {key}") from None

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Write the blob; with if_absent atomically only if absent."""
        return self._upload(key, data, if_absent)

    def put_file(self, key: str, path: Path, *, if_absent: bool = False, progress: Progress | None = None) -> bool:
        """Upload a file in blocks, committed at once (conditionally with if_absent)."""
        if if_absent and self.exists(key):
            return False  # skip re-uploading; the conditional commit stays the guard
        seen = 0

        def hook(current: int, total: int | None) -> None:
            # the SDK reports cumulative bytes; callers want increments
            nonlocal seen
            if progress is not None and current > seen:
                progress(current - seen)
            seen = max(seen, current)

        size = os.path.getsize(path)
        with open(path, "rb") as f:
            return self._upload(key, f, if_absent, length=size, progress_hook=hook)

    def download(self, key: str, dest: Path, *, progress: Progress | None = None) -> None:
        """Stream the blob to `dest` via a temporary file."""
        blob = self._blob(key)
        try:
            stream = blob.download_blob()
            stream_to_file(dest, stream.chunks(), progress)
        except self._exc.ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise self._error(exc, f"read {key}") from None
            raise MissingKeyError(self.url, f"{key} does not exist") from None
        except self._exc.AzureError as exc:
            raise self._error(exc, f"read {key}") from None

    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""
        try:
            names = [b.name for b in self._container.list_blobs(name_starts_with=self.prefix + prefix)]
        except Exception as exc:
            raise self._error(exc, f"list {prefix or '/'}") from None
        return sorted(n[len(self.prefix) :] for n in names)

    def exists(self, key: str) -> bool:
        """Whether the blob exists."""
        blob = self._blob(key)
        try:
            return bool(blob.exists())
        except Exception as exc:
            raise self._error(exc, f"read {key}") from None

    def delete(self, key: str) -> None:
        """Remove the blob if present."""
        blob = self._blob(key)
        try:
            blob.delete_blob()
        except self._exc.ResourceNotFoundError:
            pass
        except Exception as exc:
            raise self._error(exc, f"delete {key}") from None

    def identity(self) -> str:
        """The token's principal (upn/oid/appid claims); with a connection string, 'account:<name>'."""
        if self._credential is None:
            # a shared key has no principal: the account is the most precise truth available
            return f"account:{self._conn_account or self.account}"
        try:
            token = self._credential.get_token(STORAGE_SCOPE).token
        except Exception as exc:
            raise self._error(exc, "get an access token") from None
        return principal_from_token(token)
