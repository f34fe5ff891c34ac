"""Issue 21 on the aws target: production's files go back only through its files-restore machine, which backs
production up first (files_restore.py), so a holder of production's `backups` role cannot replace its files
without a way back, whatever they call.

The world is test_aws_backup_cli.py's (moto's RDS and S3, the AWS Backup double acting on them), with the
Step Functions double of test_aws_export.py running the machine the plan renders as its runner role: each
of its AWS Backup calls goes to the same double, authorised against the rendered runner policy. The CLI and
a hostile caller act as the rendered production `backups` policy (both doubles authorise every call against it).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

from mxinfra.backups import Backups
from mxinfra.naming import Naming
from mxinfra_aws import files_restore
from mxinfra_aws.backups import on_demand_days
from mxinfra_aws.policies import Arns, backups_policy, files_restore_runner_policy, permission_policy

from awshelpers import ACCOUNT, REGION, lint
from backup_double import BackupDouble
from export_double import StatesDouble
from iam_eval import allows
from test_aws_backup_cli import _cli, _files, _instances, _records, _rendered, deployed, double  # noqa: F401 (fixture)
from test_aws_export import _update

KEEP = on_demand_days(Backups())


def production(a: Arns) -> Arns:
    """The Arns the plan makes for a production environment with backups on."""
    return dataclasses.replace(a, production=True, aws_backup=True)


@pytest.fixture
def states(double: BackupDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StatesDouble]:
    """Step Functions on loopback, its AWS Backup calls served by `double` (no ECS task runs here)."""
    s = StatesDouble(REGION, ACCOUNT, work=tmp_path, images={}, s3_endpoint="", task_key_id="", ca=tmp_path / "no-ca.pem")
    s.backup = double
    with s.serve() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", url)
        yield s
    assert s.violations == [], s.violations


def _machine(states: StatesDouble, a: Arns) -> None:
    """The machine and its runner role, as `pulumi up` leaves them (the plan's own: test_the_plan_renders_...)."""
    p = production(a)
    states.add_machine(p.files_restore_machine_arn, files_restore.definition(p, KEEP), p.role_arn("files-restore-runner"), files_restore_runner_policy(p))


def _ready(double: BackupDouble, states: StatesDouble, project: Any, capsys: Any, tmp_path: Path) -> tuple[str, Arns, dict[str, Any]]:
    """Production as `pulumi up` leaves it, machine included, every call made as its rendered `backups` role:
    (stack, Arns, that policy)."""
    stack, a = deployed(double, project, "production")
    _machine(states, a)
    policy = _rendered(project, capsys, tmp_path, stack, "production")["backups"]
    double.policy = states.caller_policy = policy
    return stack, a, policy


# --- the plan ------------------------------------------------------------------------------------------


def test_the_plan_renders_the_machine_on_production_only():
    inputs = _update("production")  # (with backupExport: the machine counts the archive restore's and the export's executions too)
    a = dataclasses.replace(production(Arns(REGION, ACCOUNT, "orders-cluster", Naming("orders", "production"))), export=True)
    mine = {n: (t, i) for n, (t, i) in inputs.items() if n.startswith("orders-production-files-restore")}
    assert {n: t for n, (t, _) in mine.items()} == {
        "orders-production-files-restore-runner-role": "aws:iam/role:Role",
        "orders-production-files-restore-runner-role-policy": "aws:iam/rolePolicy:RolePolicy",
        "orders-production-files-restore-machine": "aws:sfn/stateMachine:StateMachine",
    }
    machine = mine["orders-production-files-restore-machine"][1]
    assert machine["name"] == a.files_restore_name and machine["roleArn"].endswith("orders-production-files-restore-runner-role")
    assert json.loads(machine["definition"]) == files_restore.definition(a, KEEP)
    assert json.loads(mine["orders-production-files-restore-runner-role-policy"][1]["policy"]) == files_restore_runner_policy(a)
    trust = json.loads(mine["orders-production-files-restore-runner-role"][1]["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "states.amazonaws.com"}
    assert trust["Statement"][0]["Condition"]["ArnLike"] == {"aws:SourceArn": a.files_restore_machine_arn}
    # below production the backups role restores a bucket's recovery point itself: no machine
    assert not [n for n in _update("acceptance") if "files-restore" in n]


def test_production_backups_may_restore_a_bucket_only_through_the_machine():
    a = production(Arns(REGION, ACCOUNT, "orders-cluster", Naming("orders", "production")))
    tags = {"aws:ResourceTag/mxinfra:app": "orders", "aws:ResourceTag/mxinfra:environment": "production"}
    s3_point = f"arn:aws:backup:{REGION}:{ACCOUNT}:recovery-point:0a1b2c3d-1111"
    rds_point = f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:awsbackup:job-0a1b2c3d"
    for doc in (backups_policy(a), permission_policy(a, "backups")):
        assert not allows(doc, "backup:StartRestoreJob", s3_point, tags)  # into the bucket itself: never directly
        assert allows(doc, "backup:StartRestoreJob", rds_point, tags)  # into a new instance (the backup role's bounds)
        assert allows(doc, "backup:GetRecoveryPointRestoreMetadata", s3_point, tags)
        assert allows(doc, "states:StartExecution", a.files_restore_machine_arn)
        assert allows(doc, "states:DescribeExecution", f"{a.files_restore_machine_arn.replace(':stateMachine:', ':execution:')}:x")
        assert not allows(doc, "states:StopExecution", f"{a.files_restore_machine_arn.replace(':stateMachine:', ':execution:')}:x")
    # the Deny holds whatever else the role is given (an administrator's broad Allow added later)
    widened = {**backups_policy(a), "Statement": [*backups_policy(a)["Statement"], {"Effect": "Allow", "Action": "backup:*", "Resource": "*"}]}
    assert not allows(widened, "backup:StartRestoreJob", s3_point, tags)
    assert allows(widened, "backup:StartRestoreJob", rds_point, tags)
    # below production, as before: the holder restores the bucket's recovery point itself
    below = dataclasses.replace(a, production=False)
    assert allows(backups_policy(below), "backup:StartRestoreJob", s3_point, tags)
    assert not allows(backups_policy(below), "states:StartExecution", a.files_restore_machine_arn)
    # the machine's runner: the backup first and that bucket's points, as the backup role, nothing else
    runner = files_restore_runner_policy(a)
    assert allows(runner, "backup:StartRestoreJob", s3_point, tags)
    assert not allows(runner, "backup:StartRestoreJob", s3_point, {**tags, "aws:ResourceTag/mxinfra:environment": "acceptance"})
    assert not allows(runner, "backup:StartRestoreJob", rds_point, tags)
    assert allows(runner, "iam:PassRole", a.role_arn("backup"), {"iam:PassedToService": "backup.amazonaws.com"})
    assert not allows(runner, "iam:PassRole", a.role_arn("task"), {"iam:PassedToService": "backup.amazonaws.com"})
    assert not allows(runner, "backup:DeleteRecoveryPoint", s3_point, tags)
    assert lint(runner) == [] and lint(backups_policy(a)) == []


# --- end to end ----------------------------------------------------------------------------------------


def test_production_restore_backs_up_through_the_machine_then_restores_every_file(double, states, project, capsys, tmp_path):
    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=a.bucket_name, Key="files/doc1", Body=b"one")
    s3.put_object(Bucket=a.bucket_name, Key="files/doc2", Body=b"two")
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    (backup_id,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    s3.put_object(Bucket=a.bucket_name, Key="files/doc1", Body=b"changed")
    s3.delete_object(Bucket=a.bucket_name, Key="files/doc2")
    s3.put_object(Bucket=a.bucket_name, Key="files/doc3", Body=b"written since")
    # whatever AWS's restore metadata of the point says, the machine's destination wins
    (point,) = [rp for rp in double.points.values() if rp["ResourceType"] == "S3"]
    point["_metadata"] = {**point["_metadata"], "DestinationBucketName": "somebody-elses", "NewBucket": "true"}
    requests_before = len(double.requests)

    rc, said, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    assert rc == 0, err
    assert _files(a.bucket_name) == {"files/doc1": b"one", "files/doc2": b"two", "files/doc3": b"written since"}
    new = f"{a.db_identifier}-{backup_id.lower()}"
    assert set(_instances()) == {a.db_identifier, new}
    # the machine backed production up before any restore job started; it restored the files, the command the database
    ops = [op for op, _ in double.requests[requests_before:] if op.startswith("Start")]
    assert ops == ["StartBackupJob", "StartBackupJob", "StartRestoreJob", "StartRestoreJob"]
    by_machine = [op for op in double.called if op.startswith("Start")]
    assert by_machine == ["StartBackupJob", "StartBackupJob", "StartRestoreJob"]
    # the machine followed its job to the end (so that nothing else runs while it writes the bucket)
    assert double.called[-1] == "DescribeRestoreJob" and double.called.count("DescribeRestoreJob") == 2
    restores = {p["ResourceType"]: p for op, p in double.requests if op == "StartRestoreJob"}
    assert restores["S3"]["Metadata"] == {"DestinationBucketName": a.bucket_name, "NewBucket": "false", "EncryptionType": "SSE_S3"}
    assert restores["S3"]["IamRoleArn"] == a.role_arn("backup") and restores["RDS"]["Metadata"]["DBInstanceIdentifier"] == new
    assert double.denied == [] and states.denied == []
    # the record: the intent says the machine takes the backup; the backup it took; the restore naming it
    recs = _records(project, "production")
    assert [r.action for r in recs] == ["backup", "intent", "backup", "restore"]
    taken = recs[2].changes["backup"]
    assert taken["trigger"] == "before restore" and taken["id"] != backup_id
    assert recs[1].changes == {"intends": "restore", "restore": {"id": backup_id, "from": "production", "backupFirstBy": "the restore"}}
    jobs = {j["ResourceType"]: j["RestoreJobId"] for j in double.restores.values()}
    assert recs[3].changes == {"restore": {"id": backup_id, "from": "production", "backupBefore": taken["id"], "database": new, "filesInto": a.bucket_name,
                                           "restoreJobs": {"files": jobs["S3"], "database": jobs["RDS"]}}}
    # the backup taken first is one of the vault's, both resources, listed
    rc, out, _ = _cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path), "--json")
    assert json.loads(out) == sorted([backup_id, taken["id"]], reverse=True)
    assert said.splitlines() == [f"production: backup {taken['id']} taken first", f"production: restored backup {backup_id} (backup {taken['id']} taken first)"]
    assert _cli(capsys, "activity", "verify", "-e", "production", "-C", str(project.path))[0] == 0


def _a_backup(double: BackupDouble, project: Any, capsys: Any, stack: str) -> dict[str, str]:
    """An on-demand backup taken by the CLI: its recovery points by resource type."""
    rc, _, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    assert rc == 0, err
    return {rp["ResourceType"]: arn for arn, rp in double.points.items()}


def test_a_hostile_holder_cannot_restore_the_bucket_without_the_backup_first(double, states, project, capsys, tmp_path):
    """What the CLI never does, tried with the production `backups` role's own rights: StartRestoreJob of the
    bucket's recovery point straight into the bucket is refused by AWS; the database's goes only into a new instance."""
    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=a.bucket_name, Key="f", Body=b"backed up")
    points = _a_backup(double, project, capsys, stack)
    s3.put_object(Bucket=a.bucket_name, Key="f", Body=b"current")
    backup = boto3.client("backup", region_name=REGION)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        backup.start_restore_job(RecoveryPointArn=points["S3"], Metadata={"DestinationBucketName": a.bucket_name, "NewBucket": "false"}, IamRoleArn=a.role_arn("backup"), ResourceType="S3")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert _files(a.bucket_name) == {"f": b"current"}
    assert ("backup:StartRestoreJob", points["S3"]) in double.denied


