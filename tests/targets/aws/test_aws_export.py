"""Issue 21 on the aws target: `mxinfra backup download`, a backup taken now by the export task.

The plan's contract first: the exports bucket, the task's roles and definition (the core's scripts, byte for
byte), the state machine that alone runs it, and the `backups` role's new rights, all from the same pure
functions the end-to-end test runs. Then the download end to end: the CLI as the `backups` role, against
Step Functions and Fargate doubles that run the rendered definition (export_double.py: the task's
containers as local processes with the images' tools, against a real PostgreSQL and moto's S3 server
behind a gate that authorises every S3 request by the identity that makes it). Not verified against real
AWS: see the README's Backups.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from mxinfra.backup_archive import check, stored_keys, tree_path, unpack
from mxinfra.backup_scripts import SCRIPTS
from mxinfra.backups import Backups
from mxinfra.components import MendixApp
from mxinfra.naming import Naming
from mxinfra_aws import backup_actions, export
from mxinfra_aws.backups import lock_bounds, on_demand_days
from mxinfra_aws.config import BackupExportConfig
from mxinfra_aws.policies import (
    Arns,
    environment_tags,
    export_execution_policy,
    export_runner_policy,
    export_task_policy,
    exports_bucket_policy,
    imports_bucket_policy,
    permission_policy,
    restore_runner_policy,
    restore_task_policy,
)

from awshelpers import ACCOUNT, FAKE_ENDPOINT, FAKE_RDS_SECRET, REGION, config, deployment, lint, run_as_update
from backup_double import BackupDouble
from export_double import S3Gate, StatesDouble, s3_action
from iam_eval import allows
from object_store import alpine_path  # noqa: F401 (fixture)
from postgres import PostgresServer, require_bin_dir
from scaffold import encrypted
from test_aws_backup_cli import _cli, _records

ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
POSTGRES = f"{ECR}/mirror/postgres:17.7@sha256:" + "ab" * 32
RCLONE = f"{ECR}/mirror/rclone:1.76.0@sha256:" + "cd" * 32
EXPORT = {"postgresImage": POSTGRES, "rcloneImage": RCLONE}
CLUSTER = "orders-aws-test-cluster"
SUBNETS = ("subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002")
MINE = {"s3:ResourceAccount": ACCOUNT}


def arns(role: str) -> Arns:
    return Arns(REGION, ACCOUNT, f"orders-aws-{role}-cluster", Naming("orders", role), subnets=SUBNETS, export=True, production=role == "production")


def _update(role: str = "test", **aws: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    block = {"backupExport": EXPORT, **({"vpcTags": {}} if role != "production" else {}), **aws}
    return run_as_update(lambda: MendixApp("orders", {"deployment": deployment(config(role, aws=block), f"aws-{role}")}), f"aws-{role}")


# --- the plan ------------------------------------------------------------------------------------------


def test_the_plan_renders_the_export_task_its_machine_and_bucket():
    inputs = _update()
    a = arns("test")
    x = BackupExportConfig.model_validate(EXPORT)
    exported = {k: v for k, v in inputs.items() if "export" in k}
    assert sorted((k, t) for k, (t, _) in exported.items()) == sorted(
        [
            ("orders-test-exports", "aws:s3/bucket:Bucket"),
            ("orders-test-exports-public-access", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"),
            ("orders-test-exports-ownership", "aws:s3/bucketOwnershipControls:BucketOwnershipControls"),
            ("orders-test-exports-encryption", "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"),
            ("orders-test-exports-lifecycle", "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"),
            ("orders-test-exports-policy", "aws:s3/bucketPolicy:BucketPolicy"),
            ("orders-test-export-task-role", "aws:iam/role:Role"),
            ("orders-test-export-task-role-policy", "aws:iam/rolePolicy:RolePolicy"),
            ("orders-test-export-execution-role", "aws:iam/role:Role"),
            ("orders-test-export-execution-role-policy", "aws:iam/rolePolicy:RolePolicy"),
            ("orders-test-export-runner-role", "aws:iam/role:Role"),
            ("orders-test-export-runner-role-policy", "aws:iam/rolePolicy:RolePolicy"),
            ("orders-test-export", "aws:ecs/taskDefinition:TaskDefinition"),
            ("orders-test-export-machine", "aws:sfn/stateMachine:StateMachine"),
            ("orders-test-export-sg", "aws:ec2/securityGroup:SecurityGroup"),
            ("orders-test-export-out-endpoints", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"),
            ("orders-test-export-out-db", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"),
            ("orders-test-db-in-export", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"),
        ]
    )
    # its own security group: the database and HTTPS to the VPC's endpoints, nothing in, not the app's egress list
    out = {k: i for k, (t, i) in exported.items() if t.endswith("SecurityGroupEgressRule")}
    assert {k: (i["fromPort"], i.get("cidrIpv4") or i.get("referencedSecurityGroupId")) for k, i in out.items()} == {
        "orders-test-export-out-endpoints": (443, "10.0.0.0/16"), "orders-test-export-out-db": (5432, "orders-test-db-sg-id")
    }
    assert inputs["orders-test-db-in-export"][1]["referencedSecurityGroupId"] == "orders-test-export-sg-id"
    assert not [k for k, (t, _) in exported.items() if t.endswith("SecurityGroupIngressRule") and k != "orders-test-db-in-export"]
    bucket = inputs["orders-test-exports"][1]
    assert bucket["bucket"] == a.exports_bucket_name == f"orders-test-exports-{ACCOUNT}-{REGION}"
    assert inputs["orders-test-exports-public-access"][1] | {"bucket": None} == {
        "bucket": None, "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True
    }
    assert inputs["orders-test-exports-encryption"][1]["rules"] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}, "bucketKeyEnabled": True}]
    (rule,) = inputs["orders-test-exports-lifecycle"][1]["rules"]
    assert rule["expiration"] == {"days": 1} and rule["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 1} and rule["status"] == "Enabled"
    bucket_policy = json.loads(inputs["orders-test-exports-policy"][1]["policy"])
    assert bucket_policy == exports_bucket_policy(a)
    assert bucket_policy["Statement"][0] == {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                                             "Resource": [a.exports_bucket_arn, a.exports_bucket_arn + "/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    # the roles' policies: the pure documents the double authorises with
    policy = lambda kind: json.loads(inputs[f"orders-test-export-{kind}-role-policy"][1]["policy"])  # noqa: E731
    assert policy("task") == export_task_policy(a)
    assert policy("execution") == export_execution_policy(a, [POSTGRES, RCLONE])
    assert policy("runner") == export_runner_policy(a)
    trust = json.loads(inputs["orders-test-export-runner-role"][1]["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "states.amazonaws.com"} and trust["Condition"]["ArnLike"] == {"aws:SourceArn": a.export_machine_arn}
    # the task: the containers the pure function renders with the database's endpoint and master secret
    td = inputs["orders-test-export"][1]
    host, port = FAKE_ENDPOINT.rsplit(":", 1)
    assert json.loads(td["containerDefinitions"]) == export.container_definitions(a, x, host, port, FAKE_RDS_SECRET)
    assert (td["family"], td["cpu"], td["memory"], td["networkMode"], td["requiresCompatibilities"]) == (a.export_name, "2048", "4096", "awsvpc", ["FARGATE"])
    assert td["ephemeralStorage"] == {"sizeInGib": 50} and td["volumes"] == [{"name": "work"}]
    assert td["taskRoleArn"].endswith("orders-test-export-task-role") and td["executionRoleArn"].endswith("orders-test-export-execution-role")
    machine = inputs["orders-test-export-machine"][1]
    assert machine["name"] == a.export_name and machine["roleArn"].endswith("orders-test-export-runner-role")
    # the export task's own definition (the mock's ARN of the resource named orders-test-export), not the app's
    assert json.loads(machine["definition"]) == export.definition(a, f"arn:aws:mock:{REGION}:{ACCOUNT}:taskdefinition/orders-test-export", "orders-test-export-sg-id")


def test_the_export_containers_run_the_core_scripts_hardened_in_order():
    a = arns("test")
    pull, backup, put = export.container_definitions(a, BackupExportConfig.model_validate(EXPORT), "db.example", "5432", FAKE_RDS_SECRET)
    assert [c["name"] for c in (pull, backup, put)] == ["pull-files", "backup", "put"]
    assert (pull["image"], backup["image"], put["image"]) == (RCLONE, POSTGRES, RCLONE)
    # the scripts as the core ships them, byte for byte
    # ECS's command follows the entry point (the rclone image's is `rclone`): both are set
    assert [c["entryPoint"] for c in (pull, backup, put)] == [["/bin/sh", "-c"]] * 3
    assert pull["command"] == [(SCRIPTS / "store.sh").read_text(), "store.sh", "pull-files"]
    assert backup["command"] == [(SCRIPTS / "backup.sh").read_text(), "backup.sh"]
    assert put["command"] == [(SCRIPTS / "store.sh").read_text(), "store.sh", "put"]
    assert backup["dependsOn"] == [{"containerName": "pull-files", "condition": "SUCCESS"}] and put["dependsOn"] == [{"containerName": "backup", "condition": "SUCCESS"}]
    assert [c["essential"] for c in (pull, backup, put)] == [False, False, True]
    for c in (pull, backup, put):
        assert c["readonlyRootFilesystem"] is True and c["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
        assert c["logConfiguration"]["options"]["awslogs-stream-prefix"] == "export"  # streams export/<container>/<task id>
    env = {e["name"]: e["value"] for e in backup["environment"]}
    # no password anywhere but the secrets, which name the master secret's keys
    assert env["DATABASE_URL"] == "postgresql://db.example:5432/mendix?sslmode=require"
    assert backup["secrets"] == [{"name": "PGPASSWORD", "valueFrom": f"{FAKE_RDS_SECRET}:password::"}, {"name": "PGUSER", "valueFrom": f"{FAKE_RDS_SECRET}:username::"}]
    assert "secrets" not in pull and "secrets" not in put
    assert {e["name"]: e["value"] for e in pull["environment"]}["FILES_REMOTE"] == f"files:{a.bucket_name}"
    assert {e["name"]: e["value"] for e in put["environment"]}["BACKUP_REMOTE"] == f"store:{a.exports_bucket_name}"


def test_the_machine_fixes_everything_but_the_archive_id():
    a = arns("test")
    d = export.definition(a, "arn:aws:ecs:eu-west-1:123456789012:task-definition/orders-test-export:7", "sg-0123")
    assert d["StartAt"] == "OneAtATime" and d["States"]["OneAtATime"]["Parameters"]["StateMachineArn"] == a.export_machine_arn
    assert d["States"]["Alone"]["Choices"] == [{"Variable": "$.guard.running", "NumericGreaterThan": 1, "Next": "Busy"}] and d["States"]["Alone"]["Default"] == "Restores"
    # nor beside a restore of the environment (its files half put back, its database replaced meanwhile)
    assert d["States"]["Restores"]["Parameters"]["StateMachineArn"] == a.restore_machine_arn
    assert d["States"]["NoRestore"] == {"Type": "Choice", "Choices": [{"Variable": "$.restores.running", "NumericGreaterThan": 0, "Next": "Busy"}], "Default": "Export"}
    state = d["States"]["Export"]
    assert state["Resource"] == "arn:aws:states:::ecs:runTask.sync" and state["End"] is True
    p = state["Parameters"]
    assert p["TaskDefinition"].endswith(":7") and p["Cluster"] == a.cluster_arn and p["LaunchType"] == "FARGATE"
    assert p["NetworkConfiguration"] == {"AwsvpcConfiguration": {"Subnets": list(SUBNETS), "SecurityGroups": ["sg-0123"], "AssignPublicIp": "DISABLED"}}
    # the only path into the task: the execution's name, as the backup's time
    paths = re.findall(r'"([^"]+)\.\$": "([^"]+)"', json.dumps(state))
    assert paths == [("Value", "$$.Execution.Name")]


def test_without_backup_export_there_is_no_export_and_no_right_to_start_one():
    inputs = run_as_update(lambda: MendixApp("orders", {"deployment": deployment(config("test", aws={"vpcTags": {}}), "aws-test")}), "aws-test")
    assert not [k for k in inputs if "export" in k]
    backups = json.loads(inputs["orders-test-role-backups-policy"][1]["policy"])
    assert "states:StartExecution" not in json.dumps(backups)


def test_the_backups_role_may_start_the_export_never_run_a_task():
    a = arns("production")
    p = permission_policy(a, "backups")
    # S3 requests carry the bucket's account: the policies allow only the account's own buckets
    assert not allows(p, "s3:GetObject", f"{a.exports_bucket_arn}/20261205T010203Z.tar.gz", {"s3:ResourceAccount": "210987654321"})
    assert allows(p, "states:StartExecution", a.export_machine_arn)
    assert allows(p, "states:DescribeExecution", f"{a.export_executions_arn[:-1]}20261205T010203Z")
    assert allows(p, "s3:GetObject", f"{a.exports_bucket_arn}/20261205T010203Z.tar.gz", MINE)
    # RunTask would take container overrides: a command of the caller's with the database's password
    assert not allows(p, "ecs:RunTask", a.export_task_definition_arn.replace(":*", ":3"), {"ecs:cluster": a.cluster_arn})
    assert not allows(p, "iam:PassRole", a.role_arn("export-task"), {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    assert not allows(p, "states:StartExecution", arns("acceptance").export_machine_arn)
    assert not allows(p, "s3:PutObject", f"{a.exports_bucket_arn}/20261205T010203Z.tar.gz", MINE)
    # deploy may not change the export task (a revision with another command) nor start it
    deploy = permission_policy(a, "deploy")
    assert not allows(deploy, "ecs:RegisterTaskDefinition", a.export_task_definition_arn.replace(":*", ":4"), {"ecs:compute-compatibility": "FARGATE"})
    assert not allows(deploy, "states:StartExecution", a.export_machine_arn)
    assert not allows(deploy, "iam:PassRole", a.role_arn("export-execution"), {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    # the runner: exactly the export family in the environment's cluster, exactly its two roles
    r = export_runner_policy(a)
    assert allows(r, "ecs:RunTask", a.export_task_definition_arn.replace(":*", ":4"), {"ecs:cluster": a.cluster_arn})
    assert not allows(r, "ecs:RunTask", a.task_definition_arn.replace(":*", ":4"), {"ecs:cluster": a.cluster_arn})
    assert not allows(r, "ecs:RunTask", a.export_task_definition_arn.replace(":*", ":4"), {"ecs:cluster": a.cluster_arn.replace("production", "test")})
    assert not allows(r, "iam:PassRole", a.role_arn("task"), {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    # the task reads files and writes archives; it cannot read an archive back or touch the app's files
    t = export_task_policy(a)
    assert allows(t, "s3:GetObject", f"{a.bucket_arn}/k", MINE) and allows(t, "s3:PutObject", f"{a.exports_bucket_arn}/x.tar.gz", MINE)
    assert not allows(t, "s3:PutObject", f"{a.bucket_arn}/k", MINE) and not allows(t, "s3:DeleteObject", f"{a.bucket_arn}/k", MINE) and not allows(t, "s3:GetObject", f"{a.exports_bucket_arn}/x.tar.gz", MINE)


def test_the_export_policies_lint_clean():
    a = arns("production")
    for doc in (export_task_policy(a), export_execution_policy(a, [POSTGRES, RCLONE]), export_runner_policy(a), permission_policy(a, "backups")):
        assert lint(doc) == [], doc


def test_production_export_images_must_be_pinned(project, capsys):
    from test_aws_plan import bad

    rc, err = bad(project, capsys, config("production", aws={"backupExport": {"postgresImage": f"{ECR}/mirror/postgres:17.7", "rcloneImage": RCLONE}}))
    assert rc == 2 and "mxinfra:aws.backupExport.postgresImage" in err and "not pinned by digest" in err
    rc, err = bad(project, capsys, config("production", aws={"backupExport": {"postgresImage": "Not An Image", "rcloneImage": RCLONE, "storageGb": 500}}))
    assert rc == 2 and "mxinfra:aws.backupExport.postgresImage" in err and "mxinfra:aws.backupExport.storageGb" in err
    rc, err = bad(project, capsys, config("production", aws={"backupExport": {"postgresImage": POSTGRES.replace(":17.7", ":15.4"), "rcloneImage": RCLONE}, "database": {"engineVersion": "16"}}))
    assert rc == 2 and "is PostgreSQL 15, whose pg_dump refuses the database's PostgreSQL 16" in " ".join(err.split()), err
    rc, err = bad(project, capsys, config("production", aws={"backupExport": EXPORT}))
    assert rc == 0, err


def test_an_environment_named_export_is_refused(project, capsys):
    from test_aws_plan import bad

    cfg = config("test", aws={"vpcTags": {}})
    cfg["mxinfra:environments"] = {"export": cfg["mxinfra:environments"]["test"]}
    cfg["mxinfra:access"] = []
    rc, err = bad(project, capsys, cfg)
    assert rc == 2 and "environment name 'export' ends in 'export'" in " ".join(err.split()), err


def test_s3_actions_of_requests():
    q = lambda s: {k: [v] for k, v in (p.split("=") for p in s.split("&") if p)}  # noqa: E731
    assert s3_action("GET", "/b", q("list-type=2")) == ("s3:ListBucket", "arn:aws:s3:::b")
    assert s3_action("PUT", "/b/k/x", {}) == ("s3:PutObject", "arn:aws:s3:::b/k/x")
    assert s3_action("POST", "/b/k", q("uploads=")) == ("s3:PutObject", "arn:aws:s3:::b/k")
    assert s3_action("DELETE", "/b/k", q("uploadId=1")) == ("s3:AbortMultipartUpload", "arn:aws:s3:::b/k")
    assert s3_action("HEAD", "/b/k", {}) == ("s3:GetObject", "arn:aws:s3:::b/k")


# --- end to end ------------------------------------------------------------------------------------------

SCHEMA = """
DROP SCHEMA public CASCADE; CREATE SCHEMA public;
CREATE TABLE "orders$customer" (id bigint PRIMARY KEY, name varchar(200), credit numeric(28,8), createddate timestamp);
CREATE TABLE "system$filedocument" (id bigint PRIMARY KEY, name varchar(400), size bigint, changeddate timestamp);
INSERT INTO "orders$customer" SELECT i, 'Zoë ' || i || E' tab\\there', i * 1.25, '2026-01-01'::timestamp + i * interval '1 hour' FROM generate_series(1, 2000) i;
INSERT INTO "system$filedocument" VALUES (1, 'invoice.pdf', 300000, '2026-12-01 10:00');
"""
FILES = {
    "1a2b3c4d-0000-0000-0000-000000000001": bytes(range(256)) * 1200,
    "5e6f7a8b-0000-0000-0000-000000000002": b"a small file",
}
TASK_KEY, USER_KEY, CI_KEY = "AKIAEXPORTTASKROLE00", "AKIAPLATFORMUSER0000", "AKIACIPIPELINE000000"
RESTORE_KEY = "AKIARESTORETASKROLE0"
# an identity of the account with every S3 right (a CI pipeline's): the exports bucket's policy still keeps it out
CI_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ci"
CI_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """A real PostgreSQL that accepts TLS, as RDS does: the export task connects with sslmode=require."""
    server = PostgresServer.start(tls=True)
    try:
        yield server
    finally:
        server.stop()


def _rows(pg: PostgresServer, database: str = "mendix") -> dict[str, str]:
    return {t: pg.psql(f'COPY (SELECT * FROM "{t}" ORDER BY 1) TO STDOUT', database) for t in ("orders$customer", "system$filedocument")}


class Deployed:
    """What `pulumi up` left in AWS for the stack's environment, and the doubles that run it."""

    def __init__(self, role: str, moto: str, gate: S3Gate, states: StatesDouble, a: Arns, secret: str, caller_key: str, backup: BackupDouble | None = None) -> None:
        self.role, self.moto, self.gate, self.states, self.a, self.secret = role, moto, gate, states, a, secret
        self.backup = backup  # (production) AWS Backup, where its restore machine takes a backup first
        self.caller_key = caller_key  # the access key of the CLI's session of the backups role
        self.stack = f"aws-{role}"


