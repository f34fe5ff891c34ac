"""Backups in plain mode: a CronJob that runs scripts/backup.sh (pg_dump of the environment's database
and a copy of its local file store into one archive on the environment's backups claim, then
retention), and a suspended CronJob that is the restore Job's template (scripts/restore.sh).

The scripts are mounted from a ConfigMap as they are in this package: the tests run the same files
against a real PostgreSQL. `pod_spec` is pure; `deploy` imports pulumi_kubernetes and runs only while
deploying.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mxinfra.backups import ID_FORMAT, Backups, of_environment, retention_env
from mxinfra.environments import Environment
from mxinfra.errors import UserError

from .config import Claim, EnvironmentSettings
from .layout import JOB_CPU_MILLI, JOB_MEMORY_MB, RUNTIME_UID, Layout, milli

if TYPE_CHECKING:
    from .builder import Builder

SCRIPTS = Path(__file__).parent / "scripts"
BACKUP_DIR, FILES_DIR, SCRIPTS_DIR = "/backups", "/files", "/scripts"
# The backup claim's size: the issue's first slice has no key for it yet (see the README).
BACKUPS_SIZE = "20Gi"
# pg_dump must be at least the server's major version; 17 dumps servers back to 9.2. An in-cluster
# database's own image is used instead, so client and server always match there.
EXTERNAL_IMAGE = "postgres:17.2"
# Never fires (there is no 31 February) and suspended: the restore CronJob exists only as the Job's template.
NEVER = "0 0 31 2 *"
_RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def claim(settings: EnvironmentSettings, env: Environment) -> Claim | None:
    """The backups claim of a plain environment with backups (None: it has none), with the StorageClass
    in effect: the environment's, else the block's, as for every claim."""
    if settings.mode != "plain" or not of_environment(env).enabled:
        return None
    return Claim(env.name, "backups", settings.storage_class, settings.paths["storageClass"])


def script(name: str) -> str:
    """The text of a container script (backup.sh or restore.sh)."""
    return (SCRIPTS / name).read_text()


def pod_spec(
    lay: Layout,
    action: str,
    image: str,
    database_secret: Any,
    b: Backups,
    *,
    local_files: bool,
    require_tls: bool,
) -> dict[str, Any]:
    """The pod of a backup (`action` "backup") or restore ("restore") Job, Pod Security `restricted`."""
    env: list[dict[str, Any]] = [
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": database_secret, "key": "DATABASE_URL"}}},
        {"name": "BACKUP_DIR", "value": BACKUP_DIR},
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
    mounts = [{"name": "scripts", "mountPath": SCRIPTS_DIR, "readOnly": True}, {"name": "backups", "mountPath": BACKUP_DIR}]
    volumes: list[dict[str, Any]] = [
        {"name": "scripts", "configMap": {"name": lay.name("backup-scripts"), "defaultMode": 0o555}},
        {"name": "backups", "persistentVolumeClaim": {"claimName": lay.name("backups")}},
    ]
    if local_files:
        env.append({"name": "FILES_DIR", "value": FILES_DIR})
        # A backup only reads the files; a restore replaces them.
        mounts.append({"name": "files", "mountPath": FILES_DIR, "readOnly": action == "backup"})
        volumes.append({"name": "files", "persistentVolumeClaim": {"claimName": lay.name("files")}})
    memory = f"{JOB_MEMORY_MB}Mi"
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        # The runtime's user: the file store's files are its own, so a restore can write them back.
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUNTIME_UID, "runAsGroup": RUNTIME_UID, "fsGroup": RUNTIME_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": action,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", f"{SCRIPTS_DIR}/{action}.sh"],
                "env": env,
                "resources": {"requests": {"cpu": milli(JOB_CPU_MILLI), "memory": memory}, "limits": {"cpu": milli(JOB_CPU_MILLI), "memory": memory}},
                "securityContext": {**_RESTRICTED, "runAsUser": RUNTIME_UID, "runAsGroup": RUNTIME_UID},
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }


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


def deploy(b: Builder, pvcs: list[tuple[str, str]], image: str | None, require_tls: bool, local_files: bool) -> None:
    """The scripts' ConfigMap, the backups claim, the backup CronJob and the restore template.

    `image`: the in-cluster database's (None: an external database); `pvcs`: the quota's claims, which
    the backups claim joins."""
    import pulumi_kubernetes as k8s

    ctx, lay = b.ctx, b.layout
    settings = of_environment(ctx.environment)
    if not settings.enabled:
        return
    scripts = k8s.core.v1.ConfigMap(
        b.logical("backup-scripts"),
        metadata=lay.metadata(lay.name("backup-scripts"), "backup", per_release=False),
        data={"backup.sh": script("backup.sh"), "restore.sh": script("restore.sh")},
        opts=b.opts(),
    )
    found = claim(b.settings, ctx.environment)
    assert found is not None
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": BACKUPS_SIZE}}}
    if found.storage_class is not None:
        spec["storageClassName"] = found.storage_class
    pvcs.append((lay.name("backups"), BACKUPS_SIZE))
    # The backups are data like the database: protected and retained on delete on production.
    pvc = k8s.core.v1.PersistentVolumeClaim(b.logical("backups"), metadata=lay.metadata(lay.name("backups"), "backup", per_release=False), spec=spec, opts=b.opts(protect_data=True))
    deps = [scripts, pvc, b.created["database-secret"], *b.created.get("database-deps", [])]
    for action, schedule in (("backup", settings.schedule), ("restore", NEVER)):
        pod = pod_spec(lay, action, image or EXTERNAL_IMAGE, b.secret_name("database-secret"), settings, local_files=local_files, require_tls=require_tls)
        k8s.batch.v1.CronJob(
            b.logical(action),
            metadata=lay.metadata(lay.naming.physical(action, max_len=52), action, per_release=False),
            spec=cron_job_spec(lay, action, schedule, pod),
            opts=b.opts(depends_on=deps),
        )


# --- `mxinfra backup`: acting through the cluster as the caller's identity --------------------------------

POLL_SECONDS = 2.0
JOB_TIMEOUT = 6 * 3600.0  # a large database's dump; the CLI waits for the Job it made
_ARCHIVES = "backup: archives:"


class ClusterActions:
    """`mxinfra backup` on one plain environment: Jobs made from its CronJobs, as `kubectl create job
    --from=cronjob/...` makes them, by whoever runs the command (below production the `backups` group;
    on production the platform or release identity, since the `backups` group creates no Job there)."""

    def __init__(self, access: Any, lay: Layout, env: Environment, *, poll: float = POLL_SECONDS, timeout: float = JOB_TIMEOUT) -> None:
        self.access, self.lay, self.env, self.poll, self.timeout = access, lay, env, poll, timeout
        self._last = ""  # the newest id this process made or listed: ids are seconds, and name one backup each

    @property
    def where(self) -> str:
        """The namespace and cluster, for messages."""
        return f"namespace {self.lay.namespace} ({self.access.where})"

    def refusal(self, action: str) -> str | None:
        """Why the caller may not run `action` here (None: the cluster says it may), asked with a
        SelfSubjectAccessReview: create Jobs (create, restore) or read the backup pods' logs (list)."""
        checks = [("create", "batch", "jobs", None)] if action in ("create", "restore") else [("list", "", "pods", None), ("get", "", "pods", "log")]
        for verb, group, resource, sub in checks:
            attrs = {"namespace": self.lay.namespace, "verb": verb, "group": group, "resource": resource}
            if sub:
                attrs["subresource"] = sub
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": attrs}}
            answer = _request(self.access, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
            if not (answer.get("status") or {}).get("allowed"):
                what = f"{verb} {resource}{'/' + sub if sub else ''}"
                if action in ("create", "restore") and self.env.is_production:
                    return (
                        f"your identity may not {what} in {self.where}: on production the backups permission follows the platform's "
                        "backup jobs and starts none (a Job may mount any Secret); run this as the platform or release identity"
                    )
                return f"your identity may not {what} in {self.where}: it needs the backups permission on {self.env.name} (mxinfra:access)"
        return None

    def create(self, now: datetime, keep: str | None = None) -> str:
        """Run the backup CronJob's Job now and wait for it; the new archive's id. `keep`: an archive its
        retention must not remove (the source of the restore this backup comes before)."""
        stamp = now.astimezone(timezone.utc).strftime(ID_FORMAT)
        while stamp <= self._last:  # e.g. a restore's backup in the second of the newest: wait for the next
            time.sleep(0.2)
            stamp = datetime.now(timezone.utc).strftime(ID_FORMAT)
        self._last = stamp
        self._run("backup", {"BACKUP_NOW": stamp, **({"BACKUP_KEEP": keep} if keep else {})}, stamp)
        return stamp

    def restore(self, backup: str, now: datetime) -> None:
        """Run the restore template's Job for archive `backup` and wait for it."""
        self._run("restore", {"BACKUP_ID": backup}, now.astimezone(timezone.utc).strftime(ID_FORMAT))

    def list(self) -> list[str]:
        """The archives as the newest successful backup run left them (its log's last list), newest first."""
        ns = self.lay.namespace
        selector = f"app.kubernetes.io/instance={self.lay.instance},app.kubernetes.io/component=backup"
        pods = _request(self.access, "GET", f"/api/v1/namespaces/{ns}/pods?labelSelector={urllib.parse.quote(selector)}").get("items") or []
        done = sorted((p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"), key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
        for pod in done:
            log = _request(self.access, "GET", f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/log", raw=True).decode(errors="replace")
            lines = [line for line in log.splitlines() if line.startswith(_ARCHIVES)]
            if lines:
                ids = [name.removesuffix(".tar.gz") for name in lines[-1][len(_ARCHIVES) :].split()]
                self._last = max([self._last, *ids])
                return ids
        raise UserError(f"no finished backup run in {self.where} to read the list from (the CronJob keeps the last 3 runs): run `mxinfra backup create` first")

    def _run(self, action: str, env: dict[str, str], stamp: str) -> None:
        ns, cron_name = self.lay.namespace, self.lay.naming.physical(action, max_len=52)
        cron = _request(self.access, "GET", f"/apis/batch/v1/namespaces/{ns}/cronjobs/{cron_name}")
        template = cron["spec"]["jobTemplate"]
        spec = template["spec"]
        (container,) = spec["template"]["spec"]["containers"]
        container["env"] = [e for e in container.get("env", []) if e["name"] not in env] + [{"name": k, "value": v} for k, v in env.items()]
        name = f"{cron_name[:40]}-{stamp.lower()[:15].replace('t', '')}"
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name[:63].rstrip("-"),
                "namespace": ns,
                "labels": template.get("metadata", {}).get("labels", {}),
                "annotations": {"cronjob.kubernetes.io/instantiate": "manual", "mxinfra.io/requested-by": "mxinfra backup"},
            },
            "spec": spec,
        }
        created = _request(self.access, "POST", f"/apis/batch/v1/namespaces/{ns}/jobs", job)
        job_name = created["metadata"]["name"]
        deadline = time.monotonic() + self.timeout
        while True:
            status = _request(self.access, "GET", f"/apis/batch/v1/namespaces/{ns}/jobs/{job_name}").get("status") or {}
            conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
            if "Complete" in conditions:
                return
            if "Failed" in conditions:
                reason = conditions["Failed"].get("message") or conditions["Failed"].get("reason") or "failed"
                raise UserError(f"the {action} Job {job_name} in {self.where} failed: {reason} (kubectl -n {ns} logs job/{job_name})")
            if time.monotonic() > deadline:
                raise UserError(f"the {action} Job {job_name} in {self.where} did not finish within {self.timeout:.0f}s: follow it with kubectl -n {ns} logs -f job/{job_name}")
            time.sleep(self.poll)


def _request(access: Any, method: str, path: str, body: Any = None, *, raw: bool = False) -> Any:
    """One API call as the caller; the JSON answer (or the bytes, `raw`). A refusal is the user's to fix."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json", **access.headers, **({"Content-Type": "application/json"} if data else {})}
    request = urllib.request.Request(access.server.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, context=access.tls, timeout=30) as response:
            answer = response.read()
    except urllib.error.HTTPError as e:
        detail = ""
        with contextlib.suppress(Exception):
            detail = json.loads(e.read()).get("message", "")
        raise UserError(f"{method} {path.split('?')[0]} answered HTTP {e.code} ({access.where}){': ' + detail if detail else ''}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise UserError(f"the API server did not answer ({access.where}: {getattr(e, 'reason', None) or e.__class__.__name__})") from None
    return answer if raw else json.loads(answer)