@pytest.mark.parametrize("given", ["database", "garbage"])
def test_the_machine_started_directly_restores_nothing_but_the_buckets_own_point(double, states, project, capsys, tmp_path, given):
    """A holder starting the machine with their own input: the database's recovery point (which would restore
    into whatever the metadata says) or a made-up one is refused after production was backed up; nothing restored."""
    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    points = _a_backup(double, project, capsys, stack)
    files_before = len([1 for op in double.called if op == "StartBackupJob"])
    arn = points["RDS"] if given == "database" else f"arn:aws:backup:{REGION}:{ACCOUNT}:recovery-point:made-up"
    sfn = boto3.client("stepfunctions", region_name=REGION)
    execution = sfn.start_execution(stateMachineArn=production(a).files_restore_machine_arn, name="hostile", input=json.dumps({"files": arn}))["executionArn"]
    d = _ended(sfn, execution)
    assert d["status"] == "FAILED" and d["error"] == "mxinfra.FilesNotRestored", d
    assert not [op for op, _ in double.requests if op == "StartRestoreJob"]
    assert [op for op in double.called if op == "StartBackupJob"][files_before:] == ["StartBackupJob", "StartBackupJob"]  # backed up all the same


@pytest.mark.parametrize("payload", ["{}", '{"files": 7}', '{"files": null}', '{"files": ["arn:aws:backup:eu-west-1:123456789012:recovery-point:x"]}', "[]"])
def test_input_the_command_never_gives_backs_nothing_up_and_restores_nothing(double, states, project, capsys, tmp_path, payload):
    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    d = _ended(sfn, sfn.start_execution(stateMachineArn=production(a).files_restore_machine_arn, name="odd", input=payload)["executionArn"])
    assert d["status"] == "FAILED" and d["error"] == "mxinfra.BadInput", d
    assert double.called == []