@pytest.fixture
def exported(aws_env: None, s3_server: str, pg: PostgresServer, alpine_path: str, project: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Deployed]:
    """The test environment (or, parametrised indirectly, another role's) as `pulumi up` leaves it: its file
    bucket with files, the exports bucket, the RDS-managed secret (of the real PostgreSQL), the export task
    and machine registered with the doubles; the CLI signed in as the environment's `backups` role, with S3
    behind the gate."""
    role = getattr(request, "param", "test")
    monkeypatch.setattr(backup_actions, "POLL_SECONDS", 0.05)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)  # STS, Secrets Manager: moto's server
    a = arns(role)
    x = BackupExportConfig.model_validate(EXPORT)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=s3_server)
    for bucket in (a.bucket_name, a.exports_bucket_name, a.imports_bucket_name):
        if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    for bucket in (a.bucket_name, a.exports_bucket_name, a.imports_bucket_name):  # the server is the module's: each test starts empty
        for key in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents") or []]:
            s3.delete_object(Bucket=bucket, Key=key)
    for key, body in FILES.items():
        s3.put_object(Bucket=a.bucket_name, Key=key, Body=body)
    vaults = boto3.client("backup", region_name=REGION, endpoint_url=s3_server)
    if a.backup_vault_name not in [v["BackupVaultName"] for v in vaults.list_backup_vaults()["BackupVaultList"]]:
        vaults.create_backup_vault(BackupVaultName=a.backup_vault_name)  # what `mxinfra backup` asks first
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=s3_server)
    from postgres import PASSWORD, USER

    name = f"rds!db-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]}"
    secret = sm.create_secret(Name=name, SecretString=json.dumps({"username": USER, "password": PASSWORD}), Tags=[{"Key": "aws:rds:primaryDBInstanceArn", "Value": a.serving_db_arn}])["ARN"]
    pg.psql(SCHEMA)
    project.stack(f"aws-{role}", encrypted(config(role, aws={**({"vpcTags": {}} if role != "production" else {}), "backupExport": EXPORT})))
    from tls import self_signed

    (tmp_path / "tls").mkdir()
    cert = self_signed(tmp_path / "tls")
    # the CLI's credentials: a session of the environment's backups role, as the README says to assume it
    sts = boto3.client("sts", region_name=REGION, endpoint_url=s3_server)
    session = sts.assume_role(RoleArn=a.role_arn("backups"), RoleSessionName="alice")["Credentials"]
    caller_key = session["AccessKeyId"]
    identities = {
        TASK_KEY: (a.role_arn("export-task"), export_task_policy(a)),
        RESTORE_KEY: (a.role_arn("restore-task"), restore_task_policy(a)),
        caller_key: (a.role_arn("backups"), permission_policy(a, "backups")),
        CI_KEY: (CI_ROLE, CI_POLICY),
    }
    gate = S3Gate(s3_server, ACCOUNT, identities, cert, {a.exports_bucket_name: exports_bucket_policy(a), a.imports_bucket_name: imports_bucket_policy(a)})
    work = tmp_path / "task-volume"
    work.mkdir()
    postgres_image = f"{require_bin_dir()}:/usr/bin:/bin"  # Debian's PostgreSQL and coreutils, as the postgres image has
    with gate.serve() as gate_url:
        states = StatesDouble(REGION, ACCOUNT, work=work, images={POSTGRES: (postgres_image, ["env"]), RCLONE: (alpine_path, ["rclone"])}, s3_endpoint=gate_url, task_key_id=TASK_KEY, ca=cert[0])

        def task_definition(family: str, task_role: str, render: Any) -> tuple[str, dict[str, Any]]:
            """A task definition as the plan registers it (the export's execution role for both tasks)."""
            arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:1"
            return arn, {
                "taskRoleArn": a.role_arn(task_role),
                "executionRoleArn": a.role_arn("export-execution"),
                "containerDefinitions": render(a, x, "127.0.0.1", str(pg.port), secret),
                "tags": {"mxinfra:app": "orders", "mxinfra:environment": role, "mxinfra:role": role},
            }

        td_arn, td = task_definition(a.export_name, "export-task", export.container_definitions)
        states.add_task_definition(td_arn, td, {a.role_arn("export-execution"): export_execution_policy(a, [POSTGRES, RCLONE]), a.role_arn("export-task"): export_task_policy(a)})
        states.add_machine(a.export_machine_arn, export.definition(a, td_arn, "sg-0123456789abcdef0"), a.role_arn("export-runner"), export_runner_policy(a))
        # `restore --archive`: the restore task (the same execution role), its machine, the app's running service
        restore_td, td = task_definition(a.restore_name, "restore-task", export.restore_container_definitions)
        states.add_task_definition(restore_td, td, {a.role_arn("restore-task"): restore_task_policy(a)})
        keep_days = on_demand_days(Backups()) if role == "production" else None
        states.add_machine(a.restore_machine_arn, export.restore_definition(a, restore_td, "sg-0123456789abcdef0", keep_days), a.role_arn("restore-runner"), restore_runner_policy(a))
        if a.backs_up_first:  # production's files restore, whose executions the two machines count
            from mxinfra_aws import files_restore
            from mxinfra_aws.policies import files_restore_runner_policy

            states.add_machine(a.files_restore_machine_arn, files_restore.definition(a, on_demand_days(Backups())), a.role_arn("files-restore-runner"), files_restore_runner_policy(a))
        states.services = {a.service_name: {"desired": 2, "running": 2}}
        states.task_keys[a.role_arn("restore-task")] = RESTORE_KEY
        states.caller_policy = permission_policy(a, "backups")
        backup = _aws_backup(a, s3_server) if role == "production" else None
        states.backup = backup
        with states.serve() as states_url, (backup.serve() if backup is not None else contextlib.nullcontext("")) as backup_url:
            if backup_url:
                monkeypatch.setenv("AWS_ENDPOINT_URL_BACKUP", backup_url)
            monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", states_url)
            monkeypatch.setenv("AWS_ENDPOINT_URL_S3", gate_url)
            monkeypatch.setenv("AWS_CA_BUNDLE", str(cert[0]))
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", caller_key)
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", session["SecretAccessKey"])
            monkeypatch.setenv("AWS_SESSION_TOKEN", session["SessionToken"])
            yield Deployed(role, s3_server, gate, states, a, secret, caller_key, backup)
    sm.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
    assert states.violations == [], states.violations
    assert backup is None or backup.violations == [], backup.violations


