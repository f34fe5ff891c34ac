"""Issue 21 on AWS: the environment's backups with AWS Backup (vault, plan of tiers, selection, role, lock)."""

from __future__ import annotations

import json

import pytest

from mxinfra.backups import Backups
from mxinfra.cli import main
from mxinfra.components import ENVIRONMENT_TYPE, MendixApp
from mxinfra.errors import ConfigError
from mxinfra.naming import Naming
from mxinfra_aws import backups, policies, render, rotation
from mxinfra_aws.backups import Rule, aws_cron, lock_bounds, rules
from mxinfra_aws.policies import Arns

from awshelpers import ACCOUNT, REGION, config, deployment, lint
from iam_eval import allows

VAULT = "aws:backup/vault:Vault"
PLAN = "aws:backup/plan:Plan"
SELECTION = "aws:backup/selection:Selection"
LOCK = "aws:backup/vaultLockConfiguration:VaultLockConfiguration"
ROLES = ("test", "acceptance", "production")


def arns(env: str, **kw) -> Arns:
    return Arns(REGION, ACCOUNT, "orders-aws-production-cluster", Naming("orders", env), **kw)


def run(pulumi_run, role: str, backups_block: dict | None = None, **kw):
    env = {"backups": backups_block} if backups_block is not None else {}
    d = deployment(config(role, env=env, aws={"vpcTags": {}} if role != "production" else None, **kw), f"aws-{role}")
    return d, pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=f"aws-{role}", project="orders")


def issues(role: str, backups_block: dict) -> list:
    with pytest.raises(ConfigError) as e:
        deployment(config(role, env={"backups": backups_block}, aws={"vpcTags": {}} if role != "production" else None), f"aws-{role}")
    return e.value.issues


# --- the schedule: 5-field cron in UTC -> AWS's cron(...) ------------------------------------------------


@pytest.mark.parametrize(
    "expr,expected",
    [
        ("0 2 * * *", "cron(0 2 * * ? *)"),  # the default: nightly at 02:00
        ("30 */6 * * *", "cron(30 0,6,12,18 * * ? *)"),  # steps written out
        ("0 8-17 * * *", "cron(0 8-17 * * ? *)"),
        ("0 3 * * 1-5", "cron(0 3 ? * MON-FRI *)"),  # cron counts days 0-6 from Sunday, AWS 1-7: names
        ("0 3 * * 0", "cron(0 3 ? * SUN *)"),
        ("0 3 * * 7", "cron(0 3 ? * SUN *)"),  # 7 is Sunday too
        ("0 3 * * 5-7", "cron(0 3 ? * SUN,FRI-SAT *)"),
        ("0 2 * * */2", "cron(0 2 ? * SUN,TUE,THU,SAT *)"),  # AWS takes no step in the day of week
        ("15 4 1,15 * *", "cron(15 4 1,15 * ? *)"),
        ("0 0 1 */3 *", "cron(0 0 1 1,4,7,10 ? *)"),
        ("0 2 1-31 * 1", "cron(0 2 * * ? *)"),  # cron: either day field; one matches every day
        ("5 1 10-12 6 *", "cron(5 1 10-12 6 ? *)"),
        ("@daily", "cron(0 0 * * ? *)"),
        ("@midnight", "cron(0 0 * * ? *)"),
        ("@hourly", "cron(0 * * * ? *)"),
        ("@weekly", "cron(0 0 ? * SUN *)"),
        ("@monthly", "cron(0 0 1 * ? *)"),
        ("@yearly", "cron(0 0 1 1 ? *)"),
    ],
)
def test_cron_becomes_aws_cron(expr, expected):
    assert aws_cron(expr) == expected


@pytest.mark.parametrize(
    "expr,reason",
    [
        ("*/15 * * * *", "at most hourly"),
        ("0,30 2 * * *", "at most hourly"),
        ("0 2 1 * 1", "only one of them"),  # cron: the 1st or a Monday
        ("0 2 */2 * 1", "only one of them"),  # cron: odd days that are Mondays
        ("0 2 5-1 * *", "backwards"),
        ("0 2 * *", "5 fields"),
    ],
)
def test_cron_aws_cannot_express_is_refused(expr, reason):
    with pytest.raises(ValueError, match=reason):
        aws_cron(expr)


