"""Issue 21 on the aws target: `mxinfra backup restore --archive`, an archive from this machine restored by the
restore task.

The plan's contract first (the imports bucket, the restore task's roles and containers, the state machine
that alone runs it and stops the services around it, the `backups` role's rights). Then end to end, in the
same world as the download's tests (test_aws_export.py's `exported`: the CLI as a session of the `backups`
role; Step Functions and Fargate doubles that run the rendered definitions, the task's containers as local
processes against a real PostgreSQL and moto's S3 behind a gate that authorises each request by its
identity): an archive downloaded, the data changed, the archive restored, every row and file as they were.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from mxinfra.backup_scripts import SCRIPTS
from mxinfra.backups import Backups
from mxinfra.components import MendixApp
from mxinfra_aws import backup_actions, export
from mxinfra_aws.backups import lock_bounds
from mxinfra_aws.config import BackupExportConfig
from mxinfra_aws.policies import Arns, imports_bucket_policy, permission_policy, restore_runner_policy, restore_task_policy

from awshelpers import ACCOUNT, REGION, config, deployment, lint, run_as_update
from iam_eval import allows
from object_store import alpine_path  # noqa: F401 (fixture)
from postgres import PostgresServer
from test_aws_backup_cli import _cli, _records
from test_aws_export import CI_KEY, CLUSTER, EXPORT, FILES, POSTGRES, RCLONE, RESTORE_KEY, SUBNETS, Deployed, _rows, _update, arns, exported, pg  # noqa: F401 (fixtures)

MINE = {"s3:ResourceAccount": ACCOUNT}
LATER = "9c8d7e6f-0000-0000-0000-000000000003"  # a file written after the backup: a restore copies, never syncs


# --- the plan ------------------------------------------------------------------------------------------


def test_the_plan_renders_the_restore_task_its_machine_and_the_imports_bucket():
    inputs = _update()
    a = arns("test")
    mine = {n: i for n, (t, i) in inputs.items() if n.startswith(("orders-test-restore", "orders-test-imports"))}
    assert {n: inputs[n][0] for n in mine} == {
        "orders-test-imports": "aws:s3/bucket:Bucket",
        "orders-test-imports-public-access": "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "orders-test-imports-ownership": "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "orders-test-imports-encryption": "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "orders-test-imports-lifecycle": "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "orders-test-imports-policy": "aws:s3/bucketPolicy:BucketPolicy",
        "orders-test-restore-task-role": "aws:iam/role:Role",
        "orders-test-restore-task-role-policy": "aws:iam/rolePolicy:RolePolicy",
        "orders-test-restore": "aws:ecs/taskDefinition:TaskDefinition",
        "orders-test-restore-runner-role": "aws:iam/role:Role",
        "orders-test-restore-runner-role-policy": "aws:iam/rolePolicy:RolePolicy",
        "orders-test-restore-machine": "aws:sfn/stateMachine:StateMachine",
    }
    bucket = mine["orders-test-imports"]
    assert bucket["bucket"] == a.imports_bucket_name and bucket["forceDestroy"] is True
    assert mine["orders-test-imports-public-access"]["blockPublicPolicy"] is True and mine["orders-test-imports-public-access"]["restrictPublicBuckets"] is True
    assert mine["orders-test-imports-lifecycle"]["rules"][0]["expiration"] == {"days": 1}
    assert json.loads(mine["orders-test-imports-policy"]["policy"]) == imports_bucket_policy(a)
    assert json.loads(mine["orders-test-restore-task-role-policy"]["policy"]) == restore_task_policy(a)
    assert json.loads(mine["orders-test-restore-runner-role-policy"]["policy"]) == restore_runner_policy(a)
    td = mine["orders-test-restore"]
    assert td["family"] == a.restore_name and td["requiresCompatibilities"] == ["FARGATE"] and td["ephemeralStorage"] == {"sizeInGib": 50}
    assert [c["name"] for c in json.loads(td["containerDefinitions"])] == ["fetch", "restore", "push-files"]
    assert td["taskRoleArn"].endswith("orders-test-restore-task-role") and td["executionRoleArn"].endswith("orders-test-export-execution-role")
    machine = mine["orders-test-restore-machine"]
    assert machine["name"] == a.restore_name and machine["roleArn"].endswith("orders-test-restore-runner-role")
    # the restore task's own definition (the mock's ARN of the resource named orders-test-restore), in the export's group
    assert json.loads(machine["definition"]) == export.restore_definition(a, f"arn:aws:mock:{REGION}:{ACCOUNT}:taskdefinition/orders-test-restore", "orders-test-export-sg-id")
    # production protects the bucket as it protects the exports bucket
    production = run = _update("production")
    protected = {n for n, (t, i) in run.items() if n.startswith("orders-production-imports")}
    assert len(protected) == 6 and production


def test_the_restore_containers_run_the_core_scripts_hardened_in_order():
    a = arns("test")
    x = BackupExportConfig.model_validate(EXPORT)
    fetch, restore, push = export.restore_container_definitions(a, x, "db.example", "5432", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1-AbCdEf")
    for c in (fetch, restore, push):
        assert c["entryPoint"] == ["/bin/sh", "-c"] and c["readonlyRootFilesystem"] is True
        assert c["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
        assert c["logConfiguration"]["options"]["awslogs-stream-prefix"] == "restore"
    assert (fetch["image"], restore["image"], push["image"]) == (RCLONE, POSTGRES, RCLONE)
    assert fetch["command"] == [(SCRIPTS / "store.sh").read_text(), "store.sh", "fetch"]
    assert restore["command"] == [(SCRIPTS / "restore.sh").read_text(), "restore.sh"]
    assert push["command"] == [(SCRIPTS / "store.sh").read_text(), "store.sh", "push-files"]
    assert restore["dependsOn"] == [{"containerName": "fetch", "condition": "SUCCESS"}] and push["dependsOn"] == [{"containerName": "restore", "condition": "SUCCESS"}]
    assert [c["essential"] for c in (fetch, restore, push)] == [False, False, True]
    env = {e["name"]: e["value"] for e in restore["environment"]}
    from mxinfra.backup_archive import CLEAN_SQL

    assert env["RESTORE_CLEAN_SQL"] == CLEAN_SQL and env["FILES_LAYOUT"] == "keys" and env["DATABASE_URL"] == "postgresql://db.example:5432/mendix?sslmode=require"
    assert "BACKUP_SHA256" not in env and "BACKUP_ID" not in env  # the execution's, per run
    assert {s["name"] for s in restore["secrets"]} == {"PGUSER", "PGPASSWORD"} and "secrets" not in fetch and "secrets" not in push
    assert {e["name"]: e["value"] for e in fetch["environment"]}["BACKUP_REMOTE"] == f"store:{a.imports_bucket_name}"
    assert {e["name"]: e["value"] for e in push["environment"]}["FILES_REMOTE"] == f"files:{a.bucket_name}"
    # ECS refuses a task definition over 64 KiB: the scripts and clean.sql inline stay well under it
    assert len(json.dumps([fetch, restore, push])) < 56 * 1024


@pytest.mark.parametrize("followers", [False, True])
def test_the_machine_stops_the_services_around_the_task_and_fixes_everything_but_id_and_sha(followers: bool):
    a = Arns(REGION, ACCOUNT, CLUSTER, arns("test").naming, subnets=SUBNETS, export=True, followers=followers)
    d = export.restore_definition(a, "arn:aws:ecs:eu-west-1:123456789012:task-definition/orders-test-restore:3", "sg-1")
    states = d["States"]
    services = list(a.service_names)
    assert len(services) == (2 if followers else 1)
    # each service read, stopped, checked, started again (after success and after a failure), by name
    for i, service in enumerate(services):
        for state in (f"Read{i}", f"Stop{i}", f"Check{i}", f"StartAgain{i}", f"StartAgainAfterFailure{i}"):
            assert states[state]["Parameters"].get("Service", states[state]["Parameters"].get("Services", [None])[0]) == service, state
        assert states[f"Stop{i}"]["Parameters"]["DesiredCount"] == 0
        assert states[f"StartAgain{i}"]["Parameters"]["DesiredCount.$"] == f"$.service{i}.desired"
    # each service marked as being restored (the tag the deploy role's UpdateService needs absent) before the
    # first stop, and unmarked after it was started again, on either way out
    for i, arn in enumerate(a.service_arns):
        assert states[f"Mark{i}"]["Parameters"] == {"ResourceArn": arn, "Tags": [{"Key": "mxinfra:restoring", "Value.$": "$$.Execution.Name"}]}
        for label in ("StartAgain", "StartAgainAfterFailure"):
            assert states[f"{label}Unmark{i}"]["Parameters"] == {"ResourceArn": arn, "TagKeys": ["mxinfra:restoring"]}
    assert states[f"Read{len(services) - 1}"]["Next"] == "Mark0" and states[f"Mark{len(services) - 1}"]["Next"] == "Stop0"
    assert states[f"StartAgain{len(services) - 1}"]["Next"] == "StartAgainUnmark0" and states[f"StartAgainUnmark{len(services) - 1}"]["Next"] == "Started"
    # every state that runs once a service may be stopped (or marked) goes, on failure, to starting them again
    stopped = [n for n in states if re.fullmatch(r"(Mark|Stop|Check)\d+|Restore", n)]
    assert all(states[n]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "StartAgainAfterFailure0"}] for n in stopped)
    restore = states["Restore"]["Parameters"]
    assert restore["TaskDefinition"].endswith("orders-test-restore:3") and restore["LaunchType"] == "FARGATE"
    assert restore["NetworkConfiguration"]["AwsvpcConfiguration"] == {"Subnets": list(SUBNETS), "SecurityGroups": ["sg-1"], "AssignPublicIp": "DISABLED"}
    # the caller's inputs: the execution's name (the archive's key and id) and the sha256 it vouched for, as variables only
    assert restore["Overrides"] == {
        "ContainerOverrides": [
            {"Name": "fetch", "Environment": [{"Name": "BACKUP_ID", "Value.$": "$$.Execution.Name"}]},
            {"Name": "restore", "Environment": [{"Name": "BACKUP_ID", "Value.$": "$$.Execution.Name"}, {"Name": "BACKUP_SHA256", "Value.$": "$.sha256"}]},
        ]
    }
    # a path that names nothing is a States.Runtime error, which no Catch catches: the only input read (the
    # sha256) is checked before anything is stopped; every other path is one the machine wrote itself, or
    # the answer of the call it selects from
    # (nor beside a download's export: counted first, nothing stopped yet)
    assert states["Alone"]["Default"] == "Exports" and states["Exports"]["Parameters"]["StateMachineArn"] == a.export_machine_arn
    assert states["NoExport"]["Choices"] == [{"Variable": "$.exports.running", "NumericGreaterThan": 0, "Next": "Busy"}] and states["NoExport"]["Default"] == "Input"
    assert states["Input"]["Choices"] == [
        {"And": [{"Variable": "$.sha256", "IsPresent": True}, {"Variable": "$.sha256", "IsString": True}], "Next": "Clean"}
    ] and states["Input"]["Default"] == "BadInput"
    # the rest of the input is dropped: nothing the caller adds (a `startFailure`, say) reaches a later state
    assert states["Clean"] == {"Type": "Pass", "Parameters": {"sha256.$": "$.sha256", "unmarkFailure": None}, "Next": "Read0"}
    paths = {(n, p) for n, st in states.items() for p in re.findall(r"(?<!\$)\$\.[A-Za-z0-9_.\[\]]+", json.dumps(st))}
    assert {n for n, p in paths if p == "$.sha256"} == {"Input", "Clean", "Restore"}
    own = r"\$\.(guard|exports|service\d|check|polls|failure|startFailure|unmarkFailure|both|task)(\..*|\[.*)?|\$\.Services(\[0\]\.\w+)?|\$\.Executions"
    assert sorted(p for n, p in paths if p != "$.sha256" and not re.fullmatch(own, p)) == []
    # each service started again even when another could not be, the failure said at the end
    for i in range(len(services)):
        for label in ("StartAgain", "StartAgainAfterFailure"):
            assert states[f"{label}{i}"]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.startFailure", "Next": states[f"{label}{i}"]["Next"]}]
    assert states["Failed"] == {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"}


def test_the_backups_role_may_upload_and_start_the_restore_never_stop_it_or_run_a_task():
    a = arns("production")
    policy = permission_policy(a, "backups")
    assert allows(policy, "states:StartExecution", a.restore_machine_arn)
    assert allows(policy, "states:DescribeExecution", a.restore_executions_arn.replace("*", "20261205T010203Z"))
    # a restore stopped half-way would leave the services stopped
    assert not allows(policy, "states:StopExecution", a.restore_executions_arn.replace("*", "20261205T010203Z"))
    assert allows(policy, "s3:PutObject", f"{a.imports_bucket_arn}/20261205T010203Z.tar.gz", MINE)
    assert not allows(policy, "s3:PutObject", f"{a.imports_bucket_arn}/x", {"s3:ResourceAccount": "999999999999"})
    for action, resource in (
        ("ecs:RunTask", a.restore_task_definition_arn.replace("*", "1")),
        ("ecs:UpdateService", f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{a.cluster}/{a.service_name}"),
        ("iam:PassRole", a.role_arn("restore-task")),
    ):
        assert not allows(policy, action, resource, {"ecs:cluster": a.cluster_arn}), action
    # the restore task reads the imports and writes files, nothing else; no delete anywhere
    task = restore_task_policy(a)
    assert allows(task, "s3:GetObject", f"{a.imports_bucket_arn}/k", MINE) and allows(task, "s3:PutObject", f"{a.bucket_arn}/k", MINE)
    assert not allows(task, "s3:DeleteObject", f"{a.bucket_arn}/k", MINE) and not allows(task, "s3:PutObject", f"{a.imports_bucket_arn}/k", MINE)
    # the runner starts the restore family only, and may not turn on ECS Exec while it updates a service
    runner = restore_runner_policy(a)
    svc = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{a.cluster}/{a.service_name}"
    assert allows(runner, "ecs:UpdateService", svc, {}) and not allows(runner, "ecs:UpdateService", svc, {"ecs:enable-execute-command": "true"})
    assert not allows(runner, "ecs:RunTask", a.export_task_definition_arn.replace("*", "1"), {"ecs:cluster": a.cluster_arn})


def test_the_restore_policies_lint_clean():
    a = arns("production")
    for policy in (restore_task_policy(a), restore_runner_policy(a), imports_bucket_policy(a)):
        assert lint(policy) == [], policy


# --- end to end ----------------------------------------------------------------------------------------


def _restore_without(d: Deployed, project: Any, tmp_path: Path, capsys: Any, sid: str) -> tuple[int, str, str]:
    """A downloaded archive restored by a machine whose runner role lacks the statement `sid`."""
    archive = _download(d, project, tmp_path / "downloads", capsys)
    policy = restore_runner_policy(d.a)
    d.states.role_policies[d.a.role_arn("restore-runner")] = {**policy, "Statement": [st for st in policy["Statement"] if st["Sid"] != sid]}
    return _restore(d, project, archive, capsys)


def execution_of(d: Deployed) -> str:
    """The name of the one restore execution the doubles ran."""
    (name,) = [e["name"] for e in d.states.executions.values() if e["stateMachineArn"] == d.a.restore_machine_arn]
    return name


def _download(d: Deployed, project: Any, out_dir: Path, capsys: Any) -> Path:
    rc, out, err = _cli(capsys, "backup", "download", "-s", d.stack, "-e", d.role, "-o", str(out_dir), "-C", str(project.path))
    assert rc == 0, err
    (backup_id,) = re.findall(r"downloaded backup (\d{8}T\d{6}Z) to", out)
    d.states.ran.clear()
    return out_dir / f"{backup_id}.tar.gz"


def _restore(d: Deployed, project: Any, archive: Path, capsys: Any, *more: str) -> tuple[int, str, str]:
    return _cli(capsys, "backup", "restore", "-s", d.stack, "-e", d.role, "--archive", str(archive), "--from", d.role, "-C", str(project.path), *more)


def _change(pg: PostgresServer, d: Deployed) -> None:
    """What happened after the backup: rows changed and removed, a table added, a file overwritten and one added."""
    pg.psql('UPDATE "orders$customer" SET name = \'changed\'; DELETE FROM "system$filedocument"; CREATE TABLE "orders$later" (id bigint);')
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=d.moto)
    first = sorted(FILES)[0]
    s3.put_object(Bucket=d.a.bucket_name, Key=first, Body=b"overwritten")
    s3.put_object(Bucket=d.a.bucket_name, Key=LATER, Body=b"written after the backup")


def test_restore_archive_stops_the_app_restores_every_row_and_file_and_starts_it_again(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    d, a = exported, exported.a
    before = _rows(pg)
    archive = _download(d, project, tmp_path / "downloads", capsys)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    _change(pg, d)
    seen: dict[str, Any] = {}
    d.states.before_task = lambda: seen.update(services=json.loads(json.dumps(d.states.services)))
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 0, err + "".join(f"\n--- {k}:\n{v}" for k, v in d.states.logs.items())
    assert f"restored {archive.name} of test (sha256 {sha})" in out
    # every row and file as they were; the table made since is gone
    assert _rows(pg) == before
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'orders$later'").strip() == "0"
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=d.moto)
    assert {k: s3.get_object(Bucket=a.bucket_name, Key=k)["Body"].read() for k in FILES} == FILES
    assert s3.get_object(Bucket=a.bucket_name, Key=LATER)["Body"].read() == b"written after the backup"
    # the app was stopped while the task ran, then started with the count it had; while it ran the service
    # carried the restore's mark, which keeps the deploy role's UpdateService off it, and not after
    assert seen["services"] == {a.service_name: {"desired": 0, "running": 0, "tags": {"mxinfra:restoring": execution_of(d)}}}
    from mxinfra_aws.policies import deploy_policy

    svc = a.service_arns[0]
    update = {"ecs:cluster": a.cluster_arn, "ecs:task-definition": a.task_definition_arns[0].replace(":*", ":3"), "ecs:enable-execute-command": "false"}
    assert not allows(deploy_policy(a), "ecs:UpdateService", svc, {**update, "aws:ResourceTag/mxinfra:restoring": execution_of(d)})
    assert allows(deploy_policy(a), "ecs:UpdateService", svc, update)
    assert d.states.services[a.service_name]["tags"] == {}
    assert d.states.service_log == [(a.service_name, 0), (a.service_name, 2)] and d.states.services[a.service_name]["desired"] == 2
    (ran,) = d.states.ran
    execution = ran["Overrides"]["ContainerOverrides"][0]["Environment"][0]["Value"]
    assert ran["Overrides"]["ContainerOverrides"][1]["Environment"] == [{"Name": "BACKUP_ID", "Value": execution}, {"Name": "BACKUP_SHA256", "Value": sha}]
    assert f"has the sha256 the caller checked ({sha})" in d.states.logs["restore"]
    # the upload is gone once the restore ended; every request allowed, and only these
    assert s3.list_objects_v2(Bucket=a.imports_bucket_name).get("KeyCount") == 0
    assert d.gate.denied == [] and d.states.denied == []
    key = f"{a.imports_bucket_arn}/{execution}.tar.gz"
    assert sorted({(act, res) for k, act, res in d.gate.calls if k == d.caller_key and "imports" in res}) == [("s3:DeleteObject", key), ("s3:PutObject", key)]
    assert {act for k, act, res in d.gate.calls if k == RESTORE_KEY} == {"s3:ListBucket", "s3:GetObject", "s3:PutObject"}
    assert {(act, res.split(":::")[1].split("/")[0]) for k, act, res in d.gate.calls if k == RESTORE_KEY and act == "s3:PutObject"} == {("s3:PutObject", a.bucket_name)}
    # recorded, naming the archive and the download that vouches for it
    (download,) = [r for r in _records(project, d.role) if r.action == "backup-download"]
    (record,) = [r for r in _records(project, d.role) if r.action == "restore"]
    assert record.changes["restore"] == {"archive": {"size": archive.stat().st_size, "sha256": sha, "downloadRecord": download.seq}, "from": "test", "app": "stopped, then started", "execution": execution}
    from postgres import PASSWORD

    assert PASSWORD not in json.dumps(d.states.logs) + out + err


def _restore_with_the_upload(d: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any, change: Any) -> tuple[Path, str, int, str]:
    """A download restored after a change of the rows, `change(s3, bucket, key, archive)` done to its upload just
    before the task fetches it: the archive, the rows before the restore, its exit code and stderr."""
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    changed = _rows(pg)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=d.moto)

    def hook() -> None:
        (key,) = [o["Key"] for o in s3.list_objects_v2(Bucket=d.a.imports_bucket_name)["Contents"]]
        change(s3, d.a.imports_bucket_name, key, archive)

    d.states.before_task = hook
    rc, _, err = _restore(d, project, archive, capsys)
    return archive, changed, rc, err


def test_an_archive_replaced_in_the_bucket_is_not_restored_and_the_app_starts_again(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """Another holder of `backups` writes over the upload before the task fetches it: restore.sh compares it with
    the sha256 this command checked, restores nothing, and the machine starts the services again."""
    d, a = exported, exported.a
    archive, changed, rc, err = _restore_with_the_upload(d, pg, project, tmp_path, capsys, lambda s3, bucket, key, archive: s3.put_object(Bucket=bucket, Key=key, Body=archive.read_bytes() + b"\0" * 512))
    assert rc == 2 and "restore exited 1" in err and "nothing was restored; the services were started again" in err, err
    assert "not " in d.states.logs["restore"] and "(the archive the caller checked)" in d.states.logs["restore"]
    assert _rows(pg) == changed
    assert d.states.service_log == [(a.service_name, 0), (a.service_name, 2)]
    _nothing_restored(project, d, err, app="stopped, then started")


def _nothing_restored(project: Any, d: Deployed, err: str, app: str | None) -> None:
    """The machine said certainly nothing was restored: the intent is followed by that outcome, said so."""
    intent, outcome = _records(project, d.role)[-2:]
    assert intent.action == "intent" and outcome.action == "restore" and err.rstrip().endswith(") (recorded)"), err
    said = {k: v for k, v in outcome.changes["restore"].items() if k not in ("archive", "from", "execution")}
    assert said == {**({"app": app} if app else {}), "database": "not restored", "files": "not restored"}


def test_an_archive_the_fetch_cannot_read_restores_nothing_and_is_recorded_so(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """The upload gone before the task fetched it: fetch fails, restore (which needs its SUCCESS) never runs."""
    d = exported
    archive, changed, rc, err = _restore_with_the_upload(d, pg, project, tmp_path, capsys, lambda s3, bucket, key, archive: s3.delete_object(Bucket=bucket, Key=key))
    assert rc == 2 and "nothing was restored; the services were started again" in err, err
    assert _rows(pg) == changed
    _nothing_restored(project, d, err, app="stopped, then started")


def test_files_not_copied_back_are_recorded_as_not_restored(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    d, a = exported, exported.a
    before = _rows(pg)
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    # the file bucket refuses the task's writes (a bucket policy added by hand, say)
    d.gate.bucket_policies[a.bucket_name] = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"{a.bucket_arn}/*"}]}
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 2 and "the database was restored from" in err and "push-files exited" in err and "(recorded)" in err, err
    assert _rows(pg) == before
    (record,) = [r for r in _records(project, d.role) if r.action == "restore"]
    assert record.changes["restore"]["files"] == "not restored"
    assert d.states.services[a.service_name]["desired"] == 2


def _faults(d: Deployed, tmp_path: Path, **tools: str) -> None:
    """Commands found first by the restore container (each a sh script's body): a fault in its image."""
    fault = tmp_path / "fault"
    fault.mkdir()
    for name, body in tools.items():
        (fault / name).write_text(f"#!/bin/sh\n{body}\n")
        (fault / name).chmod(0o755)
    d.states.path_first["restore"] = fault


def test_a_restore_whose_own_move_of_the_files_fails_is_recorded_as_files_not_restored(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    # restore.sh exits 3 when it replaced the database and only moving the files into place failed; the
    # files' copy back (push-files, which needs its success) then never runs
    d, a = exported, exported.a
    before = _rows(pg)
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    _faults(d, tmp_path, mv="echo 'mv: cannot move: No space left on device' >&2\nexit 1")
    rc, out, err = _restore(d, project, archive, capsys)
    err = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert f"{d.role}: the database was restored from {archive.name}, but its files were not all copied back" in err, err
    assert "the services were started again" in err and "(recorded)" in err, err
    assert "No space left on device" in d.states.logs["restore"] and "push-files" not in d.states.logs
    assert _rows(pg) == before
    (record,) = [r for r in _records(project, d.role) if r.action == "restore"]
    assert record.changes["restore"]["files"] == "not restored" and record.changes["restore"]["app"] == "stopped, then started"
    assert d.states.services[a.service_name]["desired"] == 2


# What the restore container's psql does with the restore's own call (the one with --output) and with the
# question of what became of its transaction (txid_status): its connection lost once it sent its input,
# and then the server answering, or not. restore.sh asks again every 2 s for 300 s: `sleep` returns at
# once, and each `date +%s` is 200 s later than the one before.
_DATE = 'n=$(cat "$0.n" 2>/dev/null || echo 0); echo $((n + 1)) > "$0.n"\nREAL=$(PATH=${PATH#*:} command -v date)\ncase "$*" in\n  +%s) echo $(($("$REAL" +%s) + n * 200)) ;;\n  *) exec "$REAL" "$@" ;;\nesac'

_LOST = 'echo "psql: error: server closed the connection unexpectedly" >&2; exit 2'
_PSQL = {
    "answered": ('"$REAL" "$@"; ' + _LOST, 'exec "$REAL" "$@"'),
    "unanswered": ('"$REAL" "$@"; ' + _LOST, 'echo "psql: error: connection to server failed: Connection refused" >&2; exit 2'),
}


@pytest.mark.parametrize("server", list(_PSQL))
def test_a_psql_that_loses_its_connection_after_its_commit_is_recorded_as_the_server_says(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any, server: str) -> None:
    """psql fails once its COMMIT went through: the database is the archive's. Asked, the server says the
    transaction committed: restored, files and all, recorded. Unanswered: may or may not, no outcome. Before,
    restore.sh said 'as they were' (exit 1), recorded as nothing restored."""
    d, a = exported, exported.a
    before = _rows(pg)
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    restoring, asking = _PSQL[server]
    psql = f'REAL=$(PATH=${{PATH#*:}} command -v psql)\ncase "$*" in\n  *--output=*) {restoring} ;;\n  *txid_status*) {asking} ;;\n  *) exec "$REAL" "$@" ;;\nesac'
    _faults(d, tmp_path, psql=psql, sleep="exit 0", date=_DATE)
    rc, out, err = _restore(d, project, archive, capsys)
    err = " ".join(err.split())
    assert _rows(pg) == before  # committed, whatever psql said
    restores = [r for r in _records(project, d.role) if r.action == "restore"]
    if server == "answered":
        assert rc == 0, err
        assert re.search(r"but the server says transaction \d+ committed: the database was restored", d.states.logs["restore"])
        assert {k: boto3.client("s3", region_name=REGION, endpoint_url=d.moto).get_object(Bucket=a.bucket_name, Key=k)["Body"].read() for k in FILES} == FILES
        (record,) = restores
        assert "database" not in record.changes["restore"] and record.changes["restore"]["app"] == "stopped, then started"
    else:
        assert rc == 2 and "the server did not say whether its transaction committed, so the database may or may not have been replaced (check it)" in err, err
        assert re.search(r"the server did not say whether transaction \d+ committed within 300s", d.states.logs["restore"])
        assert restores == []
    assert d.states.services[a.service_name]["desired"] == 2


def test_an_archive_that_changes_while_it_is_read_is_never_restored(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge and the upload read the file side by side: the judge reads it first here, then the file
    changes, then the upload reads it: what was judged is not what was sent, and nothing starts."""
    import threading

    import mxinfra.backup_archive as ba

    d = exported
    archive = _download(d, project, tmp_path / "downloads", capsys)
    judged = threading.Event()
    checked, upload = ba.check, backup_actions._upload

    def check_first(*args: Any, **kw: Any) -> Any:
        try:
            return checked(*args, **kw)
        finally:
            judged.set()

    def change_then_upload(*args: Any, **kw: Any) -> Any:
        assert judged.wait(60)
        with open(archive, "ab") as f:
            f.write(b"\0" * 1024)
        return upload(*args, **kw)

    monkeypatch.setattr(ba, "check", check_first)
    monkeypatch.setattr(backup_actions, "_upload", change_then_upload)
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 2 and "changed while it was read" in err and "nothing was restored" in err, err
    assert d.states.ran == [] and d.states.service_log == []
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=d.moto)
    assert s3.list_objects_v2(Bucket=d.a.imports_bucket_name).get("KeyCount") == 0


def test_a_damaged_archive_is_refused_and_its_upload_removed(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    d = exported
    archive = _download(d, project, tmp_path / "downloads", capsys)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte: gzip's CRC says so
    archive.write_bytes(bytes(data))
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 2 and archive.name in err and "nothing was changed" in err, err
    assert d.states.ran == [] and d.states.service_log == []
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=d.moto)
    assert s3.list_objects_v2(Bucket=d.a.imports_bucket_name).get("KeyCount") == 0


def test_restore_archive_needs_a_session_of_the_backups_role_and_no_tunnel(exported: Deployed, project: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    d = exported
    archive = _download(d, project, tmp_path / "downloads", capsys)
    rc, out, err = _restore(d, project, archive, capsys, "--database-via", "127.0.0.1:5432")
    assert rc == 2 and "--database-via" in err and "leave it out" in err
    # the platform's user: may read the vault (it is asked first), but is no session of the backups role
    sts = boto3.client("sts", region_name=REGION, endpoint_url=d.moto)
    other = sts.assume_role(RoleArn=d.a.role_arn("deploy"), RoleSessionName="bob")["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", other["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", other["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", other["SessionToken"])
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 2 and "not a session of the environment's backups role" in err and "nothing was started" in err, err
    assert d.states.ran == [] and [c for c in d.gate.calls if "imports" in c[2]] == []


def test_the_imports_bucket_keeps_other_identities_of_the_account_out(exported: Deployed) -> None:
    """A CI role with every S3 right can neither plant an archive for the task nor read one uploaded."""
    d, a = exported, exported.a
    key = f"{a.imports_bucket_arn}/20261205T010203Z.tar.gz"
    assert not d.gate.authorized(CI_KEY, "s3:PutObject", key) and not d.gate.authorized(CI_KEY, "s3:GetObject", key)
    assert not d.gate.authorized(d.caller_key, "s3:GetObject", key)  # backups writes, the task reads
    assert d.gate.authorized(RESTORE_KEY, "s3:GetObject", key) and not d.gate.authorized(RESTORE_KEY, "s3:PutObject", key)


def test_a_refused_upload_stops_nothing_and_starts_nothing(exported: Deployed, project: Any, tmp_path: Path, capsys: Any) -> None:
    d, a = exported, exported.a
    archive = _download(d, project, tmp_path / "downloads", capsys)
    d.gate.bucket_policies[a.imports_bucket_name] = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"{a.imports_bucket_arn}/*"}]}
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 2 and f"AWS refused s3:PutObject of s3://{a.imports_bucket_name}/" in err, err
    assert d.states.ran == [] and d.states.service_log == []
    assert (backup_actions.FETCH, backup_actions.RESTORE, backup_actions.PUSH_FILES) == (export.FETCH, export.RESTORE, export.PUSH)


def test_services_that_do_not_stop_in_time_are_started_again_and_nothing_is_restored(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    d, a = exported, exported.a
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    changed = _rows(pg)
    d.states.services[a.service_name]["stuck"] = 1
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 2 and "mxinfra.NotStopped" in err and "did not stop within 600 s" in err and "nothing was restored; the services were started again" in err, err
    # polled every 15 s for 10 minutes, then the count it had back; no task ran
    assert d.states.waited == 600 and d.states.visited.count("Check0") == 40
    assert d.states.ran == [] and d.states.service_log == [(a.service_name, 0), (a.service_name, 2)]
    assert _rows(pg) == changed
    _nothing_restored(project, d, err, app="stopped, then started")


def _start_directly(d: Deployed, payload: str) -> dict[str, Any]:
    """The restore machine started by a holder of `backups` with the AWS CLI, not the command: its end."""
    import time

    states = boto3.session.Session().client("stepfunctions", region_name=REGION)  # the environment's credentials, now
    arn = states.start_execution(stateMachineArn=d.a.restore_machine_arn, name="20261205T010203Z", input=payload)["executionArn"]
    for _ in range(600):
        got = states.describe_execution(executionArn=arn)
        if got["status"] != "RUNNING":
            return got
        time.sleep(0.05)
    raise AssertionError("the execution never ended")


@pytest.mark.parametrize("payload", ["{}", '{"sha256": 7}', '{"sha256": ""}', '{"sha256": "", "startFailure": {"Error": "x", "Cause": "planted"}}'])
def test_input_the_command_would_never_give_stops_nothing_or_restores_nothing(exported: Deployed, pg: PostgresServer, payload: str) -> None:
    """Without `$.sha256` the Restore state's path would be a States.Runtime error, which no Catch takes: the
    machine checks the input before it stops anything. An empty one reaches restore.sh, which refuses it (an
    empty value never makes an outside archive trusted), and the services are started again."""
    d, a = exported, exported.a
    changed = _rows(pg)
    # an archive where the machine fetches it, uploaded as the backups role (whose session the CLI's is)
    boto3.session.Session().client("s3", region_name=REGION).put_object(Bucket=a.imports_bucket_name, Key="20261205T010203Z.tar.gz", Body=b"anything", ExpectedBucketOwner=ACCOUNT)
    got = _start_directly(d, payload)
    assert got["status"] == "FAILED"
    if '"sha256": ""' in payload:
        assert "BACKUP_SHA256 must be 64 lowercase hex digits" in d.states.logs["restore"]
        assert d.states.service_log == [(a.service_name, 0), (a.service_name, 2)]
        # what the caller adds to the input never reaches the end: the start is not reported failed
        assert got["error"] == "States.TaskFailed" and "planted" not in got.get("cause", "")
    else:
        assert got["error"] == "mxinfra.BadInput" and d.states.service_log == [] and d.states.ran == []
    assert _rows(pg) == changed and d.states.services[a.service_name]["desired"] == 2


def test_a_mark_the_machine_cannot_take_off_is_said_with_the_command_that_does(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    d, a = exported, exported.a
    rc, out, err = _restore_without(d, project, tmp_path, capsys, "UnmarkServices")
    assert rc == 0, err
    said = " ".join(err.split())
    assert "may still carry the restore's mark mxinfra:restoring" in said and f"aws ecs untag-resource --resource-arn {a.service_arns[0]} --tag-keys mxinfra:restoring" in said, said
    assert d.states.services[a.service_name]["tags"] == {"mxinfra:restoring": execution_of(d)} and d.states.services[a.service_name]["desired"] == 2


def test_a_mark_left_by_a_failed_restore_is_said_too(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """The restore task cannot be run and the mark cannot be taken off: the execution fails, and the command
    says both (Step Functions gives a failed execution's cause, not its output)."""
    d, a = exported, exported.a
    archive = _download(d, project, tmp_path / "downloads", capsys)
    policy = restore_runner_policy(a)
    d.states.role_policies[a.role_arn("restore-runner")] = {**policy, "Statement": [st for st in policy["Statement"] if st["Sid"] not in ("RunRestore", "UnmarkServices")]}
    rc, out, err = _restore(d, project, archive, capsys)
    said = " ".join(err.split())
    assert rc == 2 and "may still carry the restore's mark mxinfra:restoring" in said and "aws ecs untag-resource" in said, said
    assert d.states.services[a.service_name]["tags"] == {"mxinfra:restoring": execution_of(d)} and d.states.services[a.service_name]["desired"] == 2


def test_a_service_that_cannot_be_started_again_leaves_the_restore_recorded_and_said(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    d, a = exported, exported.a
    before = _rows(pg)
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    d.states.services[a.service_name]["unstartable"] = 1
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 0 and "warning:" in err and "a service was not started again" in err and "aws ecs update-service" in err, err
    assert _rows(pg) == before
    (record,) = [r for r in _records(project, d.role) if r.action == "restore"]
    assert record.changes["restore"]["app"] == "stopped, not started again"
    assert d.states.services[a.service_name]["desired"] == 0


def test_a_session_still_connected_to_the_database_is_waited_for_then_nothing_is_restored(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """An instance of the app that ECS no longer counts but that still holds a connection (a stopping task),
    or a download's pg_dump: restore.sh restores only once the database has no other session."""
    import subprocess

    from postgres import require_bin_dir

    d, a = exported, exported.a
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    changed = _rows(pg)
    (td,) = [t for arn, t in d.states.task_definitions.items() if f"/{a.restore_name}:" in arn]
    restore = next(c for c in td["containerDefinitions"] if c["name"] == "restore")
    assert {"name": "RESTORE_ALONE_WAIT", "value": "600"} in restore["environment"]
    restore["environment"] = [e if e["name"] != "RESTORE_ALONE_WAIT" else {"name": "RESTORE_ALONE_WAIT", "value": "5"} for e in restore["environment"]]
    holder = subprocess.Popen([str(require_bin_dir() / "psql"), pg.url, "-c", "SELECT pg_sleep(60)"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rc, out, err = _restore(d, project, archive, capsys)
    finally:
        holder.kill()
        holder.wait()
        # its backend sleeps on without its client: the next restore would wait for it
        pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'")
    assert rc == 2 and "nothing was restored; the services were started again" in err, err
    assert "1 other session(s) of the database's user still connected after 5s" in d.states.logs["restore"]
    assert _rows(pg) == changed and d.states.service_log == [(a.service_name, 0), (a.service_name, 2)]
    _nothing_restored(project, d, err, app="stopped, then started")


def test_files_not_restored_and_a_service_not_started_again_are_both_recorded_and_said(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """The task replaced the database but not the files, and then a service could not be started: the
    machine keeps both failures whole, so the command still knows the database was replaced."""
    d, a = exported, exported.a
    before = _rows(pg)
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    d.gate.bucket_policies[a.bucket_name] = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"{a.bucket_arn}/*"}]}
    d.states.services[a.service_name]["unstartable"] = 1
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 2 and "the database was restored from" in err and "push-files exited" in err and "a service was NOT started again" in err and "(recorded)" in err, err
    assert _rows(pg) == before
    (record,) = [r for r in _records(project, d.role) if r.action == "restore"]
    assert record.changes["restore"]["files"] == "not restored" and record.changes["restore"]["app"] == "stopped, not started again"


def test_a_service_deleted_meanwhile_counts_as_stopped_and_the_restore_stands(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """ECS answers DescribeServices for a service that is gone with a failure, not an error: the machine
    goes on (nothing of it runs), and says at the end that it could not start it again."""
    d, a = exported, exported.a
    before = _rows(pg)
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    d.states.services[a.service_name]["vanish"] = 1
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 0 and "a service was not started again (service orders-test not found)" in err, err
    assert _rows(pg) == before
    (record,) = [r for r in _records(project, d.role) if r.action == "restore"]
    assert record.changes["restore"]["app"] == "stopped, not started again"


def test_no_restore_beside_a_running_export(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """A download's pg_dump holds the tables the restore replaces: refused before anything is stopped."""
    from datetime import datetime, timezone

    d, a = exported, exported.a
    archive = _download(d, project, tmp_path / "downloads", capsys)
    running = a.export_machine_arn.replace(":stateMachine:", ":execution:") + ":20261205T000000Z"
    d.states.executions[running] = {"executionArn": running, "stateMachineArn": a.export_machine_arn, "name": "20261205T000000Z", "status": "RUNNING", "startDate": datetime.now(timezone.utc), "input": "{}"}
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 2 and "mxinfra.RestoreRunning" in err and "a download's export" in err and "nothing was stopped or restored" in err, err
    assert d.states.service_log == [] and d.states.ran == []
    _nothing_restored(project, d, err, app=None)
    del d.states.executions[running]


@pytest.mark.parametrize("exported", ["production"], indirect=True)
def test_production_restores_a_recorded_archive_only_after_the_machine_backed_it_up(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """On production the restore machine itself takes an on-demand backup of the database the app uses and
    of the bucket (AWS Backup, as its runner role), waits for both, and only then stops anything; the CLI
    takes none of its own and records the machine's, by id, before the restore's outcome."""
    d, a = exported, exported.a
    assert d.role == "production" and d.backup is not None
    before = _rows(pg)
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 0, err
    assert _rows(pg) == before
    # the backup came first: every backup state before the first stop, both jobs completed by then
    visited = d.states.visited
    assert visited.index("BackupFirst") < visited.index("BackedUp") < visited.index("Stop0")
    started = [p for op, p in d.backup.requests if op == "StartBackupJob"]
    assert [(p["ResourceArn"], p["BackupVaultName"], p["IamRoleArn"]) for p in started] == [
        (a.serving_db_arn, a.backup_vault_name, a.role_arn("backup")), (a.bucket_arn, a.backup_vault_name, a.role_arn("backup"))
    ]
    # kept as long as the vault lock's minimum (the shortest tier): the locked vault took them
    assert {p["Lifecycle"]["DeleteAfterDays"] for p in started} == {lock_bounds(Backups())[0]}
    # by the machine (its runner role's rights), never by the CLI's backups session: the CLI only read the vault
    assert [op for op in d.backup.called if op == "StartBackupJob"] == ["StartBackupJob"] * 2 and d.backup.denied == []
    assert {op for op, _ in d.backup.requests} - set(d.backup.called) == {"DescribeBackupVault", "ListRecoveryPointsByBackupVault"}
    (backup_id,) = set(re.findall(r"backup (\d{8}T\d{6}Z) taken first", out))
    points = {rp["ResourceArn"] for rp in d.backup.points.values() if rp["Status"] == "COMPLETED"}
    assert points == {a.serving_db_arn, a.bucket_arn}
    actions = [r.action for r in _records(project, "production")]
    assert actions[-3:] == ["intent", "backup", "restore"]
    (intent, backup, restore) = _records(project, "production")[-3:]
    # the intent says who takes the backup (its id is known once the machine ended), the restore names it
    assert intent.changes == {"intends": "restore", "restore": {**{k: v for k, v in restore.changes["restore"].items() if k in ("archive", "from")}, "backupFirstBy": "the restore"}}
    assert backup.changes["backup"] == {"id": backup_id, "trigger": "before restore"} and restore.changes["restore"]["backupBefore"] == backup_id
    # the id is a backup of the vault: both recovery points, listed as one
    rc, out, err = _cli(capsys, "backup", "list", "-s", d.stack, "-e", d.role, "-C", str(project.path))
    assert rc == 0 and backup_id in out.split(), err
    # an archive no download record of production names is never restored there, --unrecorded or not
    other = tmp_path / "other.tar.gz"
    other.write_bytes(archive.read_bytes())
    import gzip

    with gzip.open(other, "ab") as f:
        f.write(b"")  # an empty gzip member: the same tar, other bytes
    jobs = len(d.backup.jobs)
    rc, out, err = _restore(d, project, other, capsys, "--unrecorded")
    assert rc == 2 and "is in no signed backup-download record of production's log" in err, err
    assert len(d.backup.jobs) == jobs  # no backup, nothing started
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=d.moto)
    assert s3.list_objects_v2(Bucket=a.imports_bucket_name).get("KeyCount") == 0  # its upload removed


@pytest.mark.parametrize("exported", ["production"], indirect=True)
def test_a_backups_holder_starting_the_production_machine_directly_gets_a_backup_taken_first(exported: Deployed, pg: PostgresServer) -> None:
    """The hostile path: a holder of `backups` uploads an archive and starts the restore machine with the AWS
    CLI, skipping `mxinfra`. The backup first is the machine's, not the command's: it is taken all the same,
    before a service stops."""
    d, a = exported, exported.a
    assert d.backup is not None
    boto3.session.Session().client("s3", region_name=REGION).put_object(Bucket=a.imports_bucket_name, Key="20261205T010203Z.tar.gz", Body=b"anything", ExpectedBucketOwner=ACCOUNT)
    got = _start_directly(d, json.dumps({"sha256": "ab" * 32}))
    assert got["status"] == "FAILED"  # (restore.sh refuses an archive whose sha256 is not the one given)
    visited = d.states.visited
    assert visited.index("BackedUp") < visited.index("Stop0")
    assert sorted(rp["ResourceArn"] for rp in d.backup.points.values() if rp["Status"] == "COMPLETED") == sorted([a.serving_db_arn, a.bucket_arn])
    assert d.states.services[a.service_name]["desired"] == 2


@pytest.mark.parametrize("exported", ["production"], indirect=True)
def test_a_production_backup_that_fails_stops_nothing_and_restores_nothing(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    d, a = exported, exported.a
    assert d.backup is not None
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    changed = _rows(pg)
    d.backup.fail = "backup"  # the database's job fails
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 2 and "the backup taken first did not complete" in err and "nothing was stopped or restored" in err, err
    assert d.states.service_log == [] and d.states.ran == [] and _rows(pg) == changed
    (intent, restore) = _records(project, "production")[-2:]
    assert [intent.action, restore.action] == ["intent", "restore"], [r.action for r in _records(project, "production")]
    assert restore.changes["restore"]["database"] == "not restored" and "backupBefore" not in restore.changes["restore"]


@pytest.mark.parametrize("exported", ["production"], indirect=True)
def test_a_runner_role_without_the_backup_rights_stops_nothing(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """A runner policy that forgot the backup's rights fails loudly, before anything is stopped."""
    d, a = exported, exported.a
    rc, out, err = _restore_without(d, project, tmp_path, capsys, "BackUpFirst")
    assert rc == 2 and "could not be started or followed" in err and "not authorized to perform: backup:StartBackupJob" in err, err
    assert err.count("nothing was stopped or restored") == 1
    assert d.states.service_log == [] and d.backup is not None and d.backup.jobs == {}


def test_production_without_backups_has_no_restore_machine_and_the_definition_needs_a_retention():
    """Production opted out of backups has no vault, and the target renders no export or restore for it
    (target.exports); the pure definition refuses to be made without the backup's retention."""
    a = arns("production")
    with pytest.raises(ValueError, match="backs up first"):
        export.restore_definition(a, "arn:aws:ecs:eu-west-1:123456789012:task-definition/orders-production-restore:3", "sg-1")
    assert "orders-production-restore-machine" in _update("production")
    block = {"backupExport": EXPORT}
    off = run_as_update(
        lambda: MendixApp("orders", {"deployment": deployment(config("production", aws=block, env={"backups": {"enabled": False, "reason": "a test"}}), "aws-production")}), "aws-production"
    )
    assert off and not any(n.startswith(("orders-production-restore", "orders-production-export")) for n in off)


def test_only_production_machines_back_up_first_and_only_their_runner_may():
    for role in ("test", "acceptance", "production"):
        a = arns(role)
        states = export.restore_definition(a, "arn:aws:ecs:eu-west-1:123456789012:task-definition/orders-restore:3", "sg-1", 14 if role == "production" else None)["States"]
        runner, backups = restore_runner_policy(a), permission_policy(a, "backups")
        production = role == "production"
        assert (states["Clean"]["Next"] == "BackupFirst") is production and ("BackedUp" in states) is production
        assert allows(runner, "backup:StartBackupJob", a.backup_vault_arn) is production
        assert allows(runner, "iam:PassRole", a.role_arn("backup"), {"iam:PassedToService": "backup.amazonaws.com"}) is production
        assert not allows(runner, "iam:PassRole", a.role_arn("backup"), {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
        assert allows(backups, "states:GetExecutionHistory", a.restore_executions_arn.replace("*", "20261205T010203Z")) is production
        assert allows(backups, "states:DescribeStateMachine", a.restore_machine_arn) is production
        if not production:
            continue
        # the jobs' token is the machine's own (a UUID made once, before the calls and their retries), never
        # the execution's name, which the caller chooses
        assert states["BackupFirst"] == {"Type": "Pass", "Parameters": {"token.$": "States.UUID()"}, "ResultPath": "$.backupToken", "Next": "BackUpDatabase"}
        first = [states[n] for n in ("BackUpDatabase", "BackUpFiles")]
        assert [st["Parameters"]["IdempotencyToken.$"] for st in first] == ["States.Format('{}-database', $.backupToken.token)", "States.Format('{}-files', $.backupToken.token)"]
        assert "Execution.Name" not in json.dumps(first)
        assert [st["Parameters"]["ResourceArn"] for st in first] == [a.serving_db_arn, a.bucket_arn]
        assert {st["Parameters"]["Lifecycle"]["DeleteAfterDays"] for st in first} == {14}
        # a refusal is not retried for minutes: its retrier comes first and allows none
        assert all(st["Retry"][0]["MaxAttempts"] == 0 and "Backup.AccessDeniedException" in st["Retry"][0]["ErrorEquals"] for st in first)
        # the loop reads only each job's State (its recovery point is named only once completed)
        assert [states[f"BackupCheck{k}"]["ResultSelector"] for k in ("Database", "Files")] == [{"state.$": "$.State"}] * 2
        # what the jobs backed up, into which vault, must be the machine's own before BackedUp
        assert states["BackupDone"]["Choices"][0]["Next"] == "BackupPointDatabase"
        (mine,) = states["BackupMine"]["Choices"]
        assert mine["Next"] == "BackedUp" and states["BackupMine"]["Default"] == "BackupFailed"
        assert {(r["Variable"], r["StringEquals"]) for r in mine["And"]} == {
            ("$.backupDatabasePoint.resource", a.serving_db_arn), ("$.backupDatabasePoint.vault", a.backup_vault_name),
            ("$.backupFilesPoint.resource", a.bucket_arn), ("$.backupFilesPoint.vault", a.backup_vault_name),
        }
        # nothing is stopped on the way to BackedUp: no state before it updates a service
        path = [n for n in states if n.startswith(("BackupFirst", "BackUp", "BackupPolls", "BackupWait", "BackupCount", "BackupCheck", "BackupDone", "BackupPoint", "BackupMine"))]
        assert len(path) == 12 and all("updateService" not in json.dumps(states[n]) for n in path)
        assert states["BackedUp"]["Next"] == "Read0"


@pytest.mark.parametrize("exported", ["production"], indirect=True)
def test_jobs_started_beforehand_with_the_executions_name_as_token_are_not_taken_for_the_backup(exported: Deployed, pg: PostgresServer) -> None:
    """A holder of `backups` starts backup jobs with tokens made of a name, then starts the machine with that
    name: AWS Backup would answer those tokens with the old jobs. The machine's tokens are its own."""
    d, a = exported, exported.a
    assert d.backup is not None
    backup = boto3.session.Session().client("backup", region_name=REGION)  # the backups role's session
    name = "20261205T010203Z"
    seeded = {
        backup.start_backup_job(BackupVaultName=a.backup_vault_name, ResourceArn=arn, IamRoleArn=a.role_arn("backup"), IdempotencyToken=f"{name}-{kind}", StartWindowMinutes=60, Lifecycle={"DeleteAfterDays": lock_bounds(Backups())[0]})["BackupJobId"]
        for kind, arn in (("database", a.serving_db_arn), ("files", a.bucket_arn))
    }
    boto3.session.Session().client("s3", region_name=REGION).put_object(Bucket=a.imports_bucket_name, Key=f"{name}.tar.gz", Body=b"anything", ExpectedBucketOwner=ACCOUNT)
    _start_directly(d, json.dumps({"sha256": "ab" * 32}))
    started = [p for op, p in d.backup.requests if op == "StartBackupJob"][2:]  # the machine's
    assert len(started) == 2 and not {p["IdempotencyToken"] for p in started} & {f"{name}-database", f"{name}-files"}
    taken = {j["BackupJobId"] for j in d.backup.jobs.values()} - seeded
    assert len(taken) == 2 and "BackedUp" in d.states.visited


@pytest.mark.parametrize("exported", ["production"], indirect=True)
def test_a_restore_machine_deployed_before_it_backed_up_first_gets_the_commands_backup(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """The command runs against production whose restore machine is still the one from before (no `pulumi
    up` since): it sees that from the deployed definition, and takes and records the backup itself first."""
    from dataclasses import replace

    d, a = exported, exported.a
    assert d.backup is not None
    machine = d.states.machines[a.restore_machine_arn]
    machine["definition"] = export.restore_definition(replace(a, production=False), machine["definition"]["States"]["Restore"]["Parameters"]["TaskDefinition"], "sg-0123456789abcdef0")
    before = _rows(pg)
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 0, err
    assert "does not back production up first yet (run `pulumi up`)" in err and _rows(pg) == before
    assert "BackedUp" not in d.states.visited and len([op for op, _ in d.backup.requests if op == "StartBackupJob"]) == 2
    assert d.backup.called == []  # both by the command (the backups role), none by the machine
    (backup, intent, restore) = _records(project, "production")[-3:]
    assert [backup.action, intent.action, restore.action] == ["backup", "intent", "restore"]
    assert restore.changes["restore"]["backupBefore"] == backup.changes["backup"]["id"] == intent.changes["restore"]["backupBefore"]


@pytest.mark.parametrize("exported", ["production"], indirect=True)
def test_a_machine_the_command_may_not_read_gets_the_commands_backup(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """A backups role from before may not describe the machine: not known whether it backs up first, so the
    command takes and records the backup itself (the machine then takes one too)."""
    d, a = exported, exported.a
    assert d.backup is not None
    archive = _download(d, project, tmp_path / "downloads", capsys)
    policy = permission_policy(a, "backups")
    d.states.caller_policy = {**policy, "Statement": [st for st in policy["Statement"] if st["Sid"] != "ReadRestoreMachine"]}
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 0, err
    assert "whether the deployed restore machine backs production up first could not be read" in err and "DescribeStateMachine" in err, err
    assert [r.action for r in _records(project, "production")][-3:] == ["backup", "intent", "restore"]
    assert len([op for op, _ in d.backup.requests if op == "StartBackupJob"]) == 4  # the command's two, the machine's two


@pytest.mark.parametrize("exported", ["production"], indirect=True)
def test_a_history_the_command_may_not_read_leaves_the_backup_unrecorded_and_says_why(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    d, a = exported, exported.a
    archive = _download(d, project, tmp_path / "downloads", capsys)
    policy = permission_policy(a, "backups")
    d.states.caller_policy = {**policy, "Statement": [st for st in policy["Statement"] if st["Sid"] != "ReadRestoreHistory"]}
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 0, err
    assert "which backup the restore" in err and "could not be read" in err and "GetExecutionHistory" in err and "it is not recorded" in err, err
    (intent, restore) = _records(project, "production")[-2:]
    assert [intent.action, restore.action] == ["intent", "restore"] and "backupBefore" not in restore.changes["restore"]


def test_a_start_whose_answer_was_lost_is_retried_as_the_same_execution(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """StartExecution started it but its answer never came: the SDK asks again with the same name and input,
    which Step Functions answers as the same execution, and the restore goes on once."""
    d, a = exported, exported.a
    before = _rows(pg)
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    import threading
    import time

    d.states.lost_answers = 1
    d.states.hold = threading.Event()  # it runs once the retry came (a quick run would end before it)

    base = d.states.starts  # (the download's)

    def release() -> None:
        while d.states.starts < base + 2:
            time.sleep(0.01)
        d.states.hold.set()

    threading.Thread(target=release, daemon=True).start()
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 0 and d.states.starts == base + 2, err
    assert _rows(pg) == before and len(d.states.ran) == 1


def test_a_start_that_may_have_run_keeps_the_upload_and_says_so(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """Every answer lost (a server error each time): whether it runs cannot be told (DescribeExecution is
    eventually consistent), so the upload stays for it, only its intent is recorded, and the command says so."""
    import time

    import threading

    d, a = exported, exported.a
    before = _rows(pg)
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    d.states.lost_answers = 99
    d.states.hold = threading.Event()  # it runs only once the command gave up (each retry sees it RUNNING)
    try:
        rc, out, err = _restore(d, project, archive, capsys)
    finally:
        d.states.hold.set()
    assert rc == 2 and "goes on without this command (the restore's intent record names the archive; no outcome will follow)" in err and "InternalFailure" in err, err
    assert [r.action for r in _records(project, d.role)][-1] == "intent"
    assert [r for r in _records(project, d.role) if r.action == "restore"] == []
    # it did run, and found its archive
    (execution,) = [e for e in d.states.executions.values() if e["stateMachineArn"] == a.restore_machine_arn]
    for _ in range(600):
        if execution["status"] != "RUNNING":
            break
        time.sleep(0.05)
    assert execution["status"] == "SUCCEEDED" and _rows(pg) == before


def test_every_role_policy_of_the_largest_environment_fits_iams_inline_limit():
    """IAM refuses a role whose inline policies exceed 10,240 characters (whitespace not counted): the
    rendered policies of a production environment with followers, backups and the export and restore
    tasks, as the plan renders them."""
    inputs = _update("production")  # two instances: a follower service too
    sizes = {n: len(json.dumps(json.loads(i["policy"]), separators=(",", ":"))) for n, (t, i) in inputs.items() if t == "aws:iam/rolePolicy:RolePolicy"}
    assert {"orders-production-role-backups-policy", "orders-production-restore-runner-role-policy", "orders-production-export-runner-role-policy"} <= set(sizes), sorted(sizes)
    assert max(sizes.values()) <= 10240, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


@pytest.mark.parametrize("code", [None, 137])
def test_a_task_stopped_before_the_restore_said_how_it_ended_is_said_to_have_maybe_replaced_the_database(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any, code: int | None) -> None:
    """The Restore state's timeout (or someone, or the OOM killer: 137) stops the task while restore.sh runs:
    restore.sh commits only at its end, and its own exit did not say, so the command cannot say; it says
    so, and records no outcome (never "nothing restored")."""
    d, a = exported, exported.a
    archive = _download(d, project, tmp_path / "downloads", capsys)
    _change(pg, d)
    d.states.killed, d.states.kill_code = {"restore"}, code
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 2 and "may or may not have been replaced" in err and "the services were started again" in err, err
    assert [r for r in _records(project, d.role) if r.action == "restore"] == []
    assert d.states.service_log == [(a.service_name, 0), (a.service_name, 2)]


def test_a_service_left_stopped_is_said_with_the_commands_that_start_it(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    """`pulumi up` would not start it (its release guard refuses beside an unrecorded scale): the command
    names the update-service call with the count the service had."""
    d, a = exported, exported.a
    archive = _download(d, project, tmp_path / "downloads", capsys)
    d.states.services[a.service_name]["unstartable"] = 1
    rc, out, err = _restore(d, project, archive, capsys)
    assert rc == 0 and f"aws ecs update-service --cluster {a.cluster} --service {a.service_name} --desired-count 2" in err, err


def test_no_export_beside_a_running_restore(exported: Deployed, project: Any, tmp_path: Path, capsys: Any) -> None:
    """A download started while a restore runs would copy files half put back from a database replaced meanwhile."""
    from datetime import datetime, timezone

    d, a = exported, exported.a
    running = a.restore_machine_arn.replace(":stateMachine:", ":execution:") + ":20261205T000000Z"
    d.states.executions[running] = {"executionArn": running, "stateMachineArn": a.restore_machine_arn, "name": "20261205T000000Z", "status": "RUNNING", "startDate": datetime.now(timezone.utc), "input": "{}"}
    try:
        rc, out, err = _cli(capsys, "backup", "download", "-s", d.stack, "-e", d.role, "-o", str(tmp_path / "o"), "-C", str(project.path))
    finally:
        del d.states.executions[running]
    assert rc == 2 and "mxinfra.ExportRunning" in err and "or a restore" in err, err
    assert d.states.ran == []
