"""The export task behind `mxinfra backup download`: a backup taken now, in the Mendix Cloud format, written
into a bucket that keeps it a day.

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

The scripts are passed inline as `sh -c <script>` (the task has no config map to mount them from), with
the entry point set: ECS's `command` replaces only the image's CMD, and the rclone image's entry point is
`rclone`. The containers run with a read-only root file system and every capability dropped, their
scratch on the task's ephemeral storage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from mxinfra.backup_scripts import SCRIPTS
from mxinfra.target import EnvironmentContext

from . import policies
from .config import EXPORT_TIMEOUT_SECONDS, AwsConfig, BackupExportConfig
from .containers import value_from
from .database import DB_NAME, Database
from .network import SecurityGroups
from .policies import Arns

PULL, BACKUP, PUT = "pull-files", "backup", "put"
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


def _logs(log_group: str, region: str) -> dict[str, Any]:
    # awslogs names a stream <prefix>/<container>/<task id>
    return {"logDriver": "awslogs", "options": {"awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": "export"}}


def _rclone_remote(remote: str, region: str) -> list[dict[str, str]]:
    """An rclone remote on S3 with the task role's credentials (the AWS SDK's container credentials); the
    buckets exist, so no CreateBucket is tried (nor granted)."""
    prefix = f"RCLONE_CONFIG_{remote.upper()}_"
    settings = (("TYPE", "s3"), ("PROVIDER", "AWS"), ("ENV_AUTH", "true"), ("REGION", region), ("NO_CHECK_BUCKET", "true"))
    return [{"name": f"{prefix}{k}", "value": v} for k, v in settings]


def container_definitions(a: Arns, x: BackupExportConfig, db_host: str, db_port: str, master_secret_arn: str) -> list[dict[str, Any]]:
    """The export task's three containers, in order (see the module docstring). Pure."""
    hardened = {"readonlyRootFilesystem": True, "linuxParameters": {"capabilities": {"drop": ["ALL"]}, "initProcessEnabled": True}}
    scratch = [{"sourceVolume": "work", "containerPath": WORK, "readOnly": False}]
    common = [{"name": "HOME", "value": WORK}, {"name": "TMPDIR", "value": WORK}, {"name": "RCLONE_CONFIG", "value": "/dev/null"}]
    # ECS's `command` replaces only the image's CMD: the entry point is set too (the rclone image's is
    # `rclone`), so each container runs `sh -c <script> <name> <step>` whatever its image
    shell = {"entryPoint": ["/bin/sh", "-c"]}
    store = lambda name: [script("store.sh"), "store.sh", name]  # noqa: E731
    pull = {
        "name": PULL,
        "image": x.rcloneImage,
        "essential": False,
        "command": store("pull-files"),
        "environment": sorted([*common, {"name": "FILES_DIR", "value": FILES_DIR}, {"name": "FILES_REMOTE", "value": f"files:{a.bucket_name}"}, *_rclone_remote("files", a.region)], key=lambda e: e["name"]),
        "mountPoints": scratch,
        "logConfiguration": _logs(a.log_group_name, a.region),
        **shell,
        **hardened,
    }
    backup = {
        "name": BACKUP,
        "image": x.postgresImage,
        "essential": False,
        "command": [script("backup.sh"), "backup.sh"],
        "dependsOn": [{"containerName": PULL, "condition": "SUCCESS"}],
        "environment": sorted(
            [
                *[e for e in common if e["name"] != "RCLONE_CONFIG"],
                {"name": "BACKUP_DIR", "value": ARCHIVES_DIR},
                {"name": "FILES_DIR", "value": FILES_DIR},
                {"name": "FILES_LAYOUT", "value": "keys"},
                # the user and password come from the master secret (PGUSER, PGPASSWORD: libpq reads them)
                {"name": "DATABASE_URL", "value": f"postgresql://{db_host}:{db_port}/{DB_NAME}?sslmode=require"},
            ],
            key=lambda e: e["name"],
        ),
        "secrets": [{"name": "PGPASSWORD", "valueFrom": value_from(master_secret_arn, "password")}, {"name": "PGUSER", "valueFrom": value_from(master_secret_arn, "username")}],
        "mountPoints": scratch,
        "logConfiguration": _logs(a.log_group_name, a.region),
        **shell,
        **hardened,
    }
    put = {
        "name": PUT,
        "image": x.rcloneImage,
        "essential": True,
        "command": store("put"),
        "dependsOn": [{"containerName": BACKUP, "condition": "SUCCESS"}],
        "environment": sorted([*common, {"name": "BACKUP_DIR", "value": ARCHIVES_DIR}, {"name": "BACKUP_REMOTE", "value": f"store:{a.exports_bucket_name}"}, *_rclone_remote("store", a.region)], key=lambda e: e["name"]),
        "mountPoints": scratch,
        "logConfiguration": _logs(a.log_group_name, a.region),
        **shell,
        **hardened,
    }
    return [pull, backup, put]


