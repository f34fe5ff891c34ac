"""Issue 19, F1 on the aws target: `mxinfra drift` reads what the environment's ECS services run (moto) and
names every difference from the activity log's last signed record.

The services and task definitions are created in moto as `pulumi up` creates them (runtime.py: the
cluster `<app>-<stack>-cluster`, the leader service and family `<app>-<env>`, the follower's
`<app>-<env>-follower`, revisions tagged with the release tags), the record is written by the activity
resource's own provider (scaffold.record_deploy), and a hand change is what a holder of production
`deploy` can do: `ecs:RegisterTaskDefinition` of a copy of the running revision, then `ecs:UpdateService`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.awsrequest
import pytest
from moto import mock_aws

from mxinfra.drift import AUDIT
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


class Rollouts:
    """ECS's `deployments` of a service as UpdateService leaves them, which moto 5 does not model: it keeps the
    deployment create_service made (its task definition, its counts) whatever the service is updated to.

    No ECS API writes `deployments` (ECS does, as tasks start and pass their health checks), so this reaches
    into moto's backend: its create_service and update_service are wrapped to do what ECS does; the code under
    test still reads the field with DescribeServices. A service starts healthy (moto leaves its first
    deployment's tasks pending). A new task definition (or forceNewDeployment) starts a new PRIMARY
    deployment. One that becomes healthy ends the others (ECS stops their tasks); one of a service in
    `stuck` never does (security groups that block the load balancer, no circuit breaker, minimumHealthyPercent
    100): it starts no task and the previous deployments stay ACTIVE with their tasks running. A new desired
    count is the PRIMARY deployment's."""

    ids = itertools.count(4711000000000000001)

    def __init__(self, monkeypatch: Any) -> None:
        from moto.ecs.models import EC2ContainerServiceBackend

        self.stuck: set[str] = set()
        real, create = EC2ContainerServiceBackend.update_service, EC2ContainerServiceBackend.create_service

        def create_service(backend: Any, *args: Any, **kwargs: Any) -> Any:
            service = create(backend, *args, **kwargs)
            for d in service.deployments:
                d.update(runningCount=service.desired_count, pendingCount=0, rolloutState="COMPLETED")
            return service

        def update_service(backend: Any, props: dict[str, Any]) -> Any:
            name = props["service"].split("/")[-1]
            before = backend._get_service(props.get("cluster", "default"), name).task_definition
            force = bool(props.get("force_new_deployment"))
            service = real(backend, props)
            arn = backend.describe_task_definition(service.task_definition).arn
            self._roll(service, arn, new=force or arn != backend.describe_task_definition(before).arn)
            return service

        monkeypatch.setattr(EC2ContainerServiceBackend, "create_service", create_service)
        monkeypatch.setattr(EC2ContainerServiceBackend, "update_service", update_service)

    def _roll(self, service: Any, arn: str, new: bool) -> None:
        from moto.core.utils import utcnow

        healthy = service.name not in self.stuck
        primary = next(d for d in service.deployments if d["status"] == "PRIMARY")
        if not new:
            primary["desiredCount"] = service.desired_count
            primary["runningCount"] = service.desired_count if healthy else primary["runningCount"]
            return
        now = utcnow()
        started = {
            **primary,
            "id": f"ecs-svc/{next(self.ids)}",
            "taskDefinition": arn,
            "desiredCount": service.desired_count,
            "runningCount": service.desired_count if healthy else 0,
            "pendingCount": 0,
            "rolloutState": "COMPLETED" if healthy else "IN_PROGRESS",
            "createdAt": now,
            "updatedAt": now,
        }
        older = [] if healthy else [{**d, "status": "ACTIVE"} for d in service.deployments if d["status"] in ("PRIMARY", "ACTIVE")]
        service.deployments = [started, *older]


@pytest.fixture
def rollouts(monkeypatch: Any) -> Rollouts:
    return Rollouts(monkeypatch)


@pytest.fixture
def ecs(aws_env: None, rollouts: Rollouts) -> Iterator[Any]:
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


# --- what a deployment beside the service's revision runs (security review: the service names one revision) -----


def _stuck_back_to_the_release(ecs: Any, rollouts: Rollouts, service: str) -> list[dict[str, Any]]:
    """What a hostile deploy holder does after a revision of their own runs: point the service back at the
    released revision with a deployment that can never become healthy (a security group the load balancer
    cannot pass, no circuit breaker, every old task kept until the new ones are healthy). The service's
    deployments, as DescribeServices answers."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    closed = ec2.create_security_group(GroupName="closed", Description="no ingress", VpcId=vpc)["GroupId"]
    rollouts.stuck.add(service)  # ECS: the new tasks never pass the load balancer's health check
    ecs.update_service(
        cluster=CLUSTER,
        service=service,
        taskDefinition=f"{service}:1",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [closed]}},
        deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200, "deploymentCircuitBreaker": {"enable": False, "rollback": False}},
    )
    svc = ecs.describe_services(cluster=CLUSTER, services=[service])["services"][0]
    assert svc["taskDefinition"].rsplit("/", 1)[-1] == f"{service}:1"  # all the service itself says: the released revision
    return svc["deployments"]


def test_an_image_a_deployment_that_never_becomes_healthy_leaves_running_is_named(released, project, rollouts, capsys):
    evil = by_hand(released, LEADER, image=EVIL)
    primary, active = _stuck_back_to_the_release(released, rollouts, LEADER)
    assert (primary["status"], primary["runningCount"], primary["taskDefinition"].rsplit("/", 1)[-1]) == ("PRIMARY", 0, f"{LEADER}:1")
    assert (active["status"], active["runningCount"], active["taskDefinition"].rsplit("/", 1)[-1]) == ("ACTIVE", 1, evil)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err
    # named by the core's rule (mxinfra.drift.running_beside): a warning, since right after every release
    # the deployment it replaces still runs until its rollout ends
    beside = f"deployment {active['id']} of {LEADER}, revision {evil}, 1 task(s) running"
    what = f"ECS service {LEADER} (revision {LEADER}:1; follower service {FOLLOWER}, revision {FOLLOWER}:1; cluster {CLUSTER}, {REGION})"
    assert f"production: {what} also runs what {_record()}" in err and f"does not name: {EVIL} ({beside}): the deployment a release replaces" in err, err
    assert (
        f"stop the tasks of deployment {active['id']} of {LEADER} (revision {evil}) unless ECS is still stopping them after a release: "
        f"aws ecs list-tasks --region {REGION} --cluster {CLUSTER} --service-name {LEADER}, then aws ecs stop-task --region {REGION} "
        f"--cluster {CLUSTER} --task <each one `aws ecs describe-tasks` shows on {evil}>"
    ) in err
    assert f"runs image {EVIL}" not in err  # the services' own revisions are the recorded image
    # the network put back: a new deployment of the released revision becomes healthy and ECS stops the evil tasks
    rollouts.stuck.discard(LEADER)
    released.update_service(
        cluster=CLUSTER, service=LEADER, forceNewDeployment=True,
        deploymentConfiguration={"minimumHealthyPercent": 0, "maximumPercent": 100, "deploymentCircuitBreaker": {"enable": True, "rollback": True}},
    )
    assert [d["status"] for d in released.describe_services(cluster=CLUSTER, services=[LEADER])["services"][0]["deployments"]] == ["PRIMARY"]
    rc, out, err = _drift(project, capsys)
    assert rc == 0, err
    assert f"production: {RELEASED} runs what {_record()}" in out


def test_an_older_deployment_of_the_recorded_image_still_running_is_named_and_not_a_difference(released, project, rollouts, capsys):
    # what a release of other settings leaves while ECS still stops the old tasks: the same image on both
    rollouts.stuck.add(LEADER)
    new = by_hand(released, LEADER, env={"MX_Orders_PageSize": "50"})
    (_, active) = released.describe_services(cluster=CLUSTER, services=[LEADER])["services"][0]["deployments"]
    rc, out, err = _drift(project, capsys)
    assert rc == 0, err  # the image compared as the service's own revision's is: the recorded one, and so is the older deployment's
    assert active["taskDefinition"].endswith(f"{LEADER}:1") and active["runningCount"] == 1
    assert f"production: ECS service {LEADER} (revision {new}; follower service {FOLLOWER}, revision {FOLLOWER}:1; " in out


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