def test_an_inexpressible_schedule_is_a_config_issue_at_its_key():
    found = issues("production", {"schedule": "*/15 * * * *"})
    assert [i.path for i in found] == ["mxinfra:environments.production.backups.schedule"]
    assert "AWS Backup" in found[0].message and "hourly" in found[0].message
    found = issues("acceptance", {"schedule": "0 2 1 * 1"})
    assert [i.path for i in found] == ["mxinfra:environments.acceptance.backups.schedule"]


def test_no_schedule_check_when_backups_are_off():
    deployment(config("test", env={"backups": {"enabled": False, "schedule": "*/15 * * * *"}}, aws={"vpcTags": {}}), "aws-test")


def test_every_tier_off_is_a_config_issue():
    found = issues("test", {"retention": {"daily": 0, "weekly": 0, "monthly": 0}})
    assert [i.path for i in found] == ["mxinfra:environments.test.backups.retention"]


# --- tiers -> rules, lock bounds ----------------------------------------------------------------------


def test_default_tiers_are_mendix_clouds():
    assert rules(Backups()) == [
        Rule("daily", "cron(0 2 * * ? *)", 14),
        Rule("weekly", "cron(0 2 ? * SUN *)", 13 * 7),
        Rule("monthly", "cron(0 2 L * ? *)", 12 * 31),
    ]
    assert lock_bounds(Backups()) == (14, 372)


def test_weekly_and_monthly_take_the_days_last_run():
    b = Backups(schedule="15 */8 * * *", daily_days=3, weekly_weeks=2, monthly_months=0)
    assert rules(b) == [Rule("daily", "cron(15 0,8,16 * * ? *)", 3), Rule("weekly", "cron(15 16 ? * SUN *)", 14)]
    assert lock_bounds(b) == (3, 14)
    assert rules(Backups(daily_days=0, weekly_weeks=0, monthly_months=2)) == [Rule("monthly", "cron(0 2 L * ? *)", 62)]
    assert lock_bounds(Backups(daily_days=30, weekly_weeks=1, monthly_months=0)) == (7, 30)


