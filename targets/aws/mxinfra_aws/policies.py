"""IAM policy documents, built by pure functions from names and ARNs known before anything exists.

Every physical name the target uses is set explicitly, so every ARN can be computed from the account,
region and names: the same documents are deployed, rendered by `mxinfra plan --out` and linted in tests.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import TYPE_CHECKING, Any

from mxinfra.errors import UserError
from mxinfra.naming import Naming

if TYPE_CHECKING:
    from .database import Restored

VERSION = "2012-10-17"
ROLE_PATH = "/mxinfra/"
_IAM_NAME = "a-zA-Z0-9+=,.@_-"
# Use with fullmatch: `[0-9]`, not `\d` (other scripts' digits); no `$` (it accepts a trailing newline).
PRINCIPAL = re.compile(r"[0-9]{12}|arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:(root|(role|user)/[A-Za-z0-9+=,.@_/-]+)")
# An ECR registry host; the repository comes from the core's image-reference grammar (no wildcards).
ECR_REGISTRY = re.compile(r"(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z]{2}(-[a-z]+)+-[0-9])\.amazonaws\.com(\.cn)?")
# ECR repository names (and at most 256 characters): lowercase path components, no wildcard.
ECR_REPOSITORY = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")

Document = dict[str, Any]
RDS_IDENTIFIER_MAX = 63


def partition_of(region: str) -> str:
    """The ARN partition of `region`."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def principal_arn(principal: str, partition: str = "aws") -> str:
    """An IAM principal for a trust policy: ARNs as given, a bare account id as its root."""
    return f"arn:{partition}:iam::{principal}:root" if principal.isdigit() else principal


def restored_identifier(db_identifier: str, backup_id: str, kind: str = "") -> str:
    """The new instance a restore creates: `<db>-<id>` in RDS's lowercase, or `<db>-<digest>` where that
    is longer than RDS allows. Never the running instance's identifier. `kind` goes between the two
    (`<db>-<kind>-<id>`): the instance a stack config key puts in service (database.py) is named apart
    from the one `mxinfra backup restore` makes of the same backup, so the two never collide."""
    infix = f"{kind}-" if kind else ""
    name = f"{db_identifier}-{infix}{backup_id.lower()}"
    if len(name) > RDS_IDENTIFIER_MAX:
        room = RDS_IDENTIFIER_MAX - len(db_identifier) - 1 - len(infix)
        if room < 4:
            raise UserError(f"the database {db_identifier} has too long an identifier to name a restored instance {db_identifier}-* within RDS's {RDS_IDENTIFIER_MAX} characters: restore it with the AWS CLI (targets/aws/README.md)")
        name = f"{db_identifier}-{infix}{sha256((infix + backup_id).encode()).hexdigest()[:room]}"
    return name



