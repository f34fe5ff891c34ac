"""Issue 21 on the aws target: `mxinfra backup list|create|restore` through AWS Backup, end to end.

The environment is as `pulumi up` leaves it, in moto (in process): the RDS instance and the versioned file
bucket, both tagged with the environment's tags, and the vault (locked on production). AWS Backup's jobs,
which moto lacks, are served by backup_double.BackupDouble on loopback, validated against botocore's own
model of the service and acting on moto's RDS and S3 (a database backup is a moto snapshot, a restore a
new moto instance; the bucket's files really come back). The commands reach it the way a user points
the AWS CLI at an endpoint (AWS_ENDPOINT_URL_BACKUP); STS, RDS and S3 are moto's.

The rendered `backups` role's policy (`mxinfra plan --out`) is the double's IAM: every call the commands
make is authorised against it by the repo's evaluator (iam_eval), and the `deploy` and `monitor` roles'
policies are shown to be refused the same calls. Not verified against real AWS: see the README's Backups.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mxinfra.backups import Backups
from mxinfra.cli import main
from mxinfra.naming import Naming
from mxinfra_aws import backup_actions
from mxinfra_aws.backup_actions import DATABASE, FILES, Point, pairs, points_of, restored_identifier
from mxinfra_aws.backups import lock_bounds
from mxinfra_aws.policies import Arns

from awshelpers import ACCOUNT, REGION, config
from backup_double import BackupDouble, check_shape
from scaffold import encrypted

CLUSTER = "orders-cluster"


def arns(env: str) -> Arns:
    return Arns(REGION, ACCOUNT, CLUSTER, Naming("orders", env))


def stack_file(role: str) -> dict[str, Any]:
    """The stack file of an environment named after `role`, its secrets stored encrypted."""
    return encrypted(config(role, aws={"vpcTags": {}} if role != "production" else None))


@pytest.fixture
def double(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[BackupDouble]:
    """moto for STS, RDS and S3; the AWS Backup double on loopback; the commands poll without waiting."""
    monkeypatch.setattr(backup_actions, "POLL_SECONDS", 0.0)
    with mock_aws():
        d = BackupDouble(REGION, ACCOUNT)
        with d.serve() as url:
            monkeypatch.setenv("AWS_ENDPOINT_URL_BACKUP", url)
            yield d
        assert d.violations == [], d.violations


def deployed(d: BackupDouble, project: Any, role: str) -> tuple[str, Arns]:
    """The stack `aws-<role>` and what `pulumi up` left of its environment in AWS; (stack, its Arns)."""
    stack = f"aws-{role}"
    project.stack(stack, stack_file(role))
    a = arns(role)
    tags = [{"Key": "mxinfra:app", "Value": "orders"}, {"Key": "mxinfra:environment", "Value": role}]
    rds = boto3.client("rds", region_name=REGION)
    rds.create_db_instance(DBInstanceIdentifier=a.db_identifier, Engine="postgres", DBInstanceClass="db.t4g.micro", AllocatedStorage=20, MasterUsername="mendix", MasterUserPassword="not-used-0123", Tags=tags)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=a.bucket_name, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=a.bucket_name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_tagging(Bucket=a.bucket_name, Tagging={"TagSet": tags})
    low, high = lock_bounds(Backups())
    d.add_vault(a.backup_vault_name, **({"min_days": low, "max_days": high} if role == "production" else {}))
    return stack, a


def _cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _records(project: Any, env: str) -> list[Any]:
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.store import open_store

    return ActivityLog(open_store(f"file://{project.path / '.mxinfra'}")).records(env)


def _files(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", region_name=REGION)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents") or []]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def _instances() -> dict[str, dict[str, str]]:
    rds = boto3.client("rds", region_name=REGION)
    return {i["DBInstanceIdentifier"]: {t["Key"]: t["Value"] for t in i.get("TagList") or []} for i in rds.describe_db_instances()["DBInstances"]}


# --- end to end ------------------------------------------------------------------------------------------


def test_create_list_restore_on_test(double, project, capsys):
    stack, a = deployed(double, project, "test")
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=a.bucket_name, Key="files/doc1", Body=b"\x00\x01 file one")
    s3.put_object(Bucket=a.bucket_name, Key="files/doc2", Body=b"file two")

    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    assert rc == 0, err
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    started = [p for op, p in double.requests if op == "StartBackupJob"]
    assert [p["ResourceArn"] for p in started] == [a.db_arn, a.bucket_arn]
    assert {p["IamRoleArn"] for p in started} == {a.role_arn("backup")}
    assert {p["BackupVaultName"] for p in started} == {a.backup_vault_name}
    assert {p["Lifecycle"]["DeleteAfterDays"] for p in started} == {14}  # the shortest tier
    rc, out, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path), "--json")
    assert rc == 0 and json.loads(out) == [backup_id], err

    s3.put_object(Bucket=a.bucket_name, Key="files/doc1", Body=b"changed")
    s3.delete_object(Bucket=a.bucket_name, Key="files/doc2")
    s3.put_object(Bucket=a.bucket_name, Key="files/doc3", Body=b"written since")
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    assert rc == 0, err
    # the files: the backup's versions current again; what was written since stays
    assert _files(a.bucket_name) == {"files/doc1": b"\x00\x01 file one", "files/doc2": b"file two", "files/doc3": b"written since"}
    # the database: a NEW instance named after the backup, with the environment's tags; the running one untouched
    new = f"{a.db_identifier}-{backup_id.lower()}"
    assert _instances() == {a.db_identifier: {"mxinfra:app": "orders", "mxinfra:environment": "test"}, new: {"mxinfra:app": "orders", "mxinfra:environment": "test"}}
    restores = {p["ResourceType"]: p for op, p in double.requests if op == "StartRestoreJob"}
    assert restores["RDS"]["Metadata"]["DBInstanceIdentifier"] == new and restores["RDS"]["CopySourceTagsToRestoredResource"] is True
    assert restores["S3"]["Metadata"]["DestinationBucketName"] == a.bucket_name and restores["S3"]["Metadata"]["NewBucket"] == "false"
    said = " ".join(err.split())
    assert f"into the NEW RDS instance {new}; the app still uses {a.db_identifier}" in said
    # and how to put the backup in service instead (test_aws_restored_database.py)
    assert f"set mxinfra:aws.database.fromBackup.test: {backup_id} and run `pulumi up`" in said

    recs = _records(project, "test")
    jobs = {j["ResourceType"]: j["RestoreJobId"] for j in double.restores.values()}
    assert [(r.action, r.changes) for r in recs] == [
        ("backup", {"backup": {"id": backup_id, "trigger": "on-demand"}}),
        # written before the first restore job started: a command that dies meanwhile leaves the log saying so
        ("intent", {"intends": "restore", "restore": {"id": backup_id, "from": "test"}}),
        # what the restore made: the new instance, the bucket its files went back into, the two jobs
        ("restore", {"restore": {"id": backup_id, "from": "test", "database": new, "filesInto": a.bucket_name, "restoreJobs": {
            "database": jobs["RDS"], "files": jobs["S3"]}}}),
    ]
    assert all(r.signature for r in recs)
    rc, out, err = _cli(capsys, "activity", "verify", "-e", "test", "-C", str(project.path))
    assert rc == 0, out + err


def test_production_restore_takes_a_backup_first_and_keeps_it_within_the_lock(double, project, capsys):
    stack, a = deployed(double, project, "production")
    boto3.client("s3", region_name=REGION).put_object(Bucket=a.bucket_name, Key="f", Body=b"1")
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    (first,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", first, "-C", str(project.path))
    assert rc == 0, err
    assert [op for op, _ in double.requests if op.startswith("Start")] == ["StartBackupJob"] * 4 + ["StartRestoreJob"] * 2
    recs = _records(project, "production")
    assert [r.action for r in recs] == ["backup", "backup", "intent", "restore"]
    safety = recs[1].changes["backup"]
    assert safety["trigger"] == "before restore" and recs[3].changes["restore"]["backupBefore"] == safety["id"] != first
    assert recs[2].changes == {"intends": "restore", "restore": {k: v for k, v in recs[3].changes["restore"].items() if k in ("id", "from", "backupBefore")}}
    assert recs[3].changes["restore"]["database"] == f"{a.db_identifier}-{first.lower()}"
    rc, out, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path), "--json")
    assert json.loads(out) == sorted([first, safety["id"]], reverse=True)
    assert _cli(capsys, "activity", "verify", "-e", "production", "-C", str(project.path))[0] == 0


def test_a_production_restore_without_a_backup_first_is_refused(double, project):
    """The actions themselves refuse it: only `create` in the same run (the CLI's order) allows it."""
    from awshelpers import deployment

    _, a = deployed(double, project, "production")
    d = deployment(config("production"), "aws-production")
    from mxinfra_aws.target import AwsTarget

    actions = AwsTarget().backup_actions(d, "production", project.path)
    from mxinfra.errors import UserError

    at = datetime(2026, 12, 4, 2, 0, 0, tzinfo=timezone.utc)
    double.scheduled_run(a.backup_vault_name, at, {DATABASE: a.db_arn, FILES: a.bucket_arn}, a.role_arn("backup"))
    double.scheduled_run(a.backup_vault_name, at + timedelta(days=1), {DATABASE: a.db_arn}, a.role_arn("backup"))
    with pytest.raises(UserError, match="needs an on-demand backup of it taken first"):
        actions.restore("20261204T020000Z", datetime.now(timezone.utc))
    # nor does a caller who says the machine backs up, for a backup whose files it would not restore
    with pytest.raises(UserError, match="needs an on-demand backup of it taken first"):
        actions.restore("20261205T020000Z", datetime.now(timezone.utc), backed_up=lambda backup: None)
    assert not [op for op, _ in double.requests if op == "StartRestoreJob"]


def test_scheduled_runs_pair_up_and_restore(double, project, capsys):
    stack, a = deployed(double, project, "acceptance")
    at = datetime(2026, 12, 3, 2, 0, 7, tzinfo=timezone.utc)
    resources = {DATABASE: a.db_arn, FILES: a.bucket_arn}
    double.scheduled_run(a.backup_vault_name, at, resources, a.role_arn("backup"))
    double.scheduled_run(a.backup_vault_name, at + timedelta(days=1), resources, a.role_arn("backup"))
    rc, out, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    assert out.split() == ["20261204T020007Z", "20261203T020007Z"]
    # more recovery points than one page: NextToken was followed
    assert sum(1 for op, _ in double.requests if op == "ListRecoveryPointsByBackupVault") >= 2
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "acceptance", "--id", "20261203T020007Z", "-C", str(project.path))
    assert rc == 0, err
    assert f"{a.db_identifier}-20261203t020007z" in _instances()