# --- the resources -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_backup_resources_contract(pulumi_run, role):
    d, res = run(pulumi_run, role)
    p = f"orders-{role}"
    a = arns(role)
    env = res.one(ENVIRONMENT_TYPE, p)
    tags = dict(d.environment(role).tags)

    vault = res.one(VAULT, f"{p}-backup-vault")
    assert vault.parent == env.urn
    assert vault.inputs == {"name": f"{p}-backups", "forceDestroy": role == "test", "tags": tags}  # no kmsKeyArn: AWS Backup's key
    assert (vault.protect, vault.retain_on_delete) == ((True, True) if role == "production" else (False, False))

    plan = res.one(PLAN, f"{p}-backup-plan")
    assert plan.parent == env.urn and plan.inputs["name"] == f"{p}-backups" and plan.inputs["tags"] == tags
    assert plan.inputs["rules"] == [
        {
            "ruleName": name,
            "targetVaultName": f"{p}-backups",
            "schedule": schedule,
            "scheduleExpressionTimezone": "Etc/UTC",
            "startWindow": 60,
            "lifecycle": {"deleteAfter": days},
            "recoveryPointTags": tags,
        }
        for name, schedule, days in (("daily", "cron(0 2 * * ? *)", 14), ("weekly", "cron(0 2 ? * SUN *)", 91), ("monthly", "cron(0 2 L * ? *)", 372))
    ]

    role_ = res.one("aws:iam/role:Role", f"{p}-backup-role")
    assert role_.parent == env.urn and role_.inputs["name"] == f"{p}-backup" and role_.inputs["path"] == "/mxinfra/"
    assert "mxinfra:permission" not in role_.inputs["tags"]  # a service's role, not a person's
    trust = json.loads(role_.inputs["assumeRolePolicy"])
    assert trust["Statement"] == [{"Sid": "AwsBackup", "Effect": "Allow", "Principal": {"Service": "backup.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    attached = {r.name: r for r in res.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") if r.name.startswith(f"{p}-backup-role-")}
    assert {r.inputs["policyArn"] for r in attached.values()} == {
        "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup",
        "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores",
        "arn:aws:iam::aws:policy/AWSBackupServiceRolePolicyForS3Backup",
        "arn:aws:iam::aws:policy/AWSBackupServiceRolePolicyForS3Restore",
    }
    assert all(r.inputs["role"] == f"{p}-backup" and r.parent == env.urn for r in attached.values())
    scope = res.one("aws:iam/rolePolicy:RolePolicy", f"{p}-backup-role-policy")
    assert scope.inputs["role"] == f"{p}-backup" and json.loads(scope.inputs["policy"]) == backups.scope_policy(a)

    sel = res.one(SELECTION, f"{p}-backup-selection")
    assert sel.parent == env.urn and sel.inputs["name"] == f"{p}-backups" and sel.inputs["planId"] == f"{p}-backup-plan-id"
    assert sel.inputs["resources"] == [f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{p}-db", f"arn:aws:s3:::{p}-files-{ACCOUNT}-{REGION}"]
    assert sel.inputs["resources"] == [a.db_arn, a.bucket_arn]
    # S3 backup needs versioning on first; the jobs need the role's policies
    for dep in (f"{p}-db", f"{p}-files-versioning", f"{p}-backup-role", *attached):
        assert res.named(dep).urn in sel.dependencies, dep
    assert res.one("aws:s3/bucketVersioning:BucketVersioning", f"{p}-files-versioning").input("versioningConfiguration.status") == "Enabled"

    locks = res.of_type(LOCK)
    if role == "production":
        (lock,) = locks
        assert lock.name == f"{p}-backup-vault-lock" and lock.parent == env.urn
        # governance mode (no changeableForDays): the shortest tier to the longest
        assert lock.inputs == {"backupVaultName": f"{p}-backups", "minRetentionDays": 14, "maxRetentionDays": 372}
        assert (lock.protect, lock.retain_on_delete) == (True, True)
        assert vault.urn in lock.dependencies and lock.urn in plan.dependencies
    else:
        assert locks == []


def test_configured_tiers_and_schedule(pulumi_run):
    _, res = run(pulumi_run, "production", {"schedule": "30 1 * * 1-5", "retention": {"daily": 7, "weekly": 0, "monthly": 6}})
    rules_ = res.one(PLAN).inputs["rules"]
    assert [(r["ruleName"], r["schedule"], r["lifecycle"]["deleteAfter"]) for r in rules_] == [("daily", "cron(30 1 ? * MON-FRI *)", 7), ("monthly", "cron(30 1 L * ? *)", 186)]
    lock = res.one(LOCK).inputs
    assert (lock["minRetentionDays"], lock["maxRetentionDays"]) == (7, 186)


@pytest.mark.parametrize("role", ["test", "production"])
def test_backups_off_means_no_backup_resources(pulumi_run, role):
    block = {"enabled": False, **({"reason": "data is rebuilt from the ERP every night"} if role == "production" else {})}
    _, res = run(pulumi_run, role, block)
    assert [r.name for r in res if r.type.startswith("aws:backup/") or "-backup-" in r.name or r.name.endswith("-backup")] == []
    assert res.one("aws:rds/instance:Instance").inputs["backupRetentionPeriod"] >= 1  # RDS's own stay
    doc = json.loads(res.one("aws:iam/rolePolicy:RolePolicy", f"orders-{role}-role-backups-policy").inputs["policy"])
    assert not [a for s in doc["Statement"] for a in s["Action"] if a.startswith("backup:") or a == "iam:PassRole"]
    warned = [w for w in res.warnings if "production has no backups" in w]
    assert warned == (["production: production has no backups (data is rebuilt from the ERP every night): nothing can be restored after a bad release or a lost database"] if role == "production" else [])


def test_production_opt_out_needs_a_reason():
    found = issues("production", {"enabled": False})
    assert [i.path for i in found] == ["mxinfra:environments.production.backups.reason"]


def test_backups_are_reserved_names():
    cfg = config("acceptance", aws={"vpcTags": {}})
    cfg["mxinfra:environments"] = {"backup": cfg["mxinfra:environments"]["acceptance"]}
    cfg["mxinfra:access"] = []
    with pytest.raises(ConfigError) as e:
        deployment(cfg, "aws-acceptance")
    assert [i.path for i in e.value.issues] == ["mxinfra:environments.backup"]


# --- who may take and restore a backup ------------------------------------------------------------------

TAGS = {"aws:ResourceTag/mxinfra:app": "orders", "aws:ResourceTag/mxinfra:environment": "production"}
RDS_POINT = f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:awsbackup:job-0a1b2c3d"
S3_POINT = f"arn:aws:backup:{REGION}:{ACCOUNT}:recovery-point:0a1b2c3d-1111"
BACKUP_ACTIONS = ("backup:StartBackupJob", "backup:StartRestoreJob", "backup:DescribeRecoveryPoint", "backup:ListRecoveryPointsByBackupVault")


def test_backups_permission_starts_jobs_on_its_own_vault_and_recovery_points_only():
    a, other = arns("production"), arns("acceptance")
    doc = policies.backups_policy(a)
    assert allows(doc, "backup:StartBackupJob", a.backup_vault_arn)
    assert allows(doc, "backup:ListRecoveryPointsByBackupVault", a.backup_vault_arn)
    assert not allows(doc, "backup:StartBackupJob", other.backup_vault_arn)
    for point in (RDS_POINT, S3_POINT):
        assert allows(doc, "backup:StartRestoreJob", point, TAGS)
        assert allows(doc, "backup:GetRecoveryPointRestoreMetadata", point, TAGS)
        assert not allows(doc, "backup:StartRestoreJob", point, {**TAGS, "aws:ResourceTag/mxinfra:environment": "acceptance"})
        assert not allows(doc, "backup:StartRestoreJob", point, {**TAGS, "aws:ResourceTag/mxinfra:app": "billing"})
        assert not allows(doc, "backup:StartRestoreJob", point, {})  # untagged: not the environment's
    # another account's or region's recovery points are out of reach whatever their tags
    assert not allows(doc, "backup:StartRestoreJob", RDS_POINT.replace(ACCOUNT, "210987654321"), TAGS)
    assert not allows(doc, "backup:StartRestoreJob", S3_POINT.replace(REGION, "us-east-1"), TAGS)
    # the jobs run as the environment's backup role: only it, only to AWS Backup
    passed = {"iam:PassedToService": "backup.amazonaws.com"}
    assert allows(doc, "iam:PassRole", a.role_arn("backup"), passed)
    assert not allows(doc, "iam:PassRole", a.role_arn("backup"), {"iam:PassedToService": "ec2.amazonaws.com"})
    for other_role in (other.role_arn("backup"), a.role_arn("task"), a.role_arn("execution"), a.role_arn("deploy")):
        assert not allows(doc, "iam:PassRole", other_role, passed)
    # nothing that changes the vault, its lock, plan or recovery points
    for action in ("backup:DeleteRecoveryPoint", "backup:DeleteBackupVaultLockConfiguration", "backup:PutBackupVaultLockConfiguration", "backup:UpdateBackupPlan", "backup:DeleteBackupVault", "backup:StartCopyJob", "backup:UpdateRecoveryPointLifecycle"):
        assert not allows(doc, action, a.backup_vault_arn) and not allows(doc, action, RDS_POINT, TAGS), action


def test_nothing_else_starts_backup_or_restore_jobs():
    a = arns("production", followers=True)
    granted = ["alerts", "api", "backups", "deploy", "manage", "monitor"]
    others = {p: policies.permission_policy(a, p, granted) for p in granted if p != "backups"}
    others |= {"task": policies.task_policy(a), "execution": policies.execution_policy(a, "mendix/orders:1"), "redeploy": rotation.redeploy_policy(a), "events": rotation.events_policy(a)}
    for name, doc in others.items():
        assert not [x for s in doc["Statement"] for x in s["Action"] if x.startswith("backup:") or x == "*"], name
        for action in BACKUP_ACTIONS:
            for resource in (a.backup_vault_arn, RDS_POINT, S3_POINT, "*"):
                assert not allows(doc, action, resource, TAGS), (name, action)
        assert not allows(doc, "iam:PassRole", a.role_arn("backup"), {"iam:PassedToService": "backup.amazonaws.com"}), name


def test_without_aws_backup_the_permission_has_no_backup_statements():
    doc = policies.backups_policy(arns("production", aws_backup=False))
    assert not [s for s in doc["Statement"] if any(x.startswith("backup:") or x == "iam:PassRole" for x in s["Action"])]
    # the RDS snapshot statements stay
    assert allows(doc, "rds:CreateDBSnapshot", arns("production").db_arn)


def _denied(doc, action: str, resource: str) -> bool:
    """Whether one of the scope policy's Denies (Resource or NotResource) refuses `action` on `resource`."""
    import fnmatch

    for s in doc["Statement"]:
        assert s["Effect"] == "Deny"
        if not any(fnmatch.fnmatchcase(action, x) for x in s["Action"]):
            continue
        if "NotResource" in s and not any(fnmatch.fnmatchcase(resource, r) for r in s["NotResource"]):
            return True
        if "Resource" in s and fnmatch.fnmatchcase(resource, s["Resource"]):
            return True
    return False


def test_the_backup_role_reaches_only_this_environments_database_and_bucket():
    a, prod = arns("test"), arns("production")
    doc = backups.scope_policy(a)
    # backing up: its own database and bucket only (a job's resource is the caller's choice)
    assert not _denied(doc, "rds:CreateDBSnapshot", a.db_arn)
    assert not _denied(doc, "rds:CreateDBSnapshot", RDS_POINT)
    assert _denied(doc, "rds:CreateDBSnapshot", prod.db_arn)
    for action in ("s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning"):
        resource = prod.bucket_arn if "Bucket" in action else prod.bucket_arn + "/x"
        assert _denied(doc, action, resource), action
        assert not _denied(doc, action, resource.replace(prod.bucket_name, a.bucket_name)), action
    # restoring: a new instance named after its own, in its subnet group; files into its own bucket only
    rds = f"arn:aws:rds:{REGION}:{ACCOUNT}"
    assert not _denied(doc, "rds:RestoreDBInstanceFromDBSnapshot", f"{rds}:db:{a.db_identifier}-restored")
    assert not _denied(doc, "rds:RestoreDBInstanceFromDBSnapshot", f"{rds}:subgrp:{a.db_identifier}")
    assert _denied(doc, "rds:RestoreDBInstanceFromDBSnapshot", f"{rds}:db:{prod.db_identifier}-restored")
    assert _denied(doc, "rds:RestoreDBInstanceFromDBSnapshot", f"{rds}:subgrp:{prod.db_identifier}")
    assert _denied(doc, "s3:PutObject", prod.bucket_arn + "/model/x") and not _denied(doc, "s3:PutObject", a.bucket_arn + "/model/x")
    assert _denied(doc, "s3:CreateBucket", "arn:aws:s3:::restored-elsewhere")
    assert _denied(doc, "iam:PassRole", prod.role_arn("task"))
    # nothing but an RDS instance and a bucket: another workload's volume, file system, table or cluster is
    # never backed up into this vault, nor restored
    for action, resource in (
        ("ec2:CreateSnapshot", f"arn:aws:ec2:{REGION}::snapshot/*"),
        ("elasticfilesystem:Backup", f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/fs-0123"),
        ("dynamodb:StartAwsBackupJob", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders"),
        ("rds:CreateDBClusterSnapshot", f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:{a.db_identifier}"),
        ("rds:RestoreDBClusterFromSnapshot", f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:{a.db_identifier}-restored"),
    ):
        assert _denied(doc, action, resource), action
    assert lint(doc) == [] and lint(backups.service_trust(), trust_for=a.role_arn("backup")) == []


def test_the_backup_role_keeps_of_the_managed_policies_only_rds_instances_and_s3():
    """AWS's four managed policies as they are now (moto's copy of AWS's managed policies): every action they
    allow is either denied to the environment's backup role by its scope policy, or one of the kinds an RDS
    instance's and a bucket's backups and restores use. A service AWS adds to the policies fails here until
    the scope policy says what becomes of it."""
    import fnmatch
    import json as _json

    from moto.iam.aws_managed_policies import aws_managed_policies_data

    managed = _json.loads(aws_managed_policies_data)
    a = arns("test")
    doc = backups.scope_policy(a)
    kept = set()
    for kind, path in backups.MANAGED_POLICIES.items():
        statements = managed[path.rsplit("/", 1)[-1]]["Document"]["Statement"]
        for st in statements:
            if st["Effect"] != "Allow":
                continue
            for action in [st["Action"]] if isinstance(st["Action"], str) else st["Action"]:
                # (the Denies of every resource: the others bound an action to this environment's resources)
                if not any(d.get("Resource") == "*" and any(fnmatch.fnmatchcase(action, x) for x in d["Action"]) for d in doc["Statement"]):
                    kept.add(action)
    assert {x.split(":")[0] for x in kept} <= {"backup", "cloudwatch", "ec2", "events", "guardduty", "iam", "kms", "rds", "s3", "tag"}, sorted(kept)
    # of EC2 only reads, tags and the deletions of what a job made; of RDS, its instances
    assert {x for x in kept if x.startswith("ec2:")} <= {x for x in kept if x.startswith(("ec2:Describe", "ec2:CreateTags", "ec2:DeleteTags", "ec2:Delete", "ec2:DeregisterImage", "ec2:ModifySnapshotTier", "ec2:RestoreSnapshotTier", "ec2:TerminateInstances"))}
    assert not [x for x in kept if x.startswith("rds:") and not x.startswith("rds:Describe") and ("Cluster" in x or "Tenant" in x or "SnapshotAttribute" in x)], sorted(kept)
    assert "rds:CreateDBSnapshot" in kept and "rds:RestoreDBInstanceFromDBSnapshot" in kept and "s3:PutObject" in kept


def test_vault_names_are_valid_for_aws_backup():
    long = Arns(REGION, ACCOUNT, "c", Naming("a-very-long-application-name-indeed", "acceptance"))
    assert len(long.backup_vault_name) <= 50 and set(long.backup_vault_name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_")
    assert arns("production").backup_vault_arn == f"arn:aws:backup:{REGION}:{ACCOUNT}:backup-vault:orders-production-backups"


# --- the review output ------------------------------------------------------------------------------------


def test_plan_says_what_backups_the_environment_has(capsys, tmp_path, example_project):
    assert main(["plan", "-s", "aws-production", "-C", str(example_project), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "note: AWS Backup vault orders-production-backups (AWS Backup's own key), Pulumi-protected" in out
    assert (
        "note: backup plan orders-production-backups: daily cron(0 2 * * ? *) Etc/UTC kept 14 days; "
        "weekly cron(0 2 ? * SUN *) Etc/UTC kept 91 days; monthly cron(0 2 L * ? *) Etc/UTC kept 372 days"
    ) in out
    assert "note: vault lock (governance mode): recovery points kept 14 to 372 days, none deleted sooner" in out
    assert f"note: backed up: arn:aws:rds:{REGION}:{ACCOUNT}:db:orders-production-db, arn:aws:s3:::orders-production-files-{ACCOUNT}-{REGION}" in out
    # the backup role's policy and trust are rendered for review, like every other document
    d = tmp_path / "aws" / "production"
    assert json.loads((d / "backup-role-policy.json").read_text()) == backups.scope_policy(arns("production"))
    assert json.loads((d / "backup-role.trust.json").read_text()) == backups.service_trust()


def test_notes_without_backups_or_lock():
    db = {"type": render.DB_INSTANCE, "name": "orders-test-db", "inputs": {}}
    assert render.backup_notes([db]) == ["no AWS Backup vault or plan: backups are off (backups.enabled: false); only RDS's automated backups and S3 versioning remain"]
    vault = {"type": render.BACKUP_VAULT, "name": "v", "inputs": {"name": "orders-test-backups", "kmsKeyArn": "arn:aws:kms:eu-west-1:1:key/k"}}
    assert render.backup_notes([db, vault]) == ["AWS Backup vault orders-test-backups (KMS key arn:aws:kms:eu-west-1:1:key/k)", "no vault lock (production only)"]
    lock = {"type": render.BACKUP_LOCK, "name": "l", "inputs": {"minRetentionDays": 3, "maxRetentionDays": 9, "changeableForDays": 3}}
    assert render.backup_notes([vault, lock])[-1] == "vault lock (compliance mode after 3 days): recovery points kept 3 to 9 days, none deleted sooner"
