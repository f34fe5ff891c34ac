"""`mxinfra backup list|create|download|restore` on an AWS environment: AWS Backup jobs in the environment's vault,
run as its backup role (backups.py renders both), by whoever runs the command with their usual AWS
credentials, in the stack's `aws:region` and `accountId`. No Pulumi imports; boto3 only when AWS is asked.

A backup is a pair of recovery points in the vault: the database's (an RDS snapshot `awsbackup:job-<id>`)
and the file bucket's. Its id is the UTC time its jobs were initiated (`YYYYmmddTHHMMSSZ`, the core's
format): recovery points of the same kind of run (scheduled by the plan, or on demand) initiated within
a pairing window of the pair's first one pair up, one of each resource; a pair may miss one of the two (a
failed job), and `details()` says which resource each id holds and when.

- `refusal`: the caller's account must be the stack's, and a dry read of the vault
  (`backup:DescribeBackupVault`, which only the `backups` permission's role holds among the environment's
  roles) must pass. IAM's SimulatePrincipalPolicy is not open to users generally, so nothing is simulated:
  AWS's own AccessDenied on the dry read (and on every later call) becomes a message naming the
  environment's `backups` role.
- `create`: `StartBackupJob` of the database and of the bucket into the vault, kept as long as the
  shortest tier (within the production vault lock's bounds), then `DescribeBackupJob` until both are done
  (bounded: BACKUP_TIMEOUT); the id is the pair the two new recovery points form in the vault's list.
- `restore`: never over the running database. The database's recovery point is restored by
  `StartRestoreJob` into a NEW instance `<db>-<id>` (the backup role's bounds allow no other name),
  with the restore metadata AWS keeps for it (subnet group, security groups, class); the bucket's into the
  environment's own bucket (the role reaches no other): the backup's objects become the current versions
  again, the versions they replace stay noncurrent for the bucket's 7 / 30 / 90 days, and files written
  since stay (a Mendix file store writes each file once, under a new key, so the running app is not
  disturbed and the restored database finds its files). The app keeps using its instance: what switching
  it takes is said on stderr and in the README. On production a restore is refused unless `create` took
  an on-demand backup first in the same run (`mxinfra backup restore` does so).
- `download_now` (`mxinfra backup download` without --id): a backup taken now in the Mendix Cloud format by
  the export task (export.py), started through its state machine, fetched from the exports bucket and
  checked against the sha256 the task stored with it. A recovery point holds no pg_dump, so a kept backup
  is not downloaded by id.
- `restore_archive` (`mxinfra backup restore --archive`): an archive from this machine (any target's
  download), judged and vouched for, uploaded into the imports bucket, restored by the restore task through
  its state machine, which stops the services first and starts them again at its end.

Every failure is a UserError (exit 2, no traceback) naming the vault or job and what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, TextIO

from mxinfra.backup_archive import claim
from mxinfra.backup_scripts import FILES_NOT_RESTORED, MAYBE_RESTORED, NOTHING_RESTORED, RESTORED
from mxinfra.backups import ID_FORMAT, Backups
from mxinfra.environments import Environment
from mxinfra.errors import UserError

from .backups import START_WINDOW_MINUTES, on_demand_days
from .config import EXPORT_TIMEOUT_SECONDS, SnapshotSource
from .policies import RESTORING_TAG, Arns, restored_identifier

DATABASE, FILES = "database", "files"
POLL_SECONDS = 15.0
# the restore machine's own waits besides its task's: the services' tasks stopping, then starting again
RESTORE_STOP_SECONDS = 3600.0
FETCH, RESTORE, PUSH_FILES = "fetch", "restore", "push-files"  # export's names (that module imports Pulumi)
# The restore machine's state whose output names the recovery points production's restore took first.
BACKED_UP = "BackedUp"
# The files-restore machine's output key naming the restore job it started (files_restore.py), and the
# errors it ends with having certainly started none.
FILES_RESTORE_JOB = "restoreJob"
FILES_NOT_STARTED = frozenset({"mxinfra.FilesRestoreRunning", "mxinfra.BadInput", "mxinfra.BackupFirstFailed", "mxinfra.NotThisBucket", "mxinfra.FilesNotRestored"})
# What the restore machine adds to a failure's cause when a service kept its restore mark (export.py).
MARK_LEFT = "and a service still carries the mark mxinfra:restoring"
# A large database's snapshot or restore: the command waits, then says how to follow the job.
BACKUP_TIMEOUT = 3 * 3600.0
RESTORE_TIMEOUT = 6 * 3600.0
# Recovery points of one run pair up within these of the first: an on-demand pair's two jobs start one
# call apart; a scheduled run's jobs within the plan's start window.
ON_DEMAND_WINDOW = timedelta(minutes=10)
SCHEDULED_WINDOW = timedelta(minutes=START_WINDOW_MINUTES)
RESTORABLE = frozenset({"COMPLETED", "AVAILABLE"})
_DONE_BAD = frozenset({"ABORTED", "FAILED", "EXPIRED", "PARTIAL"})
_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException")
_INVALID = ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch")


@dataclass(frozen=True)
class Point:
    """One recovery point of the environment's database or bucket."""

    arn: str
    kind: str  # DATABASE or FILES
    at: datetime  # when its job was initiated (else created), UTC
    scheduled: bool  # made by the plan (else on demand)
    size: int | None = None


@dataclass(frozen=True)
class Pair:
    """A backup: the recovery points of one run, at most one of each kind."""

    id: str
    points: Mapping[str, Point] = field(default_factory=dict)

    def describe(self) -> str:
        """`<id>: database (...), files (...)`, naming what is missing."""
        parts = []
        for kind in (DATABASE, FILES):
            p = self.points.get(kind)
            if p is None:
                parts.append(f"no {kind}")
            else:
                size = f", {p.size} bytes" if p.size is not None else ""
                parts.append(f"{kind} ({p.at.strftime('%Y-%m-%d %H:%M:%S')} UTC{size})")
        origin = "scheduled" if any(p.scheduled for p in self.points.values()) else "on demand"
        return f"{self.id}: {', '.join(parts)}; {origin}"


# MiB a download holds while they wait to be hashed.
HASH_QUEUE = 4
# DescribeExecution's answers worth waiting out (botocore already retried them a few times).
_TRANSIENT = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "ServiceUnavailable", "ServiceUnavailableException", "InternalServerError", "InternalFailure"})


class _Transient(Exception):
    """A DescribeExecution failure worth trying again."""


class _ExportEnded(UserError):
    """The export's execution ended without an archive (nothing left running to stop)."""


@dataclass(frozen=True)
class _Ended:
    """How an execution of the export or restore machine ended."""

    status: str
    error: str
    exits: dict[str, int | None]  # each container's exit code (None: it never ended)
    why: str  # "" when it succeeded
    logs: str  # where the task's logs are
    not_started: str = ""  # (restore) why a service was not started again
    counts: dict[str, int] = field(default_factory=dict)  # (restore) each service's desired count before it
    marked: bool = False  # (restore) a service may still carry the restore's mark (its untag failed)

    @property
    def ok(self) -> bool:
        return not self.why


def _stream(body: Any, fd: int, part: Path, where: str) -> tuple[int, str]:
    """Copy a streaming body into `part` (open as `fd`, which is closed) a MiB at a time, synced; its size
    and sha256, hashed on a second core while the next MiB arrives (at most HASH_QUEUE MiB held). A
    UserError for this machine's file system or a connection that broke off."""
    import queue
    import threading

    import botocore.exceptions
    import urllib3.exceptions

    digest, size = hashlib.sha256(), 0
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=HASH_QUEUE)

    def hash_all() -> None:
        while (chunk := chunks.get()) is not None:
            digest.update(chunk)  # hashlib lets go of the GIL for large updates

    hasher = threading.Thread(target=hash_all, name="mxinfra-sha256", daemon=True)
    hasher.start()
    try:
        with os.fdopen(fd, "wb") as f:
            while chunk := body.read(1 << 20):
                chunks.put(chunk)
                size += len(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())  # named (and recorded) only once it is on disk
    except (urllib3.exceptions.HTTPError, botocore.exceptions.HTTPClientError, botocore.exceptions.IncompleteReadError, botocore.exceptions.FlexibleChecksumError) as e:
        # the connection, TLS or decoding broke mid-stream (HTTPClientError: timeouts, ResponseStreamingError)
        raise UserError(f"the download of {where} broke off after {size} bytes ({e}): it stays there for a day or two; run `mxinfra backup download` again") from None
    except OSError as e:
        raise UserError(f"{part}: cannot write the archive: {e.strerror or e}; it stays in {where} for a day or two") from None
    finally:
        chunks.put(None)
        hasher.join()
    return size, digest.hexdigest()