@dataclass(frozen=True)
class Arns:
    """The names and ARNs of one environment's resources, derived deterministically."""

    region: str
    account: str
    cluster: str
    naming: Naming
    postgres_major: str = "16"
    # Whether the environment runs a follower service (instances >= 2) next to its leader service.
    followers: bool = False
    # The services' network configuration, which the deploy role may not change.
    subnets: tuple[str, ...] = ()
    assign_public_ip: bool = False
    # Whether the environment's backups are on (`backups.enabled`): its AWS Backup vault, plan and role exist.
    aws_backup: bool = True
    # Whether the stack declares the export task behind `mxinfra backup download` (`backupExport`).
    export: bool = False
    # Whether the environment is production: its restore machine takes a backup before it replaces anything.
    production: bool = False
    # The restored instance the app uses instead of its own (`database.fromBackup`): decided once, by
    # database.in_service, where the Arns are made; None: the environment's instance serves it.
    restored: Restored | None = None

    @property
    def partition(self) -> str:
        """The ARN partition."""
        return partition_of(self.region)

    def _arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:{self.partition}:{service}:{self.region if region else ''}:{self.account}:{resource}"

    # names -----------------------------------------------------------------------------------------
    @property
    def service_name(self) -> str:
        """The leader's ECS service (and task family) name."""
        return self.naming.physical()

    @property
    def follower_service_name(self) -> str:
        """The followers' ECS service (and task family) name."""
        return self.naming.physical("follower")

    @property
    def service_names(self) -> tuple[str, ...]:
        """The ECS services (and task families) the environment runs: the leader's, then the followers' if any."""
        return (self.service_name, self.follower_service_name) if self.followers else (self.service_name,)

    @property
    def log_group_name(self) -> str:
        """The CloudWatch log group of the runtime."""
        return f"/mxinfra/{self.naming.app}/{self.naming.environment}"

    @property
    def secret_name(self) -> str:
        """The Secrets Manager secret holding the runtime's secret values."""
        return f"mxinfra/{self.naming.app}/{self.naming.environment}/runtime"

    @property
    def bucket_name(self) -> str:
        """The file-storage bucket (globally unique: account and region in the name)."""
        return self.naming.physical(f"files-{self.account}-{self.region}", max_len=63)

    @property
    def db_identifier(self) -> str:
        """The RDS instance identifier (also its subnet group's name)."""
        return self.naming.physical("db", max_len=60)

    @property
    def topic_name(self) -> str:
        """The SNS topic alerts go to."""
        return self.naming.physical("alerts", max_len=256)

    @property
    def final_snapshot_prefix(self) -> str:
        """Final snapshots are `<db>-final-<random hex>`: a new suffix per instance, so a second destroy does not collide."""
        return f"{self.db_identifier}-final"

    @property
    def alarm_names(self) -> list[str]:
        """The running-tasks alarms: the leader's, then the followers' if any."""
        return [f"{self.naming.prefix}-running-tasks"] + ([f"{self.naming.prefix}-follower-running-tasks"] if self.followers else [])

    @property
    def state_machine_name(self) -> str:
        """The Step Functions state machine that redeploys the services after a password rotation."""
        return self.naming.physical("redeploy", max_len=80, charset="a-zA-Z0-9_-")

    @property
    def rotation_rule_name(self) -> str:
        """The EventBridge rule on the RDS secret's successful rotation."""
        return self.naming.physical("db-rotated", max_len=64, charset="a-zA-Z0-9_.-")

    @property
    def backup_vault_name(self) -> str:
        """The AWS Backup vault (also the plan's and the selection's name)."""
        return self.naming.physical("backups", max_len=50, charset="a-zA-Z0-9_-")

    @property
    def export_name(self) -> str:
        """The export task's family and its state machine (`mxinfra backup download` starts it)."""
        return self.naming.physical("export", max_len=80, charset="a-zA-Z0-9_-")

    @property
    def exports_bucket_name(self) -> str:
        """The bucket the export task writes archives into, for a day (account and region in the name)."""
        return self.naming.physical(f"exports-{self.account}-{self.region}", max_len=63)

    @property
    def restore_name(self) -> str:
        """The restore task's family and its state machine (`mxinfra backup restore --archive` starts it)."""
        return self.naming.physical("restore", max_len=80, charset="a-zA-Z0-9_-")

    @property
    def backs_up_first(self) -> bool:
        """Whether the environment's restores back it up first, server-side: production with backups on. Its
        archive restore machine then takes the backup, and its files go back only through the files-restore
        machine (files_restore.py), which exists only then."""
        return self.production and self.aws_backup

    @property
    def files_restore_name(self) -> str:
        """Production's files-restore state machine (`mxinfra backup restore --id` starts it)."""
        return self.naming.physical("files-restore", max_len=80, charset="a-zA-Z0-9_-")

    @property
    def imports_bucket_name(self) -> str:
        """The bucket `restore --archive` uploads an archive into for the restore task, for a day."""
        return self.naming.physical(f"imports-{self.account}-{self.region}", max_len=63)

    def role_name(self, kind: str) -> str:
        """The IAM role name for `kind` (task, execution, or a permission)."""
        return self.naming.physical(kind, max_len=64, charset=_IAM_NAME)

    # ARNs ------------------------------------------------------------------------------------------
    @property
    def cluster_arn(self) -> str:
        """The ECS cluster."""
        return self._arn("ecs", f"cluster/{self.cluster}")

    def _service_arn(self, name: str) -> str:
        return self._arn("ecs", f"service/{self.cluster}/{name}")

    def _task_definition_arn(self, family: str) -> str:
        return self._arn("ecs", f"task-definition/{family}:*")

    @property
    def service_arn(self) -> str:
        """The leader's ECS service (long ARN format, which includes the cluster)."""
        return self._service_arn(self.service_name)

    @property
    def follower_service_arn(self) -> str:
        """The followers' ECS service."""
        return self._service_arn(self.follower_service_name)

    @property
    def service_arns(self) -> list[str]:
        """Every ECS service of the environment (the follower's only when it runs one)."""
        return [self._service_arn(n) for n in self.service_names]

    @property
    def task_definition_arn(self) -> str:
        """Every revision of the leader's task family."""
        return self._task_definition_arn(self.service_name)

    @property
    def task_definition_arns(self) -> list[str]:
        """Every revision of every task family of the environment."""
        return [self._task_definition_arn(n) for n in self.service_names]

    @property
    def log_group_arn(self) -> str:
        """The log group itself."""
        return self._arn("logs", f"log-group:{self.log_group_name}")

    @property
    def log_streams_arn(self) -> str:
        """Every stream of the log group."""
        return self._arn("logs", f"log-group:{self.log_group_name}:log-stream:*")

    @property
    def secret_arn(self) -> str:
        """The runtime secret: Secrets Manager appends six random characters to the name."""
        return self._arn("secretsmanager", f"secret:{self.secret_name}-??????")

    @property
    def rds_secret_arns(self) -> str:
        """Secrets RDS manages (named `rds!db-<uuid>`): narrowed to this instance by a tag condition."""
        return self._arn("secretsmanager", "secret:rds!db-*")

    @property
    def db_arn(self) -> str:
        """The RDS instance."""
        return self._arn("rds", f"db:{self.db_identifier}")

    @property
    def serving_db_identifier(self) -> str:
        """The instance the app uses: the environment's, or the restored one `database.fromBackup` put in service."""
        return self.restored.identifier if self.restored is not None else self.db_identifier

    @property
    def serving_db_arn(self) -> str:
        """The instance the app uses (its endpoint and master secret are the runtime's)."""
        return self._arn("rds", f"db:{self.serving_db_identifier}")

    @property
    def db_arns(self) -> list[str]:
        """The environment's instance and, while one serves the app, the restored one."""
        return list(dict.fromkeys([self.db_arn, self.serving_db_arn]))

    @property
    def tasks_arn(self) -> str:
        """Every task of the cluster (narrowed to the environment's by tag conditions)."""
        return self._arn("ecs", f"task/{self.cluster}/*")

    @property
    def container_instances_arn(self) -> str:
        """Every container instance of the cluster (ListTasks' resource type)."""
        return self._arn("ecs", f"container-instance/{self.cluster}/*")

    @property
    def snapshots_arn(self) -> str:
        """Manual snapshots named after the instance (`<db>-...`); tag conditions keep other environments out."""
        return self._arn("rds", f"snapshot:{self.db_identifier}-*")

    @property
    def final_snapshots_arn(self) -> str:
        """The final snapshots (`<db>-final-<hex>`, and `<db>-final` of older versions)."""
        return self._arn("rds", f"snapshot:{self.final_snapshot_prefix}*")

    @property
    def alarm_arns(self) -> list[str]:
        """The running-tasks alarms, exactly."""
        return [self._arn("cloudwatch", f"alarm:{n}") for n in self.alarm_names]

    @property
    def state_machine_arn(self) -> str:
        """The redeploy state machine."""
        return self._arn("states", f"stateMachine:{self.state_machine_name}")

    @property
    def rotation_rule_arn(self) -> str:
        """The EventBridge rule (default bus)."""
        return self._arn("events", f"rule/{self.rotation_rule_name}")

    @property
    def backup_vault_arn(self) -> str:
        """The AWS Backup vault."""
        return self._arn("backup", f"backup-vault:{self.backup_vault_name}")

    @property
    def backup_snapshots_arn(self) -> str:
        """The RDS snapshots AWS Backup takes (`awsbackup:job-<id>`, any vault's: tags tell the environment's)."""
        return self._arn("rds", "snapshot:awsbackup:job-*")

    @property
    def recovery_points_arns(self) -> list[str]:
        """AWS Backup recovery points of the account's RDS snapshots and of S3 (tags tell the environment's)."""
        return [self.backup_snapshots_arn, self.bucket_recovery_points_arn]

    @property
    def export_machine_arn(self) -> str:
        """The export state machine."""
        return self._arn("states", f"stateMachine:{self.export_name}")

    @property
    def export_executions_arn(self) -> str:
        """Every execution of the export state machine."""
        return self._arn("states", f"execution:{self.export_name}:*")

    @property
    def export_task_definition_arn(self) -> str:
        """Every revision of the export task's family."""
        return self._task_definition_arn(self.export_name)

    @property
    def exports_bucket_arn(self) -> str:
        """The exports bucket."""
        return f"arn:{self.partition}:s3:::{self.exports_bucket_name}"

    @property
    def restore_machine_arn(self) -> str:
        """The restore state machine."""
        return self._arn("states", f"stateMachine:{self.restore_name}")

    @property
    def restore_executions_arn(self) -> str:
        """Every execution of the restore state machine."""
        return self._arn("states", f"execution:{self.restore_name}:*")

    @property
    def restore_task_definition_arn(self) -> str:
        """Every revision of the restore task's family."""
        return self._task_definition_arn(self.restore_name)

    @property
    def files_restore_machine_arn(self) -> str:
        """Production's files-restore state machine."""
        return self._arn("states", f"stateMachine:{self.files_restore_name}")

    @property
    def files_restore_executions_arn(self) -> str:
        """Every execution of the files-restore state machine."""
        return self._arn("states", f"execution:{self.files_restore_name}:*")

    @property
    def bucket_recovery_points_arn(self) -> str:
        """AWS Backup's own recovery points (S3's: the account's RDS snapshots have ARNs of their own)."""
        return self._arn("backup", "recovery-point:*")

    @property
    def imports_bucket_arn(self) -> str:
        """The imports bucket."""
        return f"arn:{self.partition}:s3:::{self.imports_bucket_name}"

    def role_arn(self, kind: str) -> str:
        """The IAM role of `kind`."""
        return self._arn("iam", f"role{ROLE_PATH}{self.role_name(kind)}", region=False)

    @property
    def bucket_arn(self) -> str:
        """The bucket."""
        return f"arn:{self.partition}:s3:::{self.bucket_name}"

    @property
    def topic_arn(self) -> str:
        """The alerts topic."""
        return self._arn("sns", self.topic_name)


