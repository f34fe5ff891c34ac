"""Issue 10 on the AWS target: no path around the production rules (each test fails on the old code)."""

from __future__ import annotations

import copy
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from mxinfra.cli import main
from mxinfra.components import MendixApp
from mxinfra.errors import ConfigError
from mxinfra.mockrun import run_mocked
from mxinfra.naming import Naming
from mxinfra_aws import policies
from mxinfra_aws.config import AwsConfig
from mxinfra_aws.network import vpc_problems
from mxinfra_aws.policies import Arns

from awshelpers import ACCOUNT, DIGEST, IMAGE, MDA, REGION, VPC_CIDR, cloud_outputs, config, deployment, lint, run_as_update
from iam_eval import allows

P = "orders-production"
CLUSTER = "orders-aws-production-cluster"
A = Arns(REGION, ACCOUNT, CLUSTER, Naming("orders", "production"), followers=True, subnets=("subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"))
ECS = f"arn:aws:ecs:{REGION}:{ACCOUNT}"


def issues(cfg, stack="aws-production"):
    with pytest.raises(ConfigError) as e:
        deployment(cfg, stack)
    return e.value.issues


def run(pulumi_run, cfg, stack="aws-production"):
    d = deployment(cfg, stack)
    return d, pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=stack, project="orders")


# --- 1. manage rewrites no trust ------------------------------------------------------------------


def test_deployed_manage_policy_has_no_iam_write(pulumi_run):
    _, res = run(pulumi_run, config("production"))
    doc = json.loads(res.one("aws:iam/rolePolicy:RolePolicy", f"{P}-role-manage-policy").inputs["policy"])
    for perm in ("deploy", "manage", "monitor"):
        assert not allows(doc, "iam:UpdateAssumeRolePolicy", A.role_arn(perm))
    assert allows(doc, "iam:GetRole", A.role_arn("deploy"))


# --- 2. tiers never share a VPC ------------------------------------------------------------------


def test_production_needs_a_production_vpc():
    cfg = config("production", aws={"vpcTags": {}})
    (issue,) = issues(cfg)
    assert issue.path == "mxinfra:aws.vpcTags" and "mxinfra:tier=production" in issue.message


def test_non_production_refuses_a_production_vpc():
    cfg = config("acceptance", aws={"vpcTags": {"mxinfra:tier": "production"}})
    (issue,) = issues(cfg, "aws-acceptance")
    assert issue.path == "mxinfra:aws.vpcTags" and "acceptance" in issue.message


def _mixed(**aws):
    cfg = config("production", aws=aws)
    cfg["mxinfra:environments"]["acceptance"] = {"role": "acceptance", "memory": 2048}
    cfg["mxinfra:access"] = []
    return cfg


def test_a_stack_mixing_tiers_in_one_vpc_is_refused():
    (issue,) = issues(_mixed())
    assert issue.path == "mxinfra:aws.vpcId" and "allowSharedVpc" in issue.fix


def test_shared_vpc_is_an_explicit_warned_opt_in(project, capsys):
    d = deployment(_mixed(allowSharedVpc=True))
    for env in ("production", "acceptance"):
        assert any("allowSharedVpc: true" in w and "reach production's database" in w for w in d.environment(env).warnings)
    # the CLI: exit 2 with the key path without the opt-in
    cfg = _mixed()
    for body in cfg["mxinfra:environments"].values():
        for key in ("adminPassword", "license", "secretConstants"):
            body.pop(key, None)
    project.stack("aws-production", cfg)
    assert main(["plan", "-s", "aws-production", "-C", str(project.path)]) == 2
    assert "mxinfra:aws.vpcId" in capsys.readouterr().err


def _block(**kw):
    base = config("production")["mxinfra:aws"]
    base.update(kw)
    return AwsConfig.model_validate(base)