def _ended(sfn: Any, execution: str) -> dict[str, Any]:
    import time

    for _ in range(400):
        d = sfn.describe_execution(executionArn=execution)
        if d["status"] != "RUNNING":
            return d
        time.sleep(0.05)
    raise AssertionError(f"{execution} still runs")


def test_a_backup_first_that_fails_restores_nothing_and_is_recorded_so(double, states, project, capsys, tmp_path):
    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=a.bucket_name, Key="f", Body=b"backed up")
    points = _a_backup(double, project, capsys, stack)
    assert set(points) == {"RDS", "S3"}
    s3.put_object(Bucket=a.bucket_name, Key="f", Body=b"current")
    backup_id = re.findall(r"\d{8}T\d{6}Z", _cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path))[1])[0]
    double.fail = "backup"
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert "ended FAILED" in said and "mxinfra.BackupFirstFailed" in said and "the database's restore was not started either" in said and said.endswith("(recorded)"), said
    assert not [op for op, _ in double.requests if op == "StartRestoreJob"]
    assert _files(a.bucket_name) == {"f": b"current"} and set(_instances()) == {a.db_identifier}
    recs = _records(project, "production")
    assert [r.action for r in recs] == ["backup", "intent", "restore"]
    assert recs[2].changes["restore"]["database"] == "not restored" and recs[2].changes["restore"]["files"] == "not restored"
    assert "backupBefore" not in recs[2].changes["restore"]


