"""The S3 backend (boto3): conditional create with `If-None-Match: *`, multipart for big files."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from .store_base import MissingKeyError, Progress, Store, StoreError, check_key, stream_to_file

PART_SIZE = 8 * 1024 * 1024  # also the threshold for multipart (S3's minimum part is 5 MiB)
_CONFLICT_RETRIES = 20
# botocore's "standard" retry mode (the documented default of the newer SDKs): 5xx, throttling and dropped
# connections are retried with jittered exponential backoff (50 ms base, 1 s for throttling). Five attempts
# outlast a burst of errors and still give up on an unreachable endpoint within about a second.
RETRY_MODE = "standard"
MAX_ATTEMPTS = 5
# after botocore's own retries: what may still pass by itself (the caller may try again within its budget)
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_TRANSIENT_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable"})


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> int:
    return int(getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def retry_settings(session: Any) -> dict[str, Any]:
    """botocore's `retries` config: the user's AWS_RETRY_MODE / AWS_MAX_ATTEMPTS (environment or profile) if
    set, else standard mode with MAX_ATTEMPTS; "adaptive" also rate-limits the client when S3 throttles."""
    scoped: dict[str, Any] = {}
    try:
        scoped = dict(session.get_scoped_config())
    except Exception:  # a missing profile is reported by the first real call, with its own message
        scoped = {}
    mode = os.environ.get("AWS_RETRY_MODE") or scoped.get("retry_mode") or RETRY_MODE
    attempts = os.environ.get("AWS_MAX_ATTEMPTS") or scoped.get("max_attempts") or MAX_ATTEMPTS
    try:
        total = int(attempts)
    except ValueError:
        raise ValueError(f"AWS_MAX_ATTEMPTS / max_attempts {attempts!r} is not a number") from None
    if mode not in ("legacy", "standard", "adaptive"):
        raise ValueError(f"AWS_RETRY_MODE / retry_mode {mode!r}: expected standard, adaptive or legacy")
    return {"mode": mode, "total_max_attempts": max(total, 1)}


class S3Store(Store):
    """Objects under `s3://bucket/prefix`; the client takes endpoint, region and credentials from the environment."""

    def __init__(self, url: str, bucket: str, prefix: str) -> None:
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
        except ImportError:
            raise StoreError(url, "the S3 backend needs boto3: pip install 'mxinfra[s3]'") from None
        self.url = url
        self.bucket = bucket
        self.prefix = prefix
        import botocore.session

        self._exc = botocore.exceptions
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        core = botocore.session.get_session()
        self._session = boto3.session.Session(botocore_session=core)
        try:
            config = botocore.config.Config(retries=retry_settings(core), connect_timeout=10, read_timeout=120)
            self._config = config
            self._client = self._session.client("s3", endpoint_url=endpoint, config=config)
        except ValueError as exc:
            raise StoreError(url, f"invalid AWS retry configuration: {exc}") from None
        except self._exc.BotoCoreError as exc:
            raise StoreError(url, f"cannot create an S3 client: {exc}") from None
        self._check_bucket()

    # -- errors

    def _error(self, exc: Exception, what: str) -> StoreError:
        """Translate a boto error into a StoreError naming the URL and the cause."""
        e = self._exc
        if isinstance(exc, (e.EndpointConnectionError, e.ConnectTimeoutError)):
            # never connected: the request was not sent; a wrong endpoint should fail now, not after a budget
            return StoreError(self.url, f"unreachable: {exc}")
        if isinstance(exc, e.HTTPClientError):
            # sent, then the connection dropped or timed out: S3 may have acted on it
            return StoreError(self.url, f"cannot {what}: the connection failed after botocore's retries: {exc}", transient=True)
        if isinstance(exc, (e.NoCredentialsError, e.PartialCredentialsError)):
            return StoreError(self.url, f"no AWS credentials: {exc} (configure the usual AWS credential chain)")
        if isinstance(exc, e.ClientError):
            code, status = _code(exc), _status(exc)
            if code in ("NoSuchBucket",) or (status == 404 and what == "check the bucket"):
                return StoreError(self.url, f"bucket {self.bucket} does not exist")
            if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return StoreError(self.url, f"access denied ({code or status}) while trying to {what}")
            transient = status in _TRANSIENT_STATUS or code in _TRANSIENT_CODES
            return StoreError(self.url, f"cannot {what}: {code or status}: {exc}", transient=transient)
        return StoreError(self.url, f"cannot {what}: {exc}")

    def _errors(self) -> tuple[type[Exception], ...]:
        return (self._exc.BotoCoreError, self._exc.ClientError)

    def _check_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._errors() as exc:
            raise self._error(exc, "check the bucket") from None

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    # -- objects

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None."""
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            return resp["Body"].read()
        except self._exc.ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404") or _status(exc) == 404:
                return None
            raise self._error(exc, f"read {key}") from None
        except self._exc.BotoCoreError as exc:
            raise self._error(exc, f"read {key}") from None

    def _conditional(self, key: str, call: Any, **kwargs: Any) -> bool:
        """Run a write; with IfNoneMatch, 412 means the key exists (False), 409 a concurrent conditional write (retry)."""
        for attempt in range(_CONFLICT_RETRIES):
            try:
                call(**kwargs)
                return True
            except self._exc.ClientError as exc:
                if "IfNoneMatch" in kwargs and (_status(exc) == 412 or _code(exc) == "PreconditionFailed"):
                    return False
                # S3 answers 409 ConditionalRequestConflict while another conditional write of the same key
                # is in flight; retrying then yields 412 (it won) or success (it failed)
                if "IfNoneMatch" in kwargs and _code(exc) == "ConditionalRequestConflict":
                    time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
                    continue
                raise self._error(exc, f"write {key}") from None
            except self._exc.BotoCoreError as exc:
                raise self._error(exc, f"write {key}") from None
        raise StoreError(self.url, f"cannot write {key}: conditional write kept conflicting", transient=True)

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Write the object; with if_absent atomically only if absent (PutObject If-None-Match: *)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if if_absent:
            kwargs["IfNoneMatch"] = "*"
        return self._conditional(key, self._client.put_object, **kwargs)

    def put_file(self, key: str, path: Path, *, if_absent: bool = False, progress: Progress | None = None) -> bool:
        """Upload a file: one PutObject when small, else a multipart upload completed conditionally."""
        if if_absent and self.exists(key):
            return False  # skip re-uploading gigabytes; the conditional completion below stays the guard
        size = os.path.getsize(path)
        full = self._key(key)
        if size <= PART_SIZE:
            with open(path, "rb") as f:
                data = f.read()
            done = self.put(key, data, if_absent=if_absent)
            if progress is not None:
                progress(len(data))
            return done
        try:
            upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=full)
        except self._errors() as exc:
            raise self._error(exc, f"write {key}") from None
        upload_id = upload["UploadId"]
        completed = False
        try:
            parts = []
            with open(path, "rb") as f:
                number = 1
                while chunk := f.read(PART_SIZE):
                    try:
                        resp = self._client.upload_part(
                            Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=chunk
                        )
                    except self._errors() as exc:
                        raise self._error(exc, f"write {key}") from None
                    parts.append({"PartNumber": number, "ETag": resp["ETag"]})
                    if progress is not None:
                        progress(len(chunk))
                    number += 1
            kwargs: dict[str, Any] = {
                "Bucket": self.bucket,
                "Key": full,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if if_absent:
                kwargs["IfNoneMatch"] = "*"
            # the object becomes visible, complete, only here
            completed = self._conditional(key, self._client.complete_multipart_upload, **kwargs)
            return completed
        finally:
            if not completed:
                # a failed or lost conditional upload must not leave billed parts behind
                try:
                    self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
                except self._errors():
                    pass

    def download(self, key: str, dest: Path, *, progress: Progress | None = None) -> None:
        """Stream the object to `dest` via a temporary file."""
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            stream_to_file(dest, resp["Body"].iter_chunks(1024 * 1024), progress)
        except self._exc.ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404") or _status(exc) == 404:
                raise MissingKeyError(self.url, f"{key} does not exist") from None
            raise self._error(exc, f"read {key}") from None
        except self._exc.BotoCoreError as exc:
            raise self._error(exc, f"read {key}") from None

    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""
        keys: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                keys.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", []))
        except self._errors() as exc:
            raise self._error(exc, f"list {prefix or '/'}") from None
        return sorted(keys)

    def exists(self, key: str) -> bool:
        """Whether the object exists (HeadObject)."""
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except self._exc.ClientError as exc:
            if _status(exc) == 404 or _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(exc, f"read {key}") from None
        except self._exc.BotoCoreError as exc:
            raise self._error(exc, f"read {key}") from None

    def delete(self, key: str) -> None:
        """Remove the object if present."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors() as exc:
            raise self._error(exc, f"delete {key}") from None

    def identity(self) -> str:
        """The caller's ARN from STS GetCallerIdentity."""
        endpoint = os.environ.get("AWS_ENDPOINT_URL_STS") or os.environ.get("AWS_ENDPOINT_URL") or None
        try:
            sts = self._session.client("sts", endpoint_url=endpoint, config=self._config)
            return str(sts.get_caller_identity()["Arn"])
        except self._errors() as exc:
            raise self._error(exc, "get the caller identity (STS)") from None