def _doc(*statements: Document) -> Document:
    return {"Version": VERSION, "Statement": list(statements)}


def _allow(sid: str, actions: Sequence[str], resources: str | Sequence[str], condition: Document | None = None) -> Document:
    stmt: Document = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources if isinstance(resources, str) else list(resources)}
    if condition:
        stmt["Condition"] = condition
    return stmt


# --- the runtime's own roles ------------------------------------------------------------------------


def ecs_tasks_trust(a: Arns) -> Document:
    """Trust of the task and execution roles: ECS tasks of this account only (confused-deputy guard)."""
    return _doc(
        {
            "Sid": "EcsTasks",
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "ArnLike": {"aws:SourceArn": f"arn:{a.partition}:ecs:{a.region}:{a.account}:*"},
                "StringEquals": {"aws:SourceAccount": a.account},
            },
        }
    )


def ecr_repository_arn(image: str, partition: str = "aws") -> str | None:
    """The ECR repository an image URI points at, or None for other registries (and for anything that is
    not a valid reference: config validation refuses those, so no wildcard ever reaches a policy)."""
    from mxinfra.artifacts import parse_image

    ref = parse_image(image)
    if ref is None or ref.registry is None:
        return None
    m = ECR_REGISTRY.fullmatch(ref.registry)
    if not m or not ECR_REPOSITORY.fullmatch(ref.repository) or len(ref.repository) > 256:
        return None
    return f"arn:{partition}:ecr:{m['region']}:{m['account']}:repository/{ref.repository}"


