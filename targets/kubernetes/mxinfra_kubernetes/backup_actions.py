"""`mxinfra backup` on a plain environment: acting through the cluster as the caller's identity.

Every action makes a Job from one of the environment's CronJobs (backups.py declares them), as `kubectl
create job --from=cronjob/...` does, and follows it through the API server: list and create read and
write the archives the Jobs keep; restore stops the app first and starts it again once the Job is over;
download and an archive's upload go through the API server's pod proxy. Nothing here imports Pulumi.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from mxinfra.artifacts import postgres_major
from mxinfra.backup_scripts import FILES_NOT_RESTORED, NOTHING_RESTORED, RESTORED
from mxinfra.backups import ID_FORMAT, FilesNotRestored, NothingRestored, RestoreFailed, parse_id
from mxinfra.environments import Environment
from mxinfra.errors import UserError

from .backups import TRANSFER_PORT, export_job_spec, job_object, steps_of, token_sha256
from .layout import Layout

# A restore stops the app first (as Mendix Cloud restores only a stopped environment): how long its pods
# get to end beyond their grace periods (the runtime's, one pod after another), and how long restore.sh
# then waits for every other session of the app's database user to end before it refuses
# (RESTORE_ALONE_WAIT: a pod still stopping, a pg_dump).
STOP_TIMEOUT = 300.0
ALONE_WAIT_SECONDS = 60
ALONE = {"RESTORE_ALONE_WAIT": str(ALONE_WAIT_SECONDS)}


POLL_SECONDS = 2.0
DROP_TIMEOUT = 120.0  # how long a deleted restore Job's pod gets to go (its grace period, 30 s by default)
JOB_TIMEOUT = 6 * 3600.0  # a large database's dump; the CLI waits for the Job it made
_ARCHIVES = "backup: archives:"


@dataclass
class _Stopped:
    """A restore's stop of the app: the restore Job once made, and what became of the app (the record's `app`)."""

    outcome: dict[str, Any]
    job: str | None = None


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
        SelfSubjectAccessReview: create Jobs (create, restore) or read the backup pods' logs (list); a restore
        of a running app also scale it (it stops the app first)."""
        makes = action in ("create", "restore", "export", "download")
        checks = [("create", "batch", "jobs", None)] if makes else [("list", "", "pods", None), ("get", "", "pods", "log")]
        if action == "download":
            # the archive leaves through the API server: the pod proxy to the export pod, its log for the sha256
            checks += [("get", "", "pods", "proxy"), ("get", "", "pods", "log")]
        for verb, group, resource, sub in checks:
            attrs = {"namespace": self.lay.namespace, "verb": verb, "group": group, "resource": resource}
            if sub:
                attrs["subresource"] = sub
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": attrs}}
            answer = _request(self.access, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
            if not (answer.get("status") or {}).get("allowed"):
                what = f"{verb} {resource}{'/' + sub if sub else ''}"
                if makes and self.env.is_production:
                    return (
                        f"your identity may not {what} in {self.where}: on production the backups permission follows the platform's "
                        "backup jobs and starts none (a Job may mount any Secret); run this as the platform or release identity"
                    )
                return f"your identity may not {what} in {self.where}: it needs the backups permission on {self.env.name} (mxinfra:access)"
        if action == "restore":
            try:
                count = self._app_count()[0]
            except UserError as e:
                if "HTTP 403" not in str(e):
                    return str(e)
                # a Role rendered before restores stopped the app cannot read it
                return f"{e}: a restore reads the app's StatefulSet (it stops the app first); if the backups Role lacks `get` on it, run `pulumi up` for {self.env.name} to update it"
            if count:
                return self._cannot_stop(count)
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

    def restore(self, backup: str, now: datetime, before: Callable[[], None] | None = None) -> dict[str, Any]:
        """Run the restore template's Job for archive `backup` with the app stopped (`_app_stopped`: `before`,
        the CLI's intent record, runs before it is stopped) and wait for it; what became of the app."""
        with self._app_stopped(before) as stopped:
            job = self._job("restore", {"BACKUP_ID": backup, **ALONE}, now.astimezone(timezone.utc).strftime(ID_FORMAT))
            stopped.job = job["metadata"]["name"]  # before the create: its answer may be lost after the Job was made
            self._start("restore", job)
            self._started_or_gone(stopped, "restore")
            self._wait_restore(stopped.job, backup)
        return stopped.outcome

    def _wait_restore(self, job: str, backup: str) -> None:
        """Wait for a restore Job; FilesNotRestored when its database step succeeded and only the copy of
        the files back to their S3 or Azure store (push-files, the last step) failed; NothingRestored when
        restore.sh said that nothing was (its exit 1 or 2)."""
        try:
            self._wait(job, "restore")
        except UserError as e:
            status = self._pod(job).get("status") or {}
            done = {c.get("name"): ((c.get("state") or {}).get("terminated") or {}).get("exitCode") for c in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]}
            # restore.sh exits 3 when the database is restored and moving the files in failed
            if (done.get("restore") == RESTORED and done.get("push-files") not in (None, 0)) or done.get("restore") == FILES_NOT_RESTORED:
                moved = done.get("restore") == FILES_NOT_RESTORED  # restore.sh's own move of the files into the store failed
                step, how = ("restore", "the store may hold part of them") if moved else ("push-files", "the copy adds and overwrites only")
                raise FilesNotRestored(
                    f"{self.env.name}: the database was restored from {backup}, but its files were not copied back to the file store "
                    f"(kubectl -n {self.lay.namespace} logs job/{job} -c {step}); {how}: once the cause is "
                    f"fixed, run the restore of {backup} again"
                ) from e
            # restore.sh's 1 and 2: the database and the files as they were (a psql that failed after its
            # COMMIT is asked about: the server's word decides); 4, or a kill: it may have restored
            if done.get("restore") in NOTHING_RESTORED:
                why = "it received no whole archive" if self._received_nothing(job) else f"kubectl -n {self.lay.namespace} logs job/{job} -c restore"
                raise NothingRestored(f"{e}; {why}: nothing was restored") from e
            raise

    def _received_nothing(self, job: str) -> bool:
        """Whether a receiving restore Job's log ends in its own words that no whole archive reached it (a log
        that cannot be read claims nothing)."""
        try:
            said = self._log(job, "restore")
        except UserError:
            return False
        return any(why in said for why in _NOTHING_RECEIVED)

    def same_cluster(self, other: ClusterActions) -> bool:
        """Whether `other` acts on this cluster (the transfer is pod to pod: one cluster's network)."""
        return str(self.access.server).rstrip("/") == str(other.access.server).rstrip("/")

    def incompatible(self, source: ClusterActions) -> str | None:
        """Why this environment's restore cannot read `source`'s archives (None: it can, or the images'
        tags do not say): pg_restore reads dumps of its own PostgreSQL major version and older only."""
        theirs, ours = source._steps(), self._steps()
        # tree/ has one layout whatever keeps the files (a claim, S3 or Azure, with or without a key
        # suffix: backup.sh and restore.sh map it); only an environment that keeps no files has no room for them
        files_there, files_here = _files_layout(theirs), _files_layout(ours)
        if files_here == "nowhere" and files_there != "nowhere":
            return f"{source.env.name} keeps its files {files_there} and {self.env.name} keeps none: the archive's files would have nowhere to go"
        image_there, image_here = str(theirs["restore"]["image"]), str(ours["restore"]["image"])
        dumped, restoring = postgres_major(image_there), postgres_major(image_here)
        if dumped is None or restoring is None or dumped <= restoring:
            return None
        return (
            f"{source.env.name}'s backups are made by pg_dump {dumped} ({image_there}), which {self.env.name}'s restore, pg_restore {restoring} "
            f"({image_here}), cannot read: give {self.env.name} a PostgreSQL {dumped} image or newer (backups.image, or database.inCluster.image)"
        )

    def _steps(self) -> dict[str, dict[str, Any]]:
        """The containers of the environment's restore template, as the cluster has it, by name."""
        pod = self._cron("restore")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return {c["name"]: c for c in steps_of(pod)}

    def restore_from(self, source: ClusterActions, backup: str, now: datetime, before: Callable[[], None] | None = None) -> dict[str, Any]:
        """Restore archive `backup` of the `source` environment here, the app stopped (`_app_stopped`, after
        `before`, the CLI's intent record): the restore Job listens, an export Job in the source namespace
        sends it the archive, both waited for; the archive's size and sha256 as the receiver checked them,
        and what became of the app."""
        stamp = now.astimezone(timezone.utc).strftime(ID_FORMAT)
        # The token admits one archive to one pod, which the destination's NetworkPolicy already closes to all
        # but the sources' export pods; the receiver holds only its sha256, the sender the token.
        token = secrets.token_hex(24)
        receive = {"BACKUP_ID": backup, "BACKUP_SOURCE": source.env.name, "BACKUP_PORT": str(TRANSFER_PORT), "BACKUP_TOKEN_SHA256": token_sha256(token)}
        with self._app_stopped(before) as stopped:
            made = self._job("restore", {**receive, **ALONE}, stamp)
            restore_job = stopped.job = made["metadata"]["name"]
            self._start("restore", made)
            try:
                ip = self._pod_ip(restore_job, "restore")
            except UserError as e:
                self._dropped(stopped, e)  # it never listened, or ended before it received anything
            exported = True
            try:
                cron = source._cron("restore")
                name = source.lay.naming.physical("export", max_len=52)
                export_job = source._start("export", export_job_spec(cron, name, backup, token, stamp, to=self.env.name, target=f"{ip}:{TRANSFER_PORT}"))
                source._started(export_job, "export")
                source._wait(export_job, "export")
            except UserError as e:
                # The export may have sent the whole archive (its "ok" lost on the way back, or the failure the
                # API server's, not the Job's): the receiver then restores it. So it is followed to its end,
                # never deleted: it restores only a whole archive it checked, and stops waiting for one after
                # BACKUP_WAIT; the app stays stopped until it ended.
                exported = False
                sys.stderr.write(f"warning: {e}; following the restore Job {restore_job}, which restores only a whole archive it checked (it stops waiting after BACKUP_WAIT)\n")
            try:
                self._wait_restore(restore_job, backup)
            except RestoreFailed:
                raise
            except UserError as e:
                # its exit status unread: the receiver's own words that no whole archive reached it
                if self._received_nothing(restore_job):
                    raise NothingRestored(f"{e}; it received no whole archive: nothing was restored") from e
                raise
            try:
                # what the receiver checked (its log), else what the export sent
                sent = self._announced(restore_job, f"restore: received {backup} from the export Job (", "restore")
                if sent is None and exported:
                    sent = source._announced(export_job, f"export: sent {backup} (")
            except UserError as e:  # the restore is done: its record goes without what the logs said
                sys.stderr.write(f"warning: the restore's log could not be read ({e}): the records go without the archive's size and sha256\n")
                sent = None
        return {**(sent or {}), **stopped.outcome}

    def restore_archive(self, archive: Path, now: datetime, via: str | None, vouch: Callable[[str, int], None], before: Callable[[], None] | None = None) -> dict[str, Any]:
        """Restore an archive from this machine (any target's download, a Mendix Cloud backup): checked here
        first (mxinfra.backup_archive.check: only the dump and plain files, gzip's CRC; its sha256 and size
        from the same pass go to `vouch`, which refuses an archive of unknown provenance), then `before`
        (production's backup, the restore's intent record), then the app is stopped (`_app_stopped`), the restore Job listens for one HTTP PUT and the archive is sent to it
        through the API server's pod proxy; the Job checks size and sha256 again and restores it. The
        archive is read twice: checked, then sent."""
        from mxinfra.backup_archive import check, stored_keys

        if via is not None:
            raise UserError("--database-via: the restore Job reaches the database itself: leave it out")
        if self._denied("update", "pods", "proxy"):
            raise UserError(
                f"your identity may not update pods/proxy in {self.where}: an archive from this machine reaches the restore Job through the API "
                "server's pod proxy (a PUT); run this as the platform or release identity (the backups permission has GET only)"
            )
        # into object storage the files must be ones the restore can put back, each under a key of its own
        # (with a key suffix push-files refuses keys without it, and only after the database was replaced);
        # onto a claim they keep their paths
        push = self._steps().get("push-files")
        suffix = next((e.get("value") for e in push.get("env", []) if e["name"] == "FILES_SUFFIX"), None) if push is not None else None
        checked = check(archive, None, stored_keys(suffix or "") if push is not None else None)
        vouch(checked.sha256, checked.size)
        size, digest = checked.size, checked.sha256
        stamp = now.astimezone(timezone.utc).strftime(ID_FORMAT)
        # the id the Job keeps the copy under: the archive's own when it is one (a download), else now
        backup = archive.name[: -len(".tar.gz")] if parse_id(archive.name) is not None else stamp
        token = secrets.token_hex(24)
        receive = {"BACKUP_ID": backup, "BACKUP_SOURCE": "upload", "BACKUP_PORT": str(TRANSFER_PORT), "BACKUP_TOKEN_SHA256": token_sha256(token), "BACKUP_RECEIVE": "http"}
        with self._app_stopped(before) as stopped:
            made = self._job("restore", {**receive, **ALONE}, stamp)
            job = stopped.job = made["metadata"]["name"]
            self._start("restore", made)
            try:
                self._pod_ip(job, "restore")
                self._listening(job, backup)
                pod = self._pod(job)["metadata"]["name"]
                self._send(f"/api/v1/namespaces/{self.lay.namespace}/pods/{pod}:{TRANSFER_PORT}/proxy/{token}/{digest}/{backup}.tar.gz", archive, size, job)
            except _Unanswered as e:
                # the whole archive went; only its answer was lost: the Job may be restoring it, so it is followed,
                # never deleted half-way (its log says whether it took the archive)
                sys.stderr.write(f"warning: {e}: following the restore Job {job}\n")
            except UserError as e:
                self._dropped(stopped, e)  # the receiver refused or never got the archive; it would wait out BACKUP_WAIT for nothing
            self._wait_restore(job, backup)
        return stopped.outcome

    @contextlib.contextmanager
    def _app_stopped(self, before: Callable[[], None] | None) -> Iterator[_Stopped]:
        """The app's StatefulSet at 0 replicas, its pods gone, while the body restores; then its count again.

        `before` (the CLI's intent record) runs first; then the count is read (what a production backup
        taken in `before` may have seen change) and, if the app runs, the caller must be able to scale it
        (the deploy permission's right: a restore is never how the backups permission changes what runs;
        with backups alone, stop it through a recorded `instances: 0` first; refusal() asked already, before
        anything). Then the stop. The body names the restore Job it made (`job`): the app is started again
        once that Job is over, succeeded or failed, or when none was made; if the command stops while the
        Job may still run (Ctrl-C, a timeout, the API server gone), the app stays stopped and the command
        says how to start it once the Job ended, since restore.sh checks for other sessions only before it
        starts replacing the database. Yields the state whose `outcome` the record carries (`app`), which is
        also set on a RestoreFailed (the files not put back, or nothing restored)."""
        if (count := self._app_count()[0]) and (why := self._cannot_stop(count)) is not None:  # started since refusal()
            raise UserError(why)
        if before is not None:
            before()
        count, _, grace = self._app_count()
        stopped = _Stopped(outcome={"app": "not running"} if not count else {})
        if count:
            try:
                self._scale(0)
                self._wait_stopped(count, grace)
            except BaseException as e:
                self._start_again(count, stopped.outcome)
                if isinstance(e, RestoreFailed):
                    e.outcome.update(stopped.outcome)
                raise
        try:
            yield stopped
        except RestoreFailed as e:
            # the Job is over (it said which step failed) or gone having run nothing: the app may start
            self._start_again(count, stopped.outcome)
            e.outcome.update(stopped.outcome)
            raise
        except BaseException:
            if not count:
                if stopped.job is not None and not self._job_over(stopped.job):
                    sys.stderr.write(f"warning: {self.env.name}: the restore Job {stopped.job} may still run (kubectl -n {self.lay.namespace} get job/{stopped.job}): start no instance before it ended\n")
            elif stopped.job is None or self._job_over(stopped.job):
                self._start_again(count, stopped.outcome)
            else:
                stopped.outcome["app"] = "stopped, not started again"
                sys.stderr.write(
                    f"warning: {self.env.name}: the restore Job {stopped.job} may still run, so the app stays stopped (started now, it would run beside "
                    f"the restore): once the Job ended (kubectl -n {self.lay.namespace} get job/{stopped.job}), start it: "
                    f"kubectl -n {self.lay.namespace} scale statefulset/{self.lay.workload} --replicas={count}\n"
                )
            raise
        self._start_again(count, stopped.outcome)

    def _job_over(self, job: str) -> bool:
        """Whether the Job is Complete or Failed, or gone with no pod of it left (False when that cannot be read)."""
        try:
            conditions = self._conditions(job)
        except UserError as e:
            if "HTTP 404" not in str(e):
                return False
            try:  # never made (its create was refused), or deleted: over once no pod of it is left
                return not self._pod(job)
            except UserError:
                return False
        return "Complete" in conditions or "Failed" in conditions

    def _conditions(self, job: str) -> dict[str, dict[str, Any]]:
        """The Job's conditions that hold, by type."""
        status = _request(self.access, "GET", f"/apis/batch/v1/namespaces/{self.lay.namespace}/jobs/{job}").get("status") or {}
        return {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}

    def _started_or_gone(self, stopped: _Stopped, action: str) -> None:
        """The restore Job's pod left Pending; else (a quota, an image pull) the Job is deleted, having run
        nothing, so that the app starts again rather than wait out the Job's timeout stopped."""
        assert stopped.job is not None
        try:
            self._started(stopped.job, action)
        except UserError:
            # not claimed as nothing restored: its pod may start between the last look and the delete
            self._drop(stopped)
            raise

    def _dropped(self, stopped: _Stopped, failure: UserError) -> NoReturn:
        """A receiving restore Job that certainly restores nothing (it never listened, ended before it was sent
        anything, refused the archive or got only part of it; only this command has its token): deleted
        (`_drop`), and NothingRestored, which is recorded, whether or not the delete went through."""
        self._drop(stopped)
        raise NothingRestored(f"{failure}; nothing was restored" if "nothing was restored" not in str(failure) else str(failure)) from failure

    def _drop(self, stopped: _Stopped) -> None:
        """Delete the restore Job, which restored nothing (its pod never ran, or it never took an archive):
        once its pod is gone too (its shell ignores SIGTERM: a pod that started lingers for its grace period)
        the app may start again. Best effort: a Job or pod that does not go keeps the app stopped."""
        assert stopped.job is not None
        with contextlib.suppress(UserError):
            _request(self.access, "DELETE", f"/apis/batch/v1/namespaces/{self.lay.namespace}/jobs/{stopped.job}?propagationPolicy=Foreground")
            deadline = time.monotonic() + DROP_TIMEOUT
            while self._pod(stopped.job):
                if time.monotonic() > deadline:
                    return
                time.sleep(self.poll)
            stopped.job = None

    @property
    def _workload_path(self) -> str:
        return f"/apis/apps/v1/namespaces/{self.lay.namespace}/statefulsets/{self.lay.workload}"

    def _app_count(self) -> tuple[int, int, int]:
        """The app's replicas: wanted (spec), its pods that still exist (status), and a pod's grace period."""
        sts = _request(self.access, "GET", self._workload_path) or {}
        spec = sts.get("spec") or {}
        grace = ((spec.get("template") or {}).get("spec") or {}).get("terminationGracePeriodSeconds")
        return int(spec.get("replicas") or 0), int((sts.get("status") or {}).get("replicas") or 0), int(grace if grace is not None else 30)

    def _cannot_stop(self, count: int) -> str | None:
        """Why the caller cannot stop the app's `count` instances for a restore (None: it may scale it)."""
        if not self._denied("patch", "statefulsets", "scale", group="apps", name=self.lay.workload):
            return None
        return (
            f"{self.env.name} runs {count} instance(s) of {self.lay.workload} in {self.where}: a restore stops the app first (Mendix restores only "
            "a stopped environment), and your identity may not scale it (patch statefulsets/scale: the deploy permission's right, never the "
            f"backups permission's). Run this as an identity that may, or stop it first through a recorded change (mxinfra:environments.{self.env.name}.instances: 0, "
            "`pulumi up` as the deploy group) and start it the same way after; nothing was changed"
        )

    def _scale(self, replicas: int) -> None:
        """Set the app's replicas (a merge patch of its scale subresource)."""
        _request(self.access, "PATCH", f"{self._workload_path}/scale", {"spec": {"replicas": replicas}}, content_type="application/merge-patch+json")

    def _wait_stopped(self, count: int, grace: int) -> None:
        """Wait until no pod of the app is left; a UserError (nothing restored) after each pod's grace period
        (an OrderedReady StatefulSet stops its pods one after another) and STOP_TIMEOUT more."""
        limit = STOP_TIMEOUT + count * grace
        deadline = time.monotonic() + limit
        while self._app_count()[1]:
            if time.monotonic() > deadline:
                raise NothingRestored(f"{self.env.name}: the app {self.lay.workload} in {self.where} still had pods {limit:.0f}s after it was scaled to 0: nothing was restored")
            time.sleep(self.poll)
        sys.stderr.write(f"{self.env.name}: the app {self.lay.workload} is stopped for the restore\n")

    def _start_again(self, count: int, outcome: dict[str, Any]) -> None:
        """Put the app's count back (nothing if it ran none); a failure is a warning and the outcome says so."""
        if not count:
            return
        try:
            self._scale(count)
            outcome["app"] = "stopped, then started"
        except (UserError, OSError) as e:
            outcome["app"] = "stopped, not started again"
            sys.stderr.write(f"warning: {self.env.name}: the app was not started again ({e}): kubectl -n {self.lay.namespace} scale statefulset/{self.lay.workload} --replicas={count}\n")
        except BaseException:  # a second Ctrl-C while it is started again: say how, then stop
            sys.stderr.write(f"warning: {self.env.name}: interrupted while the app was started again: kubectl -n {self.lay.namespace} scale statefulset/{self.lay.workload} --replicas={count}\n")
            raise

    def _denied(self, verb: str, resource: str, sub: str, *, group: str = "", name: str | None = None) -> bool:
        """Whether the cluster says the caller may not `verb` `resource`/`sub` in the namespace."""
        attrs = {"namespace": self.lay.namespace, "verb": verb, "group": group, "resource": resource, "subresource": sub, **({"name": name} if name else {})}
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": attrs}}
        answer = _request(self.access, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
        return not (answer.get("status") or {}).get("allowed")

    def _send(self, path: str, archive: Path, size: int, job: str) -> None:
        """PUT the archive to `path` a MiB at a time; retried while the pod's server starts."""
        deadline = time.monotonic() + 120.0
        while True:
            try:
                _upload(self.access, path, archive, size)
                return
            except _NotYet as e:
                if time.monotonic() > deadline:
                    raise UserError(f"the restore Job {job} in {self.where} did not take the archive: {e} (kubectl -n {self.lay.namespace} logs job/{job})") from None
                time.sleep(min(self.poll, 1.0))

    def download(self, backup: str, out: Path, now: datetime) -> dict[str, Any]:
        """Copy archive `backup` to the file `out`: an export Job serves it once, read through the API
        server's pod proxy a MiB at a time (flat memory) into `out`'s directory, checked against the size
        and sha256 the Job logged, then renamed to `out`; the size and sha256."""
        stamp = now.astimezone(timezone.utc).strftime(ID_FORMAT)
        token = secrets.token_hex(24)
        name = self.lay.naming.physical("export", max_len=52)
        job = self._start("export", export_job_spec(self._cron("restore"), name, backup, token, stamp, to="download", serve_port=TRANSFER_PORT))
        self._pod_ip(job, "export")  # running: its server is about to listen
        pod = self._pod(job)["metadata"]["name"]
        part = out.with_name(f".{out.name}.part")
        try:
            got = self._fetch(f"/api/v1/namespaces/{self.lay.namespace}/pods/{pod}:{TRANSFER_PORT}/proxy/{token}/{backup}.tar.gz", part, job)
            self._wait(job, "export")
            # logged once served (export.sh hashes beside the serve), on the line an export logged before serving until 2026-12-07
            announced = self._announced(job, f"export: serving {backup} (")
            if announced != got:
                raise UserError(f"the download of {backup} arrived as {got['size']} bytes with sha256 {got['sha256']}, but the export Job {job} sent {announced or 'nothing it logged'}: not kept, run it again")
            part.replace(out)
            return got
        finally:
            part.unlink(missing_ok=True)

    def _fetch(self, path: str, part: Path, job: str) -> dict[str, Any]:
        """GET `path` into `part` a MiB at a time; its size and sha256. Retried while the pod's server starts."""
        deadline = time.monotonic() + 120.0
        while True:
            try:
                return _stream(self.access, path, part)
            except _NotYet as e:
                if time.monotonic() > deadline:
                    raise UserError(f"the export Job {job} in {self.where} did not serve the archive: {e} (kubectl -n {self.lay.namespace} logs job/{job})") from None
                time.sleep(min(self.poll, 1.0))

    def _listening(self, job: str, backup: str) -> None:
        """Wait (2 minutes at most) for the receiving restore Job to log that it listens: an answer of the pod
        proxy before then means the archive did not reach it, one after the whole archive went may not."""
        deadline = time.monotonic() + 120.0
        while f"restore: waiting for {backup} on port" not in self._log(job, "restore"):
            if time.monotonic() > deadline:
                raise UserError(f"the restore Job {job} in {self.where} did not listen for the archive within 2 minutes (kubectl -n {self.lay.namespace} logs job/{job})")
            time.sleep(min(self.poll, 1.0))

    def _log(self, job: str, container: str) -> str:
        """The log of one container of the Job's pod (the restore step is an init container when the files
        live in object storage)."""
        pod = (self._pod(job).get("metadata") or {}).get("name")
        if pod is None:
            return ""  # no pod (yet, or any more): nothing logged
        return _request(self.access, "GET", f"/api/v1/namespaces/{self.lay.namespace}/pods/{pod}/log?container={container}", raw=True).decode(errors="replace")

    def _announced(self, job: str, prefix: str, container: str = "export") -> dict[str, Any] | None:
        """The size and sha256 a Job's `container` logged on its line starting with `prefix` (None: no such line)."""
        lines = [line for line in self._log(job, container).splitlines() if line.startswith(prefix)]
        if not lines:
            return None
        size, _, sha = lines[-1][len(prefix) :].split(")", 1)[0].partition(" bytes, sha256 ")
        return {"size": int(size), "sha256": sha}

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
        self._wait(self._start(action, self._job(action, env, stamp)), action)

    def _cron(self, action: str) -> dict[str, Any]:
        """The environment's backup or restore CronJob, as the cluster has it."""
        name = self.lay.naming.physical(action, max_len=52)
        return _request(self.access, "GET", f"/apis/batch/v1/namespaces/{self.lay.namespace}/cronjobs/{name}")

    def _job(self, action: str, env: dict[str, str], stamp: str) -> dict[str, Any]:
        """A Job of the `action` CronJob's template with `env` set, as `kubectl create job --from` makes it."""
        cron = self._cron(action)
        template = cron["spec"]["jobTemplate"]
        spec = template["spec"]
        pod = spec["template"]["spec"]
        # every container: with object storage the id is the rclone step's as much as postgres's
        for container in steps_of(pod):
            container["env"] = [e for e in container.get("env", []) if e["name"] not in env] + [{"name": k, "value": v} for k, v in env.items()]
        return job_object(cron["metadata"]["name"], self.lay.namespace, template.get("metadata", {}).get("labels", {}), spec, stamp)

    def _start(self, action: str, job: dict[str, Any]) -> str:
        """Create `job`; its name."""
        created = _request(self.access, "POST", f"/apis/batch/v1/namespaces/{self.lay.namespace}/jobs", job)
        return str(created["metadata"]["name"])

    def _pod(self, job_name: str) -> dict[str, Any]:
        """The newest pod of a Job ({} while there is none)."""
        selector = urllib.parse.quote(f"job-name={job_name}")
        pods = _request(self.access, "GET", f"/api/v1/namespaces/{self.lay.namespace}/pods?labelSelector={selector}").get("items") or []
        return max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), default={})

    def _started(self, job_name: str, action: str) -> None:
        """Wait (15 minutes at most) for the Job's pod to leave Pending: a Job whose pod the quota refuses
        never fails by itself, and the source's quota has room for one backup pod at a time."""
        start = time.monotonic()
        while (status := self._pod(job_name).get("status") or {}).get("phase") in (None, "Pending"):
            if time.monotonic() > start + _pending_limit(status, self.timeout):
                raise UserError(f"the {action} Job {job_name} in {self.where} did not start: kubectl -n {self.lay.namespace} describe job/{job_name} (a backup running, so the ResourceQuota is full? an image pull?)")
            time.sleep(self.poll)

    def _pod_ip(self, job_name: str, action: str) -> str:
        """The IP of the Job's pod once its receiving step runs (the export Job connects to it): the pod's
        container, or with the files in object storage its `restore` init container (the pod is Pending then)."""
        start = time.monotonic()
        while True:
            pod = self._pod(job_name)
            status = pod.get("status") or {}
            deadline = start + _pending_limit(status, self.timeout)
            receiving = status.get("phase") == "Running" or any(
                c.get("name") == "restore" and "running" in (c.get("state") or {}) for c in status.get("initContainerStatuses") or []
            )
            if receiving and status.get("podIP"):
                return str(status["podIP"])
            if status.get("phase") in ("Failed", "Succeeded"):
                self._wait(job_name, action)  # says why it failed
                raise UserError(f"the {action} Job {job_name} in {self.where} ended before it received the archive (kubectl -n {self.lay.namespace} logs job/{job_name})")
            if time.monotonic() > deadline:
                raise UserError(f"the {action} Job {job_name} in {self.where} did not start: kubectl -n {self.lay.namespace} describe job/{job_name} (a full ResourceQuota, an image pull?)")
            time.sleep(self.poll)

    def _wait(self, job_name: str, action: str) -> None:
        """Wait for the Job to complete; a UserError naming its log if it fails or takes too long."""
        ns = self.lay.namespace
        deadline = time.monotonic() + self.timeout
        while True:
            conditions = self._conditions(job_name)
            if "Complete" in conditions:
                return
            if "Failed" in conditions:
                reason = conditions["Failed"].get("message") or conditions["Failed"].get("reason") or "failed"
                raise UserError(f"the {action} Job {job_name} in {self.where} failed: {reason} (kubectl -n {ns} logs job/{job_name})")
            if time.monotonic() > deadline:
                raise UserError(f"the {action} Job {job_name} in {self.where} did not finish within {self.timeout:.0f}s: follow it with kubectl -n {ns} logs -f job/{job_name}")
            time.sleep(self.poll)