def test_deploy_time_vpc_check_is_pure_and_strict():
    prod = _block()
    tier = {"mxinfra:tier": "production"}
    assert vpc_problems(True, prod, tier, VPC_CIDR) == []
    assert vpc_problems(True, prod, {}, VPC_CIDR)  # the declared tag is not on the real VPC
    assert vpc_problems(True, prod, tier, "10.9.0.0/16")  # another CIDR than declared
    test = _block(vpcTags={})
    assert vpc_problems(False, test, {}, VPC_CIDR) == []
    assert vpc_problems(False, test, tier, VPC_CIDR)  # a production VPC, undeclared
    assert vpc_problems(False, _block(vpcTags={}, allowSharedVpc=True), tier, VPC_CIDR) == []


def _deploy_with_vpc(cfg, tags, stack="aws-production"):
    d = deployment(cfg, stack)
    seen = []

    def call(args):
        seen.append(args.token)
        if args.token == "aws:ec2/getVpc:getVpc":
            return {"id": args.args["id"], "tags": tags, "cidrBlock": VPC_CIDR, "arn": "arn"}
        return {}

    result = run_mocked(lambda: MendixApp("orders", {"deployment": d}), project="orders", stack=stack, preview=False, outputs=cloud_outputs, call=call)
    return seen, result


def test_deploy_checks_the_real_vpc_with_an_invoke():
    seen, result = _deploy_with_vpc(config("production"), {"mxinfra:tier": "production"})
    assert "aws:ec2/getVpc:getVpc" in seen
    sgs = [r for r in result.registrations if r.type == "aws:ec2/securityGroup:SecurityGroup"]
    assert {r.inputs["vpcId"] for r in sgs} == {"vpc-0a1b2c3d4e5f60718"}


def test_deploy_stops_before_creating_anything_in_an_untagged_vpc():
    # The stack declares a production VPC, but AWS says it is not tagged so: no security group exists in it.
    # (the security groups' vpc_id is the verified id: their registration waits for the check, which raises)
    with pytest.raises(Exception, match="not tagged mxinfra:tier=production"):
        _deploy_with_vpc(config("production"), {"mxinfra:tier": "test"})
    with pytest.raises(Exception, match="could reach production"):
        _deploy_with_vpc(config("acceptance", aws={"vpcTags": {}}), {"mxinfra:tier": "production"}, "aws-acceptance")


def _mda_copy(tmp_path: Path) -> Path:
    """The example package with another zip comment: other bytes (a new package hash), same app."""
    out = tmp_path / "orders-1.4.3.mda"
    shutil.copy(MDA, out)
    with zipfile.ZipFile(out, "a") as zf:
        zf.comment = b"rebuilt"
    return out


