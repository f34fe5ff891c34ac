"""Leader and followers: one leader service (instance index 0), a follower service for the other instances."""

from __future__ import annotations

import json

import pytest

from mxinfra.components import ENVIRONMENT_TYPE, MendixApp
from mxinfra.settings import Bindings, DatabaseParts, S3Storage, buildpack_env, instance_env
from mxinfra_aws import policies
from mxinfra_aws.containers import task_counts
from mxinfra_aws.render import notes

from awshelpers import ACCOUNT, FAKE_ENDPOINT, REGION, cloud_outputs, config, deployment, lint, run_as_update

from test_aws_components import EXPECTED_CHILDREN, FOLLOWER_CHILDREN, PRODUCTION_CHILDREN

SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
CLUSTER = "orders-aws-production-cluster"
P = "orders-production"


def run(pulumi_run, instances: int):
    d = deployment(config("production", env={"instances": instances}))
    return d, pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="aws-production", project="orders")


@pytest.mark.parametrize("instances,leader,followers", [(0, 0, 0), (1, 1, 0), (2, 1, 1), (3, 1, 2)])
def test_children_and_counts_exactly(pulumi_run, instances, leader, followers):
    _, res = run(pulumi_run, instances)
    env = res.one(ENVIRONMENT_TYPE, P)
    children = {r.name: r.type for r in res.descendants(env) if r.type.startswith("aws:")}
    expected = {**EXPECTED_CHILDREN, **PRODUCTION_CHILDREN, **(FOLLOWER_CHILDREN if followers else {})}
    assert children == {f"{P}-{k}": t for k, t in expected.items()}
    assert task_counts(instances) == (leader, followers)
    services = {r.name: r.inputs for r in res.of_type(SERVICE)}
    assert services[f"{P}-service"]["name"] == P and services[f"{P}-service"]["desiredCount"] == leader
    alarms = {r.name: r.inputs for r in res.of_type(ALARM)}
    assert alarms[f"{P}-alarm-running-tasks"]["threshold"] == leader
    assert alarms[f"{P}-alarm-running-tasks"]["dimensions"] == {"ClusterName": CLUSTER, "ServiceName": P}
    assert alarms[f"{P}-alarm-running-tasks"]["treatMissingData"] == ("breaching" if leader else "notBreaching")
    if not followers:
        assert set(services) == {f"{P}-service"} and set(alarms) == {f"{P}-alarm-running-tasks"}
        return
    follower = services[f"{P}-follower-service"]
    assert follower["name"] == f"{P}-follower" and follower["desiredCount"] == followers
    alarm = alarms[f"{P}-alarm-follower-running-tasks"]
    assert (alarm["name"], alarm["threshold"], alarm["treatMissingData"]) == (f"{P}-follower-running-tasks", followers, "breaching")
    assert alarm["dimensions"] == {"ClusterName": CLUSTER, "ServiceName": f"{P}-follower"}
    assert alarm["alarmActions"] == alarms[f"{P}-alarm-running-tasks"]["alarmActions"]


def test_both_services_share_everything_but_count_and_rollback(pulumi_run):
    # as `pulumi up` registers them: a preview leaves out the wait for the outcome record (components.py)
    d = deployment(config("production", env={"instances": 3}))
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="aws-production", project="orders", preview=False, outputs=cloud_outputs)
    leader = res.one(SERVICE, f"{P}-service")
    follower = res.one(SERVICE, f"{P}-follower-service")
    differ = {"name", "desiredCount", "taskDefinition", "deploymentCircuitBreaker"}
    assert {k: v for k, v in leader.inputs.items() if k not in differ} == {k: v for k, v in follower.inputs.items() if k not in differ}
    # same target group, security group, subnets, cluster; both stop old tasks before starting new ones
    for svc in (leader, follower):
        i = svc.inputs
        assert i["loadBalancers"][0]["containerName"] == "mendix" and i["loadBalancers"][0]["containerPort"] == 8080
        assert (i["deploymentMinimumHealthyPercent"], i["deploymentMaximumPercent"]) == (0, 100)
        assert i["cluster"] == leader.inputs["cluster"]
    assert leader.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert follower.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": False}
    # the followers' deployment is requested before the leader's
    assert follower.urn in leader.dependencies
    # the activity log waits for both services
    activity = res.named(f"{P}-activity")
    assert {leader.urn, follower.urn} <= set(activity.dependencies)
    tasks = {r.name: r.inputs for r in res.of_type(TASK)}
    assert tasks[f"{P}-task"]["family"] == P and tasks[f"{P}-follower-task"]["family"] == f"{P}-follower"
    same = {"cpu", "memory", "networkMode", "requiresCompatibilities", "runtimePlatform", "executionRoleArn", "taskRoleArn", "tags"}
    assert {k: tasks[f"{P}-task"].get(k) for k in same} == {k: tasks[f"{P}-follower-task"].get(k) for k in same}


def _expected_plain(d):
    return buildpack_env(
        d.environment("production").settings,
        Bindings("unused", DatabaseParts("PostgreSQL", FAKE_ENDPOINT, "mendix", "u", "p"), S3Storage(bucket=f"orders-production-files-{ACCOUNT}-{REGION}", endpoint=f"https://s3.{REGION}.amazonaws.com")),
    ).plain