def test_a_stack_without_the_machine_yet_gets_the_commands_backup_first(double, states, project, capsys):
    """Deployed before the machine existed (no `pulumi up` since, so the role still restores buckets itself and
    holds no Step Functions right on it): the command says so and takes the backup itself, as before."""
    stack, a = deployed(double, project, "production")
    boto3.client("s3", region_name=REGION).put_object(Bucket=a.bucket_name, Key="f", Body=b"1")
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    (first,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", first, "-C", str(project.path))
    assert rc == 0, err
    said = " ".join(err.split())
    assert f"the files-restore machine {production(a).files_restore_machine_arn} is not deployed (AWS refused states:DescribeStateMachine (AccessDeniedException)): this command takes the backup itself (run `pulumi up` to deploy it)" in said, said
    assert [r.action for r in _records(project, "production")] == ["backup", "backup", "intent", "restore"]
    assert double.called == []


def test_production_backups_holds_exactly_the_step_functions_rights_the_restore_uses(double, states, project, capsys, tmp_path):
    stack, a, policy = _ready(double, states, project, capsys, tmp_path)
    boto3.client("s3", region_name=REGION).put_object(Bucket=a.bucket_name, Key="f", Body=b"1")
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "production", "-C", str(project.path))
    (first,) = re.findall(r"backup (\d{8}T\d{6}Z) taken", out)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", first, "-C", str(project.path))
    assert rc == 0, err
    made = {action for who, action, _ in states.calls if who == "caller"}
    assert made == {"states:DescribeStateMachine", "states:StartExecution", "states:DescribeExecution", "states:GetExecutionHistory"}
    granted = {x for st in policy["Statement"] if st["Effect"] == "Allow" for x in st["Action"] if x.startswith("states:")}
    assert granted == made and states.denied == [] and double.denied == []


