"""The file store an object-store service key names, copied into a backup archive's `tree/` and back
(backup_actions.py): an S3 bucket (SAP BTP's Object Store on AWS or GCP's S3 interface, any S3-compatible
store) or an Azure Blob container (SAP BTP's Object Store on Azure). The fields read are those the
buildpack reads from VCAP_SERVICES (docs: the cf-mendix-buildpack's storage configuration): `bucket`,
`access_key_id`, `secret_access_key`, `endpoint` or `host`, `region` for S3; `container_uri` (or
`account_name` and `container_name`) and `sas_token` for Azure.

Objects are listed a page at a time and copied TRANSFERS at a time, so memory stays flat whatever the
store holds. A copy back never deletes: an object the archive lacks stays. No secret is in a message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from mxinfra.backup_archive import store_key, tree_path
from mxinfra.errors import UserError

TRANSFERS = 8  # objects copied at once: most Mendix files are small, so the round trips dominate
BATCH = 1000


class FileStore(Protocol):
    """One store's objects, as the archive needs them."""

    name: str  # how messages name it (a bucket or a container, never a secret)

    def pages(self) -> Iterator[list[str]]:
        """The objects' keys, a listing page at a time (folder markers left out)."""
        ...

    def get(self, key: str, out: IO[bytes]) -> None:
        """Copy one object into an open file."""
        ...

    def put(self, path: Path, key: str) -> None:
        """Copy one file into an object (over one of the same key)."""
        ...


def file_store_of(credentials: Mapping[str, Any], what: str) -> FileStore:
    """The store a key's credentials name; UserError (naming `what` and the missing fields) otherwise."""
    if any(credentials.get(k) for k in ("sas_token", "container_uri", "container_name", "account_name")):
        return AzureContainer.of(credentials, what)
    missing = [k for k in ("bucket", "access_key_id", "secret_access_key") if not credentials.get(k)]
    if missing:
        raise UserError(f"{what}: the credentials name no S3 bucket (missing {', '.join(missing)}) nor an Azure container (container_uri and sas_token)")
    endpoint = credentials.get("endpoint") or credentials.get("host")
    if isinstance(endpoint, str) and endpoint and "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    region = credentials.get("region")
    return S3Bucket(str(credentials["bucket"]), str(endpoint) if endpoint else None, str(region) if region else None, str(credentials["access_key_id"]), str(credentials["secret_access_key"]))