def _aws_backup(a: Arns, moto: str) -> BackupDouble:
    """AWS Backup as production has it: its locked vault, and the instance and bucket its jobs back up
    (moto's, on the module's server); the CLI's calls authorised as the `backups` role, the machine's as its
    runner role (StatesDouble)."""
    tags = [{"Key": k, "Value": v} for k, v in sorted(environment_tags(a).items())]
    rds = boto3.client("rds", region_name=REGION, endpoint_url=moto)
    if a.serving_db_identifier not in [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]]:
        rds.create_db_instance(DBInstanceIdentifier=a.serving_db_identifier, Engine="postgres", DBInstanceClass="db.t4g.micro", AllocatedStorage=20, MasterUsername="mendix", MasterUserPassword="not-used-0123", Tags=tags)
    boto3.client("s3", region_name=REGION, endpoint_url=moto).put_bucket_tagging(Bucket=a.bucket_name, Tagging={"TagSet": tags})
    backup = BackupDouble(REGION, ACCOUNT)
    low, high = lock_bounds(Backups())
    backup.add_vault(a.backup_vault_name, min_days=low, max_days=high)
    backup.policy = permission_policy(a, "backups")
    return backup


def test_download_takes_a_backup_now_that_restores_every_row_and_file(exported: Deployed, pg: PostgresServer, project: Any, tmp_path: Path, capsys: Any) -> None:
    d, a = exported, exported.a
    before = _rows(pg)
    out_dir = tmp_path / "downloads"
    rc, out, err = _cli(capsys, "backup", "download", "-s", d.stack, "-e", d.role, "-o", str(out_dir), "-C", str(project.path))
    assert rc == 0, err + "".join(f"\n--- {k}:\n{v}" for k, v in d.states.logs.items())
    (backup_id,) = re.findall(r"downloaded backup (\d{8}T\d{6}Z) to", out)
    archive = out_dir / f"{backup_id}.tar.gz"
    data = archive.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert f"({len(data)} bytes, sha256 {sha})" in out and archive.stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in out_dir.iterdir()) == [archive.name]  # no part file left
    # the machine ran the rendered task once, its only input the execution's name as the backup's time
    (ran,) = d.states.ran
    assert ran["Overrides"] == {"ContainerOverrides": [{"Name": "backup", "Environment": [{"Name": "BACKUP_NOW", "Value": backup_id}]}]}
    # what `restore --archive` on Kubernetes or Cloud Foundry judges first: every file goes back under its key
    assert check(archive, sha, stored_keys()).files == len(FILES)
    # every row and file: the archive restores into a new database as it was
    got = unpack(archive, tmp_path / "unpacked")
    assert {str(p.relative_to(got.tree)): p.read_bytes() for p in got.tree.rglob("*") if p.is_file()} == {tree_path(k): v for k, v in FILES.items()}
    pg.psql("DROP DATABASE IF EXISTS restored; CREATE DATABASE restored;", "postgres")
    subprocess.run([str(require_bin_dir() / "pg_restore"), "--no-owner", "-d", pg.url.rsplit("/", 1)[0] + "/restored", str(got.dump)], check=True, capture_output=True)
    assert _rows(pg, "restored") == before
    # the exports bucket keeps nothing once fetched
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=d.moto)
    assert s3.list_objects_v2(Bucket=a.exports_bucket_name).get("KeyCount") == 0
    # as each identity was allowed: nothing denied, and exactly these S3 actions
    assert d.gate.denied == [] and d.states.denied == []
    by = lambda key: sorted({(act, res) for k, act, res in d.gate.calls if k == key})  # noqa: E731
    key = f"{a.exports_bucket_arn}/{backup_id}.tar.gz"
    assert by(d.caller_key) == [("s3:DeleteObject", key), ("s3:GetObject", key)]
    assert {act for act, _ in by(TASK_KEY)} == {"s3:ListBucket", "s3:GetObject", "s3:PutObject"}
    assert ("s3:PutObject", key) in by(TASK_KEY)
    assert {(who, act) for who, act, _ in d.states.calls} >= {("caller", "states:StartExecution"), ("runner", "ecs:RunTask"), ("runner", "iam:PassRole"), ("execution", "secretsmanager:GetSecretValue")}
    # recorded, signed, naming what was checked
    (record,) = [r for r in _records(project, d.role) if r.action == "backup-download"]
    assert record.changes["backup"] == {"id": backup_id, "trigger": "on-demand", "size": len(data), "sha256": sha}
    from postgres import PASSWORD

    assert PASSWORD not in json.dumps(d.states.logs) + out + err