def test_a_point_of_another_bucket_tagged_as_this_environments_is_refused_after_the_backup(double, states, project, capsys, tmp_path):
    """A recovery point the runner may read (this environment's tags) of a bucket that is not the environment's:
    the machine's own check refuses it (mxinfra.NotThisBucket), nothing restored."""
    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="orders-lookalike", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket="orders-lookalike", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_tagging(Bucket="orders-lookalike", Tagging={"TagSet": [{"Key": "mxinfra:app", "Value": "orders"}, {"Key": "mxinfra:environment", "Value": "production"}]})
    s3.put_object(Bucket="orders-lookalike", Key="f", Body=b"theirs")
    (arn,) = double.scheduled_run(a.backup_vault_name, datetime(2026, 12, 3, 2, 0, 7, tzinfo=timezone.utc), {"files": "arn:aws:s3:::orders-lookalike"}, a.role_arn("backup"))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    d = _ended(sfn, sfn.start_execution(stateMachineArn=production(a).files_restore_machine_arn, name="lookalike", input=json.dumps({"files": arn}))["executionArn"])
    assert d["status"] == "FAILED" and d["error"] == "mxinfra.NotThisBucket", d
    assert d["cause"] == f"{arn} is not a completed backup of the bucket {a.bucket_name} in the vault {a.backup_vault_name}: nothing was restored"
    assert "DescribeRecoveryPoint" in double.called and not [op for op, _ in double.requests if op == "StartRestoreJob"]


def test_a_throttled_look_at_the_machine_stops_the_command_before_anything(double, states, project, capsys, tmp_path):
    """Only a machine that is not there sends the command back to its own backup first: with the machine
    deployed the role may not restore the files itself, so any other failure to read it stops everything."""
    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    _a_backup(double, project, capsys, stack)
    backup_id = json.loads(_cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path), "--json")[1])[0]
    states.throttle_describe_machine = 10
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err and "states:DescribeStateMachine" in said and "ThrottlingException" in said, said
    assert said.endswith("nothing was recorded")
    assert [r.action for r in _records(project, "production")] == ["backup"]  # the one _a_backup took
    assert not [op for op, _ in double.requests if op == "StartRestoreJob"] and states.starts == 0


def test_a_database_restore_that_fails_after_the_files_went_back_is_recorded_so(double, states, project, capsys, tmp_path):
    """The files go back first (after the machine's backup); an instance of the restore's name left by an
    earlier restore fails the database's job: recorded as database not restored, the files in."""
    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=a.bucket_name, Key="f", Body=b"backed up")
    _a_backup(double, project, capsys, stack)
    backup_id = json.loads(_cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path), "--json")[1])[0]
    s3.put_object(Bucket=a.bucket_name, Key="f", Body=b"current")
    boto3.client("rds", region_name=REGION).create_db_instance(
        DBInstanceIdentifier=f"{a.db_identifier}-{backup_id.lower()}", Engine="postgres", DBInstanceClass="db.t4g.micro", AllocatedStorage=20, MasterUsername="mendix", MasterUserPassword="not-used-0123"
    )
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err and "already exists" in said and f"the files were restored into {a.bucket_name}" in said and said.endswith("(recorded)"), said
    assert _files(a.bucket_name) == {"f": b"backed up"}
    recs = _records(project, "production")
    assert [r.action for r in recs] == ["backup", "intent", "backup", "restore"]
    outcome = recs[3].changes["restore"]
    assert outcome["database"] == "not restored" and outcome["filesInto"] == a.bucket_name and outcome["backupBefore"] == recs[2].changes["backup"]["id"]
    assert "files" not in outcome