def execution_policy(a: Arns, image: str) -> Document:
    """What ECS needs to start the task: pull its image, write its log group, read exactly its secrets."""
    statements = []
    repo = ecr_repository_arn(image, a.partition)
    if repo is not None:
        # GetAuthorizationToken has no resource type: AWS only accepts "*" for it.
        statements.append(_allow("EcrLogin", ["ecr:GetAuthorizationToken"], "*"))
        statements.append(_allow("PullImage", ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], repo))
    statements.append(_allow("WriteLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], a.log_streams_arn))
    statements.append(_allow("RuntimeSecret", ["secretsmanager:GetSecretValue"], a.secret_arn))
    # RDS names its managed secret rds!db-<uuid>; the tag it sets pins the statement to the instance the
    # app uses (a restored one put in service has a secret of its own).
    statements.append(
        _allow(
            "DatabaseSecret",
            ["secretsmanager:GetSecretValue"],
            a.rds_secret_arns,
            {"StringEquals": {"secretsmanager:ResourceTag/aws:rds:primaryDBInstanceArn": a.serving_db_arn}},
        )
    )
    return _doc(*statements)


def task_policy(a: Arns) -> Document:
    """What the running app may do: use its own bucket and nothing else."""
    return _doc(
        _allow("ListFiles", ["s3:GetBucketLocation", "s3:ListBucket"], a.bucket_arn),
        _allow(
            "ReadWriteFiles",
            ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"],
            f"{a.bucket_arn}/*",
        ),
    )


def bucket_policy(a: Arns, bucket_arn: str | None = None) -> Document:
    """A bucket's own policy (the files bucket's unless `bucket_arn`): refuse every request that does not use TLS."""
    arn = bucket_arn or a.bucket_arn
    return _doc(
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )


# --- the export task behind `mxinfra backup download` (export.py) -----------------------------------


def _principal_arns(a: Arns, kind: str) -> list[str]:
    """A role of the environment as aws:PrincipalArn may name it: with its path and without."""
    return [a.role_arn(kind), a._arn("iam", f"role/{a.role_name(kind)}", region=False)]


def transfer_bucket_policy(a: Arns, bucket_arn: str, writer: str, reader: str) -> Document:
    """A transfer bucket's own policy (the exports and the imports bucket): TLS only; archives written only
    by the role `writer` and read only by the role `reader`, whatever object rights other identities of the
    account hold (a production dump must not be readable, nor an archive replaceable, by a CI role that may
    read and write every object). An identity that may change bucket policies is the platform's, outside
    this (as for every bucket)."""
    return _doc(
        *bucket_policy(a, bucket_arn)["Statement"],
        {
            "Sid": "OnlyTheWriterWrites",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/*",
            "Condition": {"StringNotEquals": {"aws:PrincipalArn": _principal_arns(a, writer)}},
        },
        {
            # GetObject*: a version's read (`?versionId=null` on an unversioned bucket) is GetObjectVersion
            "Sid": "OnlyTheReaderReads",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObject*",
            "Resource": f"{bucket_arn}/*",
            "Condition": {"StringNotEquals": {"aws:PrincipalArn": _principal_arns(a, reader)}},
        },
    )


def exports_bucket_policy(a: Arns) -> Document:
    """The exports bucket's policy: written by the export task, read by `backups` (`backup download`)."""
    return transfer_bucket_policy(a, a.exports_bucket_arn, "export-task", "backups")


def imports_bucket_policy(a: Arns) -> Document:
    """The imports bucket's policy: written by `backups` (`backup restore --archive`), read by the restore task."""
    return transfer_bucket_policy(a, a.imports_bucket_arn, "backups", "restore-task")


def export_task_policy(a: Arns) -> Document:
    """The export task: read the environment's files, write archives into the exports bucket; nothing else
    (no read of an export, no delete: an archive, once written, is only the backups role's to fetch)."""
    mine = {"StringEquals": {"s3:ResourceAccount": a.account}}  # bucket names are global: the account's buckets only
    return _doc(
        _allow("ListFiles", ["s3:ListBucket"], a.bucket_arn, mine),
        _allow("ReadFiles", ["s3:GetObject"], f"{a.bucket_arn}/*", mine),
        _allow("WriteExports", ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:PutObject"], f"{a.exports_bucket_arn}/*", mine),
    )


def export_execution_policy(a: Arns, images: Sequence[str]) -> Document:
    """What ECS needs to start the export and restore tasks: pull their two images, write their log streams
    (`export/...` and `restore/...` in the environment's log group), read the database's master secret
    (pg_dump and pg_restore sign in as the app does)."""
    statements = []
    repos = sorted({r for r in (ecr_repository_arn(i, a.partition) for i in images) if r is not None})
    if repos:
        statements.append(_allow("EcrLogin", ["ecr:GetAuthorizationToken"], "*"))
        statements.append(_allow("PullImages", ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], _one_or_all(repos)))
    streams = [a._arn("logs", f"log-group:{a.log_group_name}:log-stream:{task}/*") for task in ("export", "restore")]
    statements.append(_allow("WriteLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], streams))
    statements.append(
        _allow(
            "DatabaseSecret",
            ["secretsmanager:GetSecretValue"],
            a.rds_secret_arns,
            {"StringEquals": {"secretsmanager:ResourceTag/aws:rds:primaryDBInstanceArn": a.serving_db_arn}},
        )
    )
    return _doc(*statements)


# Step Functions' ecs:runTask.sync integration follows the task with this managed rule.
ECS_SYNC_RULE = "rule/StepFunctionsGetEventsForECSTaskRule"


def _runs_task(a: Arns, label: str, family_arn: str, task_role: str) -> list[Document]:
    """A state machine role's rights to run one task family (`label`: Export, Restore) in the environment's
    cluster through `ecs:runTask.sync`: run its revisions, tag, follow and stop the tasks it started, the
    integration's events rule, and pass exactly the task's role and the execution role."""
    return [
        _allow(f"Run{label}", ["ecs:RunTask"], family_arn, {"ArnEquals": {"ecs:cluster": a.cluster_arn}}),
        # The task is tagged as it starts (RunTask's Tags: the environment's), which ECS authorises as
        # TagResource on RunTask; the tasks it started are then this environment's only.
        _allow(f"Tag{label}", ["ecs:TagResource"], a.tasks_arn, {"StringEquals": {"ecs:CreateAction": "RunTask", **_environment_tags(a, "aws:RequestTag")}}),
        _allow(f"Follow{label}", ["ecs:DescribeTasks", "ecs:StopTask"], a.tasks_arn, {"StringEquals": _environment_tags(a)}),
        _allow("SyncRule", ["events:DescribeRule", "events:PutRule", "events:PutTargets"], a._arn("events", ECS_SYNC_RULE)),
        _allow(
            f"Pass{label}Roles",
            ["iam:PassRole"],
            [a.role_arn(task_role), a.role_arn("export-execution")],
            {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        ),
    ]


def export_runner_policy(a: Arns) -> Document:
    """The export state machine's role: count its own running executions (and the restore's), run the export
    task's revisions in the environment's cluster (and follow or stop them), passing exactly its two roles."""
    return _doc(
        # one export at a time, and never beside a restore: the machine first counts running executions
        _allow("CountExports", ["states:ListExecutions"], _counts(a, "export")),
        *_runs_task(a, "Export", a.export_task_definition_arn, "export-task"),
    )


def export_statements(a: Arns) -> list[Document]:
    """The backups permission's part of `mxinfra backup download`: start the export state machine (never
    ecs:RunTask itself, whose container overrides IAM cannot limit: a command of the caller's choosing with
    the database's password), follow its executions, fetch and remove the archives it wrote."""
    return [
        _allow("StartExport", ["states:StartExecution"], a.export_machine_arn),
        # IAM's reference lists an express execution's ARN for DescribeExecution too; the machine is STANDARD,
        # so that form names nothing, but it is the machine's own.
        _allow("FollowExport", ["states:DescribeExecution"], [a.export_executions_arn, a._arn("states", f"express:{a.export_name}:*:*")]),
        _allow("StopExport", ["states:StopExecution"], a.export_executions_arn),
        # ListBucket: a missing archive is then S3's 404, not a 403 that reads like a missing right
        _allow("ListExports", ["s3:ListBucket"], a.exports_bucket_arn, {"StringEquals": {"s3:ResourceAccount": a.account}}),
        _allow("FetchExports", ["s3:DeleteObject", "s3:GetObject"], f"{a.exports_bucket_arn}/*", {"StringEquals": {"s3:ResourceAccount": a.account}}),
    ]


# --- the restore task behind `mxinfra backup restore --archive` (export.py) -----------------------------


def restore_task_policy(a: Arns) -> Document:
    """The restore task: fetch the uploaded archive from the imports bucket, write the archive's files into
    the environment's file bucket; nothing else (no delete: a restore copies files back, never a sync)."""
    mine = {"StringEquals": {"s3:ResourceAccount": a.account}}
    return _doc(
        # store.sh fetch lists the imports first (a missing archive is a clear error, not a 403)
        _allow("ListImports", ["s3:ListBucket"], a.imports_bucket_arn, mine),
        _allow("ReadImports", ["s3:GetObject"], f"{a.imports_bucket_arn}/*", mine),
        # rclone copy lists the destination and compares each file before it writes
        _allow("ListFiles", ["s3:ListBucket"], a.bucket_arn, mine),
        _allow("WriteFiles", ["s3:AbortMultipartUpload", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"], f"{a.bucket_arn}/*", mine),
    )


def waits_for(a: Arns, machine: str) -> list[tuple[str, str]]:
    """The machines (ARN, label) whose running executions `machine` ("export", "restore", "files-restore")
    refuses to run beside, besides its own: each of the three writes or reads the environment's data, and each
    counts only machines that exist in the environment (a count of one never deployed fails). Its definition
    counts them (export.one_at_a_time); its runner role may list exactly them."""
    files = [(a.files_restore_machine_arn, "FilesRestore")] if a.backs_up_first else []
    if machine == "export":
        return [(a.restore_machine_arn, "Restore"), *files]
    if machine == "restore":
        return [(a.export_machine_arn, "Export"), *files]
    return [(a.restore_machine_arn, "Restore"), (a.export_machine_arn, "Export")] if a.export else []


def _counts(a: Arns, machine: str) -> list[str]:
    """What a machine's runner lists: its own executions and those of the machines it waits for (IAM's
    reference also lists a map run's ARN for ListExecutions; the machines have none, but the form is theirs)."""
    name, arn = {
        "export": (a.export_name, a.export_machine_arn),
        "restore": (a.restore_name, a.restore_machine_arn),
        "files-restore": (a.files_restore_name, a.files_restore_machine_arn),
    }[machine]
    return [arn, a._arn("states", f"mapRun:{name}/*:*"), *(other for other, _ in waits_for(a, machine))]


def _backup_first_statements(a: Arns) -> list[Document]:
    """A production machine's on-demand backup of the database and the bucket into the vault, taken as the
    environment's backup role, followed until it completed (export.backup_first)."""
    return [
        # StartBackupJob is authorised on the vault alone; the backup role's bounds decide what it reaches
        _allow("BackUpFirst", ["backup:StartBackupJob"], a.backup_vault_arn),
        # jobs have no resource type: AWS only accepts "*" (job metadata of the account, no data)
        _allow("FollowBackupFirst", ["backup:DescribeBackupJob"], "*"),
        _pass_backup_role(a),
    ]


def files_restore_runner_policy(a: Arns) -> Document:
    """Production's files-restore machine's role: back up the database and the bucket first; read a recovery
    point of the environment's (its tags) and restore it, as the backup role, whose bounds reach only the
    environment's bucket (backups.scope_policy). Nothing else."""
    tags = _environment_tags(a)
    return _doc(
        # one at a time, and never beside an archive restore or a download's export
        _allow("CountRestores", ["states:ListExecutions"], _counts(a, "files-restore")),
        *_backup_first_statements(a),
        # following the restore job it started (no resource type: AWS only accepts "*"; job metadata, no data)
        _allow("FollowRestore", ["backup:DescribeRestoreJob"], "*"),
        _allow("RestoreFiles", ["backup:DescribeRecoveryPoint", "backup:GetRecoveryPointRestoreMetadata", "backup:StartRestoreJob"], a.bucket_recovery_points_arn, {"StringEquals": tags}),
        *_only_this_environments_points(a, a.bucket_recovery_points_arn),
    )


def restore_runner_policy(a: Arns) -> Document:
    """The restore state machine's role: count its own running executions (and the export's); on production,
    back up the database and the bucket first (an on-demand backup into the vault, as the environment's
    backup role); read, stop and start again the environment's services (their desired counts only: the
    definition passes nothing else); run the restore task's revisions in the environment's cluster, passing
    exactly its two roles."""
    return _doc(
        *(_backup_first_statements(a) if a.backs_up_first else []),
        # one at a time, and never beside a download's export
        _allow("CountRestores", ["states:ListExecutions"], _counts(a, "restore")),
        _allow("ReadServices", ["ecs:DescribeServices"], _one_or_all(a.service_arns)),
        # the definition passes a desired count alone; the deploy role's conditions hold all the same
        _allow("StopAndStartServices", ["ecs:UpdateService"], _one_or_all(a.service_arns), _service_update(a)),
        # the mark that keeps the deploy role from starting them again mid-restore: that tag, nothing else
        _allow("MarkServices", ["ecs:TagResource"], _one_or_all(a.service_arns), {"ForAllValues:StringEquals": {"aws:TagKeys": [RESTORING_TAG]}}),
        _allow("UnmarkServices", ["ecs:UntagResource"], _one_or_all(a.service_arns), {"ForAllValues:StringEquals": {"aws:TagKeys": [RESTORING_TAG]}}),
        *_runs_task(a, "Restore", a.restore_task_definition_arn, "restore-task"),
    )


def restore_statements(a: Arns) -> list[Document]:
    """The backups permission's part of `mxinfra backup restore --archive`: upload the archive into the
    imports bucket, start the restore state machine (never ecs:RunTask: see export_statements) and follow
    it. No StopExecution: a restore stopped half-way would leave the services stopped; it runs to its end,
    which starts them again."""
    mine = {"StringEquals": {"s3:ResourceAccount": a.account}}
    return [
        _allow("StartRestore", ["states:StartExecution"], a.restore_machine_arn),
        _allow("FollowRestore", ["states:DescribeExecution"], [a.restore_executions_arn, a._arn("states", f"express:{a.restore_name}:*:*")]),
        # on production: which backup the machine took first is in the execution's history (export.BACKED_UP)
        # (and whether the deployed machine does: its definition)
        *([_allow("ReadRestoreHistory", ["states:GetExecutionHistory"], a.restore_executions_arn), _allow("ReadRestoreMachine", ["states:DescribeStateMachine"], a.restore_machine_arn)] if a.production else []),
        _allow("UploadImports", ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:ListMultipartUploadParts", "s3:PutObject"], f"{a.imports_bucket_arn}/*", mine),
    ]


# --- people's roles: one per environment and permission ---------------------------------------------


# IAM checks the MFA's age only when the role is assumed, so one MFA prompt lasts its age at assume time
# plus the session: the two together stay within the 8 hours a production role may last (issue 19, F21).
MFA_TOTAL_SECONDS = 8 * 3600
MFA_SESSION_MAX = 4 * 3600


def mfa_session(max_session_seconds: int | None) -> tuple[int, int]:
    """(role session seconds, greatest MFA age at assume time) of a role that requires MFA: their sum is 8 hours."""
    session = min(max_session_seconds or MFA_TOTAL_SECONDS, MFA_SESSION_MAX)
    return session, MFA_TOTAL_SECONDS - session


def access_trust(principals: Sequence[str], mfa_required: bool, max_session_seconds: int | None, partition: str = "aws") -> Document:
    """Trust of an access role: the configured principals, with MFA (and its age) when required."""
    stmt: Document = {
        "Sid": "Principals",
        "Effect": "Allow",
        "Principal": {"AWS": sorted(principal_arn(p, partition) for p in principals)},
        "Action": "sts:AssumeRole",
    }
    if mfa_required:
        stmt["Condition"] = {
            "Bool": {"aws:MultiFactorAuthPresent": "true"},
            "NumericLessThanEquals": {"aws:MultiFactorAuthAge": str(mfa_session(max_session_seconds)[1])},
        }
    return _doc(stmt)


def _logs_read(a: Arns) -> Document:
    return _allow("ReadLogs", ["logs:DescribeLogStreams", "logs:FilterLogEvents", "logs:GetLogEvents"], [a.log_group_arn, a.log_streams_arn])


def _one_or_all(resources: Sequence[str]) -> str | list[str]:
    # A single resource stays a string, so a single-instance environment's documents read as before.
    return resources[0] if len(resources) == 1 else list(resources)


def _service_read(a: Arns) -> Document:
    return _allow("ServiceState", ["ecs:DescribeServices"], _one_or_all(a.service_arns))


def environment_tags(a: Arns) -> dict[str, str]:
    """The tags that tell the environment's resources (and the export's tasks) apart, as the conditions read them."""
    return {"mxinfra:app": a.naming.app, "mxinfra:environment": a.naming.environment}


def _environment_tags(a: Arns, prefix: str = "aws:ResourceTag") -> Document:
    return {f"{prefix}/{k}": v for k, v in environment_tags(a).items()}


def _service_update(a: Arns) -> Document:
    """The conditions on every ecs:UpdateService of the environment's services: its own task families, no
    ECS Exec, its public-IP setting and subnets."""
    update: Document = {
        "ArnLikeIfExists": {"ecs:task-definition": _one_or_all(a.task_definition_arns)},
        "StringEqualsIfExists": {"ecs:enable-execute-command": "false"},
        "BoolIfExists": {"ecs:auto-assign-public-ip": "true" if a.assign_public_ip else "false"},
    }
    if a.subnets:
        update["ForAllValues:StringEquals"] = {"ecs:subnet": sorted(a.subnets)}
    return update


# The tag the restore machine puts on the environment's services while it restores (its execution's name):
# the deploy role's UpdateService needs it absent, so nobody starts the app again mid-restore.
RESTORING_TAG = "mxinfra:restoring"
# The tag the export and restore tasks carry (their state machines tag them as they start): a restore
# stopped half-way by a holder of deploy would leave the files half put back.
BACKUP_TASK_TAG = "mxinfra:backup-task"


def deploy_policy(a: Arns) -> Document:
    """Transport, start/stop and configuration: new task definitions of its families, its services, its roles.

    Deploy is inherently equivalent to reading the environment's secrets: it registers a task definition
    with an image of its choice and the execution role that reads them. The conditions keep it on this
    environment's task families, Fargate, the configured subnets and public-IP setting, and without ECS Exec.
    """
    return _doc(
        # never while the restore machine has them (its tag on them): it stopped them to replace the data
        _allow("UpdateService", ["ecs:UpdateService"], _one_or_all(a.service_arns), {**_service_update(a), "Null": {f"aws:ResourceTag/{RESTORING_TAG}": "true"}}),
        _allow("DescribeServices", ["ecs:DescribeServices"], _one_or_all(a.service_arns)),
        _allow("RegisterTaskDefinition", ["ecs:RegisterTaskDefinition"], _one_or_all(a.task_definition_arns), {"ForAllValues:StringEquals": {"ecs:compute-compatibility": "FARGATE"}}),
        # Tagging a new revision as it is registered (tag-on-create), nothing else.
        _allow("TagTaskDefinitions", ["ecs:TagResource"], _one_or_all(a.task_definition_arns), {"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}}),
        # DescribeTaskDefinition has no resource type: AWS only accepts "*". `pulumi up` needs it (the
        # provider reads every revision it registers); README says what it reads beyond the environment.
        _allow("ReadTaskDefinitions", ["ecs:DescribeTaskDefinition"], "*"),
        # `pulumi up` checks the VPC's tier tag and CIDR before anything is created (network.verified_vpc);
        # DescribeVpcs has no resource type either.
        _allow("CheckVpc", ["ec2:DescribeVpcs"], "*", {"StringEquals": {"ec2:Region": a.region}}),
        # ListTasks is authorised on the cluster's container instances, narrowed by the cluster key.
        _allow("ListTasks", ["ecs:ListTasks"], a.container_instances_arn, {"ArnEquals": {"ecs:cluster": a.cluster_arn}}),
        # Tasks carry their task definition's tags (propagateTags TASK_DEFINITION): only this environment's.
        # Described whatever they run (a DescribeTasks of a list that holds the export or restore task would
        # be refused whole otherwise; their overrides name the backup, no secret), stopped never when they are
        # the export or restore task (the backup task's tag their state machines give them)
        _allow("DescribeTasks", ["ecs:DescribeTasks"], a.tasks_arn, {"StringEquals": _environment_tags(a)}),
        _allow("StopTasks", ["ecs:StopTask"], a.tasks_arn, {"StringEquals": _environment_tags(a), "Null": {f"aws:ResourceTag/{BACKUP_TASK_TAG}": "true"}}),
        _allow(
            "PassRuntimeRoles",
            ["iam:PassRole"],
            [a.role_arn("task"), a.role_arn("execution")],
            {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        ),
        # `pulumi up` of a new instance count updates the running-tasks alarms' thresholds (exactly these).
        # The provider reads an alarm's tags back after PutMetricAlarm (read only).
        _allow("RunningTasksAlarms", ["cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:ListTagsForResource"], _one_or_all(a.alarm_arns)),
        _logs_read(a),
        # With a backup in service (database.fromBackup), `pulumi up` asks whether its instance exists before
        # anything else (backup_actions.restore_source): a read of that instance's description only.
        *([_allow("DescribeInstanceInService", ["rds:DescribeDBInstances"], a.serving_db_arn)] if a.restored is not None else []),
    )


def monitor_policy(a: Arns) -> Document:
    """Logs, metrics and service state."""
    return _doc(
        _logs_read(a),
        _service_read(a),
        # CloudWatch metric reads have no resource type: AWS only accepts "*".
        _allow("ReadMetrics", ["cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics"], "*"),
    )


def _pass_backup_role(a: Arns) -> Document:
    """Passing exactly the environment's backup role, to AWS Backup only (a job runs as it)."""
    return _allow("PassBackupRole", ["iam:PassRole"], a.role_arn("backup"), {"StringEquals": {"iam:PassedToService": "backup.amazonaws.com"}})


def aws_backup_statements(a: Arns) -> list[Document]:
    """The backups permission's AWS Backup part: an on-demand backup into the environment's vault and a
    restore of the environment's recovery points, both run as the environment's backup role (the only role
    it may pass), which reaches only the environment's database and bucket (backups.scope_policy).

    StartBackupJob is authorised on the vault alone (IAM has no key for the resource backed up: the role's
    bounds decide that). StartRestoreJob is authorised on the recovery point, whose ARN names no vault:
    its tags do (the plan tags every recovery point, and AWS Backup copies the database's and bucket's
    tags to on-demand ones).
    """
    tags = _environment_tags(a)
    # Production's bucket is restored into by its files-restore machine alone, which backs production up
    # first (files_restore.py): an S3 recovery point's restore goes into the bucket itself, and nothing in
    # StartRestoreJob's authorisation can require a backup before it. Its database's recovery points are
    # restored by the holder, always into a new instance (the backup role's bounds), never over production.
    restorable = a.backup_snapshots_arn if a.backs_up_first else a.recovery_points_arns
    return [
        _allow("BackupVault", ["backup:DescribeBackupVault", "backup:ListProtectedResourcesByBackupVault", "backup:ListRecoveryPointsByBackupVault", "backup:StartBackupJob"], a.backup_vault_arn),
        _allow("RecoveryPoints", ["backup:DescribeRecoveryPoint", "backup:GetRecoveryPointRestoreMetadata"], a.recovery_points_arns, {"StringEquals": tags}),
        _allow("RestoreRecoveryPoints", ["backup:StartRestoreJob"], restorable, {"StringEquals": tags}),
        *(
            [
                {"Sid": "BucketRestoresThroughTheMachine", "Effect": "Deny", "Action": ["backup:StartRestoreJob"], "Resource": a.bucket_recovery_points_arn},
                _allow("StartFilesRestore", ["states:StartExecution"], a.files_restore_machine_arn),
                # following it, and which backup it took first (its history: files_restore.BACKED_UP);
                # whether it is deployed (its definition). No StopExecution: a restore job it started runs on.
                _allow("FollowFilesRestore", ["states:DescribeExecution"], [a.files_restore_executions_arn, a._arn("states", f"express:{a.files_restore_name}:*:*")]),
                _allow("ReadFilesRestoreHistory", ["states:GetExecutionHistory"], a.files_restore_executions_arn),
                _allow("ReadFilesRestoreMachine", ["states:DescribeStateMachine"], a.files_restore_machine_arn),
            ]
            if a.backs_up_first
            else []
        ),
        # Following the jobs one started: these have no resource type, AWS only accepts "*" (job metadata of
        # the account: resource ARNs, times, states; no data).
        _allow("BackupJobs", ["backup:DescribeBackupJob", "backup:DescribeRestoreJob", "backup:ListBackupJobs", "backup:ListRestoreJobs"], "*"),
        _pass_backup_role(a),
        *_only_this_environments_points(a, a.recovery_points_arns),
    ]


def _only_this_environments_points(a: Arns, resources: str | list[str]) -> list[Document]:
    """A recovery point of another environment (or untagged) is never read or restored: one Deny per tag."""
    return [
        {
            "Sid": f"OnlyThis{label}RecoveryPoints",
            "Effect": "Deny",
            "Action": ["backup:DescribeRecoveryPoint", "backup:GetRecoveryPointRestoreMetadata", "backup:StartRestoreJob"],
            "Resource": resources,
            "Condition": {"StringNotEquals": {key: value}},
        }
        for label, (key, value) in zip(("App", "Environment"), _environment_tags(a).items())
    ]


def backups_policy(a: Arns) -> Document:
    """Snapshots of this environment's database, and restoring them (to a new instance named after it);
    with AWS Backup on, on-demand backups into its vault and restores of its recovery points.

    Names alone do not separate environments (`prod`'s `<db>-*` also matches `prod-db`'s instance and
    snapshots): existing snapshots are also matched by the environment's tags, which the instance copies
    to its snapshots (`copy_tags_to_snapshot`). The final snapshot can never be deleted with this role.
    """
    rds = f"arn:{a.partition}:rds:{a.region}:{a.account}"
    tags = _environment_tags(a)
    return _doc(
        _allow("DescribeInstance", ["rds:DescribeDBInstances"], _one_or_all(a.db_arns)),
        _allow("DescribeSnapshots", ["rds:DescribeDBSnapshots"], [*a.db_arns, a.snapshots_arn]),
        # The snapshot does not exist yet when it is authorised: its name is the only bound.
        _allow("Snapshot", ["rds:CreateDBSnapshot"], [*a.db_arns, a.snapshots_arn]),
        # On production a snapshot is a way back that only the platform removes (a pre-release snapshot, a
        # `database.fromBackup` source): the holder takes and restores, never deletes
        *([] if a.production else [_allow("DeleteSnapshot", ["rds:DeleteDBSnapshot"], a.snapshots_arn, {"StringEquals": tags})]),
        # A restore always creates a new instance: only ones named <identifier>-*, in the same subnet
        # group, with the default option and parameter groups the environment's instance uses.
        _allow(
            "Restore",
            ["rds:RestoreDBInstanceFromDBSnapshot", "rds:RestoreDBInstanceToPointInTime"],
            [
                a.db_arn,
                f"{rds}:db:{a.db_identifier}-*",
                a.snapshots_arn,
                f"{rds}:subgrp:{a.db_identifier}",
                f"{rds}:og:default:postgres-{a.postgres_major}",
                f"{rds}:pg:default.postgres{a.postgres_major}",
            ],
            # The new instance must carry the environment's tags, so the tag-based Denies above and below
            # (and the environment's own tag conditions) govern it. IAM has no key for the restored
            # instance's security groups or size: README says what that leaves open.
            {"StringEquals": _environment_tags(a, "aws:RequestTag")},
        ),
        # Snapshots whose name matches but whose tags are another environment's (or missing) are refused:
        # one Deny per tag, so that either tag differing is enough.
        *(
            {
                "Sid": f"OnlyThis{label}Snapshots",
                "Effect": "Deny",
                "Action": ["rds:DeleteDBSnapshot", "rds:RestoreDBInstanceFromDBSnapshot"],
                "Resource": a.snapshots_arn,
                "Condition": {"StringNotEquals": {key: value}},
            }
            for label, (key, value) in zip(("App", "Environment"), tags.items())
        ),
        # `<db>-*` also names another environment's instance (`prod`'s pattern matches `prod-db`'s
        # `<app>-prod-db-db`), which a point-in-time restore could read: existing instances must carry
        # this environment's tags. The new instance a restore creates has no tags yet (Null), so it passes.
        *(
            {
                "Sid": f"OnlyThis{label}Instances",
                "Effect": "Deny",
                "Action": ["rds:RestoreDBInstanceFromDBSnapshot", "rds:RestoreDBInstanceToPointInTime"],
                "Resource": f"{rds}:db:{a.db_identifier}-*",
                "Condition": {"StringNotEquals": {key: value}, "Null": {key: "false"}},
            }
            for label, (key, value) in zip(("App", "Environment"), tags.items())
        ),
        {"Sid": "KeepFinalSnapshot", "Effect": "Deny", "Action": ["rds:DeleteDBSnapshot"], "Resource": a.final_snapshots_arn},
        *(aws_backup_statements(a) if a.aws_backup else []),
        *(export_statements(a) + restore_statements(a) if a.export else []),
    )


def api_policy(a: Arns) -> Document:
    """Programmatic read access to the environment's services (the Deploy API's view); changes need deploy.

    No `ecs:DescribeTaskDefinition`: IAM cannot limit it to a family (it has no resource type), so it would
    read every environment's task definitions, production's constants, hosts and secret ARNs included.
    """
    return _doc(_service_read(a))


def alerts_policy(a: Arns) -> Document:
    """Subscribing to the environment's alerts topic and reading its alarms."""
    return _doc(
        _allow("Subscribe", ["sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic", "sns:Subscribe"], a.topic_arn),
        # Exactly the environment's alarms: a `<prefix>-*` wildcard would also match environment `<env>-x`'s.
        _allow("ReadAlarms", ["cloudwatch:DescribeAlarmHistory", "cloudwatch:DescribeAlarms"], _one_or_all(a.alarm_arns)),
    )


def manage_policy(a: Arns, permissions: Sequence[str]) -> Document:
    """Seeing who may do what: the environment's access roles, their trust and their policies.

    No `iam:UpdateAssumeRolePolicy` (or any IAM write): it has no condition key limiting the new
    document, so one session could make production deploy assumable by anyone. Membership changes only
    through reviewed config and `pulumi up`.
    """
    roles = [a.role_arn(p) for p in sorted(set(permissions) | {"manage"})]
    return _doc(_allow("ReadAccessRoles", ["iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies"], _one_or_all(roles)))


def permission_policy(a: Arns, permission: str, permissions: Sequence[str] = ()) -> Document:
    """The policy of the access role for `permission` (`permissions`: every access role of the environment)."""
    builders = {
        "deploy": deploy_policy,
        "monitor": monitor_policy,
        "backups": backups_policy,
        "api": api_policy,
        "alerts": alerts_policy,
    }
    if permission == "manage":
        return manage_policy(a, permissions)
    return builders[permission](a)
