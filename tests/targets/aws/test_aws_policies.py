"""The pure policy builders: exact content for realistic ARNs, and zero parliament findings."""

from __future__ import annotations

import pytest

from mxinfra.naming import Naming
from mxinfra_aws import backups, policies
from mxinfra_aws.policies import Arns

from awshelpers import ACCOUNT, REGION, lint

A = Arns(REGION, ACCOUNT, "orders-aws-production-cluster", Naming("orders", "production"))
# The same environment with two or more instances: a follower service next to the leader's.
A2 = Arns(REGION, ACCOUNT, "orders-aws-production-cluster", Naming("orders", "production"), followers=True)
PERMISSIONS = ["alerts", "api", "backups", "deploy", "manage", "monitor"]
# The same environment with `backups.enabled: false`: no AWS Backup vault or role.
NO_AWS_BACKUP = Arns(REGION, ACCOUNT, "orders-aws-production-cluster", Naming("orders", "production"), aws_backup=False)


def test_arns_are_deterministic_and_exact():
    assert A.service_arn == f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/orders-aws-production-cluster/orders-production"
    assert A.task_definition_arn == f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/orders-production:*"
    assert A.service_arns == [A.service_arn] and A.task_definition_arns == [A.task_definition_arn]
    assert A2.follower_service_arn == f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/orders-aws-production-cluster/orders-production-follower"
    assert A2.service_arns == [A.service_arn, A2.follower_service_arn]
    assert A2.task_definition_arns == [A.task_definition_arn, f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/orders-production-follower:*"]
    assert A.log_group_arn == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/mxinfra/orders/production"
    assert A.secret_arn == f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:mxinfra/orders/production/runtime-??????"
    assert A.db_arn == f"arn:aws:rds:{REGION}:{ACCOUNT}:db:orders-production-db"
    assert A.role_arn("deploy") == f"arn:aws:iam::{ACCOUNT}:role/mxinfra/orders-production-deploy"
    assert A.bucket_arn == f"arn:aws:s3:::orders-production-files-{ACCOUNT}-{REGION}"
    assert Arns("cn-north-1", ACCOUNT, "c", Naming("a", "b")).db_arn.startswith("arn:aws-cn:rds:cn-north-1:")
    long = Arns(REGION, ACCOUNT, "c", Naming("a-very-long-app-name", "an-environment-name"))
    assert len(long.bucket_name) <= 63 and long.bucket_name == long.bucket_name.lower()
    assert len(long.role_name("execution")) <= 64


@pytest.mark.parametrize("principal", ["123456789012", "arn:aws:iam::123456789012:role/Ops", "arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123", "arn:aws:iam::123456789012:root"])
def test_principals_accepted(principal):
    assert policies.PRINCIPAL.match(principal)


@pytest.mark.parametrize("principal", ["group:ops", "arn:aws:iam::123456789012:group/Ops", "12345", "arn:aws:iam::12345678901:role/x", "arn:aws:sts::123456789012:assumed-role/x/y", "*"])
def test_principals_refused(principal):
    assert not policies.PRINCIPAL.match(principal)


def test_production_trust_requires_mfa_and_its_age():
    doc = policies.access_trust(["210987654321", f"arn:aws:iam::{ACCOUNT}:role/Ops"], True, 28800)
    assert doc == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Principals",
                "Effect": "Allow",
                "Principal": {"AWS": [f"arn:aws:iam::{ACCOUNT}:role/Ops", "arn:aws:iam::210987654321:root"]},
                "Action": "sts:AssumeRole",
                # a 4-hour session assumed at most 4 hours after the MFA prompt: 8 hours in all (issue 19, F21)
                "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}, "NumericLessThanEquals": {"aws:MultiFactorAuthAge": "14400"}},
            }
        ],
    }
    assert "Condition" not in policies.access_trust(["210987654321"], False, None)["Statement"][0]