def test_a_failed_export_says_which_container_and_records_nothing(exported: Deployed, project: Any, tmp_path: Path, capsys: Any) -> None:
    d = exported
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=d.moto)
    sm.put_secret_value(SecretId=d.secret, SecretString=json.dumps({"username": "mendix", "password": "rotated-since"}))
    out_dir = tmp_path / "downloads"
    rc, out, err = _cli(capsys, "backup", "download", "-s", d.stack, "-e", d.role, "-o", str(out_dir), "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "ended FAILED: backup exited" in said and "(log stream export/backup/" in said and "nothing was recorded" in said, err
    assert "put never ran" not in said  # the container that failed is named, not its dependants
    assert "Traceback" not in err and "rotated-since" not in err + json.dumps(d.states.logs)
    assert list(out_dir.iterdir()) == [] and not [r for r in _records(project, d.role) if r.action == "backup-download"]


def test_download_is_refused_to_a_role_without_the_backups_rights(exported: Deployed, project: Any, tmp_path: Path, capsys: Any) -> None:
    d = exported
    d.states.caller_policy = permission_policy(d.a, "deploy")
    rc, out, err = _cli(capsys, "backup", "download", "-s", d.stack, "-e", d.role, "-o", str(tmp_path / "o"), "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "states:StartExecution" in said and d.a.role_arn("backups") in said, err
    assert d.states.ran == [] and ("caller", "states:StartExecution", d.a.export_machine_arn) in d.states.denied


def test_download_by_id_and_download_without_the_export_say_what_to_do(exported: Deployed, project: Any, tmp_path: Path, capsys: Any) -> None:
    d = exported
    rc, out, err = _cli(capsys, "backup", "download", "-s", d.stack, "-e", d.role, "--id", "20261201T000000Z", "-o", str(tmp_path / "o"), "-C", str(project.path))
    assert rc == 2 and "the aws target downloads only a backup it takes now" in " ".join(err.split())
    project.stack(d.stack, encrypted(config(d.role, aws={"vpcTags": {}})))
    rc, out, err = _cli(capsys, "backup", "download", "-s", d.stack, "-e", d.role, "-o", str(tmp_path / "o"), "-C", str(project.path))
    said = " ".join(err.split())
    assert rc == 2 and "mxinfra:aws.backupExport" in said and "pulumi up" in said and d.states.ran == [], err


def test_the_plan_notes_say_what_download_runs_or_needs():
    from mxinfra_aws.render import export_notes

    as_resources = lambda inputs: [{"name": n, "type": t, "inputs": i} for n, (t, i) in inputs.items()]  # noqa: E731
    note, restore = export_notes(as_resources(_update()))
    assert note == (
        f"export task orders-test-export (pull-files {RCLONE}, backup {POSTGRES}, put {RCLONE}; 50 GiB scratch), "
        "started only by the state machine orders-test-export; archives expire after 1 day(s)"
    )
    assert restore == (
        "restore task orders-test-restore (fetch, restore, push-files), started only by the state machine orders-test-restore, "
        "which stops the services while it runs (`mxinfra backup restore --archive`)"
    )
    plain = run_as_update(lambda: MendixApp("orders", {"deployment": deployment(config("test", aws={"vpcTags": {}}), "aws-test")}), "aws-test")
    assert export_notes(as_resources(plain)) == ["no export task: `mxinfra backup download` and `restore --archive` need mxinfra:aws.backupExport (its postgres and rclone images)"]


def _download(d: Deployed, project: Any, out_dir: Path, capsys: Any) -> tuple[int, str, str]:
    return _cli(capsys, "backup", "download", "-s", d.stack, "-e", d.role, "-o", str(out_dir), "-C", str(project.path))


def test_an_environment_without_files_downloads_its_database(exported: Deployed, project: Any, tmp_path: Path, capsys: Any) -> None:
    """rclone makes no directory for an empty bucket: pull-files makes it, so backup.sh archives no files."""
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=exported.moto)
    for key in FILES:
        s3.delete_object(Bucket=exported.a.bucket_name, Key=key)
    rc, out, err = _download(exported, project, tmp_path / "o", capsys)
    assert rc == 0, err + json.dumps(exported.states.logs)
    (archive,) = (tmp_path / "o").iterdir()
    assert check(archive).files == 0


def test_an_archive_changed_after_the_task_wrote_it_is_not_kept(exported: Deployed, project: Any, tmp_path: Path, capsys: Any) -> None:
    """What arrives must be what the task stored: another body under the task's sha256 is refused."""
    d = exported
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=d.moto)

    def swap() -> None:  # as if someone outside the roles wrote over it (moto directly: no bucket policy)
        (obj,) = s3.list_objects_v2(Bucket=d.a.exports_bucket_name)["Contents"]
        head = s3.head_object(Bucket=d.a.exports_bucket_name, Key=obj["Key"])
        s3.put_object(Bucket=d.a.exports_bucket_name, Key=obj["Key"], Body=b"not the archive", Metadata=head["Metadata"])

    d.states.after_task = swap
    rc, out, err = _download(d, project, tmp_path / "o", capsys)
    said = " ".join(err.split())
    assert rc == 2 and "arrived as 15 bytes" in said and "not kept, run it again" in said, err
    assert list((tmp_path / "o").iterdir()) == [] and not [r for r in _records(project, d.role) if r.action == "backup-download"]


def test_the_exports_bucket_keeps_other_identities_of_the_account_out(exported: Deployed) -> None:
    """An identity that may read and write every object of the account (CI) can neither read a dump nor
    write an archive there: the bucket's policy refuses it; it can in the file bucket, which its own policy
    governs. (The task's and backups' own limits below are their identity policies'.)"""
    d, a = exported, exported.a
    key = f"{a.exports_bucket_arn}/20261205T010203Z.tar.gz"
    assert not d.gate.authorized(CI_KEY, "s3:GetObject", key) and not d.gate.authorized(CI_KEY, "s3:PutObject", key)
    # nor by another name for the same read: GET ?versionId=null of an unversioned bucket
    assert s3_action("GET", f"/{a.exports_bucket_name}/x.tar.gz", {"versionId": ["null"]})[0] == "s3:GetObjectVersion"
    assert not d.gate.authorized(CI_KEY, "s3:GetObjectVersion", key)
    assert d.gate.authorized(CI_KEY, "s3:GetObject", f"{a.bucket_arn}/x")
    assert d.gate.authorized(d.caller_key, "s3:GetObject", key) and not d.gate.authorized(d.caller_key, "s3:PutObject", key)
    assert d.gate.authorized(TASK_KEY, "s3:PutObject", key) and not d.gate.authorized(TASK_KEY, "s3:GetObject", key)


def test_an_archive_gone_before_the_fetch_is_named_as_missing(exported: Deployed, project: Any, tmp_path: Path, capsys: Any) -> None:
    d = exported
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=d.moto)
    d.states.after_task = lambda: [s3.delete_object(Bucket=d.a.exports_bucket_name, Key=o["Key"]) for o in s3.list_objects_v2(Bucket=d.a.exports_bucket_name).get("Contents") or []]
    rc, out, err = _download(d, project, tmp_path / "o", capsys)
    said = " ".join(err.split())
    assert rc == 2 and "NoSuchKey" in said and "stored no archive under its id" in said and "assume its role" not in said, err