class _Unreadable(Exception):
    """The archive could not be read while it was uploaded."""


class _JudgeRefused(Exception):
    """The judge refused the archive while it was being uploaded: the upload stops."""


class _HashingBody:
    """A file read front to back for an upload, hashed as it goes; not seekable, so the SDK reads it in
    order, a part at a time (flat memory), and what was hashed is what was sent. It stops once `judging`
    (the judge beside it) has failed."""

    def __init__(self, f: IO[bytes], judging: _Judging | None = None) -> None:
        self.f, self.hash, self.judging = f, hashlib.sha256(), judging

    def read(self, size: int = -1) -> bytes:
        if self.judging is not None and self.judging.failed():
            raise _JudgeRefused()
        try:
            data = self.f.read(size)
        except OSError as e:  # told apart from the SDK's network errors, which are OSErrors too
            raise _Unreadable(e.strerror or str(e)) from None
        self.hash.update(data)
        return data


class _Judging:
    """The core's judging pass over an archive, on a thread of its own (a daemon: Ctrl-C does not wait for it)."""

    def __init__(self, judge: Callable[[], Any]) -> None:
        import threading

        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = judge()
            except BaseException as e:  # noqa: BLE001 (handed to the caller)
                self._error = e
            finally:
                self._done.set()

        threading.Thread(target=run, name="mxinfra-judge", daemon=True).start()

    def done(self) -> bool:
        """Whether the pass ended."""
        return self._done.is_set()

    def failed(self) -> bool:
        """Whether the pass ended refusing the archive (or failing)."""
        return self._done.is_set() and self._error is not None

    def result(self) -> Any:
        """What the pass found; its ArchiveError as a UserError saying nothing was changed."""
        from mxinfra.backup_archive import ArchiveError

        self._done.wait()
        if isinstance(self._error, ArchiveError):
            raise UserError(f"{self._error}; nothing was changed") from None
        if self._error is not None:
            raise self._error
        return self._value


def _upload(s3: Any, archive: Path, bucket: str, key: str, account: str, judging: _Judging | None = None) -> str:
    """Upload `archive` to the account's own `bucket`; the sha256 of the bytes sent (the restore task
    compares what it fetched with the sha256 the command vouched for, given in the execution's input)."""
    import boto3.s3.transfer

    config = boto3.s3.transfer.TransferConfig(multipart_chunksize=16 << 20, max_concurrency=2)
    # a stream's parts are read into memory ahead of their upload: at most this many (s3transfer's default,
    # 10, held 160 MiB); two in flight and two read ahead keep the connection busy
    config.max_in_memory_upload_chunks = 4
    try:
        f = open(archive, "rb")
    except OSError as e:
        raise UserError(f"{archive}: cannot read the archive: {e.strerror or e}; nothing was restored") from None
    try:
        with f:
            body = _HashingBody(f, judging)
            s3.upload_fileobj(body, bucket, key, ExtraArgs={"ExpectedBucketOwner": account}, Config=config)
    except _Unreadable as e:
        raise UserError(f"{archive}: cannot read the archive: {e}; nothing was restored") from None
    return body.hash.hexdigest()


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def points_of(recovery_points: Sequence[Mapping[str, Any]], db_arn: str, bucket_arn: str) -> list[Point]:
    """The restorable recovery points of the environment's database and bucket, from
    ListRecoveryPointsByBackupVault's answer (anything else in the vault is left out). The database is
    the environment's instance `db_arn` or one restored from it and put in service (`<db>-*`, see
    database.py): backups taken while the app used it are the environment's too."""
    kinds = {db_arn: DATABASE, bucket_arn: FILES}
    out = []
    for rp in recovery_points:
        resource = str(rp.get("ResourceArn"))
        kind = kinds.get(resource) or (DATABASE if resource.startswith(db_arn + "-") else None)
        if kind is None or rp.get("Status") not in RESTORABLE:
            continue
        at = rp.get("InitiationDate") or rp.get("CreationDate")
        if not isinstance(at, datetime):
            continue
        scheduled = bool((rp.get("CreatedBy") or {}).get("BackupPlanId"))
        size = rp.get("BackupSizeInBytes")
        out.append(Point(str(rp["RecoveryPointArn"]), kind, _utc(at), scheduled, int(size) if size is not None else None))
    return out


def pairs(points: Sequence[Point]) -> list[Pair]:
    """The backups the points make, newest first. Oldest first, a point joins the newest pair of its
    origin (scheduled or on demand) that lacks its kind and began within the pairing window; otherwise it
    begins a pair, whose id is its time to the second. Ids are unique: a pair beginning in the second of
    another takes the next free second. Pure."""
    groups: list[tuple[bool, datetime, dict[str, Point]]] = []
    for p in sorted(points, key=lambda p: (p.at, p.kind, p.arn)):
        window = SCHEDULED_WINDOW if p.scheduled else ON_DEMAND_WINDOW
        for scheduled, start, members in reversed(groups):
            if scheduled == p.scheduled and p.kind not in members and p.at - start <= window:
                members[p.kind] = p
                break
        else:
            groups.append((p.scheduled, p.at, {p.kind: p}))
    out, used = [], set()
    for _, start, members in groups:
        second = start.replace(microsecond=0)
        while second.strftime(ID_FORMAT) in used:
            second += timedelta(seconds=1)
        used.add(second.strftime(ID_FORMAT))
        out.append(Pair(second.strftime(ID_FORMAT), dict(members)))
    return sorted(out, key=lambda g: g.id, reverse=True)


def snapshot_identifier(recovery_point_arn: str) -> str:
    """The RDS snapshot identifier of a database recovery point's ARN (`...:snapshot:awsbackup:job-<id>`)."""
    return recovery_point_arn.split(":snapshot:", 1)[1] if ":snapshot:" in recovery_point_arn else recovery_point_arn


