"""The export task behind `mxinfra backup download` (a backup taken now, in the Mendix Cloud format, written
into a bucket that keeps it a day) and the restore task behind `restore --archive`.

AWS Backup's recovery points are an RDS snapshot and S3 object versions: neither holds a pg_dump, and
reading one means restoring it. So a download is taken now, from what runs, by one Fargate task in the
environment's cluster and subnets, in a security group of its own that reaches the database and, over
HTTPS, the VPC's endpoints and S3, nothing else (network.export_group):

1. `pull-files` (the rclone image) copies the file bucket into the task's scratch volume (the core's
   `store.sh pull-files`, as on Kubernetes);
2. `backup` (the postgres image) runs the core's `backup.sh` on it: pg_dump of the database the app uses,
   signed in as the app is (the RDS-managed master secret, injected by ECS), and the files, into one
   `<id>.tar.gz`;
3. `put` (the rclone image) uploads it into the exports bucket with its sha256 as metadata (`store.sh put`).

Nobody runs the task directly: `ecs:RunTask` would let its caller override each container's command, and
IAM has no condition on overrides, so a `backups` holder could run a command of their choosing with the
database's password. The `backups` role may only start a Step Functions state machine whose definition
fixes the task definition revision, cluster, network, overrides and tags, and which refuses to run beside
another of its executions (each is a pg_dump holding its tables' locks); the only thing the caller chooses
is the execution's name, which becomes the archive's id (backup.sh refuses any name but YYYYmmddTHHMMSSZ).

`mxinfra backup restore --archive` is the way back, built the same way: the caller (the `backups` role, the
only writer of the imports bucket) uploads the archive, then starts the restore state machine, which stops
the environment's services, runs the restore task (`fetch`, the core's `restore.sh`, `push-files`) with the
execution's name as the archive's id and the sha256 the caller checked, and starts the services again
whatever happened (restore_definition).

The scripts are passed inline as `sh -c <script>` (the task has no config map to mount them from), with
the entry point set: ECS's `command` replaces only the image's CMD, and the rclone image's entry point is
`rclone`. The containers run with a read-only root file system and every capability dropped, their
scratch on the task's ephemeral storage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from mxinfra.backup_scripts import SCRIPTS
from mxinfra.backups import of_environment
from mxinfra.target import EnvironmentContext

from . import policies
from .backup_actions import BACKED_UP, MARK_LEFT
from .backups import START_WINDOW_MINUTES, on_demand_days
from .config import EXPORT_TIMEOUT_SECONDS, AwsConfig, BackupExportConfig
from .containers import value_from
from .database import DB_NAME, Database
from .network import SecurityGroups
from .policies import Arns

PULL, BACKUP, PUT = "pull-files", "backup", "put"
FETCH, RESTORE, PUSH = "fetch", "restore", "push-files"
WORK = "/work"
FILES_DIR = f"{WORK}/files"
ARCHIVES_DIR = f"{WORK}/archive"
# Fargate's smallest task that holds pg_dump, gzip on both cores and rclone's buffers.
CPU, MEMORY_MB = 2048, 4096
# Archives stay in the exports bucket this long (S3 acts within a day after; the downloader deletes what it
# fetched once it is recorded).
EXPIRE_DAYS = 1
RUN_TASK_SYNC = "arn:{partition}:states:::ecs:runTask.sync"
LIST_EXECUTIONS = "arn:{partition}:states:::aws-sdk:sfn:listExecutions"


def script(name: str) -> str:
    """A core backup script's text, as the container runs it."""
    return (SCRIPTS / name).read_text()


def _rclone_remote(remote: str, region: str) -> list[dict[str, str]]:
    """An rclone remote on S3 with the task role's credentials (the AWS SDK's container credentials); the
    buckets exist, so no CreateBucket is tried (nor granted)."""
    prefix = f"RCLONE_CONFIG_{remote.upper()}_"
    settings = (("TYPE", "s3"), ("PROVIDER", "AWS"), ("ENV_AUTH", "true"), ("REGION", region), ("NO_CHECK_BUCKET", "true"))
    return [{"name": f"{prefix}{k}", "value": v} for k, v in settings]


# Every container of the export and restore tasks: read-only root, no capability, an init process; its
# scratch on the task's volume. ECS's `command` replaces only the image's CMD: the entry point is set too
# (the rclone image's is `rclone`), so each container runs `sh -c <script> <name> <step>` whatever its image.
HARDENED = {"readonlyRootFilesystem": True, "linuxParameters": {"capabilities": {"drop": ["ALL"]}, "initProcessEnabled": True}}
SHELL = ["/bin/sh", "-c"]