# --- rights: the rendered backups policy is the double's IAM ---------------------------------------------


def _rendered(project: Any, capsys: Any, tmp_path: Path, stack: str, env: str) -> dict[str, dict[str, Any]]:
    assert main(["plan", "-s", stack, "-C", str(project.path), "--out", str(tmp_path / "plan")]) == 0, capsys.readouterr().err
    capsys.readouterr()
    d = tmp_path / "plan" / "aws" / env
    return {p: json.loads((d / f"role-{p}-policy.json").read_text()) for p in ("backups", "deploy", "monitor")}


def test_the_backups_role_allows_exactly_the_calls_the_commands_make(double, project, capsys, tmp_path):
    """Below production (production's files go back through its machine: test_aws_files_restore.py)."""
    stack, a = deployed(double, project, "acceptance")
    rendered = _rendered(project, capsys, tmp_path, stack, "acceptance")
    double.policy = rendered["backups"]
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "acceptance", "-C", str(project.path))
    assert rc == 0, err
    (first,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "acceptance", "--id", first, "-C", str(project.path))
    assert rc == 0, err
    assert double.denied == []
    made = {action for action, _, _ in double.calls}
    assert made == {
        "backup:DescribeBackupVault",
        "backup:ListRecoveryPointsByBackupVault",
        "backup:StartBackupJob",
        "backup:DescribeBackupJob",
        "backup:GetRecoveryPointRestoreMetadata",
        "backup:StartRestoreJob",
        "backup:DescribeRestoreJob",
        "iam:PassRole",
    }
    # every backup: action the policy grants that the commands do not use is a read the README names
    granted = {x for s in rendered["backups"]["Statement"] if s["Effect"] == "Allow" for x in s["Action"] if x.startswith("backup:")}
    assert granted - made == {"backup:DescribeRecoveryPoint", "backup:ListProtectedResourcesByBackupVault", "backup:ListBackupJobs", "backup:ListRestoreJobs"}
    # the same calls, replayed against the deploy and monitor roles: none of the jobs is allowed
    from iam_eval import allows

    for name in ("deploy", "monitor"):
        for action, resource, context in double.calls:
            if action in ("backup:StartBackupJob", "backup:StartRestoreJob", "iam:PassRole", "backup:DescribeBackupVault"):
                assert not allows(rendered[name], action, resource, context), (name, action, resource)