def test_a_restore_call_the_machine_cannot_make_is_said_as_unknown_and_leaves_the_intent(double, states, project, capsys, tmp_path):
    """The machine's own StartRestoreJob refused (a runner role without it): the command cannot know from the
    execution whether AWS started the job, so it records no outcome and says how to look."""
    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    runner = production(a).role_arn("files-restore-runner")
    policy = states.role_policies[runner]
    states.role_policies[runner] = {**policy, "Statement": [
        {**st, "Action": [x for x in st["Action"] if x != "backup:StartRestoreJob"]} if st.get("Sid") == "RestoreFiles" else st for st in policy["Statement"]
    ]}
    boto3.client("s3", region_name=REGION).put_object(Bucket=a.bucket_name, Key="f", Body=b"1")
    _a_backup(double, project, capsys, stack)
    backup_id = json.loads(_cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path), "--json")[1])[0]
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "mxinfra.FilesMaybeRestored" in said and "whether the files were restored is not known" in said and "aws backup list-restore-jobs" in said, said
    assert "the restore's intent is recorded and no outcome follows it" in said
    assert [r.action for r in _records(project, "production")] == ["backup", "intent", "backup"]


def test_a_command_stopped_while_the_machine_ran_still_records_the_backup_it_took(double, states, project, capsys, tmp_path, monkeypatch):
    """Ctrl-C once the machine had backed production up: the backup is recorded, the intent stands alone and
    the command says the machine goes on."""
    from mxinfra_aws.backup_actions import VaultActions

    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    boto3.client("s3", region_name=REGION).put_object(Bucket=a.bucket_name, Key="f", Body=b"1")
    _a_backup(double, project, capsys, stack)
    backup_id = json.loads(_cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path), "--json")[1])[0]
    real = VaultActions._describe_patiently

    def interrupted(self: Any, sfn: Any, execution: str, *args: Any) -> dict[str, Any]:
        d = real(self, sfn, execution, *args)
        if d.get("status") != "RUNNING":  # the machine is past its backup: the user presses Ctrl-C now
            raise KeyboardInterrupt
        return d

    monkeypatch.setattr(VaultActions, "_describe_patiently", interrupted)
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    assert rc == 130, err
    assert "goes on without this command" in " ".join(err.split())
    recs = _records(project, "production")
    assert [r.action for r in recs] == ["backup", "intent", "backup"]
    assert recs[2].changes["backup"]["trigger"] == "before restore" and recs[2].changes["backup"]["id"] != backup_id


def _running(states: StatesDouble, machine: str, name: str) -> None:
    """An execution of `machine` that runs (as Step Functions lists it)."""
    arn = machine.replace(":stateMachine:", ":execution:") + f":{name}"
    states.executions[arn] = {"executionArn": arn, "stateMachineArn": machine, "name": name, "status": "RUNNING", "startDate": datetime.now(timezone.utc), "input": "{}"}


def _three_machines(states: StatesDouble, a: Arns) -> Arns:
    """A production stack with backupExport: the files restore, the archive restore and the export machines,
    each with its rendered runner policy (no ECS task runs here: a machine that gets past its count fails at
    its first ECS call, which this double is given nothing for)."""
    from mxinfra_aws import export
    from mxinfra_aws.policies import export_runner_policy, restore_runner_policy

    p = dataclasses.replace(production(a), export=True)
    states.add_machine(p.files_restore_machine_arn, files_restore.definition(p, KEEP), p.role_arn("files-restore-runner"), files_restore_runner_policy(p))
    states.add_machine(p.restore_machine_arn, export.restore_definition(p, "td", "sg", KEEP), p.role_arn("restore-runner"), restore_runner_policy(p))
    states.add_machine(p.export_machine_arn, export.definition(p, "td", "sg"), p.role_arn("export-runner"), export_runner_policy(p))
    return p