def _container(a: Arns, task: str, name: str, image: str, command: list[str], env: list[dict[str, str]], *, after: str | None = None, essential: bool = False, secrets: list[dict[str, str]] | None = None, rclone: bool = False) -> dict[str, Any]:
    """One container of the export or restore task (`task`: its log streams' prefix)."""
    common = [{"name": "HOME", "value": WORK}, {"name": "TMPDIR", "value": WORK}, *([{"name": "RCLONE_CONFIG", "value": "/dev/null"}] if rclone else [])]
    return {
        "name": name,
        "image": image,
        "essential": essential,
        "entryPoint": SHELL,
        "command": command,
        **({"dependsOn": [{"containerName": after, "condition": "SUCCESS"}]} if after else {}),
        "environment": sorted([*common, *env], key=lambda e: e["name"]),
        **({"secrets": secrets} if secrets else {}),
        "mountPoints": [{"sourceVolume": "work", "containerPath": WORK, "readOnly": False}],
        # awslogs names a stream <prefix>/<container>/<task id>
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": a.log_group_name, "awslogs-region": a.region, "awslogs-stream-prefix": task}},
        **HARDENED,
    }


def _store(step: str) -> list[str]:
    return [script("store.sh"), "store.sh", step]


def _database(db_host: str, db_port: str, master_secret_arn: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The database as the postgres container reaches it: its URL, and the user and password from the master
    secret (PGUSER, PGPASSWORD: libpq reads them), signing in as the app does."""
    url = {"name": "DATABASE_URL", "value": f"postgresql://{db_host}:{db_port}/{DB_NAME}?sslmode=require"}
    secrets = [{"name": "PGPASSWORD", "valueFrom": value_from(master_secret_arn, "password")}, {"name": "PGUSER", "valueFrom": value_from(master_secret_arn, "username")}]
    return url, secrets


def _file_store(a: Arns) -> list[dict[str, str]]:
    """store.sh's view of the file bucket and its scratch copy (pull-files, push-files)."""
    return [{"name": "FILES_DIR", "value": FILES_DIR}, {"name": "FILES_REMOTE", "value": f"files:{a.bucket_name}"}, *_rclone_remote("files", a.region)]


def container_definitions(a: Arns, x: BackupExportConfig, db_host: str, db_port: str, master_secret_arn: str) -> list[dict[str, Any]]:
    """The export task's three containers, in order (see the module docstring). Pure."""
    url, secrets = _database(db_host, db_port, master_secret_arn)
    files = _file_store(a)
    backup_env = [{"name": "BACKUP_DIR", "value": ARCHIVES_DIR}, {"name": "FILES_DIR", "value": FILES_DIR}, {"name": "FILES_LAYOUT", "value": "keys"}, url]
    put_env = [{"name": "BACKUP_DIR", "value": ARCHIVES_DIR}, {"name": "BACKUP_REMOTE", "value": f"store:{a.exports_bucket_name}"}, *_rclone_remote("store", a.region)]
    return [
        _container(a, "export", PULL, x.rcloneImage, _store("pull-files"), files, rclone=True),
        _container(a, "export", BACKUP, x.postgresImage, [script("backup.sh"), "backup.sh"], backup_env, after=PULL, secrets=secrets),
        _container(a, "export", PUT, x.rcloneImage, _store("put"), put_env, after=BACKUP, essential=True, rclone=True),
    ]


def restore_container_definitions(a: Arns, x: BackupExportConfig, db_host: str, db_port: str, master_secret_arn: str) -> list[dict[str, Any]]:
    """The restore task's three containers, in order: `fetch` (rclone: the uploaded archive from the imports
    bucket, store.sh fetch), `restore` (postgres: restore.sh, which checks the archive's sha256 against the
    one the caller vouched for, judges it as an archive from outside and restores it over the database, the
    files into the scratch copy), `push-files` (rclone: the files copied back into the file bucket). Pure."""
    from mxinfra.backup_archive import CLEAN_SQL

    url, secrets = _database(db_host, db_port, master_secret_arn)
    fetch_env = [{"name": "BACKUP_DIR", "value": ARCHIVES_DIR}, {"name": "BACKUP_REMOTE", "value": f"store:{a.imports_bucket_name}"}, *_rclone_remote("store", a.region)]
    restore_env = [
        {"name": "BACKUP_DIR", "value": ARCHIVES_DIR},
        {"name": "FILES_DIR", "value": FILES_DIR},
        {"name": "FILES_LAYOUT", "value": "keys"},
        # no file can be put beside a script run inline: clean.sql's text comes with it
        {"name": "RESTORE_CLEAN_SQL", "value": CLEAN_SQL},
        # the services are stopped: restore once their tasks' sessions (and a download's pg_dump) ended
        {"name": "RESTORE_ALONE_WAIT", "value": str(ALONE_WAIT_SECONDS)},
        url,
    ]
    files = _file_store(a)
    return [
        _container(a, "restore", FETCH, x.rcloneImage, _store("fetch"), fetch_env, rclone=True),
        _container(a, "restore", RESTORE, x.postgresImage, [script("restore.sh"), "restore.sh"], restore_env, after=FETCH, secrets=secrets),
        _container(a, "restore", PUSH, x.rcloneImage, _store("push-files"), files, after=RESTORE, essential=True, rclone=True),
    ]


def definition(a: Arns, task_definition_arn: str, security_group: str) -> dict[str, Any]:
    """The state machine: unless another execution of it runs, one run of exactly `task_definition_arn` (a
    revision) in the environment's cluster, subnets and `security_group`, its id the execution's name;
    waits for the task to stop. Pure."""
    # Each export is a pg_dump against the database that holds its tables' locks for its whole run.
    return {
        "Comment": f"{a.naming.prefix}: a backup taken now for `mxinfra backup download`",
        "StartAt": "OneAtATime",
        "States": {
            # nor beside a restore: its files would be copied half put back, from a database replaced meanwhile
            **one_at_a_time(a.export_machine_arn, a.partition, "Export", policies.waits_for(a, "export")),
            "Busy": {"Type": "Fail", "Error": "mxinfra.ExportRunning", "Cause": "another export, or a restore, of this environment is running: one at a time, run it again once that one ended"},
            # the execution's name is the archive's id: the only input the caller gives
            "Export": {**_run_task(a, "export", task_definition_arn, security_group, [{"Name": BACKUP, "Environment": [{"Name": "BACKUP_NOW", "Value.$": "$$.Execution.Name"}]}]), "End": True},
        },
    }


def one_at_a_time(machine_arn: str, partition: str, then: str, others: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The states that refuse to run (going to `Busy`) beside another execution of `machine_arn` or any of
    the `others` (ARN, label: policies.waits_for), going on to `then` (IAM cannot count a caller's
    executions; each count is eventually consistent)."""

    def running(arn: str, at_most: int, result: str, nxt: str) -> dict[str, Any]:
        return {
            "Type": "Task",
            "Resource": LIST_EXECUTIONS.format(partition=partition),
            "Parameters": {"StateMachineArn": arn, "StatusFilter": "RUNNING", "MaxResults": at_most},
            "ResultSelector": {"running.$": "States.ArrayLength($.Executions)"},
            "ResultPath": f"$.{result}",
            "Next": nxt,
        }

    def choice(result: str, beside: int, default: str) -> dict[str, Any]:
        return {"Type": "Choice", "Choices": [{"Variable": f"$.{result}.running", "NumericGreaterThan": beside, "Next": "Busy"}], "Default": default}

    counts = [f"{label}s" for _, label in others]
    # this execution itself is one of the running ones
    states = {"OneAtATime": running(machine_arn, 2, "guard", "Alone"), "Alone": choice("guard", 1, counts[0] if counts else then)}
    for i, (arn, label) in enumerate(others):
        result = f"{label.lower()}s"
        states[counts[i]] = running(arn, 1, result, f"No{label}")
        states[f"No{label}"] = choice(result, 0, counts[i + 1] if i + 1 < len(counts) else then)
    return states


def _run_task(a: Arns, kind: str, task_definition_arn: str, security_group: str, overrides: list[dict[str, Any]]) -> dict[str, Any]:
    """A Task state running exactly `task_definition_arn` once in the environment's cluster, subnets and
    `security_group`, tagged as the environment's and as a backup task of `kind` (export, restore), with
    `overrides` (environment variables only)."""
    return {
        "Type": "Task",
        "Resource": RUN_TASK_SYNC.format(partition=a.partition),
        "Parameters": {
            "Cluster": a.cluster_arn,
            "TaskDefinition": task_definition_arn,
            "LaunchType": "FARGATE",
            "PlatformVersion": "LATEST",
            # the environment's tags on the task, given in the request: ECS authorises them as TagResource
            # (ecs:CreateAction RunTask, aws:RequestTag), and DescribeTasks and StopTask then match them
            # (and as a backup task: the deploy role may stop the app's tasks, never these: policies.deploy_policy)
            "Tags": [{"Key": k, "Value": v} for k, v in sorted({**policies.environment_tags(a), policies.BACKUP_TASK_TAG: kind}.items())],
            "NetworkConfiguration": {"AwsvpcConfiguration": {"Subnets": list(a.subnets), "SecurityGroups": [security_group], "AssignPublicIp": "ENABLED" if a.assign_public_ip else "DISABLED"}},
            "Overrides": {"ContainerOverrides": overrides},
        },
        "TimeoutSeconds": EXPORT_TIMEOUT_SECONDS,
    }


# How long restore.sh waits for the database's other sessions to end (a stopping task drains for 60 s and
# stops within 120 s; a download's pg_dump ends when it ends).
ALONE_WAIT_SECONDS = 600
# How long the restore machine waits for the stopped services' tasks to end: polls STOP_POLL_SECONDS apart.
STOP_POLL_SECONDS, STOP_POLLS = 15, 40
# Calls to ECS that must not fail on a throttle or a transient error: above all the ones starting the app again.
ECS_RETRY = [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 5, "MaxAttempts": 6, "BackoffRate": 2.0}]
DESCRIBE_SERVICES = "arn:{partition}:states:::aws-sdk:ecs:describeServices"
UPDATE_SERVICE = "arn:{partition}:states:::aws-sdk:ecs:updateService"
TAG_RESOURCE = "arn:{partition}:states:::aws-sdk:ecs:tagResource"
UNTAG_RESOURCE = "arn:{partition}:states:::aws-sdk:ecs:untagResource"
START_BACKUP_JOB = "arn:{partition}:states:::aws-sdk:backup:startBackupJob"
DESCRIBE_BACKUP_JOB = "arn:{partition}:states:::aws-sdk:backup:describeBackupJob"
# How long production's restore machine waits for the backup it takes first: polls this far apart, as long
# as `mxinfra backup create` waits for one (backup_actions.BACKUP_TIMEOUT).
BACKUP_POLL_SECONDS, BACKUP_POLLS = 60, 180
# A refusal is final (retried, it would only delay the failure by minutes); anything else may pass.
BACKUP_RETRY = [
    {"ErrorEquals": [f"Backup.{e}" for e in ("AccessDeniedException", "InvalidParameterValueException", "InvalidRequestException", "MissingParameterValueException", "ResourceNotFoundException")], "MaxAttempts": 0},
    *ECS_RETRY,
]
# AWS Backup's job states after which no recovery point comes.
_BACKUP_FAILED = ("ABORTED", "EXPIRED", "FAILED", "PARTIAL")


def countdown(label: str, polls: int, seconds: int, then: str) -> dict[str, Any]:
    """A bounded wait between checks: `<label>Polls` sets `polls` left (at `$.<label>Polls`, lower case
    first), `<label>Wait` waits `seconds`, `<label>Count` counts one down and goes on to `then`, the check;
    its Choice goes back to `<label>Wait` by `polls_left(label)`."""
    at = f"$.{label[0].lower()}{label[1:]}Polls"
    return {
        f"{label}Polls": {"Type": "Pass", "Result": {"left": polls}, "ResultPath": at, "Next": f"{label}Wait"},
        f"{label}Wait": {"Type": "Wait", "Seconds": seconds, "Next": f"{label}Count"},
        f"{label}Count": {"Type": "Pass", "Parameters": {"left.$": f"States.MathAdd({at}.left, -1)"}, "ResultPath": at, "Next": then},
    }


def polls_left(label: str) -> dict[str, Any]:
    """The Choice rule that waits again while `countdown(label, ...)` has polls left."""
    return {"Variable": f"$.{label[0].lower()}{label[1:]}Polls.left", "NumericGreaterThan": 0, "Next": f"{label}Wait"}


def backup_first(a: Arns, keep_days: int, then: str) -> dict[str, Any]:
    """Production's restore machine's first states: an on-demand backup of the database the app uses and of
    its bucket into the environment's vault, as `mxinfra backup create` takes one, waited for, before
    anything is stopped; then `then`. Taken here, not by the caller, so that no holder of the `backups` role
    replaces production's data without a way back (starting the machine directly skips nothing)."""
    p = a.partition
    # nothing is stopped yet: a failure here ends the execution, the services untouched
    refused = {"Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "BackupNotTaken"}]}

    def call(resource: str, parameters: dict[str, Any], nxt: str, **extra: Any) -> dict[str, Any]:
        return {"Type": "Task", "Resource": resource.format(partition=p), "Parameters": parameters, "Retry": BACKUP_RETRY, "Next": nxt, **extra, **refused}

    states: dict[str, Any] = {
        # AWS Backup answers a token it has seen with that job, done or not: a token the caller could know
        # (the execution's name is theirs to choose) would let a job started beforehand pass for this one.
        # Made once, before the Task states, so that their retries keep it.
        "BackupFirst": {"Type": "Pass", "Parameters": {"token.$": "States.UUID()"}, "ResultPath": "$.backupToken", "Next": "BackUpDatabase"},
    }
    kinds = (("Database", a.serving_db_arn), ("Files", a.bucket_arn))
    for i, (kind, resource) in enumerate(kinds):
        states[f"BackUp{kind}"] = call(
            START_BACKUP_JOB,
            {
                "BackupVaultName": a.backup_vault_name,
                "ResourceArn": resource,
                "IamRoleArn": a.role_arn("backup"),
                "IdempotencyToken.$": f"States.Format('{{}}-{kind.lower()}', $.backupToken.token)",
                "StartWindowMinutes": START_WINDOW_MINUTES,
                "Lifecycle": {"DeleteAfterDays": keep_days},
            },
            f"BackUp{kinds[i + 1][0]}" if i + 1 < len(kinds) else "BackupPolls",
            ResultSelector={"job.$": "$.BackupJobId"}, ResultPath=f"$.backup{kind}",
        )
    states.update(countdown("Backup", BACKUP_POLLS, BACKUP_POLL_SECONDS, "BackupCheckDatabase"))
    # a job's State is always in the answer; its recovery point only once it has one (read once completed)
    for i, (kind, _) in enumerate(kinds):
        states[f"BackupCheck{kind}"] = call(
            DESCRIBE_BACKUP_JOB, {"BackupJobId.$": f"$.backup{kind}.job"}, f"BackupCheck{kinds[i + 1][0]}" if i + 1 < len(kinds) else "BackupDone",
            ResultSelector={"state.$": "$.State"}, ResultPath=f"$.backup{kind}State",
        )
    done = [{"Variable": f"$.backup{kind}State.state", "StringEquals": "COMPLETED"} for kind, _ in kinds]
    failed = [{"Variable": f"$.backup{kind}State.state", "StringEquals": state} for kind, _ in kinds for state in _BACKUP_FAILED]
    states["BackupDone"] = {
        "Type": "Choice",
        "Choices": [{"And": done, "Next": "BackupPointDatabase"}, {"Or": failed, "Next": "BackupFailed"}, polls_left("Backup")],
        "Default": "BackupTimedOut",
    }
    # what each completed job backed up, into which vault: the machine's own resources, or no restore
    for i, (kind, _) in enumerate(kinds):
        states[f"BackupPoint{kind}"] = call(
            DESCRIBE_BACKUP_JOB, {"BackupJobId.$": f"$.backup{kind}.job"}, f"BackupPoint{kinds[i + 1][0]}" if i + 1 < len(kinds) else "BackupMine",
            ResultSelector={"point.$": "$.RecoveryPointArn", "resource.$": "$.ResourceArn", "vault.$": "$.BackupVaultName"}, ResultPath=f"$.backup{kind}Point",
        )
    mine = [
        {"Variable": f"$.backup{kind}Point.{key}", "StringEquals": value}
        for kind, resource in kinds
        for key, value in (("resource", resource), ("vault", a.backup_vault_name))
    ]
    states["BackupMine"] = {"Type": "Choice", "Choices": [{"And": mine, "Next": BACKED_UP}], "Default": "BackupFailed"}
    states[BACKED_UP] = {"Type": "Pass", "Parameters": {"database.$": "$.backupDatabasePoint.point", "files.$": "$.backupFilesPoint.point"}, "ResultPath": "$.backedUp", "Next": then}
    jobs = "database job {}, files job {}): nothing was stopped or restored', $.backupDatabase.job, $.backupFiles.job)"
    states["BackupFailed"] = {"Type": "Pass", "Parameters": {"Error": "mxinfra.BackupFirstFailed", "Cause.$": f"States.Format('the backup taken first did not complete ({jobs}"}, "ResultPath": "$.failure", "Next": "NotBackedUp"}
    states["BackupTimedOut"] = {"Type": "Pass", "Parameters": {"Error": "mxinfra.BackupFirstFailed", "Cause.$": f"States.Format('the backup taken first did not complete within {BACKUP_POLL_SECONDS * BACKUP_POLLS} s ({jobs}"}, "ResultPath": "$.failure", "Next": "NotBackedUp"}
    states["BackupNotTaken"] = {"Type": "Pass", "Parameters": {"Error": "mxinfra.BackupFirstFailed", "Cause.$": "States.Format('the backup taken first could not be started or followed ({}): nothing was stopped or restored', $.failure.Cause)"}, "ResultPath": "$.failure", "Next": "NotBackedUp"}
    states["NotBackedUp"] = {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}
    return states


def restore_definition(a: Arns, task_definition_arn: str, security_group: str, keep_days: int | None = None) -> dict[str, Any]:
    """The restore state machine. Unless another execution of it runs, and once the input is checked: on
    production a backup taken first (backup_first: kept `keep_days`); each service's desired count read,
    then set to 0, until none of its tasks runs; then one run of exactly `task_definition_arn` (a revision),
    the archive `<execution name>.tar.gz` with the input's `sha256`; then each service's desired count set
    back, whether the restore succeeded or failed (also when stopping failed half-way, and each service even
    when another could not be). Pure."""
    p = a.partition
    services = list(a.service_names)
    cluster = a.cluster_arn
    states: dict[str, Any] = {}

    def ecs(resource: str, parameters: dict[str, Any], nxt: str, **extra: Any) -> dict[str, Any]:
        return {"Type": "Task", "Resource": resource.format(partition=p), "Parameters": parameters, "Retry": ECS_RETRY, "Next": nxt, **extra}

    # States.ALL catches everything but States.Runtime (a path that names nothing): every path read once a
    # service may be stopped is one the machine wrote itself, or checked before the first stop (the input)
    undo = {"Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "StartAgainAfterFailure0"}]}
    # nor beside a download's export, whose pg_dump holds the tables the restore replaces (counted before
    # anything is stopped; restore.sh also waits for the database's other sessions)
    states.update(one_at_a_time(a.restore_machine_arn, p, "Input", policies.waits_for(a, "restore")))
    states["Busy"] = {"Type": "Fail", "Error": "mxinfra.RestoreRunning", "Cause": "another restore, or a download's export, of this environment is running: one at a time"}
    states["Input"] = {
        "Type": "Choice",
        "Choices": [{"And": [{"Variable": "$.sha256", "IsPresent": True}, {"Variable": "$.sha256", "IsString": True}], "Next": "Clean"}],
        "Default": "BadInput",
    }
    # from here on the state holds the sha256 and what the machine writes itself, nothing else of the input
    # (unmarkFailure: null until a service's mark could not be taken off, so that every way out can name it)
    states["Clean"] = {"Type": "Pass", "Parameters": {"sha256.$": "$.sha256", "unmarkFailure": None}, "Next": "BackupFirst" if a.production else "Read0"}
    if a.production:
        if keep_days is None:  # (the target renders no restore machine where backups are off: target.exports)
            raise ValueError(f"{a.naming.prefix}: production's restore machine backs up first: give its retention")
        states.update(backup_first(a, keep_days, "Read0"))
    states["BadInput"] = {"Type": "Fail", "Error": "mxinfra.BadInput", "Cause": "the input must be {\"sha256\": \"<the archive's sha256>\"} (mxinfra backup restore --archive): nothing was stopped"}
    for i, service in enumerate(services):
        # the count to start it again with; nothing is stopped yet if this fails
        states[f"Read{i}"] = ecs(
            DESCRIBE_SERVICES, {"Cluster": cluster, "Services": [service]}, f"Read{i + 1}" if i + 1 < len(services) else "Mark0",
            ResultSelector={"desired.$": "$.Services[0].DesiredCount"}, ResultPath=f"$.service{i}",
        )
    # marked as being restored before they stop, so that the deploy role cannot start them again meanwhile
    # (its UpdateService needs the tag absent: policies.deploy_policy); unmarked once they started again
    arns = a.service_arns
    for i, service in enumerate(services):
        mark = {"ResourceArn": arns[i], "Tags": [{"Key": policies.RESTORING_TAG, "Value.$": "$$.Execution.Name"}]}
        states[f"Mark{i}"] = ecs(TAG_RESOURCE, mark, f"Mark{i + 1}" if i + 1 < len(services) else "Stop0", ResultPath=None, **undo)
    for i, service in enumerate(services):
        states[f"Stop{i}"] = ecs(UPDATE_SERVICE, {"Cluster": cluster, "Service": service, "DesiredCount": 0}, f"Stop{i + 1}" if i + 1 < len(services) else "Polls", ResultPath=None, **undo)
    # no instance may hold the database while it is replaced: wait until no task of any service runs
    states["Polls"] = {"Type": "Pass", "Result": {"left": STOP_POLLS}, "ResultPath": "$.polls", "Next": "Drain"}
    states["Drain"] = {"Type": "Wait", "Seconds": STOP_POLL_SECONDS, "Next": "Count"}
    states["Count"] = {"Type": "Pass", "Parameters": {"left.$": "States.MathAdd($.polls.left, -1)"}, "ResultPath": "$.polls", "Next": "Check0"}
    for i, service in enumerate(services):
        then = f"Check{i + 1}" if i + 1 < len(services) else "Restore"
        # the answer whole (a service gone meanwhile is in Failures, not Services: nothing of it runs)
        states[f"Check{i}"] = ecs(DESCRIBE_SERVICES, {"Cluster": cluster, "Services": [service]}, f"Stopped{i}", ResultPath="$.check", **undo)
        states[f"Stopped{i}"] = {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.check.Services[0]", "IsPresent": False, "Next": then},
                {"Or": [{"Variable": "$.check.Services[0].RunningCount", "NumericGreaterThan": 0}, {"Variable": "$.check.Services[0].PendingCount", "NumericGreaterThan": 0}], "Next": "StillRunning"},
            ],
            "Default": then,
        }
    states["StillRunning"] = {"Type": "Choice", "Choices": [{"Variable": "$.polls.left", "NumericGreaterThan": 0, "Next": "Drain"}], "Default": "NotStopped"}
    states["NotStopped"] = {"Type": "Pass", "Parameters": {"Error": "mxinfra.NotStopped", "Cause": f"the services' tasks did not stop within {STOP_POLL_SECONDS * STOP_POLLS} s: nothing was restored"}, "ResultPath": "$.failure", "Next": "StartAgainAfterFailure0"}
    name = {"Name": "BACKUP_ID", "Value.$": "$$.Execution.Name"}
    states["Restore"] = {
        **_run_task(a, "restore", task_definition_arn, security_group, [
            {"Name": FETCH, "Environment": [name]},
            # the archive the caller checked (restore.sh compares, before anything changes)
            {"Name": RESTORE, "Environment": [name, {"Name": "BACKUP_SHA256", "Value.$": "$.sha256"}]},
        ]),
        "ResultPath": "$.task",
        "Next": "StartAgain0",
        **undo,
    }
    # every service is started again even when another could not be: a failed start is kept and said at the end;
    # then each is unmarked (one that cannot be is kept too: the command says how to unmark it)
    for label, end in (("StartAgain", "Started"), ("StartAgainAfterFailure", "StartedAfterFailure")):
        for i, service in enumerate(services):
            nxt = f"{label}{i + 1}" if i + 1 < len(services) else f"{label}Unmark0"
            states[f"{label}{i}"] = ecs(
                UPDATE_SERVICE, {"Cluster": cluster, "Service": service, "DesiredCount.$": f"$.service{i}.desired"}, nxt,
                ResultPath=None, Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.startFailure", "Next": nxt}],
            )
        for i, service in enumerate(services):
            nxt = f"{label}Unmark{i + 1}" if i + 1 < len(services) else end
            states[f"{label}Unmark{i}"] = ecs(
                UNTAG_RESOURCE, {"ResourceArn": arns[i], "TagKeys": [policies.RESTORING_TAG]}, nxt,
                ResultPath=None, Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.unmarkFailure", "Next": nxt}],
            )
    not_started = {"Variable": "$.startFailure", "IsPresent": True}
    # what the command needs to say how to start them by hand: each service's count before the restore
    counts = {f"{service}.$": f"$.service{i}.desired" for i, service in enumerate(services)}
    states["Started"] = {"Type": "Choice", "Choices": [{**not_started, "Next": "RestoredNotStarted"}], "Default": "Restored"}
    states["Restored"] = {"Type": "Succeed"}
    states["RestoredNotStarted"] = {"Type": "Pass", "Parameters": {"startFailure.$": "$.startFailure", "counts": counts, "unmarkFailure.$": "$.unmarkFailure"}, "ResultPath": "$.both", "Next": "RestoredNotStartedEither"}
    states["RestoredNotStartedEither"] = {"Type": "Pass", "Parameters": {"Error": "mxinfra.RestoredNotStartedAgain", "Cause.$": "States.JsonToString($.both)"}, "ResultPath": "$.failure", "Next": "Failed"}
    states["StartedAfterFailure"] = {"Type": "Choice", "Choices": [{**not_started, "Next": "NotStarted"}], "Default": "LeftMarked"}
    # a mark left on a service keeps the deploy role from updating it: said in the cause, whatever it was
    states["LeftMarked"] = {"Type": "Choice", "Choices": [{"Not": {"Variable": "$.unmarkFailure", "IsNull": True}, "Next": "SayMarked"}], "Default": "Failed"}
    states["SayMarked"] = {
        "Type": "Pass",
        "Parameters": {"Error.$": "$.failure.Error", "Cause.$": f"States.Format('{{}} ({MARK_LEFT})', $.failure.Cause)"},
        "ResultPath": "$.failure",
        "Next": "Failed",
    }
    # both failures kept whole (the first says whether the database was replaced), as JSON in the cause
    states["NotStarted"] = {"Type": "Pass", "Parameters": {"failure.$": "$.failure", "startFailure.$": "$.startFailure", "counts": counts, "unmarkFailure.$": "$.unmarkFailure"}, "ResultPath": "$.both", "Next": "NotStartedEither"}
    states["NotStartedEither"] = {"Type": "Pass", "Parameters": {"Error": "mxinfra.NotStartedAgain", "Cause.$": "States.JsonToString($.both)"}, "ResultPath": "$.failure", "Next": "Failed"}
    states["Failed"] = {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}
    return {"Comment": f"{a.naming.prefix}: restore an uploaded archive for `mxinfra backup restore --archive`", "StartAt": "OneAtATime", "States": states}


def _bucket(ctx: EnvironmentContext, kind: str, name: str, policy: policies.Document) -> aws.s3.Bucket:
    """A transfer bucket (`exports` or `imports`): private, encrypted, TLS only, written and read by one
    role each (policies.transfer_bucket_policy); archives expire after EXPIRE_DAYS. It holds a day's
    copies of the environment's data: on production it and its settings are protected like the file
    bucket (a partial destroy must not leave it without its public-access block)."""
    n = ctx.naming
    bucket = aws.s3.Bucket(n.logical(kind), bucket=name, force_destroy=True, tags=dict(ctx.tags), opts=ctx.opts(protect_data=True))
    aws.s3.BucketPublicAccessBlock(
        n.logical(f"{kind}-public-access"), bucket=bucket.id, block_public_acls=True, block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True, opts=ctx.opts(protect_data=True)
    )
    aws.s3.BucketOwnershipControls(n.logical(f"{kind}-ownership"), bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=ctx.opts(protect_data=True))
    aws.s3.BucketServerSideEncryptionConfiguration(
        n.logical(f"{kind}-encryption"), bucket=bucket.id, rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}, "bucket_key_enabled": True}], opts=ctx.opts(protect_data=True)
    )
    aws.s3.BucketLifecycleConfiguration(
        n.logical(f"{kind}-lifecycle"),
        bucket=bucket.id,
        rules=[{"id": f"expire-{kind}", "status": "Enabled", "filter": {}, "expiration": {"days": EXPIRE_DAYS}, "abort_incomplete_multipart_upload": {"days_after_initiation": EXPIRE_DAYS}}],
        opts=ctx.opts(protect_data=True),
    )
    aws.s3.BucketPolicy(n.logical(f"{kind}-policy"), bucket=bucket.id, policy=json.dumps(policy, sort_keys=True), opts=ctx.opts(protect_data=True))
    return bucket


