"""Issue 21: `mxinfra:aws.database.fromBackup.<env>` puts a restored backup in service.

With the key the program declares a NEW RDS instance `<db>-from-<id>` created from the backup's snapshot,
with every guarantee of the environment's own instance; the runtime (endpoint, master secret, its grant),
the password-rotation redeploy and the backups follow it; the environment's own instance stays declared
exactly as without the key. Config refusals exit 2 in one report; `mxinfra plan` shows the switch; the
deploy-time lookup of a backup id in the vault runs against the AWS Backup double (test_aws_backup_cli).
A point in time (the core's parse_restore_point) restores the environment's own instance's automated
backups to that instant into `<db>-from-pit-<time>` by the same code path, only the source input differing.
"""

from __future__ import annotations

import json
from hashlib import sha256
from typing import Any

import boto3
import pytest

from mxinfra.backups import Backups
from mxinfra.cli import main
from mxinfra.components import ENVIRONMENT_TYPE, MendixApp
from mxinfra.errors import UserError
from mxinfra.target import KNOWN_AFTER_APPLY
from mxinfra_aws import database
from mxinfra_aws.backup_actions import restore_source
from mxinfra_aws.config import AwsConfig, parse_snapshot_source
from mxinfra_aws.database import LOOKED_UP, in_service

from awshelpers import ACCOUNT, AWS_BLOCK, REGION, config, deployment
from scaffold import encrypted
from test_aws_backup_cli import _cli, deployed, double  # noqa: F401 (double: the fixture)

INSTANCE = "aws:rds/instance:Instance"
ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"
BACKUP_ID = "20261204T020000Z"
ROLES = ("test", "acceptance", "production")
# what only the restored instance sets differently: its name, where it comes from, and its own final
# snapshot's random suffix; the database name and master user come from the snapshot
OWN_ONLY = {"identifier", "finalSnapshotIdentifier", "dbName", "username"}


def keyed(role: str, value: str = BACKUP_ID, **env: Any) -> dict[str, Any]:
    aws: dict[str, Any] = {"database": {"fromBackup": {role: value}}}
    if role != "production":
        aws["vpcTags"] = {}
    return config(role, aws=aws, env=env or None)


def plain(role: str) -> dict[str, Any]:
    return config(role, aws={"vpcTags": {}} if role != "production" else None)


def run(pulumi_run, cfg: dict[str, Any], **kw: Any):
    d = deployment(cfg)
    return d, pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="aws-production", project="orders", **kw)


def restored_name(role: str, label: str = BACKUP_ID.lower()) -> str:
    return f"orders-{role}-db-from-{label}"


# --- the decision --------------------------------------------------------------------------------------


