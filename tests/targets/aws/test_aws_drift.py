"""Issue 19, F1 on the aws target: `mxinfra drift` reads what the environment's ECS services run (moto) and
names every difference from the activity log's last signed record.

The services and task definitions are created in moto as `pulumi up` creates them (runtime.py: the
cluster `<app>-<stack>-cluster`, the leader service and family `<app>-<env>`, the follower's
`<app>-<env>-follower`, revisions tagged with the release tags), the record is written by the activity
resource's own provider (scaffold.record_deploy), and a hand change is what a holder of production
`deploy` can do: `ecs:RegisterTaskDefinition` of a copy of the running revision, then `ecs:UpdateService`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.awsrequest
import pytest
from moto import mock_aws

from mxinfra.settings import instance_env

from awshelpers import ACCOUNT, IMAGE, REGION, config, deployment
from scaffold import encrypted as stack_file
from scaffold import record_deploy, run_drift

from mxinfra_aws.containers import container_definitions, task_counts
from mxinfra_aws.running import CONFIG_NOTE

STACK = "aws-production"
CLUSTER = "orders-aws-production-cluster"
LEADER, FOLLOWER = "orders-production", "orders-production-follower"
EVIL = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/orders:evil@sha256:" + "66" * 32
UPDATE = f"aws ecs update-service --region {REGION} --cluster {CLUSTER} --service"
# What every message names the environment's services by, as released (revision 1 of each family).
RELEASED = f"ECS service {LEADER} (revision {LEADER}:1; follower service {FOLLOWER}, revision {FOLLOWER}:1; cluster {CLUSTER}, {REGION})"
DENIED = json.dumps({"__type": "AccessDeniedException", "message": f"User: arn:aws:sts::{ACCOUNT}:assumed-role/orders-production-monitor/rita is not authorized to perform: ecs:DescribeTaskDefinition"})




def release(ecs: Any, cfg: dict[str, Any]) -> None:
    """What `pulumi up` of `cfg` leaves running in ECS: the cluster, a tagged revision per service, the services."""
    d = deployment(cfg, STACK)
    p = d.environment("production")
    leaders, followers = task_counts(p.environment.instances)
    ecs.create_cluster(clusterName=CLUSTER)
    for name, count, index in ((FOLLOWER, followers, 1), (LEADER, leaders, 0)):
        if not count and name == FOLLOWER:
            continue
        td = ecs.register_task_definition(
            family=name,
            containerDefinitions=container_definitions(
                image=d.target_config.image,
                environment={"MX_Orders_PageSize": "20", **instance_env(index)},
                secrets={"ADMIN_PASSWORD": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:mxinfra/orders/production/runtime-Xy12Zq:ADMIN_PASSWORD::v1"},
                log_group="/mxinfra/orders/production",
                region=REGION,
                memory_mb=2048,
                stream_prefix="follower" if index else "leader",
            ),
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="512",
            memory="2048",
            executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/mxinfra/orders-production-execution",
            taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/mxinfra/orders-production-task",
            tags=[{"key": k, "value": v} for k, v in p.release_tags.items()],
        )
        ecs.create_service(cluster=CLUSTER, serviceName=name, taskDefinition=td["taskDefinition"]["taskDefinitionArn"], desiredCount=count, launchType="FARGATE")


def by_hand(ecs: Any, service: str, *, image: str | None = None, env: dict[str, str] | None = None, tags: list[dict[str, str]] | None = None) -> str:
    """A deployer's own release: the running revision copied (as `describe-task-definition` prints it,
    without tags unless given) with another image or variables, registered, and the service pointed at it."""
    arn = ecs.describe_services(cluster=CLUSTER, services=[service])["services"][0]["taskDefinition"]
    td = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    containers = td["containerDefinitions"]
    if image is not None:
        containers[0]["image"] = image
    if env is not None:
        containers[0]["environment"] += [{"name": k, "value": v} for k, v in env.items()]
    keys = ("family", "containerDefinitions", "requiresCompatibilities", "networkMode", "cpu", "memory", "executionRoleArn", "taskRoleArn")
    new = ecs.register_task_definition(**{k: td[k] for k in keys}, **({"tags": tags} if tags else {}))["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster=CLUSTER, service=service, taskDefinition=new)
    return new.rsplit("/", 1)[-1]


@pytest.fixture
def ecs(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ecs", region_name=REGION)


@pytest.fixture
def released(project: Any, ecs: Any) -> Any:
    """Production released: its services run in ECS, its deploy record is in the log."""
    cfg = config("production")
    project.stack(STACK, stack_file(cfg))
    release(ecs, cfg)
    record_deploy(project.path, STACK)
    return ecs


def _record() -> str:
    return "the last record (seq 1: deploy by "


# --- what runs is what the log records ----------------------------------------------------------------------


def test_drift_is_clean_after_a_release(released, project, capsys):
    rc, out, err = _drift(project, capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert f"production: {RELEASED} runs what {_record()}" in out, out
    # what is not compared is said on every run
    assert lines[0] == f"production: runtime configuration not compared: {CONFIG_NOTE}"


def test_an_image_registered_and_set_by_hand_is_named_and_the_command_puts_it_back(released, project, capsys):
    assert by_hand(released, FOLLOWER, image=EVIL) == f"{FOLLOWER}:2"
    assert by_hand(released, LEADER, image=EVIL) == f"{LEADER}:2"
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err
    what = f"ECS service {LEADER} (revision {LEADER}:2; follower service {FOLLOWER}, revision {FOLLOWER}:2; cluster {CLUSTER}, {REGION})"
    assert f"error: unrecorded changes: what runs is not what the activity log's signed records say: - production: {what} runs image {EVIL}, but {_record()}" in err
    assert (
        f"names image {IMAGE}: an unrecorded change (put back what the record names ("
        f"{UPDATE} {LEADER} --task-definition {LEADER}:<a revision of {LEADER} that runs image {IMAGE}>; "
        f"{UPDATE} {FOLLOWER} --task-definition {FOLLOWER}:<a revision of {FOLLOWER} that runs image {IMAGE}>), "
        "find who made it in the API server's (or the cloud's) audit log; then change it through `pulumi up`, which records it)"
    ) in err
    # the revision the release registered is still there (skip_destroy): pointing the services back at it is clean
    for service in (LEADER, FOLLOWER):
        released.update_service(cluster=CLUSTER, service=service, taskDefinition=f"{service}:1")
    assert _drift(project, capsys)[0] == 0


def test_another_image_on_the_followers_alone_is_named(released, project, capsys):
    by_hand(released, FOLLOWER, image=EVIL)
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert f"runs image {IMAGE} ({LEADER}), {EVIL} ({FOLLOWER}), but {_record()}" in err and f"names image {IMAGE}: an unrecorded change" in err


def test_a_revision_tagged_with_another_package_is_named(released, project, capsys):
    d = deployment(config("production"), STACK)
    tags = [{"key": k, "value": "77" * 32 if k == "mxinfra:package-sha256" else v} for k, v in d.environment("production").release_tags.items()]
    by_hand(released, LEADER, tags=tags)
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert f"says it runs package sha256:{'77' * 6}, but {_record()}" in err
    assert f"names sha256:{d.package.sha256[:12]} ({d.package.version or d.package.model_version}): an unrecorded change" in err
    assert "runs image" not in err  # the image is the recorded one


def test_variables_changed_with_the_recorded_image_are_not_detected_and_drift_says_so(released, project, capsys):
    by_hand(released, LEADER, env={"JAVA_TOOL_OPTIONS": "-javaagent:/tmp/agent.jar"})
    rc, out, _ = _drift(project, capsys)
    assert rc == 0  # the limit README states: no fingerprint of the configuration on the revision
    assert f"production: runtime configuration not compared: {CONFIG_NOTE}" in out
    assert f"revision {LEADER}:2;" in out  # the revision that runs is named all the same


def test_a_scale_by_hand_is_named(released, project, capsys):
    released.update_service(cluster=CLUSTER, service=FOLLOWER, desiredCount=3)
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert f"production: {RELEASED} runs 4 instance(s), but {_record()}" in err
    assert (
        f"names 2: an unrecorded scale (put back what the record names ({UPDATE} {LEADER} --desired-count 1; "
        f"{UPDATE} {FOLLOWER} --desired-count <2 minus the leader's 1>), find who made it"
    ) in err
    # the leader stopped, the followers put back: one instance where the record names two
    released.update_service(cluster=CLUSTER, service=FOLLOWER, desiredCount=1)
    released.update_service(cluster=CLUSTER, service=LEADER, desiredCount=0)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "runs 1 instance(s), but" in err and "names 2: an unrecorded scale" in err


def test_a_single_instance_environment_names_one_service(project, ecs, capsys):
    cfg = config("production", env={"instances": 1})
    project.stack(STACK, stack_file(cfg))
    release(ecs, cfg)
    record_deploy(project.path, STACK)
    rc, out, err = _drift(project, capsys)
    assert rc == 0, err
    assert f"production: ECS service {LEADER} (revision {LEADER}:1; cluster {CLUSTER}, {REGION}) runs what {_record()}" in out
    ecs.update_service(cluster=CLUSTER, service=LEADER, desiredCount=3)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"runs 3 instance(s), but {_record()}" in err
    assert f"names 1: an unrecorded scale (put back what the record names ({UPDATE} {LEADER} --desired-count 1)" in err


def test_a_deleted_service_is_named(released, project, capsys):
    d = deployment(config("production"), STACK)
    version = d.package.version or d.package.model_version
    # the leader alone deleted: the followers still run, one instance where the record names two
    released.update_service(cluster=CLUSTER, service=LEADER, desiredCount=0)
    released.delete_service(cluster=CLUSTER, service=LEADER)
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert f"production: ECS service {FOLLOWER} (revision {FOLLOWER}:1; the leader service {LEADER} does not run; cluster {CLUSTER}, {REGION}) runs 1 instance(s), but {_record()}" in err
    # both deleted (an INACTIVE service runs nothing)
    released.update_service(cluster=CLUSTER, service=FOLLOWER, desiredCount=0)
    released.delete_service(cluster=CLUSTER, service=FOLLOWER)
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert f"production: nothing runs as ECS service {LEADER} (cluster {CLUSTER}, {REGION}), but {_record()}" in err
    assert f"says {version} runs there: removed outside a release (find who made it in the API server's (or the cloud's) audit log; `pulumi refresh` and then `pulumi up` create it again" in err
    # and so does a cluster that is gone
    released.delete_cluster(cluster=CLUSTER)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"nothing runs as ECS service {LEADER} (cluster {CLUSTER}, {REGION}), but" in err


def test_services_the_log_never_recorded_are_an_unrecorded_deployment(project, ecs, capsys):
    cfg = config("production")
    project.stack(STACK, stack_file(cfg))
    release(ecs, cfg)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"production: {RELEASED} runs, but the activity log records no deployment of it: an unrecorded deployment" in err


# --- what runs cannot be read: exit 2, what to fix, no traceback -------------------------------------------


def test_no_credentials_is_said_plainly(project, aws_env, capsys, monkeypatch):
    project.stack(STACK, stack_file(config("production")))
    record_deploy(project.path, STACK)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    rc, out, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err and out == ""
    assert err == (
        f"error: production: what runs could not be read from AWS ({REGION}): no AWS credentials were found: sign in "
        "(`aws sso login`, AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) as an identity with ecs:DescribeServices "
        "on the environment's services and ecs:DescribeTaskDefinition (its deploy role has both)"
    )


def test_access_denied_names_the_call_and_the_rights(released, project, capsys, monkeypatch):
    # AWS's answer to an identity that may describe the services but not task definitions (the monitor role)
    class Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_: Any) -> Iterator[bytes]:
            yield self.body

    def denied(request: Any, **_: Any) -> Any:
        if request.headers.get("X-Amz-Target", b"").endswith(b".DescribeTaskDefinition"):
            return botocore.awsrequest.AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, Raw(DENIED.encode()))
        return None

    real = boto3.session.Session

    def session(*args: Any, **kwargs: Any) -> Any:
        s = real(*args, **kwargs)
        s.events.register_first("before-send.ecs", denied)
        return s

    monkeypatch.setattr(boto3.session, "Session", session)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err
    assert err == (
        f"error: production: what runs could not be read from AWS ({REGION}): AWS refused ecs:DescribeTaskDefinition of {LEADER}:1 "
        f"(AccessDeniedException: User: arn:aws:sts::{ACCOUNT}:assumed-role/orders-production-monitor/rita is not authorized to perform: "
        "ecs:DescribeTaskDefinition): the identity needs ecs:DescribeServices on the environment's services and ecs:DescribeTaskDefinition (its deploy role has both)"
    )


def test_credentials_of_another_account_are_refused(released, project, capsys, monkeypatch):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "210987654321")
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert f"error: production: what runs could not be read from AWS ({REGION}): the AWS credentials are account 210987654321's (" in err
    assert f"the stack deploys to account {ACCOUNT} (mxinfra:aws.accountId): sign in to account {ACCOUNT} as an identity with ecs:DescribeServices" in err


def test_a_stack_without_a_region_is_a_config_error(project, aws_env, capsys):
    cfg = config("production")
    del cfg["aws:region"]
    project.stack(STACK, stack_file(cfg))
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err
    assert "aws:region: required key is missing" in err and "pulumi config set aws:region eu-west-1" in err


# --- the same check stops `pulumi up` before anything is declared ---------------------------------------------


def test_pulumi_up_refuses_an_unrecorded_change_in_the_same_words_before_declaring_anything(released, project, pulumi_run, monkeypatch):
    import importlib

    import pulumi

    from mxinfra.components import MendixApp
    from mxinfra.config import RawConfig
    from mxinfra.deployment import prepare

    monkeypatch.setattr(importlib.import_module("mxinfra.release_guard"), "under_mocks", lambda: False)  # as under a real engine
    monkeypatch.chdir(project.path)  # the program runs in the project directory
    by_hand(released, LEADER, image=EVIL)
    d = prepare(RawConfig(config("production"), frozenset({"mxinfra:environments"})), project="orders", stack=STACK, base_dir=project.path)
    with pytest.raises(pulumi.RunError) as refused:
        pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=STACK, project="orders")
    said = " ".join(str(refused.value).split())
    assert "unrecorded changes: what runs is not what the activity log's signed records say" in said
    assert f"runs image {EVIL} ({LEADER}), {IMAGE} ({FOLLOWER}), but {_record()}" in said and f"names image {IMAGE}: an unrecorded change" in said, said
    # put back, the same program goes on
    released.update_service(cluster=CLUSTER, service=LEADER, taskDefinition=f"{LEADER}:1")
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=STACK, project="orders")
    assert any(r.type == "aws:ecs/service:Service" for r in res)


def test_a_tier_downgrade_of_production_is_refused(released, project, capsys):
    """Issue 19, F18: `role: test` on the environment that runs as production would drop its protection,
    deletion protection and MFA in one update; what runs is tagged mxinfra:role=production, so the check
    that runs before every `pulumi up` (and `mxinfra drift`) refuses it."""
    cfg = config("production")
    body = cfg["mxinfra:environments"]["production"]
    body["role"] = "test"
    body.pop("ungated", None)
    # everything the stack file can claim claims the lower tier (the VPC's declared tags too)
    cfg["mxinfra:aws"]["vpcTags"] = {**cfg["mxinfra:aws"].get("vpcTags", {}), "mxinfra:tier": "test"}
    project.stack(STACK, stack_file(cfg))
    rc, _, err = _drift(project, capsys)
    assert rc == 2, err
    assert f"{RELEASED} is production's (its mxinfra:role), but the stack now declares 'production' role test" in err, err
    assert "keep role: production" in err and "Traceback" not in err


def _drift(project: Any, capsys: Any) -> tuple[int, str, str]:
    return run_drift(project, capsys, STACK)