def _api_calls(before: dict, after: dict, a: Arns) -> list[tuple[str, str, dict]]:
    """The AWS API calls `pulumi up` makes to go from `before` to `after` (the program's registrations),
    for the resource types such a change touches: the provider's create/update and the read after it."""
    calls = [("ec2:DescribeVpcs", "*", {"ec2:Region": REGION})]  # network.verified_vpc's invoke
    changed = {name for name in after if name in before and before[name] != after[name]}
    changed |= set(after) - set(before)
    # A new task definition revision has a new ARN (the mock's ARNs have no revision): its service is updated.
    new_revisions = {f"arn:aws:mock:{REGION}:{ACCOUNT}:taskdefinition/{n}" for n in changed if after[n][0] == "aws:ecs/taskDefinition:TaskDefinition"}
    changed |= {n for n, (t, i) in after.items() if t == "aws:ecs/service:Service" and i.get("taskDefinition") in new_revisions}
    for name in sorted(changed):
        type_, inputs = after[name]
        if type_ == "aws:ecs/taskDefinition:TaskDefinition":
            arn = f"{ECS}:task-definition/{inputs['family']}:2"
            calls += [
                ("ecs:RegisterTaskDefinition", arn, {"ecs:compute-compatibility": ["FARGATE"]}),
                ("ecs:TagResource", arn, {"ecs:CreateAction": "RegisterTaskDefinition"}),
                # the mock's ARNs are placeholders: the roles' real ARNs (path /mxinfra/, explicit names)
                ("iam:PassRole", a.role_arn("execution"), {"iam:PassedToService": "ecs-tasks.amazonaws.com"}),
                ("iam:PassRole", a.role_arn("task"), {"iam:PassedToService": "ecs-tasks.amazonaws.com"}),
                ("ecs:DescribeTaskDefinition", "*", {}),  # the provider reads what it registered
            ]
            assert inputs["executionRoleArn"].endswith(f"/{a.role_name('execution')}-role") and inputs["taskRoleArn"].endswith(f"/{a.role_name('task')}-role")
            assert inputs.get("skipDestroy") is True  # so the old revision is never deregistered
        elif type_ == "aws:ecs/service:Service":
            arn = f"{ECS}:service/{CLUSTER}/{inputs['name']}"
            family = inputs["name"]
            net = inputs["networkConfiguration"]
            calls += [
                (
                    "ecs:UpdateService",
                    arn,
                    {
                        "ecs:task-definition": f"{ECS}:task-definition/{family}:2",
                        "ecs:enable-execute-command": "false",
                        "ecs:subnet": net["subnets"],
                        "ecs:auto-assign-public-ip": str(net["assignPublicIp"]).lower(),
                    },
                ),
                ("ecs:DescribeServices", arn, {}),
            ]
        elif type_ == "aws:cloudwatch/metricAlarm:MetricAlarm":  # its threshold follows the instances
            arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{inputs['name']}"
            calls += [("cloudwatch:PutMetricAlarm", arn, {}), ("cloudwatch:DescribeAlarms", arn, {})]
        elif type_ == "mxinfra:governance:ActivityLogEntry" or type_.startswith("pulumi-python:dynamic"):
            continue  # the activity log writes to the repository (its own credentials), not to AWS IAM
        else:
            raise AssertionError(f"a package or settings change also changes {name} ({type_}): the deploy role cannot apply it")
    return calls


def _aws_only(resources: dict) -> dict:
    return {n: v for n, v in resources.items() if v[0].startswith("aws:")}


@pytest.mark.parametrize("change", ["package", "image", "constants", "instances"])
def test_pulumi_up_under_the_deploy_role_can_apply_a_release(tmp_path, change):
    """Every API call `pulumi up` makes for a new package, image or setting is allowed by the deploy role."""
    base = config("production")
    new = copy.deepcopy(base)
    if change == "package":
        new["mxinfra:app"]["package"] = str(_mda_copy(tmp_path))
    elif change == "image":
        new["mxinfra:aws"]["image"] = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/orders:1.4.3@sha256:" + "7a" * 32
    elif change == "constants":
        new["mxinfra:environments"]["production"]["constants"] = {"Orders.PageSize": 99}
        new["mxinfra:environments"]["production"]["scheduledEvents"] = "NONE"
    else:
        new["mxinfra:environments"]["production"]["instances"] = 3
    before = _aws_only(run_as_update(lambda: MendixApp("orders", {"deployment": deployment(base)})))
    after = _aws_only(run_as_update(lambda: MendixApp("orders", {"deployment": deployment(new)})))
    assert before != after  # the change is real
    a = Arns(REGION, ACCOUNT, CLUSTER, Naming("orders", "production"), followers=True, subnets=tuple(base["mxinfra:aws"]["subnetIds"]))
    doc = policies.deploy_policy(a)
    calls = _api_calls(before, after, a)
    assert any(c[0] == "ecs:UpdateService" for c in calls)
    refused = [c[:2] for c in calls if not allows(doc, *c)]
    assert refused == []
    assert lint(doc) == []


def test_the_evaluator_refuses_what_the_role_does_not_allow():
    doc = policies.deploy_policy(A)
    other = Arns(REGION, ACCOUNT, CLUSTER, Naming("orders", "acceptance"))
    assert not allows(doc, "ecs:RegisterTaskDefinition", f"{ECS}:task-definition/{other.service_name}:3", {"ecs:compute-compatibility": ["FARGATE"]})
    assert not allows(doc, "ecs:UpdateService", A.service_arn, {"ecs:task-definition": f"{ECS}:task-definition/{other.service_name}:3", "ecs:enable-execute-command": "false", "ecs:subnet": list(A.subnets), "ecs:auto-assign-public-ip": "false"})
    assert not allows(doc, "ecs:UpdateService", A.service_arn, {"ecs:task-definition": f"{ECS}:task-definition/{P}:3", "ecs:enable-execute-command": "true"})
    assert not allows(doc, "ec2:DescribeVpcs", "*", {"ec2:Region": "us-east-1"})
    assert not allows(doc, "ecs:DeregisterTaskDefinition", "*")


