"""The pure policy builders: exact content for realistic ARNs, and zero parliament findings."""

from __future__ import annotations

import pytest

from mxinfra.naming import Naming
from mxinfra_aws import policies
from mxinfra_aws.policies import Arns

from awshelpers import ACCOUNT, REGION, lint

A = Arns(REGION, ACCOUNT, "orders-aws-production-cluster", Naming("orders", "production"))
# The same environment with two or more instances: a follower service next to the leader's.
A2 = Arns(REGION, ACCOUNT, "orders-aws-production-cluster", Naming("orders", "production"), followers=True)
PERMISSIONS = ["alerts", "api", "backups", "deploy", "manage", "monitor"]


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
                "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}, "NumericLessThanEquals": {"aws:MultiFactorAuthAge": "28800"}},
            }
        ],
    }
    assert "Condition" not in policies.access_trust(["210987654321"], False, None)["Statement"][0]


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


def test_deploy_policy_scope():
    by_sid = {s["Sid"]: s for s in policies.deploy_policy(A)["Statement"]}
    assert by_sid["UpdateService"]["Resource"] == A.service_arn
    assert by_sid["RegisterTaskDefinition"]["Resource"] == A.task_definition_arn
    assert by_sid["PassRuntimeRoles"]["Resource"] == [A.role_arn("task"), A.role_arn("execution")]
    assert by_sid["PassRuntimeRoles"]["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_deploy_monitor_api_cover_exactly_both_services():
    leader, follower = A2.service_arns
    by_sid = {s["Sid"]: s for s in policies.deploy_policy(A2)["Statement"]}
    assert by_sid["UpdateService"]["Resource"] == [leader, follower]
    assert by_sid["RegisterTaskDefinition"]["Resource"] == A2.task_definition_arns
    # PassRole: the same two runtime roles serve both services
    assert by_sid["PassRuntimeRoles"]["Resource"] == [A.role_arn("task"), A.role_arn("execution")]
    for builder in (policies.monitor_policy, policies.api_policy):
        assert {s["Sid"]: s for s in builder(A2)["Statement"]}["ServiceState"]["Resource"] == [leader, follower]
    # nothing else changes with followers
    for p in ("backups", "alerts"):
        assert policies.permission_policy(A2, p) == policies.permission_policy(A, p)


def test_manage_edits_only_this_environments_access_roles():
    doc = policies.manage_policy(A, ["deploy", "manage"])
    assert doc["Statement"][0]["Resource"] == [A.role_arn("deploy"), A.role_arn("manage")]
    assert doc["Statement"][0]["Action"] == ["iam:GetRole", "iam:UpdateAssumeRolePolicy"]


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
    for mfa in (True, False):
        yield f"access-trust-{mfa}", policies.access_trust(["210987654321", f"arn:aws:iam::{ACCOUNT}:role/Ops"], mfa, 28800 if mfa else None), A.role_arn("deploy")
    for p in PERMISSIONS:
        yield p, policies.permission_policy(A, p, PERMISSIONS), None
        yield f"{p}-with-followers", policies.permission_policy(A2, p, PERMISSIONS), None


@pytest.mark.parametrize("name,doc,trust_for", list(all_documents()), ids=[d[0] for d in all_documents()])
def test_parliament_finds_nothing(name, doc, trust_for):
    assert lint(doc, trust_for=trust_for) == []