def definition(a: Arns, task_definition_arn: str, security_group: str) -> dict[str, Any]:
    """The state machine: unless another execution of it runs, one run of exactly `task_definition_arn` (a
    revision) in the environment's cluster, subnets and `security_group`, its id the execution's name;
    waits for the task to stop. Pure."""
    return {
        "Comment": f"{a.naming.prefix}: a backup taken now for `mxinfra backup download`",
        "StartAt": "OneAtATime",
        "States": {
            # Each export is a pg_dump against the database that holds its tables' locks for its whole run:
            # IAM cannot count a caller's executions, so the machine refuses to run beside another.
            "OneAtATime": {
                "Type": "Task",
                "Resource": LIST_EXECUTIONS.format(partition=a.partition),
                "Parameters": {"StateMachineArn": a.export_machine_arn, "StatusFilter": "RUNNING", "MaxResults": 2},
                "ResultSelector": {"running.$": "States.ArrayLength($.Executions)"},
                "ResultPath": "$.guard",
                "Next": "Alone",
            },
            "Alone": {"Type": "Choice", "Choices": [{"Variable": "$.guard.running", "NumericGreaterThan": 1, "Next": "Busy"}], "Default": "Export"},
            "Busy": {"Type": "Fail", "Error": "mxinfra.ExportRunning", "Cause": "another export of this environment is running: one at a time, run it again once that one ended"},
            "Export": {
                "Type": "Task",
                "Resource": RUN_TASK_SYNC.format(partition=a.partition),
                "Parameters": {
                    "Cluster": a.cluster_arn,
                    "TaskDefinition": task_definition_arn,
                    "LaunchType": "FARGATE",
                    "PlatformVersion": "LATEST",
                    # the environment's tags on the task, given in the request: ECS authorises them as TagResource
                    # (ecs:CreateAction RunTask, aws:RequestTag), and DescribeTasks and StopTask then match them
                    "Tags": [{"Key": k, "Value": v} for k, v in sorted(policies.environment_tags(a).items())],
                    "NetworkConfiguration": {
                        "AwsvpcConfiguration": {"Subnets": list(a.subnets), "SecurityGroups": [security_group], "AssignPublicIp": "ENABLED" if a.assign_public_ip else "DISABLED"}
                    },
                    # the execution's name is the archive's id: the only input the caller gives
                    "Overrides": {"ContainerOverrides": [{"Name": BACKUP, "Environment": [{"Name": "BACKUP_NOW", "Value.$": "$$.Execution.Name"}]}]},
                },
                "TimeoutSeconds": EXPORT_TIMEOUT_SECONDS,
                "End": True,
            }
        },
    }


