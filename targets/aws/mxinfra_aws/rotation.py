"""Redeploying the services when RDS rotates the database password.

ECS injects secrets only when a task starts: after a rotation, running tasks keep the old password and
fail on their next new database connection. An EventBridge rule on the secret's `RotationSucceeded`
event starts a Step Functions state machine that forces a new deployment of the follower service (if
any), then the leader's, through the AWS SDK integration: no Lambda code, and each role allowed exactly
one action on exactly its resources.

The event is a CloudTrail service event (`detail-type` "AWS Service Event via CloudTrail",
`detail.eventName` "RotationSucceeded") that names the secret in `detail.additionalEventData.SecretId`
(the shape documented for Secrets Manager rotation events and observed for RDS-managed rotation).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from mxinfra.target import EnvironmentContext

from .config import AwsConfig
from .database import Database
from .policies import Arns, Document, _allow, _doc, _one_or_all
from .runtime import service_role

UPDATE_SERVICE = "arn:{partition}:states:::aws-sdk:ecs:updateService"


def event_pattern(secret_arn: str) -> dict[str, Any]:
    """The EventBridge pattern of a successful rotation of `secret_arn`."""
    return {
        "source": ["aws.secretsmanager"],
        "detail-type": ["AWS Service Event via CloudTrail"],
        "detail": {
            "eventSource": ["secretsmanager.amazonaws.com"],
            "eventName": ["RotationSucceeded"],
            "additionalEventData": {"SecretId": [secret_arn]},
        },
    }


def definition(a: Arns) -> dict[str, Any]:
    """The state machine: ForceNewDeployment on the follower service (if any), then on the leader's."""
    # Followers first, as in a deployment: their old tasks are stopping when the new leader starts.
    services = [a.follower_service_name, a.service_name] if a.followers else [a.service_name]
    names = [f"Redeploy{'Follower' if s == a.follower_service_name else 'Leader'}" for s in services]
    states: dict[str, Any] = {}
    for i, (state, service) in enumerate(zip(names, services)):
        step: dict[str, Any] = {
            "Type": "Task",
            "Resource": UPDATE_SERVICE.format(partition=a.partition),
            "Parameters": {"Cluster": a.cluster_arn, "Service": service, "ForceNewDeployment": True},
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "MaxAttempts": 3, "BackoffRate": 2}],
        }
        if i + 1 < len(names):
            step["Next"] = names[i + 1]
        else:
            step["End"] = True
        states[state] = step
    return {"Comment": f"{a.naming.prefix}: redeploy after the database password rotated", "StartAt": names[0], "States": states}


def service_trust(a: Arns, service: str, source_arn: str) -> Document:
    """Trust of a role assumed by an AWS service on behalf of exactly one resource of this account."""
    return _doc(
        {
            "Sid": "Service",
            "Effect": "Allow",
            "Principal": {"Service": f"{service}.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"ArnLike": {"aws:SourceArn": source_arn}, "StringEquals": {"aws:SourceAccount": a.account}},
        }
    )


def redeploy_policy(a: Arns) -> Document:
    """The state machine's role: force new deployments of the environment's services, nothing else."""
    return _doc(_allow("ForceNewDeployment", ["ecs:UpdateService"], _one_or_all(a.service_arns)))


def events_policy(a: Arns) -> Document:
    """The EventBridge rule's role: start the redeploy state machine, nothing else."""
    return _doc(_allow("StartRedeploy", ["states:StartExecution"], a.state_machine_arn))


def create(ctx: EnvironmentContext, cfg: AwsConfig, a: Arns, db: Database, services: Sequence[aws.ecs.Service]) -> aws.sfn.StateMachine:
    """The state machine, the rule on the RDS secret's rotation, its target and their two roles."""
    n, tags = ctx.naming, dict(ctx.tags)
    redeploy_role = service_role(
        ctx, cfg, a, "redeploy", service_trust(a, "states", a.state_machine_arn), redeploy_policy(a), "Step Functions: redeploy this environment's services after a password rotation"
    )
    machine = aws.sfn.StateMachine(
        n.logical("redeploy"),
        name=a.state_machine_name,
        role_arn=redeploy_role.arn,
        definition=json.dumps(definition(a), sort_keys=True),
        tags=tags,
        # The services must exist before a rotation can redeploy them.
        opts=ctx.opts(depends_on=list(services)),
    )
    events_role = service_role(ctx, cfg, a, "events", service_trust(a, "events", a.rotation_rule_arn), events_policy(a), "EventBridge: start the redeploy state machine on a password rotation")
    rule = aws.cloudwatch.EventRule(
        n.logical("db-rotated"),
        name=a.rotation_rule_name,
        description=f"{n.prefix}: the database password rotated; redeploy the services",
        event_pattern=pulumi.Output.from_input(db.master_secret_arn).apply(lambda arn: json.dumps(event_pattern(arn), sort_keys=True)),
        tags=tags,
        opts=ctx.opts(),
    )
    aws.cloudwatch.EventTarget(
        n.logical("db-rotated-redeploy"),
        rule=rule.name,
        arn=machine.arn,
        role_arn=events_role.arn,
        opts=ctx.opts(),
    )
    return machine
