"""The activity-log resource: a Pulumi dynamic resource inside each MendixEnvironment.

Its inputs are what defines a deployment (package hash, a digest of the runtime settings, the instance
count, a digest of the grants). Pulumi calls create/update only when one of them really changes and
never during a preview, so every record stands for something that was applied. It depends on the
environment's runtime resources, so it is written after they were.

Two more inputs say *what* changed in the settings (issue 18): `constants`, the environment's non-secret
constant overrides (a record lists each changed one with from/to), and `secretsDigest`, a keyed hash
(HMAC-SHA256) of every secret value the core hands the runtime, under a per-environment key that lives
only in the Pulumi state, as a secret (`SecretsKey`). The digest is itself a secret input; a record names
the secrets that changed and never carries a value or a hash. A plain digest would not do: a weak
secret (a short password) is found again from its sha256 by trying candidates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

TRACKED = ("packageSha256", "artifact", "settingsDigest", "instances", "grantsDigest")
# Inputs a record breaks down by name (constants, secrets). A state written before they existed has
# none: the first update after the upgrade stores them as the baseline and claims no change from them.
SECRETS = "secretsDigest"
CONSTANTS = "constants"
DETAILED = (SECRETS, CONSTANTS)
SIGNING = ("signer", "trustedSigners")
# The first change in this order names the record's action; the rest are listed under "changes". A
# rotated secret or a changed constant is a settings change: the runtime gets new settings and restarts.
ACTIONS = (
    ("packageSha256", "deploy"),
    ("artifact", "deploy"),
    ("settingsDigest", "settings"),
    ("constants", "settings"),
    ("secrets", "settings"),
    ("instances", "scale"),
    ("grantsDigest", "permissions"),
)
# The names under which secretsDigest lists the runtime's secrets (the config keys they come from).
ADMIN_PASSWORD = "adminPassword"
LICENSE_KEY = "license.key"
SECRET_CONSTANT = "secretConstants."


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


def runtime_secrets(settings: Any) -> dict[str, str]:
    """The secret values the core hands the runtime besides the admin password, by name (plain: keep inside an apply)."""
    values = {SECRET_CONSTANT + name: value.reveal() for name, value in settings.secret_constants.items()}
    if settings.license_key is not None:
        values[LICENSE_KEY] = settings.license_key.reveal()
    return values


def secrets_digest(key_hex: str | None, values: Mapping[str, str | None]) -> dict[str, Any] | None:
    """HMAC-SHA256 of each secret under the environment's key, and the key's id; None without a key."""
    if not key_hex:
        # Only a mock run has no key (no provider runs there); the activity resource then tracks no secrets.
        return None
    key = bytes.fromhex(key_hex)
    # The name is part of the message: two secrets with one value do not get one hash.
    # A value that is None never reaches the runtime (only a mock run leaves one unresolved): no hash.
    hashes = {
        name: hmac.new(key, name.encode() + b"\0" + str(value).encode(), hashlib.sha256).hexdigest()
        for name, value in values.items()
        if value is not None
    }
    # Hashes under another key cannot be compared: the id tells the provider so (it reveals nothing of the key).
    return {"keyId": hmac.new(key, b"mxinfra:secrets-key-id", hashlib.sha256).hexdigest(), "secrets": hashes}


def _plain(value: Any) -> Any:
    # The engine hands a dynamic provider every number as a float (protobuf Struct): 1.0 is the count 1.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _reveal(value: Any) -> Any:
    """`value` without the engine's secret wrappers, at any depth: for comparing, never for outputs."""
    # A provider that does not accept secrets gets plain values; one that does gets each secret as
    # {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": ...}.
    if is_rpc_secret(value):
        return _reveal(unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


def _constant_changes(olds: dict[str, Any] | None, news: dict[str, Any]) -> dict[str, Any] | None:
    """Each constant override that changed, with from/to (None: added or removed); None if not tracked."""
    old = {} if olds is None else _reveal(olds.get(CONSTANTS))
    new = _reveal(news.get(CONSTANTS))
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None
    names = sorted(n for n in old.keys() | new.keys() if n not in old or n not in new or old[n] != new[n])
    return {n: {"from": _plain(old.get(n)), "to": _plain(new.get(n))} for n in names} or None


def _secret_changes(olds: dict[str, Any] | None, news: dict[str, Any]) -> dict[str, Any] | None:
    """The names of the secrets that changed, appeared or went (never a value or hash); None if nothing to say."""
    new = _reveal(news.get(SECRETS))
    if not isinstance(new, dict):
        return None
    old = {"keyId": new.get("keyId"), "secrets": {}} if olds is None else _reveal(olds.get(SECRETS))
    if not isinstance(old, dict) or old.get("keyId") != new.get("keyId"):
        # Not tracked before (a state from before secretsDigest) or hashed under another key: this
        # update only sets the baseline, claiming no rotation it cannot know about.
        return None
    o, n = dict(old.get("secrets") or {}), dict(new.get("secrets") or {})
    section = {
        "changed": sorted(k for k in o.keys() & n.keys() if o[k] != n[k]),
        "added": sorted(n.keys() - o.keys()),
        "removed": sorted(o.keys() - n.keys()),
    }
    return section if any(section.values()) else None


def _changes(olds: dict[str, Any] | None, news: dict[str, Any]) -> dict[str, Any]:
    if not olds:
        changes = {k: {"from": None, "to": _plain(news.get(k))} for k in TRACKED}
        olds = None
    else:
        changes = {k: {"from": _plain(olds.get(k)), "to": _plain(news.get(k))} for k in TRACKED if olds.get(k) != news.get(k)}
    constants, secret_names = _constant_changes(olds, news), _secret_changes(olds, news)
    if constants:
        changes["constants"] = constants
    if secret_names:
        changes["secrets"] = secret_names
    return changes


def _differs(olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
    """The inputs that make an update: tracked ones that differ, detailed ones that differ or are new."""
    changed = [k for k in TRACKED if olds.get(k) != news.get(k)]
    # A detailed input the program no longer sends changes nothing; one missing from the old state is
    # stored (the baseline of the next comparison) by an update that writes no record.
    changed += [k for k in DETAILED if news.get(k) is not None and _reveal(olds.get(k)) != _reveal(news.get(k))]
    # What a destroy record is signed with and may chain to: the delete reads them from the state, so a
    # change (a signer rotation's first step lists the new key) is stored by an update that writes no record.
    changed += [k for k in SIGNING if k in news and _reveal(olds.get(k)) != _reveal(news.get(k))]
    return changed


def _action(changes: dict[str, Any], created: bool) -> str:
    if created:
        return "deploy"
    for key, action in ACTIONS:
        if key in changes:
            return action
    return "settings"


def operation_key(props: dict[str, Any], changes: dict[str, Any], action: str, after: str | None) -> str:
    """The idempotency key of one create, update or delete of an environment's activity resource.

    Derived from the resource (app, environment), what is recorded (the action, the changes, the inputs)
    and the last record the Pulumi state knows (`after`): the engine retrying an operation after a crash
    passes the same, so its record is written once; the next operation knows a newer last record."""
    inputs = {k: _plain(_reveal(props.get(k))) for k in (*TRACKED, *DETAILED)}
    what = {"app": props.get("app"), "environment": props.get("environment"), "action": action}
    return digest({**what, "after": after, "changes": changes, "inputs": inputs})


def write_record(props: dict[str, Any], changes: dict[str, Any], action: str, *, after: str | None = None) -> dict[str, Any]:
    """Append one record for this environment to the repository's activity log, exactly once for this
    operation however often it is retried; returns the outputs."""
    from .activity import ActivityLog, append_budget
    from .promotion import repository_url
    from .repository import Repository
    from .store import open_store, retry_transient

    # Inputs carry no machine path: relative ones are the project's, the provider's working directory.
    url = repository_url(props["repository"], Path.cwd())
    budget = append_budget()
    store = retry_transient(lambda: open_store(url), budget=budget)
    package_path = Path.cwd() / props["packagePath"] if props.get("packagePath") else None
    if action == "deploy" and package_path is not None and package_path.is_file():
        # Transport needs the package in the repository: upload it once (a no-op if already there).
        # Unlabelled: version labels are the publishers' (`mxinfra package push`), never a deployer's
        # claim (issue 19, F9); a label that names other bytes was refused before anything was applied.
        Repository(store).push(package_path, version=None, commit=None, stories=())
    signer = _signer(props, store.url)
    record = ActivityLog(store, signer=signer, budget=budget, trust=_appender_trust(props, signer)).append(
        props["environment"],
        app=props.get("app"),
        actor=retry_transient(store.identity, budget=budget),
        action=action,
        package_sha256=props["packageSha256"],
        package_version=props.get("packageVersion"),
        artifact=props.get("artifact"),
        changes=changes,
        idempotency_key=operation_key(props, changes, action, after),
        # a create has no last record to tell it from the create before an earlier destroy
        superseded_by="destroy",
        # the app image `pulumi up` verified against the package (targets that run an image)
        image=props.get("image") if isinstance(props.get("image"), dict) else None,
        # what now runs, carried by every record (drift reads only the newest ones); a destroy leaves none
        instances=None if action == "destroy" else _instances(props.get("instances")),
        role=props.get("role") if isinstance(props.get("role"), str) else None,
    )
    return {**props, "lastRecordSeq": record.seq, "lastRecordHash": record.hash}


def _instances(value: Any) -> int | None:
    # the engine hands a dynamic provider every number as a float (1.0 for 1)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        return None
    return int(value)


def _appender_trust(props: dict[str, Any], signer: Any) -> Any:
    """The keys the record may chain to: the signer's and those trusted for the environment (a state written
    before `trustedSigners` was an input: the signer's alone)."""
    from .signing import appender_trust, trust_of_refs

    refs = props.get("trustedSigners")
    trusted = trust_of_refs([str(r) for r in refs], Path.cwd()) if isinstance(refs, list) else None
    return appender_trust(signer, trusted)


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
        """Changed when a tracked input differs or a detailed one is new or differs; never a replacement (the log is append-only)."""
        changed = _differs(olds, news)
        return DiffResult(changes=bool(changed), replaces=[], stables=["environment", "repository"], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """A later deployment: record what changed."""
        changes = _changes(olds, news)
        if not changes:
            # Only a baseline was stored (the first update after secretsDigest/constants were added, or a
            # new secrets key): nothing was applied, so nothing is recorded; the last record stays the last.
            return UpdateResult(outs={**news, "lastRecordSeq": olds.get("lastRecordSeq"), "lastRecordHash": olds.get("lastRecordHash")})
        return UpdateResult(outs=write_record(news, changes, _action(changes, created=False), after=olds.get("lastRecordHash")))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """The environment is destroyed: that is an activity too."""
        write_record(props, {}, "destroy", after=props.get("lastRecordHash"))


class ActivityLogEntry(Resource):
    """The activity-log resource of one environment (type pulumi-python:dynamic:Resource)."""

    last_record_seq: Any
    last_record_hash: Any

    def __init__(self, name: str, props: dict[str, Any], opts: Any = None) -> None:
        # lastRecord* are outputs only; declaring them makes them readable on the resource.
        super().__init__(ActivityProvider(), name, {**props, "lastRecordSeq": None, "lastRecordHash": None}, opts)


def _intent_outs(props: dict[str, Any], olds: dict[str, Any] | None, key: str) -> dict[str, Any]:
    """Write the intent record of what is about to be applied (unless nothing tracked changes); the outputs."""
    changes = _changes(olds, props)
    kept = {"lastRecordSeq": (olds or {}).get("lastRecordSeq"), "lastRecordHash": (olds or {}).get("lastRecordHash")}
    if not changes:
        return {**props, **kept, "key": key}
    from .activity import INTENT

    intends = _action(changes, created=olds is None)
    written = write_record(props, {"intends": intends, **changes}, INTENT, after=kept["lastRecordHash"])
    return {**written, "key": key}


class ReleaseIntentProvider(ResourceProvider):
    """Records what a `pulumi up` is about to apply before anything of it is applied, and keeps the
    environment's secrets key (one dynamic resource for both: each costs the engine a round trip)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        """The environment's first deployment: its intent, and a new key (32 random bytes, hex; the
        resource's options keep it a secret in the state)."""
        return CreateResult(id_="release-intent", outs=_intent_outs(props, None, secrets.token_hex(32)))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Changed when the activity resource will be (a tracked input differs, a detailed one is new or
        differs); never a replacement: a new key would make every secret hash differ."""
        changed = _differs(olds, news)
        return DiffResult(changes=bool(changed), replaces=[], stables=["environment", "repository"], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """A change about to be applied: its intent record; the key stays. The state of a SecretsKey (what
        held the key before, aliased to this resource) has no inputs to compare: stored as the baseline."""
        key = olds.get("key") or secrets.token_hex(32)
        if "packageSha256" not in olds:
            return UpdateResult(outs={**news, "key": key, "lastRecordSeq": None, "lastRecordHash": None})
        return UpdateResult(outs=_intent_outs(news, olds, key))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Nothing to record: the activity resource, deleted before everything else, recorded the destroy."""


class ReleaseIntent(Resource, module="mxinfra", name="ReleaseIntent"):
    """An environment's release intent (type pulumi-python:dynamic/mxinfra:ReleaseIntent), only in the state.

    Every other resource of the environment depends on it, so its record is written before any of them
    changes; should the record fail (the store or the signer refuses), nothing is applied (issue 19, F11).
    A dynamic resource rather than a random.RandomBytes for the key: it needs no provider plugin besides
    the Python SDK."""

    key: Any
    last_record_seq: Any
    last_record_hash: Any

    def __init__(self, name: str, props: dict[str, Any], opts: Any = None) -> None:
        import pulumi

        # The engine encrypts additional secret outputs in the state; the dynamic provider itself gets and
        # returns plain values (it does not accept secrets).
        secret = pulumi.ResourceOptions(additional_secret_outputs=["key"])
        outputs = {"key": None, "lastRecordSeq": None, "lastRecordHash": None}
        super().__init__(ReleaseIntentProvider(), name, {**props, **outputs}, pulumi.ResourceOptions.merge(opts, secret))
