"""Backups in plain mode: a CronJob that runs mxinfra/backup_scripts/backup.sh (pg_dump of the environment's database
and a copy of its local file store into one archive on the environment's backups claim, then
retention), and a suspended CronJob that is the restore Job's template (mxinfra/backup_scripts/restore.sh).

A restore from another environment (`backups.restoreFrom`) moves the archive between the two
namespaces' claims, which no pod can mount both of: an export Job in the source namespace
(mxinfra/backup_scripts/export.sh: the backups claim read-only, no Secret) connects to the destination's restore Job,
which receives on TRANSFER_PORT; a NetworkPolicy in the destination admits only the sources' export pods.
A download is the same export Job serving the archive once, read through the API server's pod proxy.

With `backups.s3` or `backups.azure` the archives live in object storage instead of the claim: each Job
builds or reads one archive in a scratch volume (an emptyDir), and an rclone container
(mxinfra/backup_scripts/store.sh) uploads it and applies retention (backup) or fetches it first (restore). The
postgres container never holds the store's credentials, the rclone container never the database's.

The scripts are mounted from a ConfigMap as they are in this package: the tests run the same files
against a real PostgreSQL. `pod_spec` is pure; `deploy` imports pulumi_kubernetes and runs only while
deploying.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mxinfra.artifacts import postgres_version
from mxinfra.backup_scripts import SCRIPT_NAMES, SCRIPTS
from mxinfra.backups import Backups, of_environment, retention_env
from mxinfra.environments import Environment
from mxinfra.naming import Naming

from .config import (
    AzureBlobConfig,
    BackupAzureConfig,
    BackupS3Config,
    Claim,
    EnvironmentSettings,
    S3Config,
    backup_prefix,
    claim_of,
    file_store,
    object_store,
)
from .layout import JOB_CPU_MILLI, JOB_MEMORY_MB, RESTRICTED, RUNTIME_UID, Layout, milli
from .network import backup_store_port, to_networks

if TYPE_CHECKING:
    from .builder import Builder

BACKUP_DIR, FILES_DIR, SCRIPTS_DIR = "/backups", "/files", "/scripts"
# pg_dump must be at least the server's major version; 17 dumps servers back to 9.2. An in-cluster
# database's own image is used instead, so client and server always match there. `backups.image` replaces it.
EXTERNAL_IMAGE = "postgres:17.7"
# Never fires (there is no 31 February) and suspended: the restore CronJob exists only as the Job's template.
NEVER = "0 0 31 2 *"
# The restore Job's receiving port for an archive from another environment (restore.sh, export.sh).
TRANSFER_PORT = 8765
EXPORT_COMPONENT = "backup-export"
# rclone moves archives to and from object storage: one small static binary that speaks S3 (with IRSA)
# and Azure Blob, streams multipart uploads and checks each object's hash. `backups.transferImage` replaces it.
TRANSFER_IMAGE = "rclone/rclone:1.76.0"
WORK_DIR = "/work"
# The rclone remote the RCLONE_CONFIG_STORE_* variables define (no config file: RCLONE_CONFIG=/dev/null).
REMOTE = "store"
FILES_REMOTE = "files"  # the runtime's object file store, copied into and back from the archive's tree/
ObjectStore = BackupS3Config | BackupAzureConfig | S3Config | AzureBlobConfig


def claim(settings: EnvironmentSettings, env: Environment) -> Claim | None:
    """The backups claim of a plain environment with backups (None: it has none, or keeps them in object
    storage), with the StorageClass in effect: `backups.storageClass`, else the environment's, else the
    block's, as for every claim."""
    if settings.mode != "plain" or not of_environment(env).enabled or object_store(settings) is not None:
        return None
    return claim_of(settings, env.name, "backups", settings.backups.storageClass, f"{settings.paths['backups']}.storageClass")