class VaultActions:
    """`mxinfra backup` on one AWS environment (see the module docstring)."""

    def __init__(
        self,
        session: Any,
        env: Environment,
        a: Arns,
        b: Backups,
        *,
        poll: float | None = None,
        backup_timeout: float | None = None,
        restore_timeout: float | None = None,
        export_timeout: float | None = None,
        out: TextIO | None = None,
    ) -> None:
        import botocore.config

        self.env, self.a, self.b = env, a, b
        # None: the module's (read now, so a test may set them)
        self.poll = POLL_SECONDS if poll is None else poll
        self.backup_timeout = BACKUP_TIMEOUT if backup_timeout is None else backup_timeout
        self.restore_timeout = RESTORE_TIMEOUT if restore_timeout is None else restore_timeout
        self.export_timeout = EXPORT_TIMEOUT_SECONDS + 600.0 if export_timeout is None else export_timeout
        self.out = out
        self.session = session
        self.vault = a.backup_vault_name
        self.role = a.role_arn("backup")
        self.access_role = a.role_arn("backups")
        config = botocore.config.Config(connect_timeout=10, read_timeout=60, retries={"mode": "standard", "max_attempts": 5})
        self._config = config
        with self._aws("creating the AWS clients"):
            self.sts = session.client("sts", region_name=a.region, config=config)
            self.backup = session.client("backup", region_name=a.region, config=config)
        self._caller: str | None = None
        self._taken: list[str] = []  # on-demand backups this run took (production restores need one)
        self._pairs: list[Pair] | None = None

    @property
    def where(self) -> str:
        """The vault, account and region, for messages."""
        return f"AWS Backup vault {self.vault} (account {self.a.account}, {self.a.region})"

    # --- the interface of mxinfra.backup_cli -----------------------------------------------------------

    def refusal(self, action: str) -> str | None:
        """Why the caller may not run `action` (None: AWS lets them read the vault): credentials of the
        stack's account, and a dry read of the vault that only the `backups` role holds. The calls each
        action makes are then authorised by AWS one by one, AccessDenied named as here."""
        self._check_account()
        import botocore.exceptions

        try:
            with self._aws(f"backup:DescribeBackupVault of {self.vault}", reraise_denied=True):
                self.backup.describe_backup_vault(BackupVaultName=self.vault)
        except botocore.exceptions.ClientError as exc:
            err = exc.response.get("Error", {})
            return f"{self._caller} may not {action} backups of {self.env.name}: AWS refused backup:DescribeBackupVault of {self.vault} ({err.get('Code')}). {self._rights()}"
        return None

    def list(self) -> list[str]:
        """The environment's backups in its vault, newest first (ids: their UTC initiation time)."""
        return [p.id for p in self._list()]

    def details(self) -> list[str]:
        """One line per backup, newest first: which resources it holds and when (for a CLI that prints it)."""
        return [p.describe() for p in self._list()]

    def create(self, now: datetime, keep: str | None = None) -> str:
        """An on-demand backup of the database and the bucket, waited for; the pair's id. `keep` needs
        nothing here: AWS Backup deletes a recovery point only when its own lifecycle ends."""
        self._check_account()
        days = on_demand_days(self.b)
        jobs: dict[str, str] = {}
        # the instance the app uses (the environment's, or the restored one database.fromBackup put in service)
        for kind, resource in ((DATABASE, self.a.serving_db_arn), (FILES, self.a.bucket_arn)):
            started = ", ".join(f"{k} job {j}" for k, j in jobs.items())
            with self._aws(f"backup:StartBackupJob of {resource} into {self.vault}", started=started):
                answer = self.backup.start_backup_job(
                    BackupVaultName=self.vault,
                    ResourceArn=resource,
                    IamRoleArn=self.role,
                    # one per call: the SDK's retries of this request are one job; another backup in the
                    # same second is another job (a token of the second would return the first)
                    IdempotencyToken=str(uuid.uuid4()),
                    StartWindowMinutes=START_WINDOW_MINUTES,
                    Lifecycle={"DeleteAfterDays": days},
                )
            jobs[kind] = answer["BackupJobId"]
        done = self._wait("backup", jobs, self.backup_timeout)
        arns = {d["RecoveryPointArn"] for d in done.values()}
        backup = self._pair_of(arns)
        if backup is None:
            raise UserError(f"{self.env.name}: the backup jobs {', '.join(jobs.values())} completed, but {self._not_one_backup(arns)}")
        self._taken.append(backup)
        return backup

    def _pair_of(self, arns: set[str]) -> str | None:
        """The id of the backup whose recovery points include all of `arns` (just made: the list is read again)."""
        self._pairs = None
        return next((pair.id for pair in self._list() if arns <= {p.arn for p in pair.points.values()}), None)

    def _not_one_backup(self, arns: set[str]) -> str:
        return (
            f"their recovery points ({', '.join(sorted(arns))}) are not one backup in {self.where}: "
            f"see `aws backup list-recovery-points-by-backup-vault --backup-vault-name {self.vault} --region {self.a.region}`"
        )

    def restore_backs_up_first(self, backup: str) -> bool:
        """Whether `restore` of `backup` takes production's backup itself: its files go back through
        production's files-restore machine, the only way into the bucket, which backs up first
        (files_restore.py). A backup without files, or a stack whose machine is not deployed yet (no `pulumi
        up` since), does not: the caller takes the backup, as before."""
        if not self.env.is_production:
            return False
        self._check_account()
        pair = {p.id: p for p in self._list()}.get(backup)
        if pair is None or FILES not in pair.points:
            return False
        import botocore.exceptions

        machine = self.a.files_restore_machine_arn
        states = self._states()
        try:
            with self._aws(f"states:DescribeStateMachine of {machine}", head=self._files_head, reraise_denied=True):
                try:
                    states.describe_state_machine(stateMachineArn=machine)
                except botocore.exceptions.ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "StateMachineDoesNotExist":
                        raise
                    why = "it does not exist"
                else:
                    return True
        except botocore.exceptions.ClientError as exc:
            # a backups role from before the machine may not read it (nor restore through it)
            why = f"AWS refused states:DescribeStateMachine ({exc.response.get('Error', {}).get('Code')})"
        # Only then (a stack not deployed since): the command backs up first itself and restores the files as
        # it used to. Any other failure (a throttle, the network) stops the command before anything, above:
        # with the machine deployed, the role may not restore the files itself.
        self._say(f"warning: {self.env.name}: the files-restore machine {machine} is not deployed ({why}): this command takes the backup itself (run `pulumi up` to deploy it)")
        return False

    def restore(self, backup: str, now: datetime, before: Callable[[], None] | None = None, backed_up: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Restore backup `backup`: the database into a new instance, the files into the bucket; waited
        for. `before` runs once every recovery point's restore metadata was read, before the first job starts
        (the CLI's intent record). With `backed_up` (production, when restore_backs_up_first), the files go
        back through the files-restore machine, which takes the backup first: its id to `backed_up` once the
        machine ended. What was created, which the CLI may record."""
        self._check_account()
        found = {p.id: p for p in self._list()}
        if backup not in found:
            raise UserError(f"{self.env.name} has no backup {backup} in {self.where}: see `mxinfra backup list`")
        pair = found[backup]
        through_machine = backed_up is not None and FILES in pair.points
        if self.env.is_production and not self._taken and not through_machine:
            raise UserError(
                f"restoring into production {self.env.name} needs an on-demand backup of it taken first, in the same run: "
                "use `mxinfra backup restore`, which takes one and records it before restoring"
            )
        jobs: dict[str, str] = {}
        new_instance = restored_identifier(self.a.db_identifier, backup)
        if new_instance in (self.a.db_identifier, self.a.serving_db_identifier):  # never over a running instance
            raise UserError(f"refusing to restore over the running instance {new_instance}")
        planned = []
        for kind, point in sorted(pair.points.items()):
            if kind == FILES and through_machine:
                continue  # the machine reads its metadata and fixes its destination
            metadata = dict(self._restore_metadata(point))
            if kind == DATABASE:
                metadata["DBInstanceIdentifier"] = new_instance
                planned.append((kind, point, metadata, "RDS"))
            else:
                metadata.update(DestinationBucketName=self.a.bucket_name, NewBucket="false")
                planned.append((kind, point, metadata, "S3"))
        if before is not None:
            before()
        if through_machine:
            assert backed_up is not None
            # first: no restore job starts before production is backed up
            jobs[FILES] = self._restore_files(pair.points[FILES].arn, backup, backed_up)
            self._database_after_files(planned, jobs)
        else:
            for kind, point, metadata, resource_type in planned:
                self._start_restore(kind, point, metadata, resource_type, jobs)
            self._wait("restore", jobs, self.restore_timeout)
        result: dict[str, Any] = {"restoreJobs": dict(jobs)}
        lines = [f"{self.env.name}: backup {backup} restored from {self.where}:"]
        if DATABASE in jobs:
            result["database"] = new_instance
            lines.append(
                f"  database: into the NEW RDS instance {new_instance}; the app still uses {self.a.serving_db_identifier}, which is unchanged. "
                f"Read from the new one and delete it when done; to put the backup in service instead, set "
                f"mxinfra:aws.database.fromBackup.{self.env.name}: {backup} and run `pulumi up`, which creates its own instance "
                "from the backup and switches the app to it (targets/aws/README.md, Backups)"
            )
        else:
            lines.append("  database: this backup has no database recovery point: nothing restored")
        if FILES in jobs:
            result["filesInto"] = self.a.bucket_name  # (a record's `files` says how many, or `not restored`)
            lines.append(f"  files: into the environment's bucket {self.a.bucket_name}: the backup's objects are the current versions again; the versions they replaced are kept as noncurrent versions")
        else:
            lines.append("  files: this backup has no files recovery point: nothing restored")
        self._say("\n".join(lines))
        return result

    def _start_restore(self, kind: str, point: Point, metadata: Mapping[str, str], resource_type: str, jobs: dict[str, str]) -> None:
        """StartRestoreJob of one recovery point as the backup role; its job into `jobs`."""
        started = ", ".join(f"{k} restore job {j}" for k, j in jobs.items())
        with self._aws(f"backup:StartRestoreJob of {point.arn} ({kind})", started=started):
            answer = self.backup.start_restore_job(
                RecoveryPointArn=point.arn,
                Metadata=dict(metadata),
                IamRoleArn=self.role,
                IdempotencyToken=str(uuid.uuid4()),
                ResourceType=resource_type,
                # the environment's tags on the new instance: its backups permission governs it
                CopySourceTagsToRestoredResource=True,
            )
        jobs[kind] = answer["RestoreJobId"]

    def _database_after_files(self, planned: Sequence[tuple[str, Point, Mapping[str, str], str]], jobs: dict[str, str]) -> None:
        """Once the machine started the files' restore (`jobs`): the database's into its new instance, both
        waited for. The files' job is followed first: a failure of the database's after it (an instance of
        that name left by an earlier restore of the backup) is DatabaseNotRestored, recorded, the files back."""
        from mxinfra.backups import DatabaseNotRestored

        failed: UserError | None = None
        try:
            for kind, point, metadata, resource_type in planned:
                self._start_restore(kind, point, metadata, resource_type, jobs)
        except UserError as e:
            failed = e
        self._wait("restore", {FILES: jobs[FILES]}, self.restore_timeout)
        if failed is None and DATABASE in jobs:
            try:
                self._wait("restore", {DATABASE: jobs[DATABASE]}, self.restore_timeout)
            except UserError as e:
                failed = e
        if failed is not None:
            raise DatabaseNotRestored(f"{failed}; the files were restored into {self.a.bucket_name} (restore job {jobs[FILES]})", {"filesInto": self.a.bucket_name, "restoreJobs": dict(jobs)})

    def download_now(self, out_dir: Path, now: datetime, via: str | None = None) -> dict[str, Any]:
        """A backup taken now by the export task (export.py: the state machine the `backups` role may
        start), fetched from the exports bucket into `out_dir/<id>.tar.gz` a MiB at a time and checked
        against the size and sha256 the task stored with it (the bucket's copy goes in after_download, once
        the download is recorded); the id, size and sha256."""
        if via is not None:
            raise UserError("--database-via: the aws target's export task reaches the database from inside the VPC: leave it out")
        self._check_account()
        if not self.a.export:
            raise UserError(
                f"{self.env.name}: the stack has no export task, so no backup can be downloaded: set mxinfra:aws.backupExport (the postgres and rclone "
                "images it runs, copied into the account's ECR) and run `pulumi up` (targets/aws/README.md, Backups)"
            )
        # The exports bucket hands the archive to the backups role's sessions only (its policy): anyone else
        # (the platform identity, an SSO admin) would run an hour-long dump for nothing
        self._backups_session("the exports bucket hands an archive to")
        backup = now.astimezone(timezone.utc).strftime(ID_FORMAT)
        out = out_dir / f"{backup}.tar.gz"
        if out.exists():
            raise UserError(f"{out}: exists already: not overwritten")
        machine, bucket, key = self.a.export_machine_arn, self.a.exports_bucket_name, f"{backup}.tar.gz"
        with self._aws("creating the AWS clients"):
            states = self.session.client("stepfunctions", region_name=self.a.region, config=self._config)
            s3 = self.session.client("s3", region_name=self.a.region, config=self._config)
        with self._aws(f"states:StartExecution of {machine}", head=self._export_head):
            execution = states.start_execution(stateMachineArn=machine, name=backup)["executionArn"]
        try:
            self._export_ended(states, execution)
        except _ExportEnded:
            raise
        except BaseException:
            # the command is gone (Ctrl-C, an expired session, a timeout): the export must not run on unwatched
            self._stop_export(states, execution)
            raise
        part = out.with_name(f".{out.name}.part")
        where = f"s3://{bucket}/{key}"
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise UserError(f"{part}: exists (another download of the same second?): remove it and run again; the archive stays in {where} for a day or two") from None
        except OSError as e:
            raise UserError(f"{part}: cannot write the archive: {e.strerror or e}; it stays in {where} for a day or two") from None
        try:
            # the bucket must be the account's own: its name is global (a deleted one could be anyone's)
            with self._aws(f"s3:GetObject of {where}", head=self._export_head):
                try:
                    answer = s3.get_object(Bucket=bucket, Key=key, ExpectedBucketOwner=self.a.account)
                except BaseException:
                    os.close(fd)  # never handed to _stream, which closes it
                    raise
                stored = (answer.get("Metadata") or {}).get("mxinfra-sha256")
                size, sha = _stream(answer["Body"], fd, part, where)
            if stored != sha or answer.get("ContentLength") != size:
                raise UserError(
                    f"{self.env.name}: the export {backup} arrived as {size} bytes with sha256 {sha}, but the export task stored "
                    f"{answer.get('ContentLength')} bytes with sha256 {stored or '(none)'} in {where}: not kept, run it again"
                )
            try:
                claim(part, out)  # never over a file that appeared meanwhile
            except FileExistsError:
                raise UserError(f"{out}: appeared while the export ran: not overwritten; the archive stays in {where} for a day or two") from None
            except OSError as e:
                raise UserError(f"{out}: cannot name the archive: {e.strerror or e}; it stays in {where} for a day or two") from None
        finally:
            part.unlink(missing_ok=True)
        return {"id": backup, "path": str(out), "size": size, "sha256": sha, "exported": where}

    def archive_restore_backs_up_first(self) -> bool:
        """Whether `restore_archive` takes production's backup itself: the deployed state machine does, before
        it stops anything, so that nobody who may start it skips the backup (export.backup_first). A machine
        deployed before it did (no `pulumi up` since) does not: the caller then takes the backup, as before."""
        if not (self.env.is_production and self.a.export):
            return False
        machine = self.a.restore_machine_arn
        states = self._states()
        try:
            with self._aws(f"states:DescribeStateMachine of {machine}", head=self._restore_head):
                definition = states.describe_state_machine(stateMachineArn=machine).get("definition") or "{}"
            backs_up = BACKED_UP in (json.loads(definition).get("States") or {})
        except (UserError, ValueError, AttributeError) as e:
            # (a backups role from before may not read it): not known, so the backup is taken here, as before
            self._say(f"warning: {self.env.name}: whether the deployed restore machine backs production up first could not be read ({e}): this command takes the backup itself")
            return False
        if not backs_up:
            self._say(f"warning: {self.env.name}: the deployed restore machine {machine} does not back production up first yet (run `pulumi up`): this command takes the backup itself")
        return backs_up

    def restore_archive(
        self, archive: Path, now: datetime, via: str | None, vouch: Callable[[str, int], None], before: Callable[[], None] | None = None, backed_up: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Restore a Mendix Cloud archive from this machine over the environment's database and files,
        through the restore task (export.py: the state machine the `backups` role may start). The archive is
        judged by the core's reader while it is uploaded into the imports bucket, each hashing what it read
        (a file changed meanwhile is never restored); the sha256 and size go to `vouch` (a refusal removes
        the upload); then `before` runs (the restore's intent record), then the machine: on production a
        backup first (given `backed_up`, when archive_restore_backs_up_first: its id to `backed_up` once the
        machine ended, whatever became of the restore; else the caller took one in `before`), the
        services stopped, the task (which checks the sha256 once more), the services started again. What
        was restored; FilesNotRestored when the database was but the files were not all copied back,
        NothingRestored when the machine says neither was."""
        import botocore.exceptions

        from mxinfra.backup_archive import check, stored_keys
        from mxinfra.backups import FilesNotRestored, NothingRestored

        if via is not None:
            raise UserError("--database-via: the aws target's restore task reaches the database from inside the VPC: leave it out")
        self._check_account()
        if not self.a.export:
            raise UserError(
                f"{self.env.name}: the stack has no restore task, so no archive can be restored: set mxinfra:aws.backupExport (the postgres and rclone "
                "images it runs, copied into the account's ECR) and run `pulumi up` (targets/aws/README.md, Backups)"
            )
        # only the backups role's sessions may write into the imports bucket (its policy)
        self._backups_session("the imports bucket takes an archive from")
        backup = now.astimezone(timezone.utc).strftime(ID_FORMAT)
        machine, bucket, key = self.a.restore_machine_arn, self.a.imports_bucket_name, f"{backup}.tar.gz"
        where = f"s3://{bucket}/{key}"
        head = self._restore_head
        with self._aws("creating the AWS clients"):
            states = self.session.client("stepfunctions", region_name=self.a.region, config=self._config)
            s3 = self.session.client("s3", region_name=self.a.region, config=self._config)
        uploaded, started, ended = False, False, None
        execution = machine.replace(":stateMachine:", ":execution:") + f":{backup}"
        try:
            # Both cores: the core's reader judges the archive (inflating it) on one while it is uploaded on the
            # other; each hashes what it read, and only the same bytes on both sides go on.
            judging = _Judging(lambda: check(archive, None, stored_keys()))
            try:
                with self._aws(f"s3:PutObject of {where}", head=head):
                    uploaded = True  # (a failed multipart upload removes its parts; a half-made object is never named)
                    sha = _upload(s3, archive, bucket, key, self.a.account, judging)
            except _JudgeRefused:
                judging.result()  # the upload stopped once the archive was refused: that refusal is the news
                raise
            except UserError:
                if judging.done():
                    judging.result()  # a bad archive is the news, not the upload that went with it
                raise
            judged = judging.result()
            if sha != judged.sha256:
                raise UserError(f"{archive}: changed while it was read (sha256 {judged.sha256} judged, {sha} uploaded): nothing was restored")
            vouch(judged.sha256, judged.size)
            if before is not None:
                before()
            refused = False
            try:
                with self._aws(f"states:StartExecution of {machine}", head=head):
                    try:
                        # (StartExecution is idempotent for the same name and input: the SDK's retries are safe)
                        states.start_execution(stateMachineArn=machine, name=backup, input=json.dumps({"sha256": judged.sha256}))
                    except botocore.exceptions.ClientError as exc:
                        # only Step Functions' own 4xx refusal says nothing started; a server error or a lost
                        # answer may have started it (and DescribeExecution, eventually consistent, cannot say)
                        # (ExecutionAlreadyExists after a lost answer is this execution: its name is this second's)
                        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                        refused = 400 <= status < 500 and exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists"
                        raise
                    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
                        refused = True  # never sent
                        raise
            except UserError:
                if refused:
                    raise
                started = True
                raise
            except BaseException:
                # stopped while the request was on its way (Ctrl-C): the execution may run, named as above
                started = True
                raise
            started = True
            first = "a backup is taken first, " if backed_up is not None else ""
            self._say(f"{self.env.name}: restoring {archive.name} (execution {execution}): {first}the services stop, the task restores, the services start again")
            # never stopped from here: a restore stopped half-way would leave the services stopped; it runs to
            # its end, which starts them again
            ended = self._ended(states, execution, "restore", head, self.export_timeout + RESTORE_STOP_SECONDS + (self.backup_timeout if backed_up is not None else 0.0))
        except BaseException:
            if started:
                # the command stopped following a restore that goes on (the task may not have fetched the
                # archive yet): its upload stays for it; its intent was recorded, its outcome is not from here
                self._say(f"warning: the restore {execution} may run: it goes on without this command (the restore's intent record names the archive; no outcome will follow); it starts the services again when it ends "
                          f"(`aws stepfunctions describe-execution --execution-arn {execution}`)")
                uploaded = False
            raise
        finally:
            if uploaded:
                self._remove_upload(s3, bucket, key, where)
        assert ended is not None  # (set unless something was raised above)
        if ended.marked:
            untag = "; ".join(f"`aws ecs untag-resource --resource-arn {arn} --tag-keys {RESTORING_TAG}`" for arn in self.a.service_arns)
            self._say(f"warning: {self._restore_head}: a service may still carry the restore's mark {RESTORING_TAG}, which keeps the deploy role from updating it: have the platform identity remove it ({untag})")
        if backed_up is not None:  # (the caller knows the machine takes one: archive_restore_backs_up_first)
            taken = self._backed_up_first(states, execution)
            if taken is not None:
                backed_up(taken)
        if ended.ok:
            return {"app": "stopped, then started", "execution": backup}
        tail = f"{ended.logs}; `aws stepfunctions describe-execution --execution-arn {execution}`"
        services = f"`aws ecs describe-services --cluster {self.a.cluster} --services {' '.join(self.a.service_names)}`"
        # `pulumi up` would not do it: its release guard refuses to run beside an unrecorded scale
        by_hand = "; ".join(f"`aws ecs update-service --cluster {self.a.cluster} --service {name} --desired-count {n}`" for name, n in ended.counts.items()) or f"with its desired count as before ({services})"
        if ended.error == "mxinfra.RestoredNotStartedAgain":
            # the restore stands (recorded); what runs does not: said now, as Cloud Foundry says it
            self._say(f"warning: {head}: the archive was restored, but a service was not started again ({ended.not_started}): start them: {by_hand}")
            return {"app": "stopped, not started again", "execution": backup}
        started_again = f"a service was NOT started again ({ended.not_started}): start them: {by_hand}" if ended.not_started else "the services were started again"
        x = ended.exits
        # restore.sh replaced the database (0; 3: but not the files), or was stopped after the fetch before
        # it said how it ended (it commits only at its end: it may have)
        db_done = x.get(RESTORE) in (RESTORED, FILES_NOT_RESTORED)
        # restore.sh's own 1 and 2 say the database and the files are as they were (a psql that failed after
        # its COMMIT is asked about: the server's word decides); its 4 that the server could not say, and a
        # kill (137, 143) or no exit code at all may have come after its COMMIT
        db_maybe = RESTORE in x and x.get(RESTORE) not in (RESTORED, *NOTHING_RESTORED, FILES_NOT_RESTORED) and x.get(FETCH) == 0
        # restore runs only after a fetch that succeeded (dependsOn SUCCESS): after any other, it never ran
        replaced_nothing = bool(x) and (RESTORE not in x or x.get(RESTORE) in NOTHING_RESTORED or (x.get(FETCH) != 0 and x.get(RESTORE) is None))
        stopped = {"app": "stopped, not started again" if ended.not_started else "stopped, then started", "execution": backup}
        if db_done and (x.get(RESTORE) == FILES_NOT_RESTORED or x.get(PUSH_FILES) != 0):
            raise FilesNotRestored(
                f"{self.env.name}: the database was restored from {archive.name}, but its files were not all copied back ({ended.why}); "
                f"{started_again}; run the restore again to copy them ({tail})",
                stopped,
            )
        # certainly nothing restored: recorded as the intent's outcome (mxinfra.backups.NothingRestored)
        if ended.error == "mxinfra.BackupFirstFailed":  # (its cause says so)
            raise NothingRestored(f"{head}: the restore {execution} ended {ended.status}: {ended.why} ({tail})", {"execution": backup})
        if ended.error in ("mxinfra.RestoreRunning", "mxinfra.BadInput"):
            raise NothingRestored(f"{head}: the restore {execution} ended {ended.status}: {ended.why}: nothing was stopped or restored ({tail})", {"execution": backup})
        if ended.error == "mxinfra.NotStopped" or replaced_nothing:
            raise NothingRestored(f"{head}: the restore {execution} ended {ended.status}: {ended.why}: nothing was restored; {started_again} ({tail})", stopped)
        if db_maybe or ended.error == "States.Timeout":
            how = "the server did not say whether its transaction committed" if x.get(RESTORE) == MAYBE_RESTORED else "the task was stopped before it ended"
            raise UserError(f"{head}: the restore {execution} ended {ended.status}: {ended.why}: {how}, so the database may or may not have been replaced (check it); {started_again} ({tail})")
        # a call of the machine failed (stopping or starting a service): what runs is not known from here
        also = f"; {started_again}" if ended.not_started else ""
        raise UserError(f"{head}: the restore {execution} ended {ended.status}: {ended.why}{also}; check that the services run as before ({services}) ({tail})")

    def _states(self) -> Any:
        with self._aws("creating the AWS clients"):
            return self.session.client("stepfunctions", region_name=self.a.region, config=self._config)

    @property
    def _files_head(self) -> str:
        return f"{self.env.name}: the files restore (state machine {self.a.files_restore_name}, account {self.a.account}, {self.a.region})"

    def _restore_files(self, point: str, backup: str, backed_up: Callable[[str], None]) -> str:
        """Production's files restore: an execution of the files-restore machine with the recovery point
        `point`, followed to its end; the backup it took first to `backed_up` (whatever became of the restore,
        also when the command stops following it); the restore job it started. NothingRestored when it
        certainly started none."""
        from mxinfra.backups import NothingRestored

        machine, head = self.a.files_restore_machine_arn, self._files_head
        # unique and not guessable (nobody can start one of the name first); StartExecution is idempotent for
        # the same name and input, so the SDK's retries of this call are the same execution
        name = f"{backup}-{uuid.uuid4().hex}"
        execution = machine.replace(":stateMachine:", ":execution:") + f":{name}"
        states = self._states()
        with self._aws(f"states:StartExecution of {machine}", head=head):
            states.start_execution(stateMachineArn=machine, name=name, input=json.dumps({"files": point}))
        self._say(f"{self.env.name}: backing production up first, then restoring the files of backup {backup} (execution {execution})")
        try:
            # the backup's wait (as long as `create` waits), the restore's, and a margin for the machine's own calls
            d = self._until_ended(states, execution, "files restore", head, self.backup_timeout + self.restore_timeout + 600.0)
        except BaseException:
            self._say(f"warning: the files restore {execution} goes on without this command: it backs production up, then may restore the files "
                      f"(`aws stepfunctions describe-execution --execution-arn {execution}`)")
            try:  # the backup it took already, if it did: recorded all the same
                if (taken := self._backed_up_first(states, execution, head)) is not None:
                    backed_up(taken)
            except Exception as e:  # noqa: BLE001 (the first failure is the news)
                self._say(f"warning: the backup the files restore {execution} took first could not be recorded: {e}")
            raise
        if (taken := self._backed_up_first(states, execution, head)) is not None:
            backed_up(taken)
        status, follow = str(d.get("status")), f"`aws stepfunctions describe-execution --execution-arn {execution}`"
        error = str(d.get("error") or "")
        if status == "SUCCEEDED":
            try:
                job = json.loads(d.get("output") or "{}").get(FILES_RESTORE_JOB)
            except (ValueError, AttributeError):
                job = None
            if isinstance(job, str) and job:
                return job
            raise UserError(f"{head}: the files restore {execution} succeeded, but its output names no restore job: see {follow} and `aws backup list-restore-jobs --region {self.a.region}`")
        why = f"{error or status}: {str(d.get('cause') or 'AWS gave no reason')[:400]}"
        if status == "FAILED" and error in FILES_NOT_STARTED:
            raise NothingRestored(f"{head}: the files restore {execution} ended {status}: {why}; the database's restore was not started either ({follow})", {"execution": name})
        # stopped by someone, or its restore call failed after AWS may have started the job: not known from here
        raise UserError(
            f"{head}: the files restore {execution} ended {status}: {why}: whether the files were restored is not known; the database's restore was not started "
            f"(see {follow} and `aws backup list-restore-jobs --by-resource-arn {self.a.bucket_arn} --region {self.a.region}`)"
        )

    def _backed_up_first(self, states: Any, execution: str, head: str | None = None) -> str | None:
        """The backup production's restore machine took before it stopped anything (its BACKED_UP state's
        output, in the execution's history); None, said, when it took none or it cannot be read."""
        head = head or self._restore_head
        points: Any = None
        try:
            with self._aws(f"states:GetExecutionHistory of {execution}", head=head):
                for page in states.get_paginator("get_execution_history").paginate(executionArn=execution, includeExecutionData=True):
                    for event in page.get("events") or []:
                        exited = event.get("stateExitedEventDetails") or {}
                        if exited.get("name") == BACKED_UP:
                            output = exited.get("output")
                            points = (json.loads(output).get("backedUp") or {}) if isinstance(output, str) else {}
        except (UserError, ValueError, AttributeError) as e:  # the restore's own outcome is the news: said beside it
            self._say(f"warning: {head}: which backup the restore {execution} took first could not be read ({e}): "
                      f"see its {BACKED_UP} state in `aws stepfunctions get-execution-history --execution-arn {execution}`; it is not recorded")
            return None
        if points is None:
            return None  # it ended before its backup was taken (said with its outcome)
        arns = {str(v) for v in points.values() if v} if isinstance(points, dict) else set()
        taken = self._pair_of(arns) if len(arns) == 2 else None
        if taken is None:
            self._say(f"warning: {head}: the backup the restore {execution} took first could not be told, so it is not recorded: "
                      + (self._not_one_backup(arns) if len(arns) == 2 else f"see its {BACKED_UP} state in `aws stepfunctions get-execution-history --execution-arn {execution}`"))
        return taken

    def _backups_session(self, what: str) -> None:
        """Refuse credentials that are not a session of the environment's `backups` role, before anything starts."""
        session = str(self._caller).split(":assumed-role/", 1)
        if len(session) != 2 or session[1].split("/", 1)[0] != self.a.role_name("backups"):
            raise UserError(f"{self.env.name}: {self._caller} is not a session of the environment's backups role, the only one {what}: nothing was started. {self._rights()}")

    def _remove_upload(self, s3: Any, bucket: str, key: str, where: str) -> None:
        """The uploaded archive goes once the restore ended (its lifecycle would remove it within two days)."""
        try:
            with self._aws(f"s3:DeleteObject of {where}", head=self._restore_head):
                s3.delete_object(Bucket=bucket, Key=key, ExpectedBucketOwner=self.a.account)
        except UserError as e:
            self._say(f"warning: {e} (the bucket's lifecycle removes it)")

    @property
    def _restore_head(self) -> str:
        return f"{self.env.name}: the restore task (state machine {self.a.restore_name}, account {self.a.account}, {self.a.region})"

    def after_download(self, got: dict[str, Any]) -> None:
        """Once the download is recorded: the bucket's copy goes (its lifecycle would remove it within two
        days); a failed delete is a warning, the archive and its record stand."""
        bucket, _, key = str(got["exported"]).removeprefix("s3://").partition("/")
        try:
            with self._aws(f"s3:DeleteObject of {got['exported']}", head=self._export_head):
                self.session.client("s3", region_name=self.a.region, config=self._config).delete_object(Bucket=bucket, Key=key, ExpectedBucketOwner=self.a.account)
        except UserError as e:
            self._say(f"warning: {e} (the bucket's lifecycle removes it)")

    def _describe_patiently(self, states: Any, execution: str, deadline: float, head: str, kind: str) -> dict[str, Any]:
        """DescribeExecution, through throttling and broken connections until the deadline (an export runs
        for hours: a network blip must not stop it); any other refusal at once."""
        import botocore.exceptions

        broken = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)  # endpoint, proxy, TLS, timeouts
        while True:
            try:
                # the blips are taken out before _aws, which would make them final
                with self._aws(f"states:DescribeExecution of {execution}", head=head):
                    try:
                        return dict(states.describe_execution(executionArn=execution))
                    except botocore.exceptions.ClientError as exc:
                        if exc.response.get("Error", {}).get("Code") not in _TRANSIENT:
                            raise
                        raise _Transient(str(exc)) from None
                    except broken as exc:
                        raise _Transient(str(exc)) from None
            except _Transient as e:
                blip = str(e)
            if time.monotonic() >= deadline:
                raise UserError(f"{head}: cannot follow the {kind} {execution} ({blip})")
            self._say(f"warning: following the {kind} {execution}: {blip}; trying again")
            time.sleep(max(self.poll, 1.0))

    def _stop_export(self, states: Any, execution: str) -> None:
        """Stop an export nobody waits for any more (best effort: said either way)."""
        try:
            states.stop_execution(executionArn=execution, error="mxinfra.Abandoned", cause="mxinfra backup download stopped waiting")
            self._say(f"{self.env.name}: stopped the export {execution}")
        except Exception as e:  # noqa: BLE001 (already failing: say what is left running, do not mask the cause)
            self._say(f"warning: the export {execution} may still run ({e}): `aws stepfunctions stop-execution --execution-arn {execution}`")

    @property
    def _export_head(self) -> str:
        return f"{self.env.name}: the export task (state machine {self.a.export_name}, account {self.a.account}, {self.a.region})"

    def _export_ended(self, states: Any, execution: str) -> None:
        """Wait for the export's execution to end. A UserError naming the container that failed and its log
        stream, or the execution, when the export did not write an archive."""
        # the state machine stops the task at EXPORT_TIMEOUT_SECONDS; a margin for it to say so
        ended = self._ended(states, execution, "export", self._export_head, self.export_timeout)
        if ended.ok:
            return
        where = "" if ended.error == "mxinfra.ExportRunning" else f"{ended.logs}; "  # refused before any task ran
        raise _ExportEnded(f"{self._export_head}: the export {execution} ended {ended.status}: {ended.why} ({where}`aws stepfunctions describe-execution --execution-arn {execution}`)")

    def _until_ended(self, states: Any, execution: str, kind: str, head: str, timeout: float, where: str = "") -> dict[str, Any]:
        """DescribeExecution of `execution` (of the `kind` machine) every poll until it no longer runs: its
        last answer. A UserError once `timeout` seconds passed (`where`: where to look, said with it)."""
        deadline = time.monotonic() + timeout
        while True:
            d = self._describe_patiently(states, execution, deadline, head, kind)
            if d.get("status") != "RUNNING":
                return d
            if time.monotonic() >= deadline:
                raise UserError(f"{head}: the {kind} {execution} still ran after {timeout / 60:.0f} minutes{where}")
            time.sleep(self.poll)

    def _ended(self, states: Any, execution: str, kind: str, head: str, timeout: float) -> _Ended:
        """Wait for an execution of the export or restore machine (`kind`) to end: how, and the task it ran."""
        logs = f"log group {self.a.log_group_name}, streams {kind}/<container>/<task id>"
        d = self._until_ended(states, execution, kind, head, timeout, f" ({logs})")
        status = d.get("status")
        error, cause, not_started, counts = str(d.get("error") or ""), d.get("cause"), "", {}
        marked = MARK_LEFT in str(cause or "")
        if error in ("mxinfra.NotStartedAgain", "mxinfra.RestoredNotStartedAgain"):
            # the restore machine's: the failed start, the counts before, and (after a failure) that failure, whole
            try:
                both = json.loads(str(cause))
                marked = both.get("unmarkFailure") is not None
                start, counts = both["startFailure"], {str(k): int(v) for k, v in (both.get("counts") or {}).items()}
                not_started = str(start.get("Cause") or start.get("Error") or "")[:300]
                if error == "mxinfra.NotStartedAgain":
                    error, cause = str(both["failure"].get("Error") or ""), both["failure"].get("Cause")
                else:
                    cause = "the archive was restored, but a service was not started again"
            except (ValueError, KeyError, TypeError, AttributeError):
                not_started = "(AWS's cause could not be read: the database may have been replaced; see the execution's history)"
        task: dict[str, Any] = {}
        try:
            task = json.loads(d.get("output") or cause or "{}")
        except ValueError:
            pass
        if not isinstance(task, dict):
            task = {}
        task = task.get("task") if isinstance(task.get("task"), dict) else task  # the restore's output keeps it at $.task
        containers = [c for c in task.get("Containers") or [] if isinstance(c, dict)]
        failed = [c for c in containers if c.get("ExitCode") not in (0, None)]
        never = [c for c in containers if c.get("ExitCode") is None]
        task_id = str(task.get("TaskArn") or "").rsplit("/", 1)[-1] or "<task id>"
        why = "; ".join(f"{c.get('Name')} exited {c.get('ExitCode')}" + (f" ({c.get('Reason')})" if c.get("Reason") else "") + f" (log stream {kind}/{c.get('Name')}/{task_id})" for c in failed)
        why = why or "; ".join(f"{c.get('Name')} never ran to the end" for c in never) or f"{error or status}: {str(cause or 'AWS gave no reason')[:300]}"
        ok = status == "SUCCEEDED" and not failed and not never
        exits = {str(c.get("Name")): c.get("ExitCode") for c in containers}
        try:
            output = json.loads(d.get("output") or "{}")
        except ValueError:
            output = {}
        marked = marked or (isinstance(output, dict) and output.get("unmarkFailure") is not None)
        return _Ended(str(status), error, exits, "" if ok else why, logs, not_started, counts, marked)

    # --- AWS --------------------------------------------------------------------------------------------

    def database_snapshot(self, source: SnapshotSource) -> str | None:
        """The RDS snapshot identifier of the database recovery point `source` names in the vault: a
        backup id's, or an `awsbackup:job-<id>` snapshot that is one of the environment's recovery points.
        None: the vault has no such point (expired, deleted, or never the environment's)."""
        for pair in self._list():
            point = pair.points.get(DATABASE)
            if source.backup_id is not None and pair.id == source.backup_id:
                if point is None:
                    raise UserError(f"{self.env.name}: backup {source.backup_id} in {self.where} has no database recovery point: nothing to restore the database from (`mxinfra backup list`)")
                return snapshot_identifier(point.arn)
            if source.snapshot is not None and point is not None and snapshot_identifier(point.arn).lower() == source.snapshot:
                return snapshot_identifier(point.arn)
        return None

    def _list(self) -> list[Pair]:
        if self._pairs is not None:
            return self._pairs
        self._check_account()
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            with self._aws(f"backup:ListRecoveryPointsByBackupVault of {self.vault}"):
                page = self.backup.list_recovery_points_by_backup_vault(BackupVaultName=self.vault, **({"NextToken": token} if token else {}))
            found += page.get("RecoveryPoints") or []
            token = page.get("NextToken")
            if not token:
                break
        self._pairs = pairs(points_of(found, self.a.db_arn, self.a.bucket_arn))
        return self._pairs

    def _restore_metadata(self, point: Point) -> Mapping[str, str]:
        with self._aws(f"backup:GetRecoveryPointRestoreMetadata of {point.arn}"):
            answer = self.backup.get_recovery_point_restore_metadata(BackupVaultName=self.vault, RecoveryPointArn=point.arn)
        return answer.get("RestoreMetadata") or {}

    def _wait(self, what: str, jobs: Mapping[str, str], timeout: float) -> dict[str, dict[str, Any]]:
        """Poll the jobs until each completed; a UserError naming the job if one fails or time runs out."""
        deadline = time.monotonic() + timeout
        done: dict[str, dict[str, Any]] = {}
        follow = "describe-backup-job --backup-job-id" if what == "backup" else "describe-restore-job --restore-job-id"
        while True:
            for kind, job in jobs.items():
                if kind in done:
                    continue
                with self._aws(f"backup:Describe{what.capitalize()}Job of {job}"):
                    d = self.backup.describe_backup_job(BackupJobId=job) if what == "backup" else self.backup.describe_restore_job(RestoreJobId=job)
                state = d.get("State") if what == "backup" else d.get("Status")
                if state == "COMPLETED":
                    done[kind] = d
                elif state in _DONE_BAD:
                    others = [f"{k} job {j}" for k, j in jobs.items() if k != kind]
                    raise UserError(
                        f"{self.env.name}: the {kind} {what} job {job} in {self.where} ended {state}: {d.get('StatusMessage') or 'AWS gave no reason'}"
                        + (f" ({', '.join(others)} may still run)" if others else "")
                        + f". See `aws backup {follow} {job} --region {self.a.region}`"
                    )
            if len(done) == len(jobs):
                return done
            if time.monotonic() >= deadline:
                running = [f"{k} job {j}" for k, j in jobs.items() if k not in done]
                raise UserError(
                    f"{self.env.name}: the {what} is still running after {timeout / 60:.0f} minutes ({', '.join(running)} in {self.where}). "
                    f"Follow it with `aws backup {follow} <id> --region {self.a.region}`"
                )
            time.sleep(self.poll)

    def _check_account(self) -> None:
        """The credentials must be the stack's account's (once per run)."""
        if self._caller is not None:
            return
        with self._aws("sts:GetCallerIdentity"):
            caller = self.sts.get_caller_identity()
        if caller.get("Account") != self.a.account:
            raise UserError(
                f"{self.env.name}: the AWS credentials are account {caller.get('Account')}'s ({caller.get('Arn')}), the stack deploys to account "
                f"{self.a.account} (mxinfra:aws.accountId): {self._rights()}"
            )
        self._caller = str(caller.get("Arn"))

    def _rights(self) -> str:
        mfa = " with MFA" if self.env.is_production else ""
        return (
            f"`mxinfra backup` needs the backups permission of {self.env.name}: assume its role {self.access_role}{mfa} "
            "(mxinfra:access grants it), e.g. with a profile whose role_arn is that role"
        )

    def _say(self, text: str) -> None:
        print(text, file=self.out if self.out is not None else sys.stderr)

    @contextmanager
    def _aws(self, doing: str, *, started: str = "", reraise_denied: bool = False, head: str | None = None) -> Iterator[None]:
        """The AWS SDK's failures as UserError (exit 2), naming the call, the vault (or `head`) and what to do."""
        import botocore.exceptions

        head = head or f"{self.env.name}: AWS Backup ({self.where})"
        also = f" (already started: {started}; see `aws backup list-backup-jobs --by-backup-vault-name {self.vault} --region {self.a.region}`)" if started else ""
        sign_in = f"sign in (`aws sso login`, AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) to account {self.a.account}; {self._rights()}"
        try:
            yield
        except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
            raise UserError(f"{head}: no AWS credentials were found: {sign_in}") from None
        except botocore.exceptions.ClientError as exc:
            err = exc.response.get("Error", {})
            code, message = str(err.get("Code", "?")), str(err.get("Message", ""))[:300]
            denied = code in _DENIED or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403
            if denied and reraise_denied:
                raise
            if denied:
                fix = self._rights() + (f" (or the bucket is not account {self.a.account}'s own)" if doing.startswith("s3:") else "")
            elif code in _INVALID:
                fix = f"the AWS credentials are not valid (expired or revoked): {sign_in}"
            elif code == "ResourceNotFoundException" and "Vault" in doing:
                fix = f"the vault does not exist in account {self.a.account}, {self.a.region}: deploy the stack with the environment's backups on (`pulumi up`)"
            elif code == "StateMachineDoesNotExist":
                fix = "the export or restore state machine is not deployed: run `pulumi up` with mxinfra:aws.backupExport set"
            elif code == "NoSuchBucket":
                fix = "the bucket is not deployed: run `pulumi up` with mxinfra:aws.backupExport set"
            elif code == "ExecutionAlreadyExists":
                fix = "an execution with this id (the second it started) exists already: wait for it to end (`aws stepfunctions describe-execution`) before running the command again"
            elif code in ("NoSuchKey", "404"):
                fix = "the export task stored no archive under its id, or another download of the same second fetched it: see its log streams (export/<container>/<task id>)"
            elif code == "ResourceNotFoundException":
                fix = "it may have expired or been deleted: see `mxinfra backup list`"
            elif code in ("InvalidParameterValueException", "InvalidRequestException") and "StartBackupJob" in doing and self.env.is_production:
                fix = f"production's vault lock keeps recovery points {on_demand_days(self.b)} days or more: see its MinRetentionDays/MaxRetentionDays (`aws backup describe-backup-vault --backup-vault-name {self.vault}`)"
            else:
                fix = "see AWS's message"
            raise UserError(f"{head}: AWS refused {doing} ({code}: {message}): {fix}{also}") from None
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError) as exc:
            raise UserError(f"{head}: the AWS API cannot be reached ({exc}): check the network and aws:region{also}") from None
        except botocore.exceptions.BotoCoreError as exc:  # an expired SSO session, a missing profile, ...
            raise UserError(f"{head}: the AWS SDK could not sign in ({exc}): {sign_in}{also}") from None