@pytest.mark.parametrize("role", ["deploy", "monitor"])
def test_deploy_and_monitor_are_refused_with_the_backups_role_named(double, project, capsys, tmp_path, role):
    stack, a = deployed(double, project, "production")
    double.policy = _rendered(project, capsys, tmp_path, stack, "production")[role]
    for args in (["create"], ["restore", "--id", "20261204T020000Z"], ["list"]):
        rc, out, err = _cli(capsys, "backup", *args, "-s", stack, "-e", "production", "-C", str(project.path))
        assert rc == 2 and "Traceback" not in err, (args, err)
        said = " ".join(err.split())
        assert "may not" in said and f"assume its role {a.role_arn('backups')} with MFA" in said, said
    assert not [op for op, _ in double.requests if op.startswith("Start")]
    assert _records(project, "production") == []


def test_another_environments_recovery_point_is_refused_by_tags(double, project, capsys, tmp_path):
    """A recovery point in the vault that carries another environment's tags (a backup of another
    resource, started by hand into this vault) is not restored: AWS refuses, the command says why."""
    stack, a = deployed(double, project, "test")
    double.policy = _rendered(project, capsys, tmp_path, stack, "test")["backups"]
    at = datetime(2026, 12, 3, 2, 0, 7, tzinfo=timezone.utc)
    double.scheduled_run(a.backup_vault_name, at, {DATABASE: a.db_arn}, a.role_arn("backup"))
    (point,) = double.points.values()
    point["_tags"] = {"mxinfra:app": "orders", "mxinfra:environment": "production"}
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", "20261203T020007Z", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err
    said = " ".join(err.split())
    assert "AWS refused backup:GetRecoveryPointRestoreMetadata" in said and "AccessDeniedException" in said and a.role_arn("backups") in said
    assert said.endswith("; nothing was recorded")  # refused before its intent: the log holds nothing of it
    assert _records(project, "test") == []