@pytest.mark.parametrize("asked,session,age", [(None, 14400, 14400), (28800, 14400, 14400), (3600, 3600, 25200), (900, 900, 27900)])
def test_an_mfa_prompt_lasts_at_most_8_hours_in_all(asked, session, age):
    """IAM checks the MFA age only at assume time: the age allowed plus the session is 8 hours (F21)."""
    trust = policies.access_trust(["210987654321"], True, asked)["Statement"][0]
    assert trust["Condition"]["NumericLessThanEquals"] == {"aws:MultiFactorAuthAge": str(age)}
    assert policies.mfa_session(asked) == (session, age) and session + age == 8 * 3600


def test_execution_policy_reads_exactly_this_environments_secrets():
    doc = policies.execution_policy(A, f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/orders:1.4.2")
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["PullImage"]["Resource"] == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/orders"
    assert by_sid["RuntimeSecret"]["Resource"] == A.secret_arn
    assert by_sid["DatabaseSecret"]["Condition"] == {"StringEquals": {"secretsmanager:ResourceTag/aws:rds:primaryDBInstanceArn": A.db_arn}}
    assert by_sid["WriteLogs"]["Resource"] == A.log_streams_arn
    # an image from another registry needs no ECR statements at all
    public = policies.execution_policy(A, "docker.io/example/orders:1.4.2")
    assert not [s for s in public["Statement"] if any(x.startswith("ecr:") for x in s["Action"])]


def test_task_policy_is_only_the_bucket():
    doc = policies.task_policy(A)
    resources = {r for s in doc["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}
    assert resources == {A.bucket_arn, A.bucket_arn + "/*"}
    assert all(a.startswith("s3:") for s in doc["Statement"] for a in s["Action"])


# As deployed: the configured subnets and public-IP setting.
SUBNETS = ("subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60001")
A3 = Arns(REGION, ACCOUNT, "orders-aws-production-cluster", Naming("orders", "production"), followers=True, subnets=SUBNETS)


def test_deploy_policy_scope():
    by_sid = {s["Sid"]: s for s in policies.deploy_policy(A)["Statement"]}
    assert by_sid["UpdateService"]["Resource"] == A.service_arn
    assert by_sid["DescribeServices"]["Resource"] == A.service_arn
    assert by_sid["RegisterTaskDefinition"]["Resource"] == A.task_definition_arn
    assert by_sid["PassRuntimeRoles"]["Resource"] == [A.role_arn("task"), A.role_arn("execution")]
    assert by_sid["PassRuntimeRoles"]["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_deploy_update_service_is_constrained():
    by_sid = {s["Sid"]: s for s in policies.deploy_policy(A3)["Statement"]}
    assert by_sid["UpdateService"]["Action"] == ["ecs:UpdateService"]
    assert by_sid["UpdateService"]["Condition"] == {
        "ArnLikeIfExists": {"ecs:task-definition": A3.task_definition_arns},
        "StringEqualsIfExists": {"ecs:enable-execute-command": "false"},
        "BoolIfExists": {"ecs:auto-assign-public-ip": "false"},
        "ForAllValues:StringEquals": {"ecs:subnet": sorted(SUBNETS)},
        # never while the restore machine has the services (its tag on them)
        "Null": {"aws:ResourceTag/mxinfra:restoring": "true"},
    }
    public = Arns(REGION, ACCOUNT, "c", Naming("orders", "production"), assign_public_ip=True)
    assert {s["Sid"]: s for s in policies.deploy_policy(public)["Statement"]}["UpdateService"]["Condition"]["BoolIfExists"] == {"ecs:auto-assign-public-ip": "true"}
    assert by_sid["RegisterTaskDefinition"]["Condition"] == {"ForAllValues:StringEquals": {"ecs:compute-compatibility": "FARGATE"}}
    # tagging only new revisions of its families, as they are registered
    assert by_sid["TagTaskDefinitions"] == {
        "Sid": "TagTaskDefinitions",
        "Effect": "Allow",
        "Action": ["ecs:TagResource"],
        "Resource": A3.task_definition_arns,
        "Condition": {"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}},
    }
    cluster = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/orders-aws-production-cluster"
    assert by_sid["ListTasks"]["Resource"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/orders-aws-production-cluster/*"
    assert by_sid["ListTasks"]["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
    tasks = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/orders-aws-production-cluster/*"
    mine = {"aws:ResourceTag/mxinfra:app": "orders", "aws:ResourceTag/mxinfra:environment": "production"}
    assert by_sid["DescribeTasks"] == {"Sid": "DescribeTasks", "Effect": "Allow", "Action": ["ecs:DescribeTasks"], "Resource": tasks, "Condition": {"StringEquals": mine}}
    assert by_sid["StopTasks"] == {
        "Sid": "StopTasks",
        "Effect": "Allow",
        "Action": ["ecs:StopTask"],
        "Resource": tasks,
        "Condition": {"StringEquals": mine, "Null": {"aws:ResourceTag/mxinfra:backup-task": "true"}},
    }


def test_deploy_stops_the_apps_tasks_never_a_backup_task():
    """The export and restore tasks carry the environment's tags too (their state machines tag them): a holder
    of deploy who stopped a restore half-way would leave the files half put back. Describing them stays
    allowed: a DescribeTasks of the cluster's task list is refused whole if one of them is refused."""
    from iam_eval import allows

    from mxinfra_aws import export

    deploy = policies.deploy_policy(A3)
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/orders-aws-production-cluster/0123456789abcdef"
    env = {"aws:ResourceTag/mxinfra:app": "orders", "aws:ResourceTag/mxinfra:environment": "production"}
    assert allows(deploy, "ecs:StopTask", task, env)
    a = Arns(REGION, ACCOUNT, "orders-aws-production-cluster", Naming("orders", "production"), export=True, production=True)
    for kind, definition in (("export", export.definition(a, "td:1", "sg-1")), ("restore", export.restore_definition(a, "td:2", "sg-1", 14))):
        (run,) = [st for st in definition["States"].values() if st.get("Resource", "").endswith("ecs:runTask.sync")]
        tags = {t["Key"]: t["Value"] for t in run["Parameters"]["Tags"]}
        assert tags == {"mxinfra:app": "orders", "mxinfra:environment": "production", "mxinfra:backup-task": kind}
        started = {f"aws:ResourceTag/{k}": v for k, v in tags.items()}
        assert not allows(deploy, "ecs:StopTask", task, started) and allows(deploy, "ecs:DescribeTasks", task, started)
        # another environment's tasks, backup or not, are neither
        other = {**started, "aws:ResourceTag/mxinfra:environment": "acceptance"}
        assert not allows(deploy, "ecs:DescribeTasks", task, other) and not allows(deploy, "ecs:StopTask", task, other)
        # the runner still tags, follows and stops the tasks it starts
        runner = policies.export_runner_policy(a) if kind == "export" else policies.restore_runner_policy(a)
        assert allows(runner, "ecs:StopTask", task, started)
        assert allows(runner, "ecs:TagResource", task, {"ecs:CreateAction": "RunTask", **{f"aws:RequestTag/{k}": v for k, v in tags.items()}})


def _matches(pattern: str, arn: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(arn, pattern.replace("[", "[[]"))


def _allowed(doc, action: str, arn: str, tags: dict[str, str]) -> bool:
    """A small IAM evaluator for these documents: resource wildcards, the tag and Deny conditions used here."""

    def applies(stmt) -> bool:
        resources = [stmt["Resource"]] if isinstance(stmt["Resource"], str) else stmt["Resource"]
        if action not in stmt["Action"] or not any(_matches(r, arn) for r in resources):
            return False
        for op, conds in stmt.get("Condition", {}).items():
            for key, value in conds.items():
                if not key.startswith("aws:ResourceTag/"):
                    continue
                actual = tags.get(key.removeprefix("aws:ResourceTag/"))
                if op == "Null" and (actual is None) != (value == "true"):
                    return False
                if op == "StringEquals" and actual != value:
                    return False
                if op == "StringNotEquals" and actual == value:
                    return False
        return True

    statements = doc["Statement"]
    if any(s["Effect"] == "Deny" and applies(s) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and applies(s) for s in statements)


def test_environment_prod_cannot_touch_environment_prod_db():
    prod = Arns(REGION, ACCOUNT, "c", Naming("orders", "prod"), followers=True)
    other = Arns(REGION, ACCOUNT, "c", Naming("orders", "prod-db"), followers=True)
    # names alone collide: prod's snapshot wildcard matches prod-db's instance's snapshots
    theirs = f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:{other.db_identifier}-before-upgrade"
    assert _matches(prod.snapshots_arn, theirs)
    their_tags = {"mxinfra:app": "orders", "mxinfra:environment": "prod-db"}
    our_tags = {"mxinfra:app": "orders", "mxinfra:environment": "prod"}
    backups = policies.backups_policy(prod)
    for action in ("rds:DeleteDBSnapshot", "rds:RestoreDBInstanceFromDBSnapshot"):
        assert not _allowed(backups, action, theirs, their_tags)
        assert not _allowed(backups, action, theirs, {})  # an untagged snapshot is not ours either
    ours = f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:{prod.db_identifier}-before-upgrade"
    assert _allowed(backups, "rds:DeleteDBSnapshot", ours, our_tags)
    assert _allowed(backups, "rds:RestoreDBInstanceFromDBSnapshot", ours, our_tags)
    # prod-db's instance matches prod's `<db>-*` restore targets by name: never as a point-in-time source
    their_db = other.db_arn
    assert _matches(f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{prod.db_identifier}-*", their_db)
    for action in ("rds:RestoreDBInstanceToPointInTime", "rds:RestoreDBInstanceFromDBSnapshot"):
        assert not _allowed(backups, action, their_db, their_tags)
        # the new instance a restore creates (no tags yet) and prod's own instance are allowed
        assert _allowed(backups, action, f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{prod.db_identifier}-restored", {})
        assert _allowed(backups, action, prod.db_arn, our_tags)
    # alarms: exactly prod's, never prod-db's
    alerts = policies.alerts_policy(prod)
    for arn in other.alarm_arns:
        assert not _allowed(alerts, "cloudwatch:DescribeAlarms", arn, their_tags)
    for arn in prod.alarm_arns:
        assert _allowed(alerts, "cloudwatch:DescribeAlarms", arn, our_tags)
    # every other resource ARN of prod-db is out of reach of every one of prod's permissions
    other_arns = [*other.service_arns, other.db_arn, other.log_group_arn, other.secret_arn, other.bucket_arn, other.topic_arn, *other.alarm_arns, other.state_machine_arn]
    other_arns += [other.task_definition_arns[0].replace(":*", ":3"), other.role_arn("deploy")]
    # AWS Backup: prod-db's vault, the role its jobs run as, and its recovery points (tagged prod-db)
    other_arns += [other.backup_vault_arn, other.role_arn("backup"), f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:awsbackup:job-1", f"arn:aws:backup:{REGION}:{ACCOUNT}:recovery-point:1"]
    for perm in PERMISSIONS:
        doc = policies.permission_policy(prod, perm, PERMISSIONS)
        for stmt in doc["Statement"]:
            if stmt["Effect"] != "Allow":
                continue
            for arn in other_arns:
                for action in stmt["Action"]:
                    if stmt["Resource"] != "*":
                        assert not _allowed({"Statement": [stmt, *(s for s in doc["Statement"] if s["Effect"] == "Deny")]}, action, arn, their_tags), (perm, action, arn)


def test_production_backups_delete_no_snapshot_of_their_own():
    """Below production the holder may delete the environment's own snapshots; on production none (a hand-taken
    pre-release snapshot, a `database.fromBackup` source), the final one least of all."""
    tags = {"mxinfra:app": "orders", "mxinfra:environment": "production"}
    for production in (False, True):
        a = Arns(REGION, ACCOUNT, "c", Naming("orders", "production"), production=production)
        backups = policies.backups_policy(a)
        ours = f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:{a.db_identifier}-before-upgrade"
        assert _allowed(backups, "rds:DeleteDBSnapshot", ours, tags) is not production
        assert _allowed(backups, "rds:CreateDBSnapshot", ours, tags) and _allowed(backups, "rds:RestoreDBInstanceFromDBSnapshot", ours, tags)


def test_backups_can_never_delete_the_final_snapshot():
    backups = policies.backups_policy(A)
    tags = {"mxinfra:app": "orders", "mxinfra:environment": "production"}
    for name in ("orders-production-db-final", "orders-production-db-final-0a1b2c3d"):
        assert not _allowed(backups, "rds:DeleteDBSnapshot", f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:{name}", tags)
    deny = {s["Sid"]: s for s in backups["Statement"]}["KeepFinalSnapshot"]
    assert deny == {"Sid": "KeepFinalSnapshot", "Effect": "Deny", "Action": ["rds:DeleteDBSnapshot"], "Resource": f"arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:orders-production-db-final*"}


def test_deploy_monitor_api_cover_exactly_both_services():
    leader, follower = A2.service_arns
    by_sid = {s["Sid"]: s for s in policies.deploy_policy(A2)["Statement"]}
    assert by_sid["UpdateService"]["Resource"] == [leader, follower]
    assert by_sid["RegisterTaskDefinition"]["Resource"] == A2.task_definition_arns
    # PassRole: the same two runtime roles serve both services
    assert by_sid["PassRuntimeRoles"]["Resource"] == [A.role_arn("task"), A.role_arn("execution")]
    for builder in (policies.monitor_policy, policies.api_policy):
        assert {s["Sid"]: s for s in builder(A2)["Statement"]}["ServiceState"]["Resource"] == [leader, follower]
    # nothing else changes with followers but the alerts role's alarms (named exactly)
    assert policies.permission_policy(A2, "backups") == policies.permission_policy(A, "backups")
    assert {s["Sid"]: s for s in policies.alerts_policy(A2)["Statement"]}["ReadAlarms"]["Resource"] == A2.alarm_arns
    assert {s["Sid"]: s for s in policies.alerts_policy(A)["Statement"]}["ReadAlarms"]["Resource"] == A.alarm_arns[0]


def test_manage_reads_only_this_environments_access_roles():
    doc = policies.manage_policy(A, ["deploy", "manage", "monitor"])
    assert doc["Statement"] == [
        {
            "Sid": "ReadAccessRoles",
            "Effect": "Allow",
            "Action": ["iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies"],
            "Resource": [A.role_arn("deploy"), A.role_arn("manage"), A.role_arn("monitor")],
        }
    ]
    assert policies.manage_policy(A, ["manage"])["Statement"][0]["Resource"] == A.role_arn("manage")


def test_manage_cannot_rewrite_any_trust():
    # issue 10.1: UpdateAssumeRolePolicy has no key limiting the new document, so no IAM write at all
    for granted in (["deploy", "manage"], PERMISSIONS, ["manage"]):
        doc = policies.manage_policy(A, granted)
        actions = {a for s in doc["Statement"] for a in s["Action"]}
        assert actions <= {"iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies"}
        assert lint(doc) == []


def test_bucket_policy_denies_plain_http():
    stmt = policies.bucket_policy(A)["Statement"][0]
    assert stmt["Effect"] == "Deny" and stmt["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert stmt["Resource"] == [A.bucket_arn, A.bucket_arn + "/*"]


def all_documents():
    yield "bucket", policies.bucket_policy(A), None
    yield "task", policies.task_policy(A), None
    yield "execution-ecr", policies.execution_policy(A, f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/orders:1"), None
    yield "execution-hub", policies.execution_policy(A, "mendix/orders:1"), None
    yield "ecs-trust", policies.ecs_tasks_trust(A), A.role_arn("task")
    yield "backup-trust", backups.service_trust(), A.role_arn("backup")
    yield "backup-scope", backups.scope_policy(A), None
    yield "backups-without-aws-backup", policies.backups_policy(NO_AWS_BACKUP), None
    for mfa in (True, False):
        yield f"access-trust-{mfa}", policies.access_trust(["210987654321", f"arn:aws:iam::{ACCOUNT}:role/Ops"], mfa, 28800 if mfa else None), A.role_arn("deploy")
    for p in PERMISSIONS:
        yield p, policies.permission_policy(A, p, PERMISSIONS), None
        yield f"{p}-with-followers", policies.permission_policy(A2, p, PERMISSIONS), None
        yield f"{p}-as-deployed", policies.permission_policy(A3, p, PERMISSIONS), None


@pytest.mark.parametrize("name,doc,trust_for", list(all_documents()), ids=[d[0] for d in all_documents()])
def test_parliament_finds_nothing(name, doc, trust_for):
    assert lint(doc, trust_for=trust_for) == []


# Parliament's community auditors (credentials_exposure, permissions_management, privilege_escalation,
# sensitive_access, single_value_condition_too_permissive, advanced_policy_elements) all run on every
# document. Two of them report actions a document cannot do without; each expected finding is listed with
# its reason, and anything else (e.g. the old manage role's iam:UpdateAssumeRolePolicy, which
# permissions_management reported) fails.
EXPECTED_COMMUNITY_FINDINGS = {
    # ecr:GetAuthorizationToken: ECS must log in to ECR to pull the image (AWS accepts only "*" for it)
    "execution-ecr": ["CREDENTIALS_EXPOSURE"],
    # sts:AssumeRole is what a trust policy grants; linted as an identity policy it reads as exposure
    "ecs-trust": ["CREDENTIALS_EXPOSURE"],
    "access-trust-True": ["CREDENTIALS_EXPOSURE"],
    "access-trust-False": ["CREDENTIALS_EXPOSURE"],
    # iam:PassRole of exactly the environment's task and execution roles, only to ECS tasks
    "deploy": ["PERMISSIONS_MANAGEMENT_ACTIONS"],
    "deploy-with-followers": ["PERMISSIONS_MANAGEMENT_ACTIONS"],
    "deploy-as-deployed": ["PERMISSIONS_MANAGEMENT_ACTIONS"],
    # iam:PassRole of exactly the environment's AWS Backup role, only to AWS Backup
    "backups": ["PERMISSIONS_MANAGEMENT_ACTIONS"],
    "backups-with-followers": ["PERMISSIONS_MANAGEMENT_ACTIONS"],
    "backups-as-deployed": ["PERMISSIONS_MANAGEMENT_ACTIONS"],
    "backup-trust": ["CREDENTIALS_EXPOSURE"],
}


@pytest.mark.parametrize("name,doc,trust_for", list(all_documents()), ids=[d[0] for d in all_documents()])
def test_parliament_community_auditors(name, doc, trust_for):
    assert sorted(issue for issue, _ in lint(doc, trust_for=trust_for, community=True)) == EXPECTED_COMMUNITY_FINDINGS.get(name, [])


def test_community_auditors_catch_a_trust_rewrite():
    old_manage = {"Version": "2012-10-17", "Statement": [{"Sid": "EditTrust", "Effect": "Allow", "Action": ["iam:GetRole", "iam:UpdateAssumeRolePolicy"], "Resource": A.role_arn("deploy")}]}
    assert [issue for issue, _ in lint(old_manage, community=True)] == ["PERMISSIONS_MANAGEMENT_ACTIONS"]


def _readme_rows() -> dict[str, str]:
    from awshelpers import ROOT

    text = (ROOT / "targets" / "aws" / "README.md").read_text()
    section = text.split("## Permissions -> IAM", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    return rows


@pytest.mark.parametrize("permission", PERMISSIONS)
def test_readme_permission_table_names_every_allowed_action(permission):
    row = _readme_rows()[permission]
    for stmt in policies.permission_policy(A2, permission, PERMISSIONS)["Statement"]:
        if stmt["Effect"] != "Allow":
            continue
        for action in stmt["Action"]:
            service, name = action.split(":")
            assert action in row or f"/{name}" in row or f"`{name}`" in row, (permission, action)
    # and a write the README says the role lacks is really absent
    allowed = {a for s in policies.permission_policy(A2, permission, PERMISSIONS)["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    if permission == "manage":
        assert not {a for a in allowed if a.split(":")[1].startswith(("Update", "Put", "Create", "Delete", "Attach", "Tag"))}
    if permission == "api":
        assert "ecs:DescribeTaskDefinition" not in allowed
    if permission == "deploy":
        assert "ecs:DeregisterTaskDefinition" not in allowed
