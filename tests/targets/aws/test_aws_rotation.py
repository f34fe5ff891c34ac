"""The RDS password's rotation: its schedule, and the redeploy of the services each rotation triggers."""

from __future__ import annotations

import json

import pytest

from mxinfra.components import MendixApp
from mxinfra.naming import Naming
from mxinfra_aws import rotation
from mxinfra_aws.policies import Arns

from awshelpers import ACCOUNT, FAKE_RDS_SECRET, REGION, config, deployment, lint, run_as_update

CLUSTER = "orders-aws-production-cluster"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
A = Arns(REGION, ACCOUNT, CLUSTER, Naming("orders", "production"))
A2 = Arns(REGION, ACCOUNT, CLUSTER, Naming("orders", "production"), followers=True)


def _update(role="production", **kw):
    d = deployment(config(role, **kw))
    return run_as_update(lambda: MendixApp("orders", {"deployment": d}))


def test_rotation_schedule_default_and_configured():
    inputs = _update()
    type_, rot = inputs["orders-production-db-password-rotation"]
    assert type_ == "aws:secretsmanager/secretRotation:SecretRotation"
    # the instance's managed secret, every 30 days by default, not rotated on creation; no Lambda (RDS rotates it)
    assert rot["secretId"] == FAKE_RDS_SECRET
    assert rot["rotationRules"] == {"automaticallyAfterDays": 30}
    assert rot["rotateImmediately"] is False and "rotationLambdaArn" not in rot
    rot = _update(aws={"database": {"passwordRotationDays": 90}})["orders-production-db-password-rotation"][1]
    assert rot["rotationRules"] == {"automaticallyAfterDays": 90}


@pytest.mark.parametrize("days", [0, 366])
def test_rotation_days_validated(project, capsys, days):
    from test_aws_plan import bad

    rc, err = bad(project, capsys, config("production", aws={"database": {"passwordRotationDays": days}}))
    assert rc == 2 and "mxinfra:aws.database.passwordRotationDays" in err
    # the bounds themselves are valid
    for ok in (1, 365):
        rc, err = bad(project, capsys, config("production", aws={"database": {"passwordRotationDays": ok}}))
        assert rc == 0, err


def test_rotation_event_starts_the_redeploy():
    inputs = _update()
    rule = inputs["orders-production-db-rotated"][1]
    assert rule["name"] == "orders-production-db-rotated"
    assert json.loads(rule["eventPattern"]) == {
        "source": ["aws.secretsmanager"],
        "detail-type": ["AWS Service Event via CloudTrail"],
        "detail": {
            "eventSource": ["secretsmanager.amazonaws.com"],
            "eventName": ["RotationSucceeded"],
            "additionalEventData": {"SecretId": [FAKE_RDS_SECRET]},
        },
    }
    target = inputs["orders-production-db-rotated-redeploy"][1]
    machine = inputs["orders-production-redeploy"][1]
    assert target["rule"] == "orders-production-db-rotated"
    assert target["arn"].endswith("/orders-production-redeploy")  # the state machine's (mock) ARN
    assert target["roleArn"].endswith("/orders-production-events-role")
    assert machine["name"] == "orders-production-redeploy" and machine["roleArn"].endswith("/orders-production-redeploy-role")
    # production runs 2 instances: the follower first, then the leader
    assert json.loads(machine["definition"]) == rotation.definition(A2)


def test_definition_forces_new_deployments_follower_then_leader():
    d = rotation.definition(A2)
    assert d["StartAt"] == "RedeployFollower"
    follower, leader = d["States"]["RedeployFollower"], d["States"]["RedeployLeader"]
    assert follower["Next"] == "RedeployLeader" and leader["End"] is True and "Next" not in leader
    for state, service in ((follower, "orders-production-follower"), (leader, "orders-production")):
        assert state["Type"] == "Task" and state["Resource"] == "arn:aws:states:::aws-sdk:ecs:updateService"
        assert state["Parameters"] == {"Cluster": CLUSTER_ARN, "Service": service, "ForceNewDeployment": True}
    single = rotation.definition(A)
    assert single["StartAt"] == "RedeployLeader" and list(single["States"]) == ["RedeployLeader"]


def test_roles_least_privilege_and_lint_clean():
    assert rotation.redeploy_policy(A2)["Statement"] == [{"Sid": "ForceNewDeployment", "Effect": "Allow", "Action": ["ecs:UpdateService"], "Resource": A2.service_arns}]
    assert rotation.redeploy_policy(A)["Statement"][0]["Resource"] == A.service_arn
    sm_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:orders-production-redeploy"
    assert A.state_machine_arn == sm_arn
    assert rotation.events_policy(A)["Statement"] == [{"Sid": "StartRedeploy", "Effect": "Allow", "Action": ["states:StartExecution"], "Resource": sm_arn}]
    states_trust = rotation.service_trust(A, "states", A.state_machine_arn)["Statement"][0]
    assert states_trust["Principal"] == {"Service": "states.amazonaws.com"}
    assert states_trust["Condition"] == {"ArnLike": {"aws:SourceArn": sm_arn}, "StringEquals": {"aws:SourceAccount": ACCOUNT}}
    events_trust = rotation.service_trust(A, "events", A.rotation_rule_arn)["Statement"][0]
    assert events_trust["Condition"]["ArnLike"] == {"aws:SourceArn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/orders-production-db-rotated"}
    for a in (A, A2):
        assert lint(rotation.redeploy_policy(a)) == []
        assert lint(rotation.events_policy(a)) == []
        assert lint(rotation.service_trust(a, "states", a.state_machine_arn), trust_for=a.role_arn("redeploy")) == []
        assert lint(rotation.service_trust(a, "events", a.rotation_rule_arn), trust_for=a.role_arn("events")) == []


def test_deployed_documents_are_the_builders():
    inputs = _update()
    assert json.loads(inputs["orders-production-redeploy-role-policy"][1]["policy"]) == rotation.redeploy_policy(A2)
    assert json.loads(inputs["orders-production-events-role-policy"][1]["policy"]) == rotation.events_policy(A2)
    assert json.loads(inputs["orders-production-redeploy-role"][1]["assumeRolePolicy"]) == rotation.service_trust(A2, "states", A2.state_machine_arn)
    assert json.loads(inputs["orders-production-events-role"][1]["assumeRolePolicy"]) == rotation.service_trust(A2, "events", A2.rotation_rule_arn)
