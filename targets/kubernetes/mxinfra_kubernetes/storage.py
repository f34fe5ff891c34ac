"""File storage in plain mode: the runtime's file store binding, and the claims that hold an environment's data.

Imported only while deploying (it imports pulumi_kubernetes).
"""

from __future__ import annotations

from typing import Any

import pulumi_kubernetes as k8s

from mxinfra.settings import AzureBlobStorage, LocalStorage, S3Storage

from .builder import Builder
from .config import claims_of


def binding(b: Builder, pvcs: list[tuple[str, str]]) -> S3Storage | AzureBlobStorage | LocalStorage:
    """The runtime's file store binding (plain mode): S3, Azure Blob, or a claim mounted at FILES_PATH."""
    st = b.settings.storage
    assert st is not None  # check() refused a plain environment without one
    if st.s3 is not None:
        c = st.s3
        return S3Storage(
            bucket=c.bucket,
            endpoint=c.endpoint,
            access_key_id=c.accessKeyId,
            secret_access_key=c.secretAccessKey,
            key_suffix=c.keySuffix,
            use_sse=c.useSse,
        )
    if st.azure is not None:
        a = st.azure
        return AzureBlobStorage(account_name=a.accountName, container=a.container, account_key=a.accountKey, sas_token=a.sasToken, endpoint=a.endpoint)
    assert st.local is not None
    volume_claim(b, "files", b.layout.name("files"), st.local.size, "runtime", pvcs)
    return LocalStorage()


def volume_claim(b: Builder, kind: str, name: str, size: str, component: str, pvcs: list[tuple[str, str]]) -> k8s.core.v1.PersistentVolumeClaim:
    """A claim of the environment's data (the database's, the files'), protected, added to `pvcs` for the quota."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    (claim_spec,) = [c for c in claims_of(b.settings, b.ctx.environment.name) if c.kind == kind]
    if claim_spec.storage_class is not None:
        spec["storageClassName"] = claim_spec.storage_class
    pvcs.append((name, size))
    # Production data survives a stack update or destroy: protected and retained on delete.
    claim = k8s.core.v1.PersistentVolumeClaim(b.logical(kind), metadata=b.layout.metadata(name, component, per_release=False), spec=spec, opts=b.opts(protect_data=True))
    b.created[kind] = claim
    return claim