def test_in_service_names_a_new_instance_per_backup():
    cfg = AwsConfig.model_validate({**AWS_BLOCK, "database": {"fromBackup": {"production": BACKUP_ID}}})
    r = in_service(cfg, "production", "orders-production-db")
    assert r is not None and r.identifier == "orders-production-db-from-20261204t020000z" and r.kind == "db-from-20261204t020000z"
    assert r.source.backup_id == BACKUP_ID and r.source.aws_backup
    # not the name `mxinfra backup restore` gives its copy of the same backup (<db>-<id>): never a collision
    assert r.identifier != f"orders-production-db-{BACKUP_ID.lower()}"
    assert in_service(cfg, "acceptance", "orders-acceptance-db") is None
    # another backup is another instance, never the same one replaced
    other = AwsConfig.model_validate({**AWS_BLOCK, "database": {"fromBackup": {"production": "20261205T020000Z"}}})
    assert in_service(other, "production", "orders-production-db").identifier != r.identifier
    # a snapshot by identifier or by ARN is the same instance; RDS identifiers are lowercase
    digest = sha256(b"orders-production-db-before-upgrade").hexdigest()[:12]
    for value in ("orders-production-db-before-upgrade", f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:orders-production-db-Before-Upgrade"):
        c = AwsConfig.model_validate({**AWS_BLOCK, "database": {"fromBackup": {"production": value}}})
        s = in_service(c, "production", "orders-production-db")
        assert s.identifier == f"orders-production-db-from-{digest}" and s.source.snapshot == "orders-production-db-before-upgrade"
        assert not s.source.aws_backup


def test_identifier_stays_within_rds_and_the_backup_roles_bounds():
    # the longest names there are: app and environment of 20 characters each (44 for <db>)
    env = "e" * 20
    db = "a" * 20 + f"-{env}-db"
    ids = []
    for value in (BACKUP_ID, "20261205T020000Z", "awsbackup:job-0a1b2c3d"):
        r = in_service(AwsConfig.model_validate({**AWS_BLOCK, "database": {"fromBackup": {env: value}}}), env, db)
        assert len(r.identifier) <= 63 and r.identifier.startswith(f"{db}-from-") and "--" not in r.identifier and not r.identifier.endswith("-")
        ids.append(r.identifier)
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    "value",
    ["20261204T020000Z", "awsbackup:job-0a1b2c3d-4e5f-6789-abcd-ef0123456789", "rds:orders-production-db-2026-12-04-02-00", "orders-production-db-x",
     f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:awsbackup:job-0a1b2c3d"],
)
def test_accepted_formats(value):
    parse_snapshot_source(value)


@pytest.mark.parametrize("value", ["2026-12-04", "20261304T020000Z", "2026-13-04T10:15:00Z", "2026-12-04T10:15:00", "2026-12-04T10:15:00+01:00", "2026-12-04T10:15Z", "20261204T020000", "orders--db", "db-", "1abc", "awsbackup:job-", "awsbackup:job-xyz", "orders_db", "arn:aws:rds:eu-west-1:123:snapshot:x", ""])
def test_refused_formats(value):
    with pytest.raises(ValueError, match="expected a backup id YYYYmmddTHHMMSSZ"):
        parse_snapshot_source(value)


# --- the program: the new instance's exact contract ----------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_restored_instance_contract(pulumi_run, role):
    d, res = run(pulumi_run, keyed(role))
    env = res.one(ENVIRONMENT_TYPE, f"orders-{role}")
    own = res.one(INSTANCE, f"orders-{role}-db")
    new = res.one(INSTANCE, restored_name(role))
    guarded = role != "test"
    i = new.inputs
    assert new.type == INSTANCE and new.parent == env.urn
    assert i["identifier"] == restored_name(role)
    # a backup id's snapshot is looked up in the vault by pulumi preview/up; the offline plan says so
    assert i["snapshotIdentifier"] == LOOKED_UP.format(id=BACKUP_ID, vault=f"orders-{role}-backups")
    assert i["storageEncrypted"] is True and i["publiclyAccessible"] is False and i["manageMasterUserPassword"] is True
    assert i["dbSubnetGroupName"] == own.inputs["dbSubnetGroupName"] == f"orders-{role}-db"
    assert i["vpcSecurityGroupIds"] == own.inputs["vpcSecurityGroupIds"]
    assert i["multiAz"] is (role == "production") and i["backupRetentionPeriod"] == {"test": 1, "acceptance": 7, "production": 30}[role]
    assert i["deletionProtection"] is guarded and i["skipFinalSnapshot"] is not guarded and i["copyTagsToSnapshot"] is True
    assert i["tags"] == own.inputs["tags"] and {k: i["tags"][k] for k in ("mxinfra:app", "mxinfra:environment")} == {"mxinfra:app": "orders", "mxinfra:environment": role}
    assert "dbName" not in i and "username" not in i  # the snapshot's
    # every other guarantee exactly the environment's instance's
    assert {k: v for k, v in i.items() if k not in OWN_ONLY | {"snapshotIdentifier"}} == {k: v for k, v in own.inputs.items() if k not in OWN_ONLY}
    # protected as production data is; forgotten, never deleted, when the key goes; created once from its snapshot
    assert new.protect is (role == "production") and new.retain_on_delete is True and new.ignore_changes == ["snapshotIdentifier"]
    if guarded:
        suffix = res.one("random:index/randomId:RandomId", f"{restored_name(role)}-final-suffix")
        assert suffix.parent == env.urn and suffix.inputs["byteLength"] == 4
    else:
        assert "finalSnapshotIdentifier" not in i
    # its managed password rotates on the same schedule
    rotation = res.one(ROTATION, f"{restored_name(role)}-password-rotation")
    assert rotation.parent == env.urn and rotation.inputs["rotationRules"] == {"automaticallyAfterDays": 30}
    # forgotten with the instance, never deleted: a retired instance's password keeps rotating
    assert rotation.retain_on_delete is True and res.one(ROTATION, f"orders-{role}-db-password-rotation").retain_on_delete is False


@pytest.mark.parametrize("role", ROLES)
def test_own_instance_stays_declared_unchanged(pulumi_run, role):
    _, before = run(pulumi_run, plain(role))
    _, after = run(pulumi_run, keyed(role))
    for name, type_ in ((f"orders-{role}-db", INSTANCE), (f"orders-{role}-db-subnets", "aws:rds/subnetGroup:SubnetGroup"), (f"orders-{role}-db-password-rotation", ROTATION)):
        b, a = before.one(type_, name), after.one(type_, name)
        assert (a.inputs, a.protect, a.retain_on_delete, a.ignore_changes, a.parent) == (b.inputs, b.protect, b.retain_on_delete, b.ignore_changes, b.parent), name
    # exactly the restored instance, its rotation and (guarded) its final snapshot's suffix are added
    added = {r.name for r in after} - {r.name for r in before}
    extra = {f"{restored_name(role)}-final-suffix"} if role != "test" else set()
    assert added == {restored_name(role), f"{restored_name(role)}-password-rotation", *extra}
    # and removing the key again is the config without it: the same program as before (switch back)
    assert not [r for r in before if r.type == INSTANCE and r.name != f"orders-{role}-db"]


def test_a_snapshot_is_restored_as_named(pulumi_run):
    snap = "orders-production-db-before-upgrade"
    _, res = run(pulumi_run, keyed("production", f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:{snap}"))
    new = res.one(INSTANCE, restored_name("production", sha256(snap.encode()).hexdigest()[:12]))
    assert new.inputs["snapshotIdentifier"] == snap
    _, res = run(pulumi_run, keyed("production", "awsbackup:job-0a1b2c3d-4e5f"))
    (new,) = [r for r in res.of_type(INSTANCE) if r.name != "orders-production-db"]
    assert new.inputs["snapshotIdentifier"] == "awsbackup:job-0a1b2c3d-4e5f"


# --- the runtime and everything else that reads the database follow it ---------------------------------


def _endpoint(identifier: str) -> str:
    return f"{identifier}.c9akciq32.{REGION}.rds.amazonaws.com:5432"


def _secret(identifier: str) -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-{sha256(identifier.encode()).hexdigest()[:8]}-AbCdEf"


def outputs(args: Any) -> dict[str, Any]:
    """AWS's outputs, an endpoint and master secret per instance."""
    from awshelpers import cloud_outputs

    state = cloud_outputs(args)
    if args.typ == INSTANCE:
        ident = args.inputs["identifier"]
        state.update(endpoint=_endpoint(ident), masterUserSecrets=[{"secretArn": _secret(ident), "secretStatus": "active"}])
    return state


def test_runtime_backups_and_rotation_use_the_restored_instance(pulumi_run):
    new = restored_name("production")
    _, res = run(pulumi_run, keyed("production"), preview=False, outputs=outputs)
    rds_arn = f"arn:aws:rds:{REGION}:{ACCOUNT}:db:"
    for task in ("orders-production-task", "orders-production-follower-task"):
        (c,) = json.loads(res.named(task).inputs["containerDefinitions"])
        env = {e["name"]: e["value"] for e in c["environment"]}
        secrets = {s["name"]: s["valueFrom"] for s in c["secrets"]}
        assert env["MXRUNTIME_DatabaseHost"] == _endpoint(new)
        assert secrets["MXRUNTIME_DatabaseUserName"] == f"{_secret(new)}:username::"
        assert secrets["MXRUNTIME_DatabasePassword"] == f"{_secret(new)}:password::"
        assert "orders-production-db." not in json.dumps(c)
    # the execution role reads the restored instance's secret (by RDS's tag), not the old one's
    policy = json.loads(res.named("orders-production-execution-role-policy").inputs["policy"])
    (db_secret,) = [s for s in policy["Statement"] if s["Sid"] == "DatabaseSecret"]
    assert db_secret["Condition"] == {"StringEquals": {"secretsmanager:ResourceTag/aws:rds:primaryDBInstanceArn": f"{rds_arn}{new}"}}
    # a rotation of its password redeploys the services
    pattern = json.loads(res.named("orders-production-db-rotated").inputs["eventPattern"])
    assert pattern["detail"]["additionalEventData"]["SecretId"] == [_secret(new)]
    # AWS Backup backs up the instance the app writes to; the backup role may snapshot it (and the old one)
    selection = res.named("orders-production-backup-selection")
    assert selection.inputs["resources"] == [f"{rds_arn}{new}", f"arn:aws:s3:::orders-production-files-{ACCOUNT}-{REGION}"]
    scope = json.loads(res.named("orders-production-backup-role-policy").inputs["policy"])
    (only_db,) = [s for s in scope["Statement"] if s["Sid"] == "BackUpOnlyThisDatabase"]
    assert only_db["NotResource"] == [f"{rds_arn}orders-production-db", f"{rds_arn}{new}", f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:awsbackup:job-*"]
    backups = json.loads(res.named("orders-production-role-backups-policy").inputs["policy"])
    describe = next(s for s in backups["Statement"] if s["Sid"] == "DescribeInstance")
    assert describe["Resource"] == [f"{rds_arn}orders-production-db", f"{rds_arn}{new}"]


def test_outputs_name_the_instance_in_service(pulumi_run):
    seen: dict[str, Any] = {}
    d = deployment(keyed("production"))

    def program():
        MendixApp("orders", {"deployment": d}).environments.apply(seen.update)

    pulumi_run(program, stack="aws-production", project="orders", preview=False, outputs=outputs)
    assert seen["production"]["database"] == restored_name("production")


# --- refusals: one report, exit 2 -------------------------------------------------------------------------


def _plan(project, capsys, cfg: dict[str, Any], stack: str = "aws-test") -> tuple[int, str, str]:
    project.stack(stack, encrypted(cfg))
    rc = main(["plan", "-s", stack, "-C", str(project.path)])
    out = capsys.readouterr()
    return rc, out.out, " ".join(out.err.split())


def test_config_refusals_in_one_report(project, capsys):
    cfg = config("test", aws={"vpcTags": {}})
    cfg["mxinfra:environments"]["qa"] = {**cfg["mxinfra:environments"]["test"], "backups": {"enabled": False}}
    cfg["mxinfra:environments"]["dev"] = dict(cfg["mxinfra:environments"]["test"])
    cfg["mxinfra:environments"]["lab"] = dict(cfg["mxinfra:environments"]["test"])
    cfg["mxinfra:aws"]["database"] = {
        "fromBackup": {
            "test": "2026-12-04",  # malformed
            "staging": BACKUP_ID,  # no such environment
            "qa": BACKUP_ID,  # backups off
            "dev": f"arn:aws:rds:{REGION}:210987654321:snapshot:orders-dev-db-x",  # another account
            "lab": "orders-test-db-before-upgrade",  # another environment's instance
        }
    }
    cfg["mxinfra:access"] = []
    rc, out, err = _plan(project, capsys, cfg)
    assert rc == 2, err
    key = "mxinfra:aws.database.fromBackup"
    assert f"{key}.test: '2026-12-04' is neither a backup id, a point in time nor an RDS snapshot: expected a backup id YYYYmmddTHHMMSSZ as `mxinfra backup list` prints it" in err
    assert f"{key}.staging: unknown environment 'staging'" in err
    assert f"{key}.qa: qa has no backups (mxinfra:environments.qa.backups.enabled is false)" in err
    assert f"{key}.dev: the snapshot's ARN is in 210987654321/{REGION}, the stack deploys to {ACCOUNT}/{REGION}" in err
    assert f"{key}.lab: 'orders-test-db-before-upgrade' is not a snapshot of lab's instance orders-lab-db" in err
    assert "5 problem(s)" in err


# --- the plan shows the switch ---------------------------------------------------------------------------


def test_plan_shows_the_restored_instance_in_service(project, capsys):
    new = restored_name("test")
    project.stack("aws-test", encrypted(keyed("test")))
    assert main(["plan", "-s", "aws-test", "-C", str(project.path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name[new]["type"] == INSTANCE and by_name[new]["inputs"]["snapshotIdentifier"] == LOOKED_UP.format(id=BACKUP_ID, vault="orders-test-backups")
    assert by_name[new]["options"].get("retainOnDelete") is True
    assert by_name["orders-test-db"]["type"] == INSTANCE
    (c,) = json.loads(by_name["orders-test-task"]["inputs"]["containerDefinitions"])
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert env["MXRUNTIME_DatabaseHost"] == f"{new}.{KNOWN_AFTER_APPLY}.{REGION}.rds.amazonaws.com:5432"
    assert main(["plan", "-s", "aws-test", "-C", str(project.path)]) == 0
    tree = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert f"the app uses {new}, a NEW instance restored from (the database recovery point of backup {BACKUP_ID}" in tree


# --- pulumi up's lookup of a backup id in the vault (the AWS Backup double) ------------------------------


def _environment(role: str) -> Any:
    return deployment(plain(role)).environment(role).environment


def test_backup_id_is_looked_up_in_the_vault(double, project, capsys):
    stack, a = deployed(double, project, "test")
    rc, out, err = _cli(capsys, "backup", "create", "-s", stack, "-e", "test", "-C", str(project.path))
    assert rc == 0, err
    rc, out, err = _cli(capsys, "backup", "list", "-s", stack, "-e", "test", "-C", str(project.path), "--json")
    (backup_id,) = json.loads(out)
    env = _environment("test")
    found = restore_source(env, a, Backups(), parse_snapshot_source(backup_id), f"{a.db_identifier}-from-{backup_id.lower()}")
    assert found is not None and found.startswith("awsbackup:job-")
    # the same snapshot named directly is the environment's recovery point too
    assert restore_source(env, a, Backups(), parse_snapshot_source(found), "unused") == found
    # not in the vault, no instance made from it: refused, naming the vault and `mxinfra backup list`
    with pytest.raises(UserError, match=r"names 20200101T000000Z, which is not a database backup in AWS Backup vault orders-test-backups .*mxinfra backup list"):
        restore_source(env, a, Backups(), parse_snapshot_source("20200101T000000Z"), f"{a.db_identifier}-from-20200101t000000z")
    # expired from the vault after the instance was made from it: nothing to look up (the state keeps it)
    tags = [{"Key": "mxinfra:app", "Value": "orders"}, {"Key": "mxinfra:environment", "Value": "test"}]
    made = f"{a.db_identifier}-from-20200101t000000z"
    boto3.client("rds", region_name=REGION).create_db_instance(DBInstanceIdentifier=made, Engine="postgres", DBInstanceClass="db.t4g.micro", AllocatedStorage=20, MasterUsername="mendix", MasterUserPassword="not-used-0123", Tags=tags)
    assert restore_source(env, a, Backups(), parse_snapshot_source("20200101T000000Z"), made) is None


def test_a_release_by_deploy_with_a_backup_in_service_reads_no_vault(double, project):
    # The key stays set for every later `pulumi up`, releases by `deploy` included: once the instance exists,
    # the program asks only whether it does (which deploy may, on that instance alone) and never the vault.
    from iam_eval import allows
    from mxinfra_aws.policies import deploy_policy
    from mxinfra_aws.target import with_database

    stack, a = deployed(double, project, "test")
    served = with_database(a, AwsConfig.model_validate(keyed("test")["mxinfra:aws"]))
    assert served.restored is not None and served.serving_db_identifier != a.db_identifier
    deploy = deploy_policy(served)
    assert allows(deploy, "rds:DescribeDBInstances", served.serving_db_arn)
    assert not allows(deploy, "rds:DescribeDBInstances", a.db_arns[0]) and not allows(deploy_policy(a), "rds:DescribeDBInstances", served.serving_db_arn)
    tags = [{"Key": "mxinfra:app", "Value": "orders"}, {"Key": "mxinfra:environment", "Value": "test"}]
    boto3.client("rds", region_name=REGION).create_db_instance(
        DBInstanceIdentifier=served.serving_db_identifier, Engine="postgres", DBInstanceClass="db.t4g.micro", AllocatedStorage=20, MasterUsername="mendix", MasterUserPassword="not-used-0123", Tags=tags
    )
    double.policy = deploy  # the AWS Backup calls are held to deploy's rendered policy
    assert restore_source(_environment("test"), served, Backups(), parse_snapshot_source(BACKUP_ID), served.serving_db_identifier) is None
    assert double.denied == [] and double.calls == []
    # not created yet: the vault is asked, which deploy may not (the platform identity creates the instance)
    boto3.client("rds", region_name=REGION).delete_db_instance(DBInstanceIdentifier=served.serving_db_identifier, SkipFinalSnapshot=True)
    with pytest.raises(UserError, match="backups permission"):
        restore_source(_environment("test"), served, Backups(), parse_snapshot_source(BACKUP_ID), served.serving_db_identifier)
    assert [action for action, _ in double.denied] == ["backup:ListRecoveryPointsByBackupVault"]


def test_database_module_decides_once():
    # the runtime, rotation, backups and policies take the instance from Database / Arns.restored: only
    # database.in_service reads the key (target.py hands its answer to the Arns, and checks the config)
    from pathlib import Path

    src = Path(database.__file__).parent
    assert sorted(p.name for p in src.glob("*.py") if ".source(" in p.read_text() or "fromBackup.get" in p.read_text()) == ["config.py", "database.py"]
    assert sorted(p.name for p in src.glob("*.py") if "in_service(" in p.read_text()) == ["database.py", "target.py"]


# --- a point in time (issue 21): the environment's own automated backups, restored to an instant ---------

POINT = "2026-12-04T10:15:00Z"


def recent(hours: int = 2) -> str:
    """A point in time within every tier's retention (test keeps automated backups one day)."""
    from datetime import datetime, timedelta, timezone

    return (datetime.now(timezone.utc) - timedelta(hours=hours)).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def pit_name(role: str, value: str) -> str:
    from mxinfra.backups import parse_restore_point

    return restored_name(role, parse_restore_point(value).label.lower())


def test_in_service_names_a_point_in_time_apart_from_the_backup_of_the_same_instant():
    cfg = AwsConfig.model_validate({**AWS_BLOCK, "database": {"fromBackup": {"production": POINT}}})
    r = in_service(cfg, "production", "orders-production-db")
    assert r.identifier == "orders-production-db-from-pit-20261204t101500z" and r.kind == "db-from-pit-20261204t101500z"
    assert r.source.point_in_time is not None and r.source.point_in_time.iso == POINT
    assert r.source.backup_id is None and r.source.snapshot is None and not r.source.aws_backup
    # the backup id of the same instant is another source, so another instance (ignore_changes would
    # otherwise keep the first one silently)
    same = AwsConfig.model_validate({**AWS_BLOCK, "database": {"fromBackup": {"production": "20261204T101500Z"}}})
    assert in_service(same, "production", "orders-production-db").identifier == "orders-production-db-from-20261204t101500z"
    # the longest names: within RDS's 63 characters, still <db>-from-*
    db = "a" * 20 + "-" + "e" * 20 + "-db"
    long = in_service(AwsConfig.model_validate({**AWS_BLOCK, "database": {"fromBackup": {"e" * 20: POINT}}}), "e" * 20, db)
    assert len(long.identifier) <= 63 and long.identifier.startswith(f"{db}-from-") and long.identifier != in_service(
        AwsConfig.model_validate({**AWS_BLOCK, "database": {"fromBackup": {"e" * 20: "20261204T101500Z"}}}), "e" * 20, db
    ).identifier


@pytest.mark.parametrize("role", ROLES)
def test_point_in_time_instance_contract(pulumi_run, role):
    value = recent()
    _, res = run(pulumi_run, keyed(role, value))
    env = res.one(ENVIRONMENT_TYPE, f"orders-{role}")
    own = res.one(INSTANCE, f"orders-{role}-db")
    new = res.one(INSTANCE, pit_name(role, value))
    i = new.inputs
    assert new.parent == env.urn and i["identifier"] == pit_name(role, value)
    # restored from the environment's OWN instance's automated backups, to that instant; after it exists
    assert i["restoreToPointInTime"] == {"sourceDbInstanceIdentifier": f"orders-{role}-db", "restoreTime": value}
    assert "snapshotIdentifier" not in i and "dbName" not in i and "username" not in i
    assert own.urn in new.dependencies
    # every other input exactly the environment's instance's (the snapshot variant's code path)
    assert {k: v for k, v in i.items() if k not in OWN_ONLY | {"restoreToPointInTime"}} == {k: v for k, v in own.inputs.items() if k not in OWN_ONLY}
    assert i["multiAz"] is (role == "production") and i["deletionProtection"] is (role != "test")
    assert new.protect is (role == "production") and new.retain_on_delete is True and new.ignore_changes == ["restoreToPointInTime"]
    rotation = res.one(ROTATION, f"{pit_name(role, value)}-password-rotation")
    assert rotation.parent == env.urn
    if role != "test":
        res.one("random:index/randomId:RandomId", f"{pit_name(role, value)}-final-suffix")
    # the environment's own instance is declared exactly as without the key
    _, before = run(pulumi_run, plain(role))
    b = before.one(INSTANCE, f"orders-{role}-db")
    assert (own.inputs, own.protect, own.retain_on_delete, own.ignore_changes) == (b.inputs, b.protect, b.retain_on_delete, b.ignore_changes)


def test_point_in_time_runtime_uses_the_new_instance(pulumi_run):
    value = recent()
    new = pit_name("production", value)
    _, res = run(pulumi_run, keyed("production", value), preview=False, outputs=outputs)
    (c,) = json.loads(res.named("orders-production-task").inputs["containerDefinitions"])
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert env["MXRUNTIME_DatabaseHost"] == _endpoint(new)
    assert res.named("orders-production-backup-selection").inputs["resources"][0] == f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{new}"


def test_point_in_time_refusals_in_one_report(project, capsys):
    from datetime import datetime, timedelta, timezone

    cfg = config("test", aws={"vpcTags": {}})
    for name in ("dev", "lab", "qa"):
        cfg["mxinfra:environments"][name] = dict(cfg["mxinfra:environments"]["test"])
    future = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cfg["mxinfra:aws"]["database"] = {
        "fromBackup": {
            "test": future,  # not yet
            "dev": "2026-12-04T10:15:00",  # no zone
            "lab": "2026-12-04T10:15:00+01:00",  # not in UTC with Z
            "qa": "2026-02-30T10:15:00Z",  # no such day
        }
    }
    cfg["mxinfra:access"] = []
    rc, out, err = _plan(project, capsys, cfg)
    assert rc == 2, err
    key = "mxinfra:aws.database.fromBackup"
    forms = "expected a backup id YYYYmmddTHHMMSSZ as `mxinfra backup list` prints it (e.g. 20261204T020000Z) or a point in time in UTC YYYY-mm-ddTHH:MM:SSZ (e.g. 2026-12-04T10:15:00Z)"
    assert f"{key}.test: '{future}' is in the future (now: " in err and f"expected a time that has passed, a backup id YYYYmmddTHHMMSSZ" in err
    assert f"{key}.dev: '2026-12-04T10:15:00' has no time zone: {forms}" in err
    assert f"{key}.lab: '2026-12-04T10:15:00+01:00' is not a time in UTC with Z to the second: {forms}" in err
    assert f"{key}.qa: '2026-02-30T10:15:00Z' is not a time: {forms}" in err
    assert "4 problem(s)" in err


def test_point_in_time_beyond_retention(pulumi_run, monkeypatch):
    """RDS restores a point in time only within the automated backups' retention (1 / 7 / 30 days by tier):
    `pulumi preview`/`up` stop before declaring anything unless the instance was created from it while it
    could be (it exists, tagged the environment's); the offline plan, which cannot ask, warns."""
    from mxinfra.errors import UserError
    from mxinfra_aws import backup_actions

    old = recent(hours=24 * 8)  # beyond test's 1 and acceptance's 7 days, within production's 30
    for role, beyond in (("test", True), ("acceptance", True), ("production", False)):
        _, res = run(pulumi_run, keyed(role, old))
        warned = [w for w in res.warnings if "database.fromBackup" in w]
        days = {"test": 1, "acceptance": 7}.get(role)
        assert bool(warned) is beyond and (not beyond or f"older than the {days} day(s) the environment's automated backups are kept" in warned[0])
        res.one(INSTANCE, pit_name(role, old))  # the offline plan declares it
    monkeypatch.setattr(database, "_deploying", lambda: True)
    asked: list[str] = []

    def exists(answer: bool):
        def look(env, a, instance, session=None):
            asked.append(instance)
            return answer

        return look

    monkeypatch.setattr(backup_actions, "restored_exists", exists(False))
    with pytest.raises(Exception, match=r"older than the 1 day\(s\) .* on test, and orders-test-db-from-pit-.* does not exist: name a later point in time"):
        run(pulumi_run, keyed("test", old))
    assert asked == [pit_name("test", old)]
    # created while it could be: kept (its source matters only on creation)
    monkeypatch.setattr(backup_actions, "restored_exists", exists(True))
    _, res = run(pulumi_run, keyed("test", old))
    assert res.one(INSTANCE, pit_name("test", old)).inputs["restoreToPointInTime"]["restoreTime"] == old
    # within the retention nothing is asked
    asked.clear()
    run(pulumi_run, keyed("production", old))
    assert asked == []


def test_plan_shows_the_point_in_time_restore(project, capsys):
    value = recent()
    new = pit_name("test", value)
    project.stack("aws-test", encrypted(keyed("test", value)))
    assert main(["plan", "-s", "aws-test", "-C", str(project.path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name[new]["inputs"]["restoreToPointInTime"] == {"sourceDbInstanceIdentifier": "orders-test-db", "restoreTime": value}
    (c,) = json.loads(by_name["orders-test-task"]["inputs"]["containerDefinitions"])
    assert {e["name"]: e["value"] for e in c["environment"]}["MXRUNTIME_DatabaseHost"] == f"{new}.{KNOWN_AFTER_APPLY}.{REGION}.rds.amazonaws.com:5432"
    assert main(["plan", "-s", "aws-test", "-C", str(project.path)]) == 0
    tree = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert f"the app uses {new}, a NEW instance restored from orders-test-db's automated backups to {value}" in tree
