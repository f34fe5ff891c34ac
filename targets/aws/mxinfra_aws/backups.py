"""Backups with AWS Backup: a vault, a plan whose rules are the retention tiers of
`mxinfra:environments.<env>.backups` (mxinfra.backups), and a selection of the environment's database
and file bucket, backed up and restored by a service role that reaches only those two.

The tiers become rules that fire at the same moment: AWS Backup runs one job for rules whose windows
overlap and keeps it for the longest retention among them, so a Sunday's backup is kept as a weekly one
and a month's last one as a monthly one, as `mxinfra.backups.keep` does. On production the vault is
locked (governance mode, see `lock_bounds`) and Pulumi-protected.

Everything here is pure but `create`, which imports Pulumi and runs only while deploying.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mxinfra.backups import Backups, of_environment
from mxinfra.errors import ConfigIssue

from .policies import Arns, Document, _doc

if TYPE_CHECKING:
    import pulumi_aws as aws

    from mxinfra.environments import Environment
    from mxinfra.target import EnvironmentContext

    from .config import AwsConfig
    from .database import Database

WEEK_DAYS = 7
# A monthly tier is kept whole months: 31 days each, so none expires before its month is over.
MONTH_DAYS = 31
# Minutes AWS Backup may wait before starting a job: its minimum, so a backup starts within the hour it
# is scheduled for (a CronJob's behaviour), not 8 hours later (AWS's default).
START_WINDOW_MINUTES = 60
SERVICE_PRINCIPAL = "backup.amazonaws.com"
# What AWS's managed backup and restore policies let a job do besides an RDS instance and an S3 bucket:
# every other service they name (whole, so a service AWS adds to one of its kinds is covered the day it
# adds an action of it), and the creating, copying, sharing and restoring calls of EC2 and of RDS clusters,
# denied to the environment's backup role (scope_policy). The tests hold this against the managed
# policies' current versions (moto's copy): what is left is backup, EC2 reads and tags, GuardDuty's malware
# scan, IAM, KMS, RDS instances, S3, tag reads, CloudWatch and EventBridge.
OTHER_BACKUPS = sorted([
    *(f"{service}:*" for service in (
        "backup-gateway", "cloudformation", "ds", "dsql", "dynamodb", "ebs", "eks", "elasticfilesystem", "fsx", "redshift", "redshift-serverless",
        "ssm", "ssm-sap", "storagegateway", "timestream",
    )),
    "ec2:CopyImage", "ec2:CopySnapshot", "ec2:CreateImage", "ec2:CreateSnapshot", "ec2:CreateSnapshots", "ec2:CreateVolume", "ec2:ModifyImageAttribute",
    "ec2:ModifySnapshotAttribute", "ec2:RunInstances",
    "rds:CopyDBClusterSnapshot", "rds:CreateDBClusterSnapshot", "rds:CreateTenantDatabase", "rds:DeleteDBCluster", "rds:DeleteDBClusterAutomatedBackup",
    "rds:DeleteDBClusterSnapshot", "rds:DeleteTenantDatabase", "rds:ModifyDBCluster", "rds:ModifyDBClusterSnapshotAttribute", "rds:ModifyDBSnapshotAttribute",
    "rds:RestoreDBClusterFromSnapshot", "rds:RestoreDBClusterToPointInTime",
])
# AWS's managed policies of a backup service role: RDS (and the other services) to back up and restore;
# S3 has its own two.
MANAGED_POLICIES = {
    "backup": "service-role/AWSBackupServiceRolePolicyForBackup",
    "restore": "service-role/AWSBackupServiceRolePolicyForRestores",
    "s3-backup": "AWSBackupServiceRolePolicyForS3Backup",
    "s3-restore": "AWSBackupServiceRolePolicyForS3Restore",
}

# --- the schedule: a 5-field cron (UTC) as AWS's 6-field cron(...) ---------------------------------------

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_ITEM = re.compile(r"(\*|([0-9]+)(?:-([0-9]+))?)(?:/([0-9]+))?")
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True)
class _Field:
    values: frozenset[int]
    star: bool  # starts with `*`: cron's rule for combining day of month and day of week


def _field(text: str, index: int) -> _Field:
    low, high = _RANGES[index]
    values: set[int] = set()
    for item in text.split(","):
        m = _ITEM.fullmatch(item)
        if m is None:
            raise ValueError(f"the {_NAMES[index]} field {text!r} is not valid")
        step = int(m.group(4)) if m.group(4) else 1
        if m.group(1) == "*":
            first, last = low, high
        else:
            first = int(m.group(2))
            # `n/s` runs from n to the end, as cron reads it
            last = int(m.group(3)) if m.group(3) is not None else (high if m.group(4) else first)
        if not (low <= first <= high and low <= last <= high) or step < 1:
            raise ValueError(f"the {_NAMES[index]} field {text!r} is out of range {low}-{high}")
        if first > last:
            raise ValueError(f"the {_NAMES[index]} field {text!r} has a range that runs backwards")
        values.update(range(first, last + 1, step))
    if index == 4 and 7 in values:  # 7 is Sunday, as 0 is
        values = (values - {7}) | {0}
    return _Field(frozenset(values), text.startswith("*"))


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in sorted(values):
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _list(values: frozenset[int], names: Sequence[str] | None = None) -> str:
    show = (lambda v: names[v]) if names else str
    return ",".join(show(a) if a == b else f"{show(a)}-{show(b)}" for a, b in _runs(sorted(values)))


def aws_cron(expr: str) -> str:
    """AWS's `cron(minutes hours day-of-month month day-of-week year)` firing exactly when the 5-field UTC
    cron `expr` (or macro) fires. Steps and ranges are written out as lists (AWS takes no step in the day
    of week), days of week as names (AWS counts 1-7 from Sunday, cron 0-7), and one of the two day fields
    is `?`, as AWS requires. A ValueError says what AWS cannot express: more than one run an hour (AWS
    Backup's most frequent is hourly), or both day fields restricting the days."""
    fields = _MACROS.get(expr.strip(), expr).split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    minute, hour, dom, month, dow = (_field(f, i) for i, f in enumerate(fields))
    if len(minute.values) != 1:
        raise ValueError(f"the minute field {fields[0]!r} runs more than once an hour: AWS Backup runs a rule at most hourly; give one minute")
    every_dom, every_dow = dom.values == frozenset(range(1, 32)), dow.values == frozenset(range(7))
    if dom.star or dow.star:
        # cron: a day must match both fields when either starts with `*`
        if every_dow:
            days = (_or_star(dom.values, every_dom), "?")
        elif every_dom:
            days = ("?", _list(dow.values, _DAYS))
        else:
            raise ValueError(f"day of month {fields[2]!r} and day of week {fields[4]!r} both restrict the days: AWS cron takes only one of them")
    elif every_dom or every_dow:
        days = ("*", "?")  # cron: either field matching is enough, and one matches every day
    else:
        raise ValueError(f"day of month {fields[2]!r} or day of week {fields[4]!r} (cron runs on either): AWS cron takes only one of them")
    (m,) = minute.values
    hours = _or_star(hour.values, hour.values == frozenset(range(24)))
    months = _or_star(month.values, month.values == frozenset(range(1, 13)))
    return f"cron({m} {hours} {days[0]} {months} {days[1]} *)"


def _or_star(values: frozenset[int], every: bool) -> str:
    return "*" if every else _list(values)


def _last_run_of_day(expr: str) -> tuple[int, int]:
    """(minute, hour) of the schedule's last run of a day: the newest backup of a day, week or month."""
    fields = _MACROS.get(expr.strip(), expr).split()
    (m,) = _field(fields[0], 0).values
    return m, max(_field(fields[1], 1).values)


# --- the plan: one rule per tier ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One rule of the plan: when it fires and how many days its backups are kept."""

    name: str
    schedule: str
    delete_after: int


def rules(b: Backups) -> list[Rule]:
    """The tiers as rules (a tier of 0 has none): every run of the schedule kept `daily_days`; Sunday's
    last run kept `weekly_weeks` weeks; the month's last day's last run kept `monthly_months` x 31 days."""
    minute, hour = _last_run_of_day(b.schedule)
    out = []
    if b.daily_days:
        out.append(Rule("daily", aws_cron(b.schedule), b.daily_days))
    if b.weekly_weeks:
        out.append(Rule("weekly", f"cron({minute} {hour} ? * SUN *)", b.weekly_weeks * WEEK_DAYS))
    if b.monthly_months:
        out.append(Rule("monthly", f"cron({minute} {hour} L * ? *)", b.monthly_months * MONTH_DAYS))
    return out


def on_demand_days(b: Backups) -> int:
    """How long an on-demand backup is kept: the shortest tier (the production vault lock's minimum)."""
    return min(r.delete_after for r in rules(b))


def lock_bounds(b: Backups) -> tuple[int, int]:
    """(min, max) retention days of production's vault lock: the shortest and longest tier. The vault then
    refuses a recovery point kept for less than the shortest tier or more than the longest (an on-demand
    backup needs a lifecycle in between), and nobody deletes one before the shortest tier is over."""
    days = [r.delete_after for r in rules(b)]
    return min(days), max(days)


def check(env: Environment, b: Backups, file: str = "") -> list[ConfigIssue]:
    """What AWS Backup cannot do with an environment's backup settings (nothing when they are off)."""
    if not b.enabled:
        return []
    path = f"{env.config_path or 'mxinfra:environments.' + env.name}.backups"
    issues = []
    try:
        aws_cron(b.schedule)
    except ValueError as e:
        issues.append(ConfigIssue(f"{path}.schedule", f"{b.schedule!r} cannot be an AWS Backup schedule: {e}", "e.g. '0 2 * * *' (nightly at 02:00 UTC), '30 */6 * * *' or '0 3 * * 1-5'", file))
    if not (b.daily_days or b.weekly_weeks or b.monthly_months):
        issues.append(ConfigIssue(f"{path}.retention", "every tier is 0: the backups would be kept for no time at all", "keep at least one tier, or set backups.enabled: false", file))
    return issues


# --- the service role: AWS's managed policies, bounded to this environment --------------------------------


def service_trust() -> Document:
    """Trust of the backup role: AWS Backup."""
    return _doc({"Sid": "AwsBackup", "Effect": "Allow", "Principal": {"Service": SERVICE_PRINCIPAL}, "Action": "sts:AssumeRole"})


def scope_policy(a: Arns) -> Document:
    """The backup role's own policy: Denies that bound AWS's managed policies (which reach every database
    and bucket of the account) to this environment. Whoever starts a job passes this role, and a job's
    resource and restore target are the caller's choice: without these, a holder of a test environment's
    `backups` could back up production's database into the test vault, or restore a test backup over
    production's bucket."""
    rds = f"arn:{a.partition}:rds:{a.region}:{a.account}"
    bucket = a.bucket_arn
    return _doc(
        {"Sid": "BackUpOnlyThisDatabase", "Effect": "Deny", "Action": ["rds:CreateDBSnapshot"], "NotResource": [*a.db_arns, a.backup_snapshots_arn]},
        # RDS restores create a new instance: named <db>-*, in the environment's subnet group.
        {
            "Sid": "RestoreOnlyNextToThisDatabase",
            "Effect": "Deny",
            "Action": ["rds:RestoreDBInstanceFromDBSnapshot"],
            "NotResource": [f"{rds}:db:{a.db_identifier}-*", a.backup_snapshots_arn, f"{rds}:subgrp:{a.db_identifier}", f"{rds}:og:*", f"{rds}:pg:*"],
        },
        {
            "Sid": "OnlyThisBucket",
            "Effect": "Deny",
            "Action": ["s3:CreateBucket", "s3:DeleteObject*", "s3:GetBucket*", "s3:GetInventoryConfiguration", "s3:GetObject*", "s3:ListBucket*", "s3:PutBucket*", "s3:PutInventoryConfiguration", "s3:PutObject*", "s3:RestoreObject"],
            "NotResource": [bucket, f"{bucket}/*"],
        },
        # The restore policy may pass roles (EC2 restores): never with this role.
        {"Sid": "NoPassRole", "Effect": "Deny", "Action": ["iam:PassRole"], "Resource": "*"},
        # The managed policies also back up and restore every other kind of resource AWS Backup knows (EBS,
        # EC2, EFS, DynamoDB, Aurora, FSx, Redshift, Storage Gateway), each of the account: a job of another
        # workload's resource into this vault would copy its data where this environment's holders list it.
        # This role backs up an RDS instance and a bucket, nothing else.
        {"Sid": "NothingElse", "Effect": "Deny", "Action": OTHER_BACKUPS, "Resource": "*"},
    )


def managed_policy_arn(a: Arns, kind: str) -> str:
    """The ARN of one of AWS's managed backup policies in the stack's partition."""
    return f"arn:{a.partition}:iam::aws:policy/{MANAGED_POLICIES[kind]}"


# --- deploying ---------------------------------------------------------------------------------------------


@dataclass
class AwsBackup:
    """What `create` made."""

    vault: aws.backup.Vault
    plan: aws.backup.Plan
    selection: aws.backup.Selection
    role: aws.iam.Role
    lock: aws.backup.VaultLockConfiguration | None


def create(ctx: EnvironmentContext, cfg: AwsConfig, a: Arns, db: Database, bucket_ready: Sequence[Any], kms_key_arn: Any = None) -> AwsBackup | None:
    """The vault (locked on production), the plan, the role and the selection of the database and bucket;
    None when the environment's backups are off. `bucket_ready`: what S3 backup needs first (versioning);
    `kms_key_arn`: the environment's KMS key, if the target has one (none yet: AWS Backup's own key)."""
    import pulumi_aws as aws

    from .runtime import service_role

    b = of_environment(ctx.environment)
    if not b.enabled:
        return None
    n, env, tags = ctx.naming, ctx.environment, dict(ctx.tags)
    vault = aws.backup.Vault(
        n.logical("backup-vault"),
        name=a.backup_vault_name,
        # Test backups may go with the environment; elsewhere a vault with recovery points blocks deletion.
        force_destroy=env.role.value == "test",
        tags=tags,
        # The backups are data like the database: protected and retained on delete on production.
        opts=ctx.opts(protect_data=True),
        **({"kms_key_arn": kms_key_arn} if kms_key_arn is not None else {}),
    )
    lock = None
    if env.is_production:
        low, high = lock_bounds(b)
        # Governance mode (no `changeable_for_days`; with it the SDK makes a compliance lock, immutable once
        # those days pass): no recovery point is deleted or kept beyond the tiers by anyone this target
        # grants (no role here may change or delete a lock), while the platform identity can still apply a
        # change of the tiers with `pulumi up`, which a compliance lock would refuse forever.
        lock = aws.backup.VaultLockConfiguration(
            n.logical("backup-vault-lock"),
            backup_vault_name=vault.name,
            min_retention_days=low,
            max_retention_days=high,
            opts=ctx.opts(protect_data=True),
        )
    plan = aws.backup.Plan(
        n.logical("backup-plan"),
        name=a.backup_vault_name,
        rules=[
            {
                "rule_name": r.name,
                "target_vault_name": vault.name,
                "schedule": r.schedule,
                "schedule_expression_timezone": "Etc/UTC",
                "start_window": START_WINDOW_MINUTES,
                "lifecycle": {"delete_after": r.delete_after},
                "recovery_point_tags": tags,
            }
            for r in rules(b)
        ],
        tags=tags,
        # A locked vault refuses recovery points outside the lock's bounds: the plan follows the lock.
        opts=ctx.opts(depends_on=[lock] if lock is not None else []),
    )
    role = service_role(ctx, cfg, a, "backup", service_trust(), scope_policy(a), "AWS Backup: back up and restore this environment's database and bucket")
    attachments = [
        aws.iam.RolePolicyAttachment(n.logical(f"backup-role-{kind}"), role=role.name, policy_arn=managed_policy_arn(a, kind), opts=ctx.opts())
        for kind in MANAGED_POLICIES
    ]
    selection = aws.backup.Selection(
        n.logical("backup-selection"),
        name=a.backup_vault_name,
        plan_id=plan.id,
        iam_role_arn=role.arn,
        # the instance the app uses: a restored one put in service (database.fromBackup) is backed up instead
        resources=[a.serving_db_arn, a.bucket_arn],
        # S3 backup needs the bucket's versioning on; the role needs its policies before the first job.
        opts=ctx.opts(depends_on=[db.instance, *bucket_ready, *attachments]),
    )
    return AwsBackup(vault, plan, selection, role, lock)