def job_image(settings: EnvironmentSettings) -> str:
    """The image of the backup and restore Jobs: the in-cluster database's own (its pg_dump matches the
    server), else `backups.image`, else EXTERNAL_IMAGE."""
    in_cluster = settings.database.inCluster if settings.database else None
    if in_cluster is not None:
        return in_cluster.image
    return settings.backups.image or EXTERNAL_IMAGE


def remote(settings: EnvironmentSettings, app: str, env: str) -> str:
    """The archives' place as rclone names it: `store:<bucket or container>/<prefix>` (config.backup_prefix)."""
    store = object_store(settings)
    assert store is not None
    where = store.bucket if isinstance(store, BackupS3Config) else store.container
    return f"{REMOTE}:{where}/{backup_prefix(settings, app, env)}"


def files_remote(settings: EnvironmentSettings) -> str:
    """The file store as rclone names it: `files:<bucket or container>` (the runtime uses its root)."""
    store = file_store(settings)
    assert store is not None
    return f"{FILES_REMOTE}:{store.bucket if isinstance(store, S3Config) else store.container}"


def _remote_secrets(store: ObjectStore | None, remote: str) -> dict[str, Any]:
    """The credentials of an rclone remote (`store` or `files`) as `RCLONE_CONFIG_<REMOTE>_*` (empty: the pod's identity)."""
    prefix = f"RCLONE_CONFIG_{remote.upper()}_"
    if isinstance(store, (BackupS3Config, S3Config)):
        if store.accessKeyId is None:
            return {}
        return {f"{prefix}ACCESS_KEY_ID": store.accessKeyId, f"{prefix}SECRET_ACCESS_KEY": store.secretAccessKey}
    if isinstance(store, (BackupAzureConfig, AzureBlobConfig)):
        if store.accountKey is not None:
            return {f"{prefix}KEY": store.accountKey}
        # rclone takes a container-level SAS as the container's URL with the token as its query
        base = (store.endpoint or f"https://{store.accountName}.blob.core.windows.net").rstrip("/")
        return {f"{prefix}SAS_URL": f"{base}/{store.container}?{(store.sasToken or '').lstrip('?')}"}
    return {}


def _remote_env(store: ObjectStore | None, remote: str, secret_name: Any) -> list[dict[str, Any]]:
    """An rclone remote's settings: plain values, and its credentials from the Secret `secret_name`."""
    prefix = f"RCLONE_CONFIG_{remote.upper()}_"
    plain: dict[str, str] = {}
    if isinstance(store, (BackupS3Config, S3Config)):
        plain.update(TYPE="s3", PROVIDER="Other" if store.endpoint else "AWS")
        # no CreateBucket right is needed, nor given: the bucket exists
        plain["NO_CHECK_BUCKET"] = "true"
        if store.accessKeyId is None:
            plain["ENV_AUTH"] = "true"  # IRSA or the node's role, by the AWS SDK's chain
        if store.endpoint:
            plain["ENDPOINT"] = store.endpoint
        if getattr(store, "region", None):
            plain["REGION"] = store.region  # type: ignore[union-attr]
        if store.useSse:
            plain["SERVER_SIDE_ENCRYPTION"] = "AES256"
    elif isinstance(store, (BackupAzureConfig, AzureBlobConfig)):
        plain["TYPE"] = "azureblob"
        if store.accountKey is not None:
            plain["ACCOUNT"] = store.accountName
        if store.endpoint:
            plain["ENDPOINT"] = store.endpoint
    env = [{"name": prefix + k, "value": v} for k, v in sorted(plain.items())]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": k}}} for k in sorted(_remote_secrets(store, remote))]
    return env


def store_secret_values(settings: EnvironmentSettings) -> dict[str, Any]:
    """The archives' store's credentials, as the `backup-store` Secret holds them (empty: the pod's identity)."""
    return _remote_secrets(object_store(settings), REMOTE)


