"""Governance: package repository, activity log, staged promotion and traceability.

The storage layer (stores by URL, the repository, the hash-chained activity log) is re-exported here
lazily, so importing this package costs nothing; boto3 and the Azure SDK are imported only when an
s3:// or azblob:// store is opened.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .activity import ActivityLog, ActivityRecord
    from .repository import PackageEntry, PackageIntegrityError, Repository
    from .store import MissingKeyError, Store, StoreError, open_store

_EXPORTS = {
    "ActivityLog": "activity",
    "ActivityRecord": "activity",
    "PackageEntry": "repository",
    "PackageIntegrityError": "repository",
    "Repository": "repository",
    "MissingKeyError": "store",
    "Store": "store",
    "StoreError": "store",
    "open_store": "store",
}
__all__ = [
    "ActivityLog",
    "ActivityRecord",
    "MissingKeyError",
    "PackageEntry",
    "PackageIntegrityError",
    "Repository",
    "Store",
    "StoreError",
    "open_store",
]


def __getattr__(name: str) -> Any:
    """Import the storage API on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