def _pending_limit(status: dict[str, Any], timeout: float) -> float:
    """How long a Job's pod may stay Pending: 15 minutes to be scheduled and pull its images, the Job's
    whole timeout once an init container runs (fetching a large archive from object storage is Pending too)."""
    started = any((c.get("state") or {}).keys() & {"running", "terminated"} for c in status.get("initContainerStatuses") or [])
    return timeout if started else min(timeout, 900.0)


def _files_layout(steps: dict[str, dict[str, Any]]) -> str:
    """How a restore template puts the files back, in words: on a claim, or into S3 or Azure under a suffix."""
    push = steps.get("push-files")
    if push is None:
        return "on a claim" if any(e.get("name") == "FILES_DIR" for e in steps["restore"].get("env", [])) else "nowhere"
    env = {e["name"]: e.get("value") for e in push.get("env", [])}
    suffix = env.get("FILES_SUFFIX")
    return "in object storage" + (f" under the key suffix {suffix!r}" if suffix else " without a key suffix")


class _NotYet(Exception):
    """The pod proxy could not reach the export pod's server (yet)."""


def _stream(access: Any, path: str, part: Path) -> dict[str, Any]:
    """GET `path` as the caller into the file `part`, a MiB at a time; its size and sha256."""
    request = urllib.request.Request(access.server.rstrip("/") + path, method="GET", headers={"Accept": "*/*", **access.headers})
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(request, context=access.tls, timeout=60) as response, part.open("wb") as f:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
                size += len(chunk)
    except urllib.error.HTTPError as e:
        if e.code in (502, 503, 404):  # the proxy answers these while the server in the pod is not listening yet
            raise _NotYet(f"HTTP {e.code}") from None
        raise UserError(f"GET {path.split('/proxy/')[0]}/proxy/... answered HTTP {e.code} ({access.where})") from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"the download stopped ({access.where}: {getattr(e, 'reason', None) or e})") from None
    return {"size": size, "sha256": digest.hexdigest()}