def files_secret_values(settings: EnvironmentSettings) -> dict[str, Any]:
    """The object file store's credentials, as the `backup-files` Secret holds them (empty: the pod's identity)."""
    return _remote_secrets(file_store(settings), FILES_REMOTE)


def store_env(settings: EnvironmentSettings, secret_name: Any) -> list[dict[str, Any]]:
    """rclone's settings of the archives' remote `store`: plain values, the credentials from the
    `backup-store` Secret (`secret_name`); never a config file (RCLONE_CONFIG=/dev/null keeps it in memory)."""
    return [{"name": "RCLONE_CONFIG", "value": "/dev/null"}, *_remote_env(object_store(settings), REMOTE, secret_name)]


def files_env(settings: EnvironmentSettings, secret_name: Any) -> list[dict[str, Any]]:
    """rclone's settings of the file store's remote `files`, its credentials from the `backup-files` Secret."""
    return [{"name": "RCLONE_CONFIG", "value": "/dev/null"}, *_remote_env(file_store(settings), FILES_REMOTE, secret_name)]


def transfer_image(settings: EnvironmentSettings) -> str:
    """The rclone image of the Jobs' object-storage steps: `backups.transferImage`, else TRANSFER_IMAGE."""
    return settings.backups.transferImage or TRANSFER_IMAGE


def uses_rclone(settings: EnvironmentSettings) -> bool:
    """Whether the backup Jobs have rclone steps: the archives or the files in object storage."""
    return object_store(settings) is not None or file_store(settings) is not None


def script(name: str) -> str:
    """The text of a container script (backup.sh, restore.sh, receive.pl, export.sh, export.pl, Transfer.pm or store.sh)."""
    return (SCRIPTS / name).read_text()


def scripts_name(lay: Layout) -> str:
    """The backup Jobs' scripts ConfigMap (production's admission policy guards it: they run with the database's credentials)."""
    return lay.name("backup-scripts")


def scripts_data() -> dict[str, str]:
    """What the Jobs' scripts volume holds (the backup-scripts ConfigMap): the scripts, and clean.sql,
    which restore.sh runs before a dump (the core's CLEAN_SQL: every target restores alike)."""
    from mxinfra.backup_archive import CLEAN_SQL

    return {**{name: script(name) for name in SCRIPT_NAMES}, "clean.sql": CLEAN_SQL}


@dataclass(frozen=True)
class RcloneSteps:
    """What a Job's rclone steps need: the image and scratch size; for archives in object storage the
    remote path and its settings (store_env); for an object file store its remote, settings (files_env)
    and the key suffix the runtime gives its objects."""

    image: str
    scratch: str
    remote: str | None = None
    env: list[dict[str, Any]] = field(default_factory=list)
    files_remote: str | None = None
    files_env: list[dict[str, Any]] = field(default_factory=list)
    files_suffix: str | None = None