def test_an_export_that_outlives_the_wait_is_stopped(exported: Deployed, project: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    d = exported
    release = threading.Event()
    d.states.after_task = lambda: release.wait(30)
    monkeypatch.setattr(backup_actions, "EXPORT_TIMEOUT_SECONDS", -599.0)  # the command waits one second
    try:
        rc, out, err = _download(d, project, tmp_path / "o", capsys)
    finally:
        release.set()
    said = " ".join(err.split())
    assert rc == 2 and "still ran after" in said and "stopped the export" in said, err
    (execution,) = d.states.executions.values()
    assert execution["status"] == "ABORTED" and list((tmp_path / "o").iterdir()) == []


def test_one_export_at_a_time(exported: Deployed, project: Any, tmp_path: Path, capsys: Any) -> None:
    """Each export holds pg_dump's locks on every table: a second one while another runs is refused by the
    machine itself (IAM cannot count executions), before any task starts."""
    from datetime import datetime, timezone

    d = exported
    other = d.a.export_machine_arn.replace(":stateMachine:", ":execution:") + ":20261205T000000Z"
    d.states.executions[other] = {"executionArn": other, "stateMachineArn": d.a.export_machine_arn, "name": "20261205T000000Z", "status": "RUNNING", "startDate": datetime.now(timezone.utc)}
    rc, out, err = _download(d, project, tmp_path / "o", capsys)
    said = " ".join(err.split())
    assert rc == 2 and "ended FAILED: mxinfra.ExportRunning: another export, or a restore, of this environment is running" in said, err
    assert d.states.ran == [] and ("runner", "states:ListExecutions", d.a.export_machine_arn) in d.states.calls


def test_the_bucket_copy_goes_only_after_the_record_and_a_failed_delete_is_a_warning(exported: Deployed, project: Any, tmp_path: Path, capsys: Any) -> None:
    d = exported
    principal, policy = d.gate.identities[d.caller_key]
    no_delete = {**policy, "Statement": [*policy["Statement"], {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}]}
    d.gate.identities[d.caller_key] = (principal, no_delete)
    rc, out, err = _download(d, project, tmp_path / "o", capsys)
    said = " ".join(err.split())
    assert rc == 0 and "warning:" in said and "s3:DeleteObject" in said and "the bucket's lifecycle removes it" in said, err
    (record,) = [r for r in _records(project, d.role) if r.action == "backup-download"]
    (archive,) = (tmp_path / "o").iterdir()
    assert record.changes["backup"]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_throttling_while_following_the_export_is_waited_out(exported: Deployed, project: Any, tmp_path: Path, capsys: Any) -> None:
    """An export runs for hours: answers worth waiting out (beyond the SDK's own retries) do not stop it."""
    # the SDK's own five attempts are all throttled once: then the command's patience is what is left
    exported.states.throttle = 6
    rc, out, err = _download(exported, project, tmp_path / "o", capsys)
    assert rc == 0 and err.count("warning: following the export") == 1 and "ThrottlingException" in err, err
    (execution,) = exported.states.executions.values()
    assert execution["status"] == "SUCCEEDED"


def test_the_bucket_copy_stays_when_the_download_cannot_be_recorded(exported: Deployed, project: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy in the bucket is removed only once the record is written: a record that fails leaves it."""
    from mxinfra import backup_cli
    from mxinfra.errors import UserError

    d = exported

    def refuse(self: Any, action: str, changes: Any) -> None:
        raise UserError("the log store refused the record (as a test)")

    monkeypatch.setattr(backup_cli._Context, "record", refuse)
    rc, out, err = _download(d, project, tmp_path / "o", capsys)
    assert rc == 2 and "refused the record" in err, err
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=d.moto)
    assert s3.list_objects_v2(Bucket=d.a.exports_bucket_name).get("KeyCount") == 1
    assert not [c for c in d.gate.calls if c[0] == d.caller_key and c[1] == "s3:DeleteObject"]


def test_only_a_session_of_the_backups_role_starts_an_export(exported: Deployed, project: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone else (here a user of the account: the platform identity) would get an hour's dump that the
    exports bucket never hands them: nothing is started."""
    for name in ("AWS_SESSION_TOKEN",):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", USER_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    rc, out, err = _download(exported, project, tmp_path / "o", capsys)
    said = " ".join(err.split())
    assert rc == 2 and "is not a session of the environment's backups role" in said and "nothing was started" in said, err
    assert exported.states.executions == {} and exported.states.ran == []


def test_a_postgres_image_whose_tag_names_no_version_is_warned_about(project, capsys):
    from test_aws_plan import bad

    untagged = f"{ECR}/mirror/pg@sha256:" + "ab" * 32
    cfg = config("production", aws={"backupExport": {"postgresImage": untagged, "rcloneImage": RCLONE}})
    rc, err = bad(project, capsys, cfg)  # a config problem would be refused: this one is not
    assert rc == 0, err
    from mxinfra.cli import main

    assert main(["plan", "-s", "aws-production", "-C", str(project.path)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "warning: mxinfra:aws.backupExport.postgresImage" in said and "names no PostgreSQL version in its tag" in said and "PostgreSQL 16 or newer" in said