class S3Bucket:
    """An S3 bucket through boto3, with the key's access keys."""

    def __init__(self, bucket: str, endpoint: str | None, region: str | None, access_key: str, secret_key: str) -> None:
        import boto3
        from botocore.config import Config

        self.name = f"the bucket {bucket}"
        self.bucket = bucket
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(max_pool_connections=TRANSFERS, retries={"max_attempts": 5, "mode": "standard"}),
        )

    def pages(self) -> Iterator[list[str]]:
        """The store's keys, a page at a time (directory markers left out)."""
        with self.errors(f"listing {self.name}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                yield [o["Key"] for o in page.get("Contents") or [] if not o["Key"].endswith("/")]

    def get(self, key: str, out: IO[bytes]) -> None:
        """Copy the object `key` into `out`."""
        with self.errors(f"copying {key} from {self.name}"):
            self.client.download_fileobj(self.bucket, key, out)

    def put(self, path: Path, key: str) -> None:
        """Copy the file `path` into the store as `key` (over one of that key)."""
        with self.errors(f"copying {key} into {self.name}"):
            self.client.upload_file(str(path), self.bucket, key)

    @staticmethod
    @contextmanager
    def errors(doing: str) -> Iterator[None]:
        """An S3 failure as a UserError naming what was being done (the store's code, never its keys)."""
        import boto3.exceptions
        import botocore.exceptions

        try:
            yield
        except botocore.exceptions.ClientError as e:
            err = e.response.get("Error", {})
            raise UserError(f"{doing}: the store refused it ({err.get('Code')}: {err.get('Message')})") from None
        except boto3.exceptions.S3UploadFailedError as e:
            # "Failed to upload <local scratch path> to <bucket>/<key>: <the store's answer>": the answer
            raise UserError(f"{doing}: {str(e).rsplit(': An error occurred ', 1)[-1]}") from None
        except (botocore.exceptions.BotoCoreError, boto3.exceptions.Boto3Error) as e:
            raise UserError(f"{doing}: {type(e).__name__}: {e}") from None


class AzureContainer:
    """An Azure Blob container through azure-storage-blob, with the key's SAS token."""

    def __init__(self, container_url: str, sas_token: str) -> None:
        try:
            from azure.storage.blob import ContainerClient
        except ImportError:
            raise UserError("the file store is an Azure container: install azure-storage-blob (pip install 'mxinfra-cloudfoundry[azure]')") from None
        self.name = f"the container {container_url.rsplit('/', 1)[-1]}"
        self.client = ContainerClient.from_container_url(f"{container_url}?{sas_token.lstrip('?')}")

    @classmethod
    def of(cls, credentials: Mapping[str, Any], what: str) -> AzureContainer:
        """The container of an Azure object-store key: `container_uri`, else `account_name` and `container_name`."""
        url = credentials.get("container_uri")
        if not url and credentials.get("account_name") and credentials.get("container_name"):
            url = f"https://{credentials['account_name']}.blob.core.windows.net/{credentials['container_name']}"
        if not url or not credentials.get("sas_token"):
            missing = ", ".join(k for k, v in (("container_uri (or account_name and container_name)", url), ("sas_token", credentials.get("sas_token"))) if not v)
            raise UserError(f"{what}: an Azure object store without {missing}")
        if not str(url).startswith(("https://", "http://")):
            raise UserError(f"{what}: container_uri is not an http(s) URL")
        if "?" in str(url) or "#" in str(url):
            # never echoed: a query here is most likely a token
            raise UserError(f"{what}: container_uri carries a query: give the container's URL alone and the token as sas_token")
        try:
            parts = urlsplit(str(url))
            names_a_container = bool(parts.hostname) and parts.path.strip("/") != ""
        except ValueError:  # e.g. an unclosed IPv6 bracket
            names_a_container = False
        if not names_a_container:
            raise UserError(f"{what}: container_uri is not a container's URL (https://<account>.blob.core.windows.net/<container>)")
        try:
            return cls(str(url).rstrip("/"), str(credentials["sas_token"]))
        except ValueError:
            # the SDK's message quotes the URL it was given, the token included: never shown
            raise UserError(f"{what}: the Azure SDK refused container_uri as a container's URL (https://<account>.blob.core.windows.net/<container>)") from None

    def pages(self) -> Iterator[list[str]]:
        """The store's keys, a page at a time (directory markers left out)."""
        with self.errors(f"listing {self.name}"):
            for page in self.client.list_blobs(results_per_page=BATCH).by_page():
                yield [b.name for b in page if not b.name.endswith("/")]

    def get(self, key: str, out: IO[bytes]) -> None:
        """Copy the object `key` into `out`."""
        with self.errors(f"copying {key} from {self.name}"):
            self.client.download_blob(key, max_concurrency=1).readinto(out)

    def put(self, path: Path, key: str) -> None:
        """Copy the file `path` into the store as `key` (over one of that key)."""
        with self.errors(f"copying {key} into {self.name}"), open(path, "rb") as f:
            self.client.upload_blob(key, f, overwrite=True)

    @staticmethod
    @contextmanager
    def errors(doing: str) -> Iterator[None]:
        """An Azure failure as a UserError naming what was being done (the service's code, never the token)."""
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            yield
        except HttpResponseError as e:
            raise UserError(f"{doing}: the store refused it ({e.error_code or e.status_code}: {str(e.reason or '')[:200]})") from None
        except AzureError as e:
            raise UserError(f"{doing}: {type(e).__name__}") from None


def pull(store: FileStore, tree: Path) -> int:
    """Every object of the store into `tree`, where Mendix Cloud's layout puts it (`tree_path`), a page at
    a time; how many."""

    def fetch(item: tuple[str, str]) -> None:
        key, place = item
        target = tree / place
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # a file of its own: two keys that land on one path are refused, never one lost
            with open(target, "xb") as out:
                store.get(key, out)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise UserError(f"{store.name}: object {key!r} and another object land on the same file of the archive (tree/{place} or a folder of it)") from None
        except OSError as e:
            raise UserError(f"copying {key} from {store.name}: {e.strerror or e}") from None

    count = 0
    with ThreadPoolExecutor(TRANSFERS) as pool:
        for keys in store.pages():
            list(pool.map(fetch, [(key, place_of(store.name, key)) for key in keys]))
            count += len(keys)
    return count


def push(store: FileStore, tree: Path) -> int:
    """Every file under `tree` into the store under its key (`store_key`: over objects of the same key,
    nothing deleted), BATCH at a time; how many."""

    def put(path: Path) -> None:
        key = store_key(path.relative_to(tree).as_posix())
        try:
            store.put(path, key)
        except OSError as e:
            raise UserError(f"copying {key} into {store.name}: {e.strerror or e}") from None

    return _batched(_files(tree), lambda batch: _each(put, batch))


def _each(call: Callable[[Path], None], batch: list[Path]) -> None:
    with ThreadPoolExecutor(TRANSFERS) as pool:
        list(pool.map(call, batch))


def _batched(paths: Iterator[Path], run: Callable[[list[Path]], None]) -> int:
    count, batch = 0, []
    for path in paths:
        batch.append(path)
        if len(batch) == BATCH:
            run(batch)
            count, batch = count + len(batch), []
    if batch:
        run(batch)
    return count + len(batch)


def _files(root: Path) -> Iterator[Path]:
    """The regular files under `root`, one directory at a time (no list of the whole tree)."""
    for dirpath, _, names in os.walk(root):
        for n in sorted(names):
            yield Path(dirpath) / n


def place_of(store: str, key: str) -> str:
    """Where an object goes under the archive's tree/ (`tree_path`); UserError naming the store for a key
    that is no relative path of the archive (an empty, '.' or '..' segment, one too long) or that the
    layout refuses."""
    path = PurePosixPath(key)
    if "\x00" in key:
        raise UserError(f"{store}: object {key!r} has a NUL character: no file system keeps it as a file of the archive")
    if path.is_absolute() or any(p in ("", ".", "..") for p in key.split("/")):
        raise UserError(f"{store}: object {key!r} cannot be kept as a file of the archive (an empty, '.' or '..' path segment)")
    if any(len(p.encode()) > 255 for p in key.split("/")):
        raise UserError(f"{store}: object {key[:80]!r}... has a path segment longer than 255 bytes: no file system keeps it as a file of the archive")
    try:
        return tree_path(key)
    except UserError as e:
        raise UserError(f"{store}: {e}") from None