def pod_spec(
    lay: Layout,
    action: str,
    image: str,
    database_secret: Any,
    b: Backups,
    *,
    local_files: bool,
    require_tls: bool,
    cpu_milli: int = JOB_CPU_MILLI,
    rclone: RcloneSteps | None = None,
) -> dict[str, Any]:
    """The pod of a backup (`action` "backup") or restore ("restore") Job, Pod Security `restricted`.

    Kubernetes runs init containers one by one, then the container. A backup: the object file store
    copied into a scratch volume (`pull-files`), then backup.sh, then the archive uploaded (`upload`); a
    restore: the archive fetched (`fetch`), then restore.sh, then the files copied back (`push-files`).
    Without object storage, backup.sh or restore.sh alone, on the claims."""
    store = rclone is not None and rclone.remote is not None
    remote_files = rclone is not None and rclone.files_remote is not None
    archives = WORK_DIR if store else BACKUP_DIR
    env: list[dict[str, Any]] = [
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": database_secret, "key": "DATABASE_URL"}}},
        {"name": "BACKUP_DIR", "value": archives},
        # The pod's user has no passwd entry in the image: libpq and the shell need a HOME.
        {"name": "HOME", "value": "/tmp"},
    ]
    if require_tls:
        env.append({"name": "PGSSLMODE", "value": "require"})
    if action == "backup":
        env += [{"name": k, "value": v} for k, v in retention_env(b).items()]
    else:
        # Set by whoever creates the Job from this template (`mxinfra backup restore`): the archive's id.
        # No value here: the API server stores an empty one as none (the live object must equal the plan).
        env.append({"name": "BACKUP_ID"})
    scripts = {"name": "scripts", "mountPath": SCRIPTS_DIR, "readOnly": True}
    mounts = [scripts, {"name": "backups", "mountPath": archives}]
    volumes: list[dict[str, Any]] = [{"name": "scripts", "configMap": {"name": scripts_name(lay), "defaultMode": 0o555}}]
    if store:
        assert rclone is not None
        # one archive at a time, gone with the pod: the store keeps them
        volumes.append({"name": "backups", "emptyDir": {"sizeLimit": rclone.scratch}})
    else:
        volumes.append({"name": "backups", "persistentVolumeClaim": {"claimName": lay.name("backups")}})
    if local_files or remote_files:
        env.append({"name": "FILES_DIR", "value": FILES_DIR})
        if remote_files:
            assert rclone is not None
            # a copy of the object store, one file per key: the archive keeps Mendix Cloud's layout (tree/xx/yy/<name>)
            env.append({"name": "FILES_LAYOUT", "value": "keys"})
            if rclone.files_suffix:
                env.append({"name": "FILES_SUFFIX", "value": rclone.files_suffix})
        # A backup only reads the files; a restore replaces them (in the scratch copy, for an object store).
        # (readOnly only when true: the API server drops a false one, and the live object must equal the plan)
        mounts.append({"name": "files", "mountPath": FILES_DIR, **({"readOnly": True} if action == "backup" and local_files else {})})
        if local_files:
            volumes.append({"name": "files", "persistentVolumeClaim": {"claimName": lay.name("files")}})
        else:
            assert rclone is not None
            volumes.append({"name": "files", "emptyDir": {"sizeLimit": rclone.scratch}})
    memory = f"{JOB_MEMORY_MB}Mi"
    resources = {"requests": {"cpu": milli(cpu_milli), "memory": memory}, "limits": {"cpu": milli(cpu_milli), "memory": memory}}
    security = {**RESTRICTED, "runAsUser": RUNTIME_UID, "runAsGroup": RUNTIME_UID}
    postgres = {
        "name": action,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", f"{SCRIPTS_DIR}/{action}.sh"],
        "env": env,
        "resources": resources,
        "securityContext": security,
        "volumeMounts": mounts,
    }

    def step(name: str, variables: list[dict[str, Any]], volume: str, path: str) -> dict[str, Any]:
        assert rclone is not None
        return {
            "name": name,
            "image": rclone.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", f"{SCRIPTS_DIR}/store.sh", name],
            "env": [{"name": "HOME", "value": "/tmp"}, *variables],
            "resources": resources,
            "securityContext": security,
            "volumeMounts": [scripts, {"name": volume, "mountPath": path}],
        }

    before: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    if store:
        assert rclone is not None and rclone.remote is not None
        archive_vars = [{"name": "BACKUP_DIR", "value": WORK_DIR}, {"name": "BACKUP_REMOTE", "value": rclone.remote}]
        if action == "backup":
            after.append(step("upload", archive_vars + [{"name": k, "value": v} for k, v in retention_env(b).items()] + rclone.env, "backups", WORK_DIR))
        else:
            before.append(step("fetch", archive_vars + [{"name": "BACKUP_ID"}] + rclone.env, "backups", WORK_DIR))
    if remote_files:
        assert rclone is not None and rclone.files_remote is not None
        files_vars = [{"name": "FILES_DIR", "value": FILES_DIR}, {"name": "FILES_REMOTE", "value": rclone.files_remote}]
        if rclone.files_suffix:
            files_vars.append({"name": "FILES_SUFFIX", "value": rclone.files_suffix})
        if action == "backup":
            before.insert(0, step("pull-files", files_vars + rclone.files_env, "files", FILES_DIR))
        else:
            after.insert(0, step("push-files", files_vars + rclone.files_env, "files", FILES_DIR))
    steps = [*before, postgres, *after]
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        # The runtime's user: the file store's files are its own, so a restore can write them back.
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUNTIME_UID, "runAsGroup": RUNTIME_UID, "fsGroup": RUNTIME_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": steps[-1:],
        "volumes": volumes,
    }
    if steps[:-1]:
        pod["initContainers"] = steps[:-1]
    return pod