# What restore.sh's receiver logs when it ends without a whole archive it checked (it then restores nothing).
# receive.pl's failures (each keeps nothing)
_NOTHING_RECEIVED = (
    "restore: no archive arrived on port",
    "restore: the archive stopped after",
    "restore: the archive arrived with sha256",
    "restore: no sha256 followed the",
    "were not followed by their sha256",
    "restore: hashing the archive",
    "restore: cannot start",
    "restore: cannot listen on port",
    "restore: accept failed",
    "restore: stopped (SIGTERM)",
)

# How restore.sh's receiver answers a request it refuses: each status with its whole body, matched whole (a
# proxy's or a gateway's answers are JSON or HTML).
_RECEIVER_REFUSALS = {
    400: re.compile(r"sha256 [0-9a-f]{64}|an empty body: no archive is empty"),
    404: re.compile(r"not here"),
    411: re.compile(r"a Content-Length is needed"),
    431: re.compile(r"no end of the header within 8 KiB"),
}


class _Unanswered(UserError):
    """The whole archive was sent, but no answer of the pod came back: it may have taken it."""


class _Exactly:
    """The archive's bytes as http.client reads them to send: a file that ends before `size` (changed since it
    was checked) is an error at once, never a short body the server waits out until the timeout."""

    def __init__(self, f: Any, size: int, archive: Path) -> None:
        self.f, self.left, self.archive = f, size, archive

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(self.left if n < 0 else min(n, self.left))
        self.left -= len(data)
        if not data and self.left > 0:
            raise UserError(f"{self.archive}: it ended {self.left} bytes short of the size it had when checked: it changed meanwhile, nothing was restored")
        return data

    def tell(self) -> int:
        return int(self.f.tell())