@dataclass
class Export:
    """The export's and the restore's state machines and buckets."""

    machine: aws.sfn.StateMachine
    bucket: aws.s3.Bucket
    restore_machine: aws.sfn.StateMachine
    imports: aws.s3.Bucket


def create(ctx: EnvironmentContext, cfg: AwsConfig, a: Arns, sgs: SecurityGroups, db: Database) -> Export | None:
    """The exports bucket, the task's two roles and definition, the state machine and its role; None
    without `backupExport`."""
    from .network import export_group
    from .rotation import service_trust
    from .runtime import service_role

    x = cfg.backupExport
    if x is None:
        return None
    n = ctx.naming
    bucket = _bucket(ctx, "exports", a.exports_bucket_name, policies.exports_bucket_policy(a))
    group = export_group(ctx, cfg, sgs.database)
    task_role = service_role(ctx, cfg, a, "export-task", policies.ecs_tasks_trust(a), policies.export_task_policy(a), "The export task: read this environment's files, write archives into its exports bucket")
    execution_role = service_role(
        ctx, cfg, a, "export-execution", policies.ecs_tasks_trust(a), policies.export_execution_policy(a, [x.postgresImage, x.rcloneImage]), "ECS: pull the export task's images, write its logs, read the database's secret"
    )
    host_port = db.endpoint.apply(lambda e: e.rsplit(":", 1) if ":" in e else [e, "5432"])

    def task(logical: str, family: str, role: aws.iam.Role, render: Any, after: aws.s3.Bucket) -> aws.ecs.TaskDefinition:
        containers = pulumi.Output.all(host_port, db.master_secret_arn).apply(lambda v: json.dumps(render(a, x, v[0][0], v[0][1], v[1]), sort_keys=True))
        return aws.ecs.TaskDefinition(
            n.logical(logical),
            family=family,
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(CPU),
            memory=str(MEMORY_MB),
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": cfg.cpuArchitecture},
            ephemeral_storage={"size_in_gib": x.storageGb},
            volumes=[{"name": "work"}],
            task_role_arn=role.arn,
            execution_role_arn=execution_role.arn,
            container_definitions=containers,
            tags=dict(ctx.tags),
            opts=ctx.opts(depends_on=[after]),
        )

    def machine(logical: str, name: str, kind: str, arn: str, policy: policies.Document, what: str, render: Any, td: aws.ecs.TaskDefinition) -> aws.sfn.StateMachine:
        runner = service_role(ctx, cfg, a, kind, service_trust(a, "states", arn), policy, what)
        return aws.sfn.StateMachine(
            n.logical(logical),
            name=name,
            role_arn=runner.arn,
            definition=pulumi.Output.all(td.arn, group.id).apply(lambda v: json.dumps(render(a, v[0], v[1]), sort_keys=True)),
            tags=dict(ctx.tags),
            opts=ctx.opts(),
        )

    export_task = task("export", a.export_name, task_role, container_definitions, bucket)
    export_machine = machine(
        "export-machine", a.export_name, "export-runner", a.export_machine_arn, policies.export_runner_policy(a), "Step Functions: run this environment's export task, nothing else", definition, export_task
    )
    # `restore --archive`: the same images, execution role and network; its own bucket, task role and machine
    imports = _bucket(ctx, "imports", a.imports_bucket_name, policies.imports_bucket_policy(a))
    restore_role = service_role(ctx, cfg, a, "restore-task", policies.ecs_tasks_trust(a), policies.restore_task_policy(a), "The restore task: read an uploaded archive, write its files into this environment's file bucket")
    restore_task = task("restore", a.restore_name, restore_role, restore_container_definitions, imports)
    keep_days = on_demand_days(of_environment(ctx.environment)) if a.production else None
    restore_machine = machine(
        "restore-machine", a.restore_name, "restore-runner", a.restore_machine_arn, policies.restore_runner_policy(a),
        f"Step Functions: {'back up production first, ' if a.production else ''}stop this environment's services, run its restore task, start them again; nothing else",
        lambda a, td, group: restore_definition(a, td, group, keep_days), restore_task,
    )
    return Export(export_machine, bucket, restore_machine, imports)