def cron_job_spec(lay: Layout, action: str, schedule: str, pod: dict[str, Any]) -> dict[str, Any]:
    """A CronJob's spec around `pod`; the restore one is suspended (a template, never scheduled)."""
    return {
        "schedule": schedule,
        "timeZone": "Etc/UTC",
        "suspend": action == "restore",
        # One run at a time: the script removes a dead run's leftovers, which would be a live run's files.
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": lay.object_labels(action)},
            "spec": {
                "backoffLimit": 0 if action == "restore" else 2,
                "ttlSecondsAfterFinished": 7 * 86400,
                "template": {"metadata": {"labels": lay.object_labels(action)}, "spec": pod},
            },
        },
    }


def source_namespaces(app: str, sources: tuple[str, ...], here: dict[str, str]) -> dict[str, str]:
    """The namespace of each restore source: a stack's own environment's as its settings say (`here`),
    another stack's the default `<app>-<env>` (an existing namespace there is not known to this stack)."""
    return {src: here.get(src) or Naming(app, src).physical() for src in sources}


def transfer_policy_spec(lay: Layout, namespaces: dict[str, str]) -> dict[str, Any]:
    """The NetworkPolicy spec that lets the sources' export pods (and nothing else) reach this
    environment's restore pods on TRANSFER_PORT: the environment's own policy admits only the ingress
    controller, and NetworkPolicies add up."""
    peers = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}, "podSelector": {"matchLabels": {"app.kubernetes.io/component": EXPORT_COMPONENT}}}
        for ns in sorted(set(namespaces.values()))
    ]
    return {
        "podSelector": {"matchLabels": lay.selector("restore")},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": TRANSFER_PORT}]}],
    }


def store_policy_spec(lay: Layout, settings: EnvironmentSettings) -> dict[str, Any]:
    """The NetworkPolicy spec that lets the backup and restore pods (only) reach the archives' store:
    the environment's own policy admits its database and file store, and NetworkPolicies add up."""
    return {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/instance": lay.instance},
            "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "In", "values": ["backup", "restore"]}],
        },
        "policyTypes": ["Egress"],
        "egress": [{**to_networks(settings.backups.networks), "ports": [{"port": backup_store_port(settings), "protocol": "TCP"}]}],
    }