# --- failures: exit 2, nothing recorded ------------------------------------------------------------------


def test_a_failed_backup_job_names_the_job_and_records_nothing(double, project, capsys):
    stack, a = deployed(double, project, "test")
    double.fail = "backup"
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err
    job = next(p for op, p in double.requests if op == "DescribeBackupJob")["BackupJobId"]
    assert f"the database backup job {job}" in said and "ended FAILED" in said and f"aws backup describe-backup-job --backup-job-id {job}" in said
    assert said.endswith(f"aws backup describe-backup-job --backup-job-id {job} --region {REGION}`; nothing was recorded")
    assert _records(project, "test") == []


def test_a_backup_still_running_at_the_timeout_is_said_and_not_recorded(double, project, capsys, monkeypatch):
    stack, a = deployed(double, project, "test")
    monkeypatch.setattr(backup_actions, "BACKUP_TIMEOUT", 0.0)
    double.stall = True
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "the backup is still running after 0 minutes" in said and said.endswith("; nothing was recorded")
    assert _records(project, "test") == []


def test_a_failed_restore_job_is_exit_2(double, project, capsys):
    stack, a = deployed(double, project, "test")
    assert _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))[0] == 0
    (backup_id,) = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path))[1].split()
    double.fail = "restore"
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", backup_id, "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err and "restore job" in err and "ended FAILED" in err
    # the restore started (its intent says which backup), no outcome follows it
    recs = _records(project, "test")
    assert [r.action for r in recs] == ["backup", "intent"] and recs[1].changes == {"intends": "restore", "restore": {"id": backup_id, "from": "test"}}


def test_unknown_id_missing_vault_and_other_account(double, project, capsys, monkeypatch):
    stack, a = deployed(double, project, "test")
    rc, _, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "test", "--id", "20001231T000000Z", "-C", str(project.path))
    assert rc == 2 and "has no backup 20001231T000000Z" in err
    double.vaults.clear()
    rc, _, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err and f"AWS Backup vault {a.backup_vault_name}" in said and "deploy the stack with the environment's backups on" in said
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "210987654321")
    rc, _, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "the AWS credentials are account 210987654321's" in said and f"the stack deploys to account {ACCOUNT}" in said


def test_no_credentials_is_said_plainly(double, project, capsys, monkeypatch):
    stack, _ = deployed(double, project, "test")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    rc, _, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path))
    assert rc == 2 and "Traceback" not in err and "no AWS credentials were found" in err


