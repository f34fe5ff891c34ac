"""The activity-log resource: a Pulumi dynamic resource inside each MendixEnvironment.

Its inputs are what defines a deployment (package hash, a digest of the runtime settings, the instance
count, a digest of the grants). Pulumi calls create/update only when one of them really changes and
never during a preview, so every record stands for something that was applied. It depends on the
environment's runtime resources, so it is written after they were.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

TRACKED = ("packageSha256", "artifact", "settingsDigest", "instances", "grantsDigest")
# The first change in this order names the record's action; the rest are listed under "changes".
ACTIONS = (
    ("packageSha256", "deploy"),
    ("artifact", "deploy"),
    ("settingsDigest", "settings"),
    ("instances", "scale"),
    ("grantsDigest", "permissions"),
)


def digest(value: Any) -> str:
    """A stable sha256 of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def settings_digest(settings: Any) -> str:
    """Digest of the runtime settings; secret values are left out (a digest of a weak secret leaks it)."""
    return digest(
        {
            "constants": dict(settings.overrides),
            "secretConstants": sorted(settings.secret_constants),
            "events": [settings.scheduled_event_mode, list(settings.scheduled_events)],
            "dtap": settings.dtap_mode,
            "memory": settings.memory_limit_mb,
            "custom": dict(settings.custom_runtime_settings),
            "license": settings.license_id,
        }
    )


def grants_digest(access: Any) -> str:
    """Digest of an environment's grants."""
    return digest([[g.permission.value, g.principal, g.mfa_required, g.max_session_seconds] for g in access.grants])


def _plain(value: Any) -> Any:
    # The engine hands a dynamic provider every number as a float (protobuf Struct): 1.0 is the count 1.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _changes(olds: dict[str, Any] | None, news: dict[str, Any]) -> dict[str, Any]:
    if not olds:
        return {k: {"from": None, "to": _plain(news.get(k))} for k in TRACKED}
    return {k: {"from": _plain(olds.get(k)), "to": _plain(news.get(k))} for k in TRACKED if olds.get(k) != news.get(k)}


def _action(changes: dict[str, Any], created: bool) -> str:
    if created:
        return "deploy"
    for key, action in ACTIONS:
        if key in changes:
            return action
    return "settings"


def write_record(props: dict[str, Any], changes: dict[str, Any], action: str) -> dict[str, Any]:
    """Append one record for this environment to the repository's activity log; returns the outputs."""
    from .activity import ActivityLog
    from .promotion import repository_url
    from .repository import Repository, VersionConflictError
    from .store import open_store

    # Inputs carry no machine path: relative ones are the project's, the provider's working directory.
    store = open_store(repository_url(props["repository"], Path.cwd()))
    package_path = Path.cwd() / props["packagePath"] if props.get("packagePath") else None
    if action == "deploy" and package_path is not None and package_path.is_file():
        # Transport needs the package in the repository: upload it once (a no-op if already there).
        repo = Repository(store)
        try:
            repo.push(package_path, version=props.get("packageVersion"), commit=None, stories=())
        except VersionConflictError:
            # A rebuilt package with the same model version: keep it, unlabelled, rather than fail
            # a deployment that was already applied.
            repo.push(package_path, version=None, commit=None, stories=())
    record = ActivityLog(store, signer=_signer(props, store.url)).append(
        props["environment"],
        app=props.get("app"),
        actor=store.identity(),
        action=action,
        package_sha256=props["packageSha256"],
        package_version=props.get("packageVersion"),
        artifact=props.get("artifact"),
        changes=changes,
    )
    return {**props, "lastRecordSeq": record.seq, "lastRecordHash": record.hash}


def _signer(props: dict[str, Any], url: str) -> Any:
    """The environment's configured signer (KMS, Key Vault, a key file); on file:// the development key by
    default; None (unsigned: no gate will accept it) on a cloud repository without one."""
    from .signing import dev_signer, open_signer

    if props.get("signer"):
        return open_signer(str(props["signer"]), Path.cwd())
    return dev_signer(url)


class ActivityProvider(ResourceProvider):
    """Writes an activity record whenever an environment's deployment really changes."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """First deployment of the environment."""
        outs = write_record(props, _changes(None, props), "deploy")
        return CreateResult(id_=f"activity-{props['environment']}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Changed only when a tracked input differs; never a replacement (the log is append-only)."""
        changed = [k for k in TRACKED if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], stables=["environment", "repository"], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """A later deployment: record what changed."""
        changes = _changes(olds, news)
        return UpdateResult(outs=write_record(news, changes, _action(changes, created=False)))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """The environment is destroyed: that is an activity too."""
        write_record(props, {}, "destroy")


class ActivityLogEntry(Resource):
    """The activity-log resource of one environment (type pulumi-python:dynamic:Resource)."""

    last_record_seq: Any
    last_record_hash: Any

    def __init__(self, name: str, props: dict[str, Any], opts: Any = None) -> None:
        # lastRecord* are outputs only; declaring them makes them readable on the resource.
        super().__init__(ActivityProvider(), name, {**props, "lastRecordSeq": None, "lastRecordHash": None}, opts)