def restore_source(env: Environment, a: Arns, b: Backups, source: SnapshotSource, instance: str, session: Any = None) -> str | None:
    """What `pulumi up` (not the offline plan) creates the restored instance `instance` from: the RDS
    snapshot of the environment's vault that `source` (a backup id or `awsbackup:job-<id>`) names, looked
    up as `mxinfra backup list` pairs them, with the platform identity's AWS credentials. None when
    `instance` already exists, tagged the environment's (asked first: `deploy` may, the vault it may not): it
    was created from it before, and the snapshot only matters on creation. Else a UserError naming the vault."""
    actions = connect(env, a, b, session)
    # Created before: the snapshot no longer matters (ignore_changes), and the vault is not asked at all, so a
    # release by `deploy` (which may describe the instance in service, not list the vault) runs with the key set.
    if _created(actions, env, a, instance, session):
        return None
    found = actions.database_snapshot(source)
    if found is not None:
        return found
    raise UserError(
        f"{env.name}: mxinfra:aws.database.fromBackup.{env.name} names {source.value}, which is not a database backup in {actions.where}: "
        "see `mxinfra backup list` (an expired backup cannot be restored; name a newer one or an RDS snapshot of the environment's instance)"
    )


def restored_exists(env: Environment, a: Arns, instance: str, session: Any = None) -> bool:
    """Whether the restored instance `instance` exists, tagged the environment's (`pulumi preview`/`up`, with
    the platform identity's `rds:DescribeDBInstances`): a point in time beyond the automated backups'
    retention is fine then, since it was created from it while it could be."""
    return _created(connect(env, a, Backups(), session), env, a, instance, session)


def _created(actions: VaultActions, env: Environment, a: Arns, instance: str, session: Any) -> bool:
    with actions._aws(f"rds:DescribeDBInstances of {instance}"):
        import botocore.exceptions

        rds = (session or actions.session).client("rds", region_name=a.region)
        try:
            answer = rds.describe_db_instances(DBInstanceIdentifier=instance)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "DBInstanceNotFound":
                raise
            answer = {}
    for db in answer.get("DBInstances") or []:
        tags = {t.get("Key"): t.get("Value") for t in db.get("TagList") or []}
        if tags.get("mxinfra:app") == a.naming.app and tags.get("mxinfra:environment") == env.name:
            return True
    return False


def connect(env: Environment, a: Arns, b: Backups, session: Any = None, **kw: Any) -> VaultActions:
    """The actions on `env`'s vault with the AWS SDK's usual credentials (environment, profile, SSO,
    instance or task role) in the stack's region; nothing is called until the first action."""
    if not a.region:
        raise UserError(f"{env.name}: the stack sets no aws:region (pulumi config set aws:region eu-west-1)")
    import boto3

    return VaultActions(session or boto3.session.Session(), env, a, b, **kw)