def _bucket(ctx: EnvironmentContext, a: Arns) -> aws.s3.Bucket:
    """The exports bucket: private, encrypted, TLS only, written by the export task and read by `backups`
    alone (policies.exports_bucket_policy); archives expire after EXPIRE_DAYS. It holds a
    day's copies of the environment's data: on production it and its settings are protected like the
    file bucket (a partial destroy must not leave it without its public-access block)."""
    n = ctx.naming
    bucket = aws.s3.Bucket(n.logical("exports"), bucket=a.exports_bucket_name, force_destroy=True, tags=dict(ctx.tags), opts=ctx.opts(protect_data=True))
    aws.s3.BucketPublicAccessBlock(
        n.logical("exports-public-access"), bucket=bucket.id, block_public_acls=True, block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True, opts=ctx.opts(protect_data=True)
    )
    aws.s3.BucketOwnershipControls(n.logical("exports-ownership"), bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=ctx.opts(protect_data=True))
    aws.s3.BucketServerSideEncryptionConfiguration(
        n.logical("exports-encryption"), bucket=bucket.id, rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}, "bucket_key_enabled": True}], opts=ctx.opts(protect_data=True)
    )
    aws.s3.BucketLifecycleConfiguration(
        n.logical("exports-lifecycle"),
        bucket=bucket.id,
        rules=[{"id": "expire-exports", "status": "Enabled", "filter": {}, "expiration": {"days": EXPIRE_DAYS}, "abort_incomplete_multipart_upload": {"days_after_initiation": EXPIRE_DAYS}}],
        opts=ctx.opts(protect_data=True),
    )
    aws.s3.BucketPolicy(n.logical("exports-policy"), bucket=bucket.id, policy=json.dumps(policies.exports_bucket_policy(a), sort_keys=True), opts=ctx.opts(protect_data=True))
    return bucket


@dataclass
class Export:
    """The export's state machine and bucket."""

    machine: aws.sfn.StateMachine
    bucket: aws.s3.Bucket


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
    bucket = _bucket(ctx, a)
    group = export_group(ctx, cfg, sgs.database)
    task_role = service_role(ctx, cfg, a, "export-task", policies.ecs_tasks_trust(a), policies.export_task_policy(a), "The export task: read this environment's files, write archives into its exports bucket")
    execution_role = service_role(
        ctx, cfg, a, "export-execution", policies.ecs_tasks_trust(a), policies.export_execution_policy(a, [x.postgresImage, x.rcloneImage]), "ECS: pull the export task's images, write its logs, read the database's secret"
    )
    host_port = db.endpoint.apply(lambda e: e.rsplit(":", 1) if ":" in e else [e, "5432"])
    containers = pulumi.Output.all(host_port, db.master_secret_arn).apply(lambda v: json.dumps(container_definitions(a, x, v[0][0], v[0][1], v[1]), sort_keys=True))
    task = aws.ecs.TaskDefinition(
        n.logical("export"),
        family=a.export_name,
        requires_compatibilities=["FARGATE"],
        network_mode="awsvpc",
        cpu=str(CPU),
        memory=str(MEMORY_MB),
        runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": cfg.cpuArchitecture},
        ephemeral_storage={"size_in_gib": x.storageGb},
        volumes=[{"name": "work"}],
        task_role_arn=task_role.arn,
        execution_role_arn=execution_role.arn,
        container_definitions=containers,
        tags=dict(ctx.tags),
        opts=ctx.opts(depends_on=[bucket]),
    )
    runner = service_role(ctx, cfg, a, "export-runner", service_trust(a, "states", a.export_machine_arn), policies.export_runner_policy(a), "Step Functions: run this environment's export task, nothing else")
    machine = aws.sfn.StateMachine(
        n.logical("export-machine"),
        name=a.export_name,
        role_arn=runner.arn,
        definition=pulumi.Output.all(task.arn, group.id).apply(lambda v: json.dumps(definition(a, v[0], v[1]), sort_keys=True)),
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )
    return Export(machine, bucket)