def deploy(b: Builder, pvcs: list[tuple[str, str]], require_tls: bool, local_files: bool) -> None:
    """The scripts' ConfigMap, the backups claim (or, with object storage, the store's Secret and egress
    policy), the backup CronJob and the restore template.

    `pvcs`: the quota's claims, which the backups claim joins."""
    import pulumi_kubernetes as k8s

    ctx, lay = b.ctx, b.layout
    settings = of_environment(ctx.environment)
    if not settings.enabled:
        return
    scripts = k8s.core.v1.ConfigMap(
        b.logical("backup-scripts"),
        metadata=lay.metadata(scripts_name(lay), "backup", per_release=False),
        data=scripts_data(),
        opts=b.opts(),
    )
    size = b.settings.backups.size
    deps: list[Any] = [scripts, b.created["database-secret"], *b.created.get("database-deps", [])]
    if object_store(b.settings) is None:
        found = claim(b.settings, ctx.environment)
        assert found is not None
        spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
        if found.storage_class is not None:
            spec["storageClassName"] = found.storage_class
        pvcs.append((lay.name("backups"), size))
        # The backups are data like the database: protected and retained on delete on production.
        deps.append(
            k8s.core.v1.PersistentVolumeClaim(
                b.logical("backups"), metadata=lay.metadata(lay.name("backups"), "backup", per_release=False), spec=spec, opts=b.opts(protect_data=True)
            )
        )
    rclone: RcloneSteps | None = None
    if uses_rclone(b.settings):
        # Each remote's keys in a Secret of its own, read by its steps alone (never by postgres's).
        names: dict[str, Any] = {}
        for kind, values in (("backup-store", store_secret_values(b.settings)), ("backup-files", files_secret_values(b.settings))):
            if values:
                deps.append(b.secret(kind, values, component="backup"))
                names[kind] = b.secret_name(kind)
        rclone = RcloneSteps(transfer_image(b.settings), size)
        if object_store(b.settings) is not None:
            deps.append(
                k8s.networking.v1.NetworkPolicy(
                    b.logical("backup-store-egress"),
                    metadata=lay.metadata(lay.name("backup-store"), "backup", per_release=False),
                    spec=store_policy_spec(lay, b.settings),
                    opts=b.opts(),
                )
            )
            rclone = replace(rclone, remote=remote(b.settings, ctx.naming.app, ctx.environment.name), env=store_env(b.settings, names.get("backup-store")))
        if (files := file_store(b.settings)) is not None:
            suffix = files.keySuffix if isinstance(files, S3Config) else None
            rclone = replace(rclone, files_remote=files_remote(b.settings), files_env=files_env(b.settings, names.get("backup-files")), files_suffix=suffix)
    for action, schedule in (("backup", settings.schedule), ("restore", NEVER)):
        pod = pod_spec(
            lay,
            action,
            job_image(b.settings),
            b.secret_name("database-secret"),
            settings,
            local_files=local_files,
            require_tls=require_tls,
            cpu_milli=b.settings.backups.cpu,
            rclone=rclone,
        )
        k8s.batch.v1.CronJob(
            b.logical(action),
            metadata=lay.metadata(lay.naming.physical(action, max_len=52), action, per_release=False),
            spec=cron_job_spec(lay, action, schedule, pod),
            opts=b.opts(depends_on=deps),
        )
    if settings.restore_from:
        from .config import for_environment

        here = {e.environment.name: Layout.of(e.naming, for_environment(ctx.config, e.environment.name), {}).namespace for e in ctx.deployment.environments}
        k8s.networking.v1.NetworkPolicy(
            b.logical("restore-transfer"),
            metadata=lay.metadata(lay.name("restore-transfer"), "restore", per_release=False),
            spec=transfer_policy_spec(lay, source_namespaces(ctx.naming.app, settings.restore_from, here)),
            opts=b.opts(),
        )


def steps_of(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """A pod spec's containers in the order Kubernetes runs them: the init containers, then the others."""
    return [*pod.get("initContainers", []), *pod["containers"]]


def unrestricting(image: str) -> bool:
    """Whether the image's tag names a PostgreSQL whose pg_restore does not write \\restrict, so that a
    restore with it is refused (mxinfra.backup_archive.RESTRICTING_MINORS); False when the tag does not say."""
    from mxinfra.backup_archive import RESTRICTING_MINORS

    version = postgres_version(image)
    if version is None or version[1] is None:
        return False
    major, minor = version
    return major < min(RESTRICTING_MINORS) or (major in RESTRICTING_MINORS and minor < RESTRICTING_MINORS[major])


def job_object(cron_name: str, ns: str, labels: dict[str, str], spec: dict[str, Any], stamp: str) -> dict[str, Any]:
    """A manual Job named after its CronJob and the stamp."""
    name = f"{cron_name[:40]}-{stamp.lower()[:15].replace('t', '')}"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name[:63].rstrip("-"),
            "namespace": ns,
            "labels": labels,
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual", "mxinfra.io/requested-by": "mxinfra backup"},
        },
        "spec": spec,
    }