def test_instance_index_in_each_services_container():
    d = deployment(config("production", env={"instances": 3}))
    inputs = run_as_update(lambda: MendixApp("orders", {"deployment": d}))
    plain = {k: str(v) for k, v in _expected_plain(d).items()}
    assert not set(plain) & set(instance_env(0))  # the core leaves the index to the target
    containers = {}
    for name, index, prefix in ((f"{P}-task", 0, "leader"), (f"{P}-follower-task", 1, "follower")):
        (container,) = json.loads(inputs[name][1]["containerDefinitions"])
        containers[name] = container
        assert {e["name"]: e["value"] for e in container["environment"]} == {**plain, **instance_env(index)}
        assert container["logConfiguration"]["options"]["awslogs-stream-prefix"] == prefix
    leader, follower = containers.values()
    # identical apart from the index and the log stream prefix: same image, secrets, log group, memory
    for c in (leader, follower):
        c.pop("environment")
        c["logConfiguration"]["options"].pop("awslogs-stream-prefix")
    assert leader == follower


def test_single_instance_keeps_one_service_and_the_leader_index():
    d = deployment(config("production", env={"instances": 1}))
    inputs = run_as_update(lambda: MendixApp("orders", {"deployment": d}))
    assert not [n for n in inputs if "follower" in n]
    (container,) = json.loads(inputs[f"{P}-task"][1]["containerDefinitions"])
    assert {e["name"]: e["value"] for e in container["environment"]} == {**{k: str(v) for k, v in _expected_plain(d).items()}, **instance_env(0)}


@pytest.mark.parametrize("instances", [1, 2])
def test_outputs_name_the_follower_service_when_present(instances):
    d = deployment(config("production", env={"instances": instances}))
    seen: dict = {}

    def program():
        app = MendixApp("orders", {"deployment": d})
        app.environments.apply(seen.update)

    run_as_update(program)
    out = seen["production"]
    assert out["service"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{P}"
    if instances == 1:
        assert "followerService" not in out
    else:
        assert out["followerService"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{P}-follower"


@pytest.mark.parametrize("instances", [0, 1, 2, 3])
def test_access_policies_in_place_cover_exactly_the_services(pulumi_run, instances):
    _, res = run(pulumi_run, instances)
    names = [P, f"{P}-follower"] if instances >= 2 else [P]
    services = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{n}" for n in names]
    families = [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{n}:*" for n in names]
    one = (lambda xs: xs[0] if len(xs) == 1 else xs)  # noqa: E731
    docs = {perm: json.loads(res.one("aws:iam/rolePolicy:RolePolicy", f"{P}-role-{perm}-policy").inputs["policy"]) for perm in ("deploy", "monitor", "api")}
    deploy = {s["Sid"]: s["Resource"] for s in docs["deploy"]["Statement"]}
    assert deploy["UpdateService"] == one(services) and deploy["RegisterTaskDefinition"] == one(families)
    assert deploy["PassRuntimeRoles"] == [f"arn:aws:iam::{ACCOUNT}:role/mxinfra/{P}-task", f"arn:aws:iam::{ACCOUNT}:role/mxinfra/{P}-execution"]
    for perm in ("monitor", "api"):
        assert {s["Sid"]: s["Resource"] for s in docs[perm]["Statement"]}["ServiceState"] == one(services)
    for doc in docs.values():
        assert lint(doc) == []


@pytest.mark.parametrize("instances", [0, 1, 2, 3])
def test_plan_notes_leader_and_followers(pulumi_run, instances):
    _, res = run(pulumi_run, instances)
    text = notes([{"name": r.name, "type": r.type, "inputs": r.inputs, "options": {}} for r in res])
    assert sum(n.startswith("Fargate task size") for n in text) == 1
    (services,) = [n for n in text if "leader" in n]
    if instances == 0:
        assert services.startswith("stopped:")
    else:
        assert services.startswith(f"leader + {instances - 1} follower(s)")


def test_no_leader_warning_any_more(pulumi_run):
    _, res = run(pulumi_run, 3)
    assert not [w for w in res.warnings if "leader" in w or "instances" in w]


def test_task_counts_refuses_negative():
    with pytest.raises(ValueError):
        task_counts(-1)


def test_builders_cover_both_services_exactly():
    from mxinfra.naming import Naming

    a = policies.Arns(REGION, ACCOUNT, CLUSTER, Naming("orders", "production"), followers=True)
    assert a.service_names == (P, f"{P}-follower")
    by_sid = {s["Sid"]: s for s in policies.deploy_policy(a)["Statement"]}
    assert by_sid["UpdateService"]["Resource"] == [a.service_arn, a.follower_service_arn]
    assert by_sid["RegisterTaskDefinition"]["Resource"] == [
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{P}:*",
        f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{P}-follower:*",
    ]
    single = policies.Arns(REGION, ACCOUNT, CLUSTER, Naming("orders", "production"))
    assert {s["Sid"]: s for s in policies.deploy_policy(single)["Statement"]}["UpdateService"]["Resource"] == single.service_arn