@pytest.mark.parametrize("beside", ["files restore", "archive restore", "export"])
def test_no_files_restore_beside_another_restore_or_an_export(double, states, project, capsys, tmp_path, beside):
    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    p = _three_machines(states, a)
    boto3.client("s3", region_name=REGION).put_object(Bucket=a.bucket_name, Key="f", Body=b"1")
    _a_backup(double, project, capsys, stack)
    backup_id = json.loads(_cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path), "--json")[1])[0]
    _running(states, {"files restore": p.files_restore_machine_arn, "archive restore": p.restore_machine_arn, "export": p.export_machine_arn}[beside], "other")
    backups_before = len([op for op, _ in double.requests if op == "StartBackupJob"])
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "mxinfra.FilesRestoreRunning" in said and said.endswith("(recorded)"), said
    # refused before its backup: nothing backed up, nothing restored
    assert len([op for op, _ in double.requests if op == "StartBackupJob"]) == backups_before
    assert not [op for op, _ in double.requests if op == "StartRestoreJob"] and states.denied == []
    recs = _records(project, "production")
    assert [r.action for r in recs] == ["backup", "intent", "restore"] and recs[2].changes["restore"]["files"] == "not restored"


@pytest.mark.parametrize("machine", ["archive restore", "export"])
def test_the_archive_restore_and_the_export_wait_for_no_files_restore(double, states, project, capsys, tmp_path, machine):
    """The other direction, run as the rendered machines do: beside a files restore that runs (the only
    execution there is), the archive restore and the export end Busy before anything (test_aws_restore_archive
    and test_aws_export run them to their end on production, where they count it too)."""
    _, a, _ = _ready(double, states, project, capsys, tmp_path)
    p = _three_machines(states, a)
    arn, busy = {"archive restore": (p.restore_machine_arn, "mxinfra.RestoreRunning"), "export": (p.export_machine_arn, "mxinfra.ExportRunning")}[machine]
    states.caller_policy = permission_policy(p, "backups")  # the backups role of a stack with backupExport
    sfn = boto3.client("stepfunctions", region_name=REGION)
    _running(states, p.files_restore_machine_arn, "restoring")
    d = _ended(sfn, sfn.start_execution(stateMachineArn=arn, name="beside", input=json.dumps({"sha256": "0" * 64}))["executionArn"])
    assert d["status"] == "FAILED" and d["error"] == busy, d
    assert not [op for op, _ in double.requests if op == "StartBackupJob"]


def test_below_production_no_machine_counts_a_files_restore():
    from mxinfra_aws import export
    from mxinfra_aws.policies import export_runner_policy, restore_runner_policy

    below = dataclasses.replace(Arns(REGION, ACCOUNT, "orders-cluster", Naming("orders", "acceptance")), export=True)
    for definition, runner in ((export.restore_definition(below, "td", "sg"), restore_runner_policy(below)), (export.definition(below, "td", "sg"), export_runner_policy(below))):
        assert below.files_restore_machine_arn not in json.dumps(definition)
        assert not allows(runner, "states:ListExecutions", below.files_restore_machine_arn)


def test_a_restore_job_that_fails_is_said_with_its_id_and_leaves_the_intent(double, states, project, capsys, tmp_path):
    """The machine follows its job: one that ends FAILED may have put some files back, so nothing is claimed."""
    stack, a, _ = _ready(double, states, project, capsys, tmp_path)
    boto3.client("s3", region_name=REGION).put_object(Bucket=a.bucket_name, Key="f", Body=b"1")
    _a_backup(double, project, capsys, stack)
    backup_id = json.loads(_cli(capsys, "backup", "list", "-s", stack, "-e", "production", "-C", str(project.path), "--json")[1])[0]
    double.fail = "restore"
    rc, out, err = _cli(capsys, "backup", "restore", "-s", stack, "-e", "production", "--id", backup_id, "-C", str(project.path))
    said = " ".join(err.split())
    (job,) = double.restores
    assert rc == 2 and f"the restore job {job} of the files ended FAILED or ABORTED: some files may have been put back" in said, said
    assert "whether the files were restored is not known" in said and "the database's restore was not started" in said
    assert [r.action for r in _records(project, "production")] == ["backup", "intent", "backup"]