def _upload(access: Any, path: str, archive: Path, size: int) -> None:
    """PUT the file `archive` to `path` as the caller, streamed (http.client sends a file a block at a time)."""
    headers = {"Content-Type": "application/gzip", "Content-Length": str(size), **access.headers}
    f = _Exactly(archive.open("rb"), size, archive)
    try:
        request = urllib.request.Request(access.server.rstrip("/") + path, data=f, method="PUT", headers=headers)
        with urllib.request.urlopen(request, context=access.tls, timeout=600) as response:
            response.read()
    except urllib.error.HTTPError as e:
        try:
            said = e.read()[:200].decode(errors="replace").strip()
        except OSError:  # the answer's body cut short: no refusal of the pod's own
            said = ""
        answered = f"PUT {path.split('/proxy/')[0]}/proxy/... answered HTTP {e.code} ({access.where}){': ' + said if said else ''}"
        pods = _RECEIVER_REFUSALS.get(e.code)
        if pods is not None and pods.fullmatch(said):
            raise UserError(answered) from None  # the pod's own answer: it refused the archive, and ends
        if f.tell() >= size:  # the proxy's, or a gateway's, once the whole archive went: the pod may have it
            raise _Unanswered(f"the whole archive was sent, and {answered}") from None
        if e.code in (502, 503, 404):  # the proxy's while the server in the pod cannot be reached
            raise _NotYet(f"HTTP {e.code}") from None
        raise UserError(answered) from None
    except (urllib.error.URLError, OSError) as e:
        why = f"({access.where}: {getattr(e, 'reason', None) or e})"
        if f.tell() >= size:
            raise _Unanswered(f"the whole archive was handed to the connection, but no answer came {why}") from None
        raise UserError(f"the upload stopped after {f.tell()} of {size} bytes {why}") from None
    finally:
        f.f.close()


def _request(access: Any, method: str, path: str, body: Any = None, *, raw: bool = False, content_type: str = "application/json") -> Any:
    """One API call as the caller; the JSON answer (or the bytes, `raw`). A refusal is the user's to fix."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json", **access.headers, **({"Content-Type": content_type} if data else {})}
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