# --- 3. production alerts: MFA and 8 hours -------------------------------------------------------


def test_production_alerts_role_requires_mfa_and_8_hours(pulumi_run):
    access = [{"principal": f"arn:aws:iam::{ACCOUNT}:role/OnCall", "environments": ["production"], "permissions": ["alerts"]}]
    _, res = run(pulumi_run, config("production", access=access))
    role = res.one("aws:iam/role:Role", f"{P}-role-alerts")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Condition"]["Bool"] == {"aws:MultiFactorAuthPresent": "true"}
    age = int(trust["Statement"][0]["Condition"]["NumericLessThanEquals"]["aws:MultiFactorAuthAge"])
    assert role.inputs["maxSessionDuration"] + age == 28800


def test_production_alerts_refuses_12_hour_sessions():
    access = [{"principal": f"arn:aws:iam::{ACCOUNT}:role/OnCall", "environments": ["production"], "permissions": ["alerts"], "maxSessionSeconds": 43200}]
    assert [i.path for i in issues(config("production", access=access))] == ["mxinfra:access[0].maxSessionSeconds"]


# --- 7. task definitions of other environments ---------------------------------------------------


def test_api_cannot_read_task_definitions():
    doc = policies.api_policy(A)
    assert not allows(doc, "ecs:DescribeTaskDefinition", "*")
    assert allows(doc, "ecs:DescribeServices", A.service_arn)


# --- 8. reserved suffixes ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["production-follower", "prod-db", "x-alb", "a-redeploy", "b-db-rotated", "c-deploy", "d-service-sg", "e-running-tasks"])
def test_environment_names_colliding_with_resource_suffixes_are_refused(name):
    cfg = config("acceptance", aws={"vpcTags": {}})
    cfg["mxinfra:environments"] = {name: cfg["mxinfra:environments"]["acceptance"]}
    cfg["mxinfra:access"] = []
    found = issues(cfg, "aws-acceptance")
    assert [i.path for i in found] == [f"mxinfra:environments.{name}"]


def test_unreserved_names_are_fine():
    cfg = config("acceptance", aws={"vpcTags": {}})
    cfg["mxinfra:environments"] = {"followerslab": cfg["mxinfra:environments"]["acceptance"]}
    cfg["mxinfra:access"] = []
    deployment(cfg, "aws-acceptance")


# --- 9. digests ----------------------------------------------------------------------------------


def test_production_refuses_a_tagged_image():
    (issue,) = issues(config("production", aws={"image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/orders:1.4.2"}))
    assert issue.path == "mxinfra:aws.image" and "mutable tag" in issue.message


def test_gated_environment_refuses_a_tagged_image():
    cfg = config("acceptance", aws={"vpcTags": {}, "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/orders:1.4.2"})
    cfg["mxinfra:environments"]["acceptance"]["requirePromotionFrom"] = "test"
    cfg["mxinfra:environments"]["test"] = {"role": "test"}
    cfg["mxinfra:access"] = []
    assert [i.path for i in issues(cfg, "aws-acceptance") if "mutable" in i.message] == ["mxinfra:aws.image"]


def test_activity_log_records_the_digest(pulumi_run):
    _, res = run(pulumi_run, config("production"))
    (activity,) = [r for r in res if r.name == f"{P}-activity"]
    assert activity.inputs["artifact"] == IMAGE and activity.inputs["artifact"].endswith("@" + DIGEST)


# --- 10. egress ----------------------------------------------------------------------------------