def test_an_environment_without_backups_has_no_commands(aws_env, project, capsys):
    cfg = stack_file("test")
    cfg["mxinfra:environments"]["test"]["backups"] = {"enabled": False}
    project.stack("aws-test", cfg)
    rc, _, err = _cli(capsys, "backup", "list", "-s", "aws-test", "-e", "test", "-C", str(project.path))
    assert rc == 2 and "has no backups" in err and "Traceback" not in err


# --- the pure parts ----------------------------------------------------------------------------------------


def _p(kind: str, at: datetime, scheduled: bool = False, n: int = 0) -> Point:
    return Point(f"arn:{kind}:{at.isoformat()}:{n}", kind, at, scheduled)


def test_pairing_rules():
    t = datetime(2026, 12, 4, 2, 0, 0, 400000, tzinfo=timezone.utc)
    # a scheduled run's two jobs a few minutes apart; an on-demand pair half an hour later, seconds apart
    got = pairs([_p(DATABASE, t, True), _p(FILES, t + timedelta(minutes=7), True), _p(FILES, t + timedelta(minutes=30, seconds=2)), _p(DATABASE, t + timedelta(minutes=30))])
    assert [(g.id, sorted(g.points)) for g in got] == [("20261204T023000Z", [DATABASE, FILES]), ("20261204T020000Z", [DATABASE, FILES])]
    # a failed files job leaves a database-only backup; the next run does not fill it in
    got = pairs([_p(DATABASE, t, True), _p(DATABASE, t + timedelta(minutes=20), True), _p(FILES, t + timedelta(minutes=21), True)])
    assert [(g.id, sorted(g.points)) for g in got] == [("20261204T022000Z", [DATABASE, FILES]), ("20261204T020000Z", [DATABASE])]
    assert "no files" in got[1].describe() and "scheduled" in got[1].describe()
    # two pairs in one second keep distinct ids
    got = pairs([_p(DATABASE, t), _p(DATABASE, t, n=1)])
    assert [g.id for g in got] == ["20261204T020001Z", "20261204T020000Z"]
    # beyond the window: separate backups
    got = pairs([_p(DATABASE, t), _p(FILES, t + timedelta(minutes=11))])
    assert len(got) == 2


def test_only_the_environments_restorable_points_count():
    a = arns("test")
    t = datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc)
    rps = [
        {"RecoveryPointArn": "x1", "ResourceArn": a.db_arn, "Status": "COMPLETED", "CreationDate": t},
        {"RecoveryPointArn": "x2", "ResourceArn": a.bucket_arn, "Status": "CREATING", "CreationDate": t},
        {"RecoveryPointArn": "x3", "ResourceArn": arns("production").db_arn, "Status": "COMPLETED", "CreationDate": t},
        {"RecoveryPointArn": "x4", "ResourceArn": a.bucket_arn, "Status": "EXPIRED", "CreationDate": t},
    ]
    assert [p.arn for p in points_of(rps, a.db_arn, a.bucket_arn)] == ["x1"]


def test_restored_instance_names_fit_rds_and_the_backup_roles_bounds():
    assert restored_identifier("orders-test-db", "20261204T020000Z") == "orders-test-db-20261204t020000z"
    long = "a" * 50
    name = restored_identifier(long, "20261204T020000Z")
    assert name.startswith(long + "-") and len(name) == 63 and name != long
    from mxinfra.errors import UserError

    with pytest.raises(UserError, match="too long"):
        restored_identifier("a" * 60, "20261204T020000Z")


def test_the_double_refuses_what_the_model_refuses():
    """The double is honest: a request or answer off the model is caught (here without a server)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("backup")
    start = model.operation_model("StartBackupJob")
    assert check_shape({"BackupVaultName": "v", "ResourceArn": "r", "IamRoleArn": "i"}, start.input_shape, "in") == []
    assert any("IamRoleArn" in p for p in check_shape({"BackupVaultName": "v", "ResourceArn": "r"}, start.input_shape, "in"))
    assert any("Lifecycle" in p for p in check_shape({"BackupVaultName": "v", "ResourceArn": "r", "IamRoleArn": "i", "Lifecycle": {"DeleteAfterDays": "14"}}, start.input_shape, "in"))
    assert any("Nope" in p for p in check_shape({"BackupVaultName": "v", "ResourceArn": "r", "IamRoleArn": "i", "Nope": 1}, start.input_shape, "in"))
    describe = model.operation_model("DescribeBackupJob")
    assert any("State" in p for p in check_shape({"BackupJobId": "j", "State": "DONE"}, describe.output_shape, "out"))