def token_sha256(token: str) -> str:
    """What a pod that receives or serves an archive holds of its one-time token: its sha256 (hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def export_job_spec(restore_cron: dict[str, Any], name: str, backup: str, token: str, stamp: str, *, to: str, target: str | None = None, serve_port: int | None = None) -> dict[str, Any]:
    """The export Job of an environment, made from its restore template (image, user, limits, Pod
    Security settings) with only what sending needs: the scripts and the backups claim read-only, no
    database Secret, no file store (archives in object storage: the scratch volume and the template's
    fetch step, which alone holds the store's Secret). It sends to `target` (host:port of another environment's restore pod) or
    serves on `serve_port` (a download). Its pod carries no instance label: the environment's
    NetworkPolicy (egress to the database only) does not select it, and the destination's admits it by
    its component label."""
    template = json.loads(json.dumps(restore_cron["spec"]["jobTemplate"]))
    labels = {k: v for k, v in (template.get("metadata") or {}).get("labels", {}).items() if k != "app.kubernetes.io/instance"}
    labels["app.kubernetes.io/component"] = EXPORT_COMPONENT
    spec = template["spec"]
    pod = spec["template"]["spec"]
    # the postgres step (restore.sh's image, user and limits) becomes the sender; the others are left out
    steps = steps_of(pod)
    (container,) = [c for c in steps if c["name"] == "restore"]
    pod["containers"] = [container]
    keep_env = {"BACKUP_DIR", "HOME"}
    container["name"] = "export"
    container["command"] = ["/bin/sh", f"{SCRIPTS_DIR}/export.sh"]
    # A server holds only the token's sha256: the pod's spec is readable by the environment's `monitor`. A
    # sender needs the token itself (to the destination's restore pod, which admits only this component).
    where = (
        [{"name": "BACKUP_TARGET", "value": target}, {"name": "BACKUP_TOKEN", "value": token}]
        if target is not None
        else [{"name": "BACKUP_SERVE_PORT", "value": str(serve_port)}, {"name": "BACKUP_TOKEN_SHA256", "value": token_sha256(token)}]
    )
    container["env"] = [e for e in container.get("env", []) if e["name"] in keep_env and "value" in e] + [{"name": "BACKUP_ID", "value": backup}, *where]
    if serve_port is not None:
        container["ports"] = [{"name": "archive", "containerPort": serve_port, "protocol": "TCP"}]
    container["volumeMounts"] = [{**m, "readOnly": True} for m in container.get("volumeMounts", []) if m["name"] in ("scripts", "backups")]
    pod["volumes"] = [v for v in pod.get("volumes", []) if v["name"] in ("scripts", "backups")]
    # Archives in object storage: the restore template's fetch step first brings the archive into the
    # scratch volume (with the store's Secret: the one credential this pod holds), as for a restore.
    fetch = [c for c in steps if c["name"] == "fetch"]
    for c in fetch:
        c["env"] = [e for e in c.get("env", []) if e["name"] != "BACKUP_ID"] + [{"name": "BACKUP_ID", "value": backup}]
    pod.pop("initContainers", None)
    if fetch:
        pod["initContainers"] = fetch
    spec["template"]["metadata"] = {"labels": labels}
    spec["backoffLimit"] = 0
    job = job_object(name, restore_cron["metadata"]["namespace"], labels, spec, stamp)
    job["metadata"]["annotations"]["mxinfra.io/export-to"] = to
    return job