def test_egress_list_becomes_rules_and_nothing_is_open(pulumi_run):
    egress = [{"cidr": "203.0.113.10/32", "ports": [443, 8443], "description": "payments API"}, {"cidr": "2001:db8::/64", "ports": [25], "description": "smtp relay"}]
    _, res = run(pulumi_run, config("production", aws={"egress": egress, "s3PrefixListId": "pl-6ea54007"}))
    rules = {r.name: r.inputs for r in res.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") if r.inputs["securityGroupId"] == f"{P}-service-sg-id"}
    assert set(rules) == {f"{P}-service-out-{k}" for k in ("db", "endpoints", "s3", "0-443", "0-8443", "1-25")}
    assert rules[f"{P}-service-out-s3"]["prefixListId"] == "pl-6ea54007"
    assert (rules[f"{P}-service-out-0-8443"]["cidrIpv4"], rules[f"{P}-service-out-0-8443"]["fromPort"]) == ("203.0.113.10/32", 8443)
    assert (rules[f"{P}-service-out-1-25"]["cidrIpv6"], rules[f"{P}-service-out-1-25"]["description"]) == ("2001:db8::/64", "smtp relay")
    for r in rules.values():
        assert r.get("cidrIpv4") not in ("0.0.0.0/0",) and r.get("cidrIpv6") != "::/0"


def test_wide_egress_on_production_needs_the_opt_in():
    rule = {"cidr": "0.0.0.0/0", "ports": [443], "description": "anything"}
    (issue,) = issues(config("production", aws={"egress": [rule]}))
    assert issue.path == "mxinfra:aws.egress[0].cidr"
    d = deployment(config("production", aws={"egress": [rule], "allowWideEgress": True}))
    assert any("large part of the internet" in w for w in d.environment("production").warnings)


def test_vpc_cidr_is_required():
    cfg = config("production")
    del cfg["mxinfra:aws"]["vpcCidr"]
    assert [i.path for i in issues(cfg)] == ["mxinfra:aws.vpcCidr"]


# --- 13. ECR repositories ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/*:1.4.2",
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/orders*:1.4.2",
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/Orders:1.4.2",
        f"{ACCOUNT}.dkr.ecr.*.amazonaws.com/orders:1.4.2",
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/orders?:1",
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/orders:1.4.2\n",
    ],
)
def test_image_repository_names_are_validated(image):
    found = issues(config("test", aws={"vpcTags": {}, "image": image}), "aws-test")
    assert [i.path for i in found] == ["mxinfra:aws.image"]
    assert policies.ecr_repository_arn(image) is None or "*" not in policies.ecr_repository_arn(image)


def test_no_wildcard_repository_reaches_the_execution_policy():
    doc = policies.execution_policy(A, f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/*:1.4.2")
    assert not any("repository/*" in json.dumps(s["Resource"]) for s in doc["Statement"])
    assert policies.ecr_repository_arn(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/orders@{DIGEST}") == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/orders"


# --- 14. the production bucket keeps its protections ---------------------------------------------


def test_production_bucket_settings_are_protected_and_retained(pulumi_run):
    _, res = run(pulumi_run, config("production"))
    for kind in ("files", "files-public-access", "files-ownership", "files-encryption", "files-versioning", "files-lifecycle", "files-policy"):
        r = res.named(f"{P}-{kind}")
        assert r.protect and r.retain_on_delete, kind


def test_test_bucket_settings_are_not_protected(pulumi_run):
    _, res = run(pulumi_run, config("test", aws={"vpcTags": {}}), "aws-test")
    assert not res.named("orders-test-files-versioning").protect


def test_restore_must_tag_the_new_instance():
    doc = policies.backups_policy(A)
    target = f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{P}-db-restored"
    tags = {"aws:RequestTag/mxinfra:app": "orders", "aws:RequestTag/mxinfra:environment": "production"}
    assert allows(doc, "rds:RestoreDBInstanceToPointInTime", target, tags)
    assert not allows(doc, "rds:RestoreDBInstanceToPointInTime", target, {})
    assert not allows(doc, "rds:RestoreDBInstanceToPointInTime", target, {**tags, "aws:RequestTag/mxinfra:environment": "acceptance"})
