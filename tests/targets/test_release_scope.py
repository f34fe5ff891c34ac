"""A release changes only what the `deploy` permission may write: AWS, Azure and Cloud Foundry (issue 18, item 4).

The core puts the per-release tags (`naming.PER_RELEASE_TAGS`) on the workload alone; on Kubernetes the
statement is proven under the real engine (tests/engine/test_release_path.py). Here the same statement,
offline, for the other targets' bundled example stacks (stacks/Pulumi.{aws,azure,cf}-*.yaml):

1. Every stack is planned (`run_plan`, what `mxinfra plan --json` prints) as committed, then after a
   release in the same project directory: a new package (the example MDA with the next ModelVersion:
   other bytes, another sha256), a new artifact (image digest, buildpack release), a changed non-secret
   constant and a changed instance count; each change alone, then all together (`release`). A resource
   changes when its planned inputs differ, when a dynamic resource's own provider `diff` says so, or when
   it takes a replaced resource's new id through a computed input. That set must be the target's
   declared `Target.release_types` (the workload and its configuration) plus the activity record, which
   the program writes with the repository's credentials, not the cloud role.
2. Every cloud API call `pulumi up` makes for those changes (the tables below, each row saying where it
   comes from) is replayed against the deploy permission as rendered in the same plan: the IAM role
   policy (AWS, evaluated with tests/targets/aws/iam_eval.py against the planned ARNs), the custom role
   definition at its assignments' scope (Azure), the space role against the CAPI permitted-roles table
   (Cloud Foundry, where the calls are the ones the app provider really sends to the CAPI double). And a
   hostile holder of deploy cannot do the same to what is not the workload.

What does not hold today is listed precisely in the KNOWN_* tables. Such a case first checks that
exactly the listed calls are refused (a new gap, or a fixed one, fails it), then reports itself as xfail
with the finding, so the run's summary shows it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
for _helpers in (HERE / "aws", HERE / "cloudfoundry"):  # iam_eval.py, capi_double.py
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))

from iam_eval import allows as iam_allows  # noqa: E402
from scaffold import ROOT, copy_example, example_release, record_deploy  # noqa: E402

from mxinfra.mockrun import Computed, reveal  # noqa: E402
from mxinfra.plan import run_plan  # noqa: E402
from mxinfra.stackfile import _load_yaml  # noqa: E402  (the YAML 1.2 reading the CLI uses)

TARGETS = {"aws": "aws", "azure": "azure", "cloudfoundry": "cf"}  # target -> stack prefix
ENVIRONMENTS = ("test", "acceptance", "production")
KINDS = ("package", "artifact", "constant", "instances", "release")
NEXT_PACKAGE = "examples/orders/orders-1.4.3.mda"
NEXT_MODEL_VERSION = "1.4.3.1301"
NEXT_DIGEST = "sha256:" + "4e" * 32
COMPUTED = "[computed]"
ACTIVITY = "activity"  # `<app>-<env>-activity`: pulumi-python:dynamic:Resource, the activity log record
INTENT = "release-intent"  # `<app>-<env>-release-intent`: its record is written before anything else changes
RECORDS = {ACTIVITY, INTENT}  # the log's, not the cloud's: no call of the deploy identity

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
CONTAINER_APP = "azure-native:app:ContainerApp"
CF_APP = "pulumi-python:dynamic/cloudfoundry:App"
CF_GRANTS = "pulumi-python:dynamic/cloudfoundry:GrantExpiry"

pytestmark = pytest.mark.slow  # some 25 s: 54 offline plans and the CAPI replays


# --- the release ------------------------------------------------------------------------------------


def next_image(image: str) -> str:
    """The next build of the image: the next tag, and where the stack pins a digest, another digest."""
    name, _, digest = image.partition("@")
    name = name.replace(":1.4.2", ":1.4.3")
    out = f"{name}@{NEXT_DIGEST}" if digest else name
    assert out != image, image
    return out


def apply_release(target: str, doc: dict[str, Any], kind: str) -> None:
    """Edit one stack file's document as the release `kind` does (`release`: every change at once)."""
    every = kind == "release"
    config = doc["config"]
    if every or kind == "package":
        config["mxinfra:app"]["package"] = NEXT_PACKAGE
    if every or kind == "artifact":
        block = config[f"mxinfra:{target}"]
        if target == "cloudfoundry":
            old = block["buildpack"]
            url = old.partition("#")[0].replace("/v5.0.20/", "/v5.0.21/")
            block["buildpack"] = f"{url}#sha256={NEXT_DIGEST.removeprefix('sha256:')}"  # the next release, pinned
            assert url not in old, old
        else:
            block["image"] = next_image(block["image"])
    for body in config["mxinfra:environments"].values():
        if every or kind == "constant":
            constants = body.setdefault("constants", {})
            constants["Orders.PageSize"] = 61 if constants.get("Orders.PageSize") == 60 else 60
        if every or kind == "instances":
            # A scale within the structure the platform created: from 2 up, one more; a single
            # instance stops (0). Going between 1 and 2 creates or deletes the follower service or
            # worker app (AWS and Azure READMEs: a platform step, not a release).
            n = body.get("instances", 1)
            body["instances"] = n + 1 if n >= 2 else 0


# --- plans ------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """One stack planned offline: the JSON resources by URN, the registrations (dependencies) and the deployment."""

    stack: str
    deployment: Any
    resources: dict[str, dict[str, Any]]
    registrations: dict[str, Any]

    @property
    def prepared(self) -> Any:
        (p,) = self.deployment.environments  # every example stack holds one environment
        return p

    @property
    def prefix(self) -> str:
        return self.prepared.naming.prefix

    def named(self, name: str) -> dict[str, Any]:
        found = [r for r in self.resources.values() if r["name"] == name]
        assert len(found) == 1, (name, sorted(r["name"] for r in self.resources.values()))
        return found[0]

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in self.resources.values() if r["type"] == type_]

    def one(self, type_: str) -> dict[str, Any]:
        found = self.of_type(type_)
        assert len(found) == 1, (type_, [r["name"] for r in found])
        return found[0]

    def dependencies(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.resources[u] for u in self.registrations[resource["urn"]].dependencies if u in self.resources]

    def revealed(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The registration's inputs with secrets unwrapped (unknowns stay Computed)."""
        return reveal(self.registrations[resource["urn"]].inputs)


def plan_stack(directory: Path, stack: str) -> Plan:
    result = run_plan(directory, stack)
    assert not result.gate_issues, [str(i) for i in result.gate_issues]
    return Plan(stack, result.deployment, {r["urn"]: r for r in result.resources()}, {r.urn: r for r in result.registrations})


@dataclass
class Scenario:
    """One stack before and after one release, planned in the same project directory."""

    target: str
    kind: str
    directory: Path
    before: Plan
    after: Plan


class Scenarios:
    """One scratch copy of the example project per target; each release kind restores the committed
    stack files, edits them and records the acceptance deploy the production gate asks for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._base: dict[str, tuple[Path, dict[str, str], dict[str, Plan]]] = {}
        self._cache: dict[tuple[str, str], dict[str, Scenario]] = {}

    def _project(self, target: str) -> tuple[Path, dict[str, str], dict[str, Plan]]:
        if target not in self._base:
            prefix = TARGETS[target]
            directory = copy_example(self.root / target)
            record_deploy(directory, f"{prefix}-acceptance")
            example_release(directory / NEXT_PACKAGE, NEXT_MODEL_VERSION)
            texts = {env: (directory / "stacks" / f"Pulumi.{prefix}-{env}.yaml").read_text() for env in ENVIRONMENTS}
            base = {env: plan_stack(directory, f"{prefix}-{env}") for env in ENVIRONMENTS}
            self._base[target] = (directory, texts, base)
        return self._base[target]

    def get(self, target: str, kind: str) -> dict[str, Scenario]:
        key = (target, kind)
        if key not in self._cache:
            prefix = TARGETS[target]
            directory, texts, base = self._project(target)
            for env in ENVIRONMENTS:
                f = directory / "stacks" / f"Pulumi.{prefix}-{env}.yaml"
                f.write_text(texts[env])
                doc = _load_yaml(f)
                apply_release(target, doc, kind)
                f.write_text(yaml.safe_dump(doc, sort_keys=False))
            record_deploy(directory, f"{prefix}-acceptance")  # mxinfra promote's evidence for production
            self._cache[key] = {env: Scenario(target, kind, directory, base[env], plan_stack(directory, f"{prefix}-{env}")) for env in ENVIRONMENTS}
        return self._cache[key]


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Scenarios:
    return Scenarios(tmp_path_factory.mktemp("release-scope"))


# --- what a release changes -------------------------------------------------------------------------

# Types whose update is a replacement: a new resource with a new id, which whatever takes it as an input
# then receives. terraform-provider-aws internal/service/ecs/task_definition.go: every argument is
# ForceNew except the tags and skip_destroy/track_latest (so a tags-only change is an in-place update).
IN_PLACE_KEYS = {TASK_DEFINITION: {"tags", "tagsAll", "skipDestroy", "trackLatest"}}


def replaces(type_: str, keys: set[str], replace_on_changes: list[str] = ()) -> bool:
    # `replaceOnChanges` (a resource option) makes a change of those inputs a replacement too.
    return (type_ in IN_PLACE_KEYS and bool(keys - IN_PLACE_KEYS[type_])) or bool(keys & set(replace_on_changes)) or "*" in replace_on_changes


def dynamic_provider(resource: dict[str, Any]) -> Any:
    """The provider of a dynamic resource, whose own `diff` decides whether `pulumi up` updates it."""
    from mxinfra.governance.record import ActivityProvider, ReleaseIntentProvider

    type_, name = resource["type"], resource["name"]
    if type_ == "pulumi-python:dynamic/mxinfra:ReleaseIntent":
        return ReleaseIntentProvider()
    if type_ == "pulumi-python:dynamic:Resource" and name.endswith("-" + ACTIVITY):
        return ActivityProvider()
    if type_ == "pulumi-python:dynamic:Resource" and name.endswith("-policy-lookup"):
        from mxinfra_azure.pim import PolicyLookupProvider

        return PolicyLookupProvider()
    if type_.startswith("pulumi-python:dynamic/cloudfoundry:"):
        from mxinfra_cloudfoundry import provider as cf

        providers = {
            "App": cf.AppProvider,
            "ServiceInstance": cf.ServiceInstanceProvider,
            "Route": cf.RouteProvider,
            "SpaceRole": cf.SpaceRoleProvider,
            "GrantExpiry": cf.GrantExpiryProvider,
            "GrantExpiryApp": cf.GrantExpiryAppProvider,
            "Space": cf.SpaceProvider,
        }
        kind = type_.rsplit(":", 1)[1]
        if kind == "GroupSpaceRole":
            # Its diff asks UAA for the group's members now: a membership change, never a release.
            # Its inputs decide here.
            return None
        return providers[kind]()
    raise AssertionError(f"dynamic resource {type_} {name}: say which provider decides its diff")


@dataclass(frozen=True)
class Change:
    type: str
    name: str
    urn: str
    keys: tuple[str, ...]  # the inputs that differ; ("(computed)",) when a replaced dependency's id reaches it
    replaced: bool
    why: str


def _has_computed(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_computed(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_computed(v) for v in value)
    return value == COMPUTED


def _inputs(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource["inputs"].items() if k != "__provider"}


def changed_resources(before: Plan, after: Plan) -> dict[str, Change]:
    """URN -> what `pulumi up` of `after` over `before` changes (the whole stack: app-level resources too)."""
    out: dict[str, Change] = {}
    for urn in sorted(set(before.resources) | set(after.resources)):
        r0, r1 = before.resources.get(urn), after.resources.get(urn)
        if r0 is None or r1 is None:
            r = r1 or r0
            assert r is not None
            out[urn] = Change(r["type"], r["name"], urn, (), False, "created" if r0 is None else "deleted")
            continue
        old, new = _inputs(r0), _inputs(r1)
        keys = tuple(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))
        provider = dynamic_provider(r1) if r1["type"].startswith("pulumi-python:dynamic") else None
        if provider is not None:
            diff = provider.diff("id", old, new)
            if diff.changes:
                out[urn] = Change(r1["type"], r1["name"], urn, keys or ("(its provider's diff)",), bool(diff.replaces), "the provider's diff")
        elif keys:
            out[urn] = Change(r1["type"], r1["name"], urn, keys, replaces(r1["type"], set(keys), after.registrations[urn].replace_on_changes), "inputs")
    # A replaced resource has a new id: what takes one of its outputs as a (computed) input is updated too.
    grown = True
    while grown:
        grown = False
        for urn, r in after.resources.items():
            if not _has_computed(_inputs(r)) or "(computed)" in (out[urn].keys if urn in out else ()):
                continue
            replaced = [d for d in after.registrations[urn].dependencies if d in out and out[d].replaced]
            if replaced:
                why = f"takes the new id of {out[replaced[0]].name}"
                c = out.get(urn)
                out[urn] = Change(r["type"], r["name"], urn, ("(computed)",), False, why) if c is None else dataclasses.replace(c, keys=(*c.keys, "(computed)"), why=f"{c.why}; {why}")
                grown = True
    return out


# The whole release's changed set, by the name after `<app>-<env>-`, written out: a reviewer reads here
# what a release touches. `followers`: the environment runs 2 or more instances before the release.
def expected_release(target: str, followers: bool, production: bool) -> set[str]:
    if target == "aws":
        # the task definitions (new revisions), the services (new revision, count, per-release tags) and
        # the running-tasks alarm whose threshold follows the count (the leader's stays 1 from 2 up).
        return {"task", "service", "follower-task", "follower-service", "alarm-follower-running-tasks", *RECORDS} if followers else {"task", "service", "alarm-running-tasks", *RECORDS}
    if target == "azure":
        return {"app", "worker", *RECORDS} if followers else {"app", *RECORDS}
    # cloudfoundry: the app, on production too (its GrantExpiry report and the space it owns do not change).
    return {"app", *RECORDS}


# Resources outside `release_types` that a release changes, found by this test and left as they are
# because they are not a per-release tag leak. None today. (CF production's GrantExpiry used to change on
# every up and remove due roles as the deploying identity; it now changes only with its inputs and never
# removes a role on an up: test_cf_grant_expiry_on_a_release.)
KNOWN_EXTRA: dict[tuple[str, str], set[str]] = {}


def scope_problems(scenario: Scenario) -> list[str]:
    """What contradicts the statement for one stack and release: an empty list when it holds."""
    target_obj = scenario.after.deployment.target
    prefix = scenario.after.prefix
    env = scenario.after.prepared.environment
    changed = changed_resources(scenario.before, scenario.after)
    short = {c.name[len(prefix) + 1 :] if c.name.startswith(prefix + "-") else c.name: c for c in changed.values()}
    problems = []
    allowed = set(target_obj.release_types)
    extra = KNOWN_EXTRA.get((scenario.target, env.name), set())
    for name, c in sorted(short.items()):
        if c.type in allowed or name in RECORDS or name in extra:
            continue
        problems.append(f"{c.type} {c.name} changes ({c.why}: {', '.join(c.keys)}), and is not a release type of {target_obj.name}: {target_obj.release_types}")
    if ACTIVITY not in short:
        problems.append(f"the activity record {prefix}-{ACTIVITY} does not change: the release would not be recorded")
    if INTENT not in short:
        problems.append(f"the release intent {prefix}-{INTENT} does not change: nothing would be recorded before the release is applied")
    activity = short.get(ACTIVITY)
    if activity is not None and activity.type != "pulumi-python:dynamic:Resource":
        problems.append(f"{activity.name} is a {activity.type}")
    if not any(c.type in allowed for c in short.values()):
        problems.append("no workload resource changes: the release would not reach what runs")
    if scenario.kind == "release":
        followers = scenario.before.prepared.environment.instances >= 2
        want = expected_release(scenario.target, followers, env.is_production)
        if set(short) != want:
            problems.append(f"the release changes {sorted(short)}, expected exactly {sorted(want)}")
    return problems


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", TARGETS)
def test_a_release_changes_only_the_workload(scenarios, target, kind):
    problems = []
    for env, scenario in scenarios.get(target, kind).items():
        problems += [f"{TARGETS[target]}-{env}: {p}" for p in scope_problems(scenario)]
    assert problems == [], "\n".join(problems)


def test_the_scope_check_catches_release_tags_on_the_database(tmp_path, monkeypatch):
    """The check fails when a target leaks the per-release tags: here the AWS database (and its subnet
    group) get them, as if database.py used ctx.release_tags."""
    from mxinfra_aws import database

    real = database.create

    def leaky(ctx, *args, **kwargs):
        leaked = dataclasses.replace(ctx.prepared, tags=ctx.prepared.release_tags)
        return real(dataclasses.replace(ctx, prepared=leaked), *args, **kwargs)

    monkeypatch.setattr(database, "create", leaky)
    scenario = Scenarios(tmp_path).get("aws", "package")["test"]
    problems = scope_problems(scenario)
    assert any("aws:rds/instance:Instance orders-test-db changes (inputs: tags)" in p for p in problems), problems
    assert any("aws:rds/subnetGroup:SubnetGroup" in p for p in problems), problems


# --- the deploy permission, as rendered in the same plan ----------------------------------------------


@dataclass(frozen=True)
class Call:
    """One API call `pulumi up` makes: for which resource, what action on what, and where that comes from."""

    resource: str  # `<type> <name>`, or `invoke <token>` for the program's own calls
    type: str
    action: str
    target: str  # ARN, ARM id, CAPI path template
    context: tuple[tuple[str, Any], ...] = ()
    basis: str = ""


# --- AWS: the deploy role's inline policy, evaluated with iam_eval -----------------------------------

NEXT_REVISION = "(next revision)"  # the revision number ECS assigns: the policy's `<family>:*` matches any
CURRENT_REVISION = "(current revision)"

# (when, action, resource, basis) per type. `when`: replace = the update is a replacement; update = an
# in-place update of anything but the tags; tags = the tags change in place; any = either.
# Sources: terraform-provider-aws (which the Pulumi AWS provider bridges): internal/service/ecs/
# task_definition.go, service.go, internal/service/cloudwatch/metric_alarm.go, and the transparent
# tagging of every `@Tags` resource, internal/provider/sdkv2/tags_interceptor.go (Before Update: UpdateTags
# -> <service>:TagResource/UntagResource when tags_all changes; After Create/Update/Read: ListTags when
# the resource's Read did not set the tags itself). ECS tag-on-create authorization: RegisterTaskDefinition
# with tags also needs ecs:TagResource, with ecs:CreateAction set.
AWS_API: dict[str, list[tuple[str, str, str, str]]] = {
    TASK_DEFINITION: [
        ("replace", "ecs:RegisterTaskDefinition", "new-revision", "task_definition.go create: RegisterTaskDefinition"),
        ("replace", "ecs:TagResource", "new-revision-created", "create carries the tags: ECS tag-on-create authorization"),
        ("replace", "iam:PassRole", "execution-role", "RegisterTaskDefinition names executionRoleArn"),
        ("replace", "iam:PassRole", "task-role", "RegisterTaskDefinition names taskRoleArn"),
        ("replace-destroy", "ecs:DeregisterTaskDefinition", "current-revision", "task_definition.go delete, skipped with skip_destroy"),
        ("tags", "ecs:TagResource", "current-revision", "tags_interceptor.go UpdateTags (tags are not ForceNew)"),
        ("any", "ecs:DescribeTaskDefinition", "*", "task_definition.go read (DescribeTaskDefinition include TAGS: no ListTags)"),
    ],
    SERVICE: [
        ("update", "ecs:UpdateService", "service", "service.go update: UpdateService with the changed fields"),
        ("tags", "ecs:TagResource", "service", "tags_interceptor.go UpdateTags on the service ARN (@Tags identifierAttribute id)"),
        ("any", "ecs:DescribeServices", "service", "service.go read (DescribeServices include TAGS: no ListTags)"),
    ],
    ALARM: [
        ("update", "cloudwatch:PutMetricAlarm", "alarm", "metric_alarm.go update: PutMetricAlarm (expandPutMetricAlarmInput also sends Tags)"),
        ("tags", "cloudwatch:TagResource", "alarm", "tags_interceptor.go UpdateTags"),
        ("any", "cloudwatch:DescribeAlarms", "alarm", "metric_alarm.go read: DescribeAlarms"),
        ("any", "cloudwatch:ListTagsForResource", "alarm", "tags_interceptor.go After Update: the read sets no tags, so ListTags"),
    ],
}
# The program's own invokes, on every `pulumi up` (test_invoke_tables_cover_the_targets checks the list).
AWS_INVOKES = {"ec2.get_vpc": ("ec2:DescribeVpcs", "*", "network.verified_vpc: the VPC's tier tag and CIDR, before anything is created")}


def _when(when: str, change: Change, inputs: dict[str, Any]) -> bool:
    non_tags = [k for k in change.keys if k not in ("tags", "tagsAll")]
    if when == "any":
        return True
    if when == "replace":
        return change.replaced
    if when == "replace-destroy":
        return change.replaced and not inputs.get("skipDestroy")
    if when == "update":
        return not change.replaced and bool(non_tags)
    if when == "tags":
        return not change.replaced and "tags" in change.keys
    raise AssertionError(when)


def deploy_policy_aws(plan: Plan) -> tuple[dict[str, Any], str]:
    """The deploy role's inline policy document and the role's ARN, from the plan."""
    roles = [r for r in plan.of_type("aws:iam/role:Role") if (r["inputs"].get("tags") or {}).get("mxinfra:permission") == "deploy"]
    assert len(roles) == 1, [r["name"] for r in roles]
    role = roles[0]
    policies = [p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy") if role in plan.dependencies(p)]
    assert len(policies) == 1, [p["name"] for p in policies]
    account = plan.deployment.target_config.accountId
    return json.loads(policies[0]["inputs"]["policy"]), f"arn:aws:iam::{account}:role{role['inputs']['path']}{role['inputs']['name']}"


def aws_calls(scenario: Scenario, changes: list[Change]) -> list[Call]:
    plan = scenario.after
    d = plan.deployment
    from mxinfra_aws.policies import partition_of

    region, account = d.config.block("aws:region"), d.target_config.accountId
    assert partition_of(region) == "aws", region  # the ARNs below are built for the aws partition
    cluster = d.target_config.cluster_name or plan.one("aws:ecs/cluster:Cluster")["inputs"]["name"]
    ecs = f"arn:aws:ecs:{region}:{account}"
    calls = [Call("invoke aws:ec2/getVpc:getVpc", "invoke", "ec2:DescribeVpcs", "*", (("ec2:Region", region),), AWS_INVOKES["ec2.get_vpc"][2])]
    by_urn = {c.urn: c for c in changes}
    for change in changes:
        resource = plan.resources[change.urn]
        inputs = resource["inputs"]
        old_tags, new_tags = (scenario.before.resources[change.urn]["inputs"].get("tags") or {}), (inputs.get("tags") or {})
        changed_tags = sorted(k for k in new_tags if old_tags.get(k) != new_tags[k])
        assert change.type in AWS_API, f"{change.type} {change.name} changes and has no action table: add its API calls"
        for when, action, what, basis in AWS_API[change.type]:
            if not _when(when, change, inputs):
                continue
            ctx: dict[str, Any] = {}
            if change.type == TASK_DEFINITION:
                family = inputs["family"]
                revision = CURRENT_REVISION if what == "current-revision" else NEXT_REVISION
                arn = f"{ecs}:task-definition/{family}:{revision}"
                if what == "*":
                    arn = "*"
                elif action == "ecs:RegisterTaskDefinition":
                    ctx["ecs:compute-compatibility"] = inputs["requiresCompatibilities"]
                elif action == "ecs:TagResource":
                    # on create every tag; in place only the added or changed ones (UpdateTags)
                    ctx["aws:TagKeys"] = sorted(inputs.get("tags") or {}) if what == "new-revision-created" else changed_tags
                    if what == "new-revision-created":
                        ctx["ecs:CreateAction"] = "RegisterTaskDefinition"
                elif action == "iam:PassRole":
                    suffix = "-execution-role" if what == "execution-role" else "-task-role"
                    role = next(r for r in plan.dependencies(resource) if r["type"] == "aws:iam/role:Role" and r["name"].endswith(suffix))
                    arn = f"arn:aws:iam::{account}:role{role['inputs']['path']}{role['inputs']['name']}"
                    ctx["iam:PassedToService"] = "ecs-tasks.amazonaws.com"
            elif change.type == SERVICE:
                arn = f"{ecs}:service/{cluster}/{inputs['name']}"
                if action == "ecs:UpdateService":
                    # Only the changed fields go in the request (service.go): the condition keys of the
                    # unchanged network configuration are absent.
                    replaced = [by_urn[u] for u in plan.registrations[change.urn].dependencies if u in by_urn and by_urn[u].replaced and by_urn[u].type == TASK_DEFINITION]
                    for td in replaced:
                        ctx["ecs:task-definition"] = f"{ecs}:task-definition/{plan.resources[td.urn]['inputs']['family']}:{NEXT_REVISION}"
                elif action == "ecs:TagResource":
                    ctx["aws:TagKeys"] = changed_tags
            else:  # ALARM
                arn = f"arn:aws:cloudwatch:{region}:{account}:alarm:{inputs['name']}"
            calls.append(Call(f"{change.type} {change.name}", change.type, action, arn, tuple(sorted(ctx.items())), basis))
    return calls


def aws_refused(scenario: Scenario, changes: list[Change]) -> tuple[list[Call], list[Call]]:
    doc, _ = deploy_policy_aws(scenario.after)
    calls = aws_calls(scenario, changes)
    return calls, [c for c in calls if not iam_allows(doc, c.action, c.target, dict(c.context))]


# --- Azure: the deploy custom role at its assignments' scope ------------------------------------------

# Per changed type: (action, resource, basis). azure-native updates a resource with the same PUT it
# creates it with (pulumi-azure-native provider: CreateOrUpdate uses PATCH only for resources whose
# UpdateMethod is PATCH, i.e. without a PUT), so ARM receives the whole container app again, with its
# managedEnvironmentId and identity, and runs the linked access checks for them.
AZURE_API: dict[str, list[tuple[str, str, str]]] = {
    CONTAINER_APP: [
        ("Microsoft.App/containerApps/write", "self", "the PUT (documented: Container Apps - Create Or Update)"),
        ("Microsoft.App/containerApps/read", "self", "the provider reads the app back after the long-running PUT"),
        (
            "Microsoft.App/managedEnvironments/join/action",
            "managed-environment",
            "linked access check on properties.managedEnvironmentId, also for an existing app: "
            "microsoft/azure-container-apps#530 (a full PUT without it fails LinkedAuthorizationFailed; open)",
        ),
        (
            "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
            "identity",
            "linked access check on identity.userAssignedIdentities (LinkedAuthorizationFailed on containerApps/write: "
            "Azure/azure-cli-extensions#9990, a create); UNRESOLVED whether ARM repeats it when the identity is unchanged",
        ),
        (
            "Microsoft.App/locations/containerappOperationStatuses/read",
            "operation-status",
            "polling the PUT's Azure-AsyncOperation, at subscription scope: OBSERVED in microsoft/azure-container-apps#215 "
            "(a resource-group-scoped principal refused); not documented. Granted by deploy's second role, "
            "`deploy-status`, assigned (or PIM eligible) at the subscription with only this action (roles.SUBSCRIPTION_ACTIONS)",
        ),
    ],
}
# The program's own invokes on every `pulumi up` (when their inputs are known, i.e. after the first up).
# Not the workspace's shared key: the managed environment's logs go through a diagnostic setting (runtime.py).
AZURE_INVOKES = {
    "storage.list_storage_account_keys": ("Microsoft.Storage/storageAccounts/listKeys/action", "storage-account", "storage.py: account-key file storage only"),
}


def _arm_match(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def arm_allows(definition: dict[str, Any], scopes: list[str], action: str, resource_id: str) -> bool:
    """Azure RBAC for one custom role: some `actions` pattern matches and no `notActions` pattern does
    (case-insensitive, `*` wildcards), and the resource is at or under a scope the role is assigned at."""
    rid = resource_id.lower()
    in_scope = any(rid == s.lower() or rid.startswith(s.lower().rstrip("/") + "/") for s in scopes)
    granted = any(
        any(_arm_match(a, action) for a in p.get("actions", [])) and not any(_arm_match(n, action) for n in p.get("notActions", []))
        for p in definition["permissions"]
    )
    return in_scope and granted


def _role_azure(plan: Plan, name: str) -> tuple[dict[str, Any], list[str], set[str]]:
    """One role definition's inputs, the scopes it is assigned (or PIM-eligible) at, and to whom."""
    (definition,) = [r for r in plan.of_type("azure-native:authorization:RoleDefinition") if r["name"] == f"{plan.prefix}-role-{name}"]
    grants = [
        r
        for t in ("azure-native:authorization:RoleAssignment", "azure-native:authorization:PimRoleEligibilitySchedule")
        for r in plan.of_type(t)
        if definition in plan.dependencies(r)
    ]
    assert grants, f"{plan.prefix}: nobody holds {name}"
    scopes = sorted({g["inputs"]["scope"] for g in grants})
    assignable = definition["inputs"]["assignableScopes"]
    assert set(scopes) <= set(assignable), (scopes, assignable)
    return definition["inputs"], scopes, {g["inputs"]["principalId"] for g in grants}


def deploy_role_azure(plan: Plan) -> list[tuple[dict[str, Any], list[str]]]:
    """The deploy permission's roles as (definition inputs, scopes): the environment's role at its resource
    group, and `deploy-status` at the subscription, held by exactly the same principals."""
    roles = []
    holders = []
    for name in ("deploy", "deploy-status"):
        definition, scopes, principals = _role_azure(plan, name)
        roles.append((definition, scopes))
        holders.append(principals)
    assert holders[0] == holders[1], holders
    return roles


def arm_allows_any(roles: list[tuple[dict[str, Any], list[str]]], action: str, resource_id: str) -> bool:
    """Whether one of a principal's roles (definition, scopes) allows `action` on `resource_id`."""
    return any(arm_allows(definition, scopes, action, resource_id) for definition, scopes in roles)


def azure_ids(plan: Plan) -> dict[str, str]:
    sub = plan.deployment.target_config.subscriptionId
    rg = f"/subscriptions/{sub}/resourceGroups/{plan.named(f'{plan.prefix}-rg')['inputs']['resourceGroupName']}"
    location = plan.one("azure-native:app:ManagedEnvironment")["inputs"]["location"]
    return {
        "rg": rg,
        "managed-environment": f"{rg}/providers/Microsoft.App/managedEnvironments/{plan.one('azure-native:app:ManagedEnvironment')['inputs']['environmentName']}",
        "identity": f"{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{plan.one('azure-native:managedidentity:UserAssignedIdentity')['inputs']['resourceName']}",
        "operation-status": f"/subscriptions/{sub}/providers/Microsoft.App/locations/{location}/containerappOperationStatuses/(operation)",
        "workspace": f"{rg}/providers/Microsoft.OperationalInsights/workspaces/{plan.one('azure-native:operationalinsights:Workspace')['inputs']['workspaceName']}",
        "storage-account": f"{rg}/providers/Microsoft.Storage/storageAccounts/{plan.one('azure-native:storage:StorageAccount')['inputs']['accountName']}",
        "server": f"{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{plan.one('azure-native:dbforpostgresql:Server')['inputs']['serverName']}",
        "vault": f"{rg}/providers/Microsoft.KeyVault/vaults/{plan.one('azure-native:keyvault:Vault')['inputs']['vaultName']}",
    }


def azure_calls(scenario: Scenario, changes: list[Change]) -> list[Call]:
    plan = scenario.after
    ids = azure_ids(plan)
    calls = []
    if not [r for r in plan.of_type("azure-native:authorization:RoleAssignment") if r["name"] == f"{plan.prefix}-identity-files"]:
        action, what, basis = AZURE_INVOKES["storage.list_storage_account_keys"]
        calls.append(Call("invoke azure-native:storage:listStorageAccountKeys", "invoke", action, ids[what], (), basis))
    for change in changes:
        assert change.type in AZURE_API, f"{change.type} {change.name} changes and has no action table: add its API calls"
        app = f"{ids['rg']}/providers/Microsoft.App/containerApps/{plan.resources[change.urn]['inputs']['containerAppName']}"
        for action, what, basis in AZURE_API[change.type]:
            calls.append(Call(f"{change.type} {change.name}", change.type, action, app if what == "self" else ids[what], (), basis))
    return calls


def azure_refused(scenario: Scenario, changes: list[Change]) -> tuple[list[Call], list[Call]]:
    roles = deploy_role_azure(scenario.after)
    calls = azure_calls(scenario, changes)
    return calls, [c for c in calls if not arm_allows_any(roles, c.action, c.target)]


# --- Cloud Foundry: the space role, and the calls the app provider sends -----------------------------

# Permitted roles per CAPI v3 endpoint, from the official documentation's source: cloudfoundry/
# cloud_controller_ng docs/v3/source/includes/resources/<file> ("Permitted roles"), commit 3bbba90
# (2026-08-20). "All Roles": any role in the space or org. Only the endpoints the target calls, and the
# ones the hostile examples try.
CAPI_PERMITTED: dict[str, tuple[tuple[str, ...], str]] = {
    "GET /v3/organizations": (("All Roles",), "organizations/_list.md.erb"),
    "GET /v3/spaces": (("All Roles",), "spaces/_list.md.erb"),
    "GET /v3/apps": (("All Roles",), "apps/_list.md.erb"),
    "GET /v3/apps/:guid": (("Admin", "Admin Read-Only", "Global Auditor", "Org Manager", "Space Auditor", "Space Developer", "Space Manager", "Space Supporter"), "apps/_get.md.erb"),
    "PATCH /v3/apps/:guid": (("Admin", "Space Developer"), "apps/_update.md.erb"),
    "PATCH /v3/apps/:guid/environment_variables": (("Admin", "Space Developer", "Space Supporter"), "apps/_update_environment_variables.md.erb"),
    "GET /v3/apps/:guid/environment_variables": (("Admin", "Admin Read-Only", "Space Developer", "Space Supporter"), "apps/_environment_variables.md.erb"),
    "PATCH /v3/apps/:guid/relationships/current_droplet": (("Admin", "Space Developer", "Space Supporter"), "apps/_current_droplet.md.erb"),
    "GET /v3/apps/:guid/relationships/current_droplet": (("Admin", "Admin Read-Only", "Global Auditor", "Org Manager", "Space Auditor", "Space Developer", "Space Manager", "Space Supporter"), "apps/_get_current_droplet_relationship.md.erb"),
    "POST /v3/apps/:guid/actions/start": (("Admin", "Space Developer", "Space Supporter"), "apps/_start.md.erb"),
    "POST /v3/apps/:guid/actions/stop": (("Admin", "Space Developer", "Space Supporter"), "apps/_stop.md.erb"),
    "GET /v3/apps/:guid/processes/:type": (("Admin", "Admin Read-Only", "Global Auditor", "Org Manager", "Space Auditor", "Space Developer", "Space Manager", "Space Supporter"), "processes/_get.md.erb"),
    "PATCH /v3/processes/:guid": (("Admin", "Space Developer", "Space Supporter"), "processes/_update.md.erb"),
    "POST /v3/processes/:guid/actions/scale": (("Admin", "Space Developer", "Space Supporter"), "processes/_scale.md.erb"),
    "GET /v3/processes/:guid/stats": (("Admin", "Admin Read-Only", "Global Auditor", "Org Manager", "Space Auditor", "Space Developer", "Space Manager", "Space Supporter"), "processes/_stats.md.erb"),
    "POST /v3/packages": (("Admin", "Space Developer"), "packages/_create.md.erb"),
    "POST /v3/packages/:guid/upload": (("Admin", "Space Developer"), "packages/_upload_bits.md.erb"),
    "GET /v3/packages/:guid": (("Admin", "Admin Read-Only", "Global Auditor", "Org Manager", "Space Auditor", "Space Developer", "Space Manager", "Space Supporter"), "packages/_get.md.erb"),
    "POST /v3/builds": (("Admin", "Space Developer", "Space Supporter"), "builds/_create.md.erb"),
    "GET /v3/builds/:guid": (("Admin", "Admin Read-Only", "Global Auditor", "Org Manager", "Space Auditor", "Space Developer", "Space Manager", "Space Supporter"), "builds/_get.md.erb"),
    "POST /v3/deployments": (("Admin", "Space Developer", "Space Supporter"), "deployments/_create.md.erb"),
    "GET /v3/deployments/:guid": (("Admin", "Admin Read-Only", "Global Auditor", "Org Manager", "Space Auditor", "Space Developer", "Space Manager", "Space Supporter"), "deployments/_get.md.erb"),
    "GET /v3/jobs/:guid": (("All Roles",), "jobs/_get.md.erb"),
    "GET /v3/roles": (("All Roles",), "roles/_list.md.erb"),
    "POST /v3/roles": (("Admin", "Org Manager", "Space Manager"), "roles/_create.md.erb"),
    "DELETE /v3/roles/:guid": (("Admin", "Org Manager", "Space Manager"), "roles/_delete.md.erb"),
    "PATCH /v3/spaces/:guid": (("Admin", "Org Manager", "Space Manager"), "spaces/_update.md.erb"),
    "PATCH /v3/service_instances/:guid": (("Admin", "Space Developer"), "service_instances/_update.md.erb"),
    "DELETE /v3/service_instances/:guid": (("Admin", "Space Developer"), "service_instances/_delete.md.erb"),
    "DELETE /v3/routes/:guid": (("Admin", "Space Developer", "Space Supporter"), "routes/_delete.md.erb"),
    "GET /v3/apps/:guid/features/:name": (("All Roles",), "app_features/_get.md.erb"),
    # Space Supporter: "Experimental / Can only update revisions feature" (not ssh)
    "PATCH /v3/apps/:guid/features/:name": (("Admin", "Space Developer"), "app_features/_update.md.erb"),
    "PATCH /v3/spaces/:guid/features/:name": (("Admin", "Org Manager", "Space Manager"), "space_features/_update.md.erb"),
    "POST /v3/spaces": (("Admin", "Org Manager"), "spaces/_create.md.erb"),
    # type key: a service key, credentials outside any app (Space Supporter: "Experimental")
    "POST /v3/service_credential_bindings": (("Admin", "Space Developer", "Space Supporter"), "service_credential_bindings/_create.md.erb"),
    # drift reads the environment's service keys (production's are standing credentials: mxinfra.drift)
    "GET /v3/service_instances": (("All Roles",), "service_instances/_list.md.erb"),
    "GET /v3/service_credential_bindings": (
        ("Admin", "Admin Read-Only", "Global Auditor", "Org Manager", "Space Auditor", "Space Developer", "Space Manager", "Space Supporter"),
        "service_credential_bindings/_list.md.erb",
    ),
    # ... and its instances' shares into other spaces (in the instance's own space; not a Space Supporter)
    "GET /v3/service_instances/:guid/relationships/shared_spaces": (
        ("Admin", "Admin Read-Only", "Global Auditor", "Org Manager", "Space Auditor", "Space Developer", "Space Manager"),
        "service_instances/_list_shared_spaces.md.erb",
    ),
    # Space Supporter: `system_env_json` (VCAP_SERVICES) redacted
    "GET /v3/apps/:guid/env": (("Admin", "Admin Read-Only", "Space Developer"), "apps/_env.md.erb"),
    "POST /v3/apps/:guid/tasks": (("Admin", "Space Developer"), "tasks/_create.md.erb"),
}
SPACE_ROLE_LABEL = {"space_developer": "Space Developer", "space_supporter": "Space Supporter", "space_manager": "Space Manager", "space_auditor": "Space Auditor"}


def capi_permits(role: str, endpoint: str) -> bool:
    assert endpoint in CAPI_PERMITTED, f"{endpoint}: add its permitted roles from the CAPI documentation"
    roles = CAPI_PERMITTED[endpoint][0]
    return "All Roles" in roles or SPACE_ROLE_LABEL[role] in roles


def deploy_role_cf(plan: Plan) -> str:
    """The space role deploy holds: the plan's standing roles outside production; on production the role
    `mxinfra access grant` creates (grants.grant: access.space_role(deploy, deployRole))."""
    from mxinfra.access import Permission
    from mxinfra_cloudfoundry.access import space_role

    granted = space_role(Permission.DEPLOY, plan.deployment.target_config.deployRole)
    standing = {
        r["inputs"]["type"]
        for t in ("pulumi-python:dynamic/cloudfoundry:SpaceRole", "pulumi-python:dynamic/cloudfoundry:GroupSpaceRole")
        for r in plan.of_type(t)
        if r["inputs"].get("permission") == "deploy"
    }
    if plan.prepared.environment.is_production:
        assert standing == set(), standing  # production roles are never standing
    else:
        assert standing == {granted}, standing
    return granted


@pytest.fixture(scope="module")
def capi() -> Iterator[Any]:
    """The CAPI double (validating every request and response against the CAPI 3.195.0 description), with
    client credentials in the environment, as tests/targets/cloudfoundry/conftest.py sets them."""
    from capi_double import serving

    with pytest.MonkeyPatch.context() as mp, serving(mp) as double:
        yield double


def _endpoints(double: Any, requests: list[tuple[str, str]]) -> list[str]:
    """`METHOD /v3/...` templates of the CAPI requests (UAA's token endpoint is the identity logging in)."""
    adapter = double.urls.bind("127.0.0.1")
    out = []
    for method, path in requests:
        rule, _ = adapter.match(path, method=method, return_rule=True)
        if rule.rule in ("/oauth/token", "/"):  # the identity logging in; the API's public root
            continue
        out.append(f"{method} {rule.rule.replace('<guid>', ':guid').replace('<ptype>', ':type').replace('<fname>', ':name')}")
    return out


def _app_props(double: Any, plan: Plan, resource: dict[str, Any], directory: Path) -> dict[str, Any]:
    """The planned app's inputs, placed in the double's space; what only the cloud knows is filled in
    the same way before and after (routes and services are bound already, so no update binds them)."""
    from mxinfra_cloudfoundry.config import buildpack_url

    props = {k: v for k, v in plan.revealed(resource).items() if k != "__provider" and not isinstance(v, Computed)}
    for k in ("orgGuid", "spaceGuid", "guid", "packageGuid", "dropletGuid", "strategy"):
        props.pop(k, None)
    props.update(api=double.url, org="acme", space="orders", routes=[], services=[])
    # The package path is the project's (the engine runs the provider there); the pinned buildpack's
    # download is not a CAPI call (test_cf_provider checks it against the double's release host).
    props["package"] = {**props["package"], "path": str(directory / props["package"]["path"])}
    props["buildpack"] = buildpack_url(props["buildpack"])
    secret = props.get("secretEnvironment")
    if not isinstance(secret, dict):
        props["secretEnvironment"] = {k: "placeholder" for k in props["secretEnvironmentNames"]}
    props["timeouts"] = {"upload": 10, "staging": 10, "start": 10, "job": 10}
    return props


def cf_app_requests(double: Any, scenario: Scenario, change: Change) -> list[str]:
    """Replay: create the app as planned before the release, then update it to the planned release; the
    CAPI endpoints the update sends."""
    from mxinfra_cloudfoundry.provider import AppProvider

    before = _app_props(double, scenario.before, scenario.before.resources[change.urn], scenario.directory)
    after = _app_props(double, scenario.after, scenario.after.resources[change.urn], scenario.directory)
    before["name"] = after["name"] = f"{before['name']}-{scenario.kind}"  # one app per replay
    provider = AppProvider()
    created = provider.create(before)
    double.requests.clear()
    provider.update(created.id, created.outs, after)
    sent = _endpoints(double, list(double.requests))
    provider.delete(created.id, created.outs)
    return sent


def cf_calls(scenario: Scenario, changes: list[Change], double: Any) -> list[Call]:
    calls = []
    for change in changes:
        assert change.type == CF_APP, f"{change.type} {change.name} changes and has no replay: add one"
        for endpoint in cf_app_requests(double, scenario, change):
            calls.append(Call(f"{change.type} {change.name}", change.type, endpoint, endpoint, (), f"AppProvider.update -> CAPI double; {CAPI_PERMITTED.get(endpoint, ('', '?'))[1]}"))
    return calls


def cf_refused(scenario: Scenario, changes: list[Change], double: Any) -> tuple[list[Call], list[Call]]:
    role = deploy_role_cf(scenario.after)
    calls = cf_calls(scenario, changes, double)
    return calls, [c for c in calls if not capi_permits(role, c.action)]


# --- what does not hold today -------------------------------------------------------------------------

# (type, action) refused by the deploy permission, per target and release kind. Each is a call `pulumi up`
# makes for a release, which the deploy identity therefore cannot apply today.
# Azure, closed: managedEnvironments/join/action and userAssignedIdentities/assign/action (roles.py deploy);
# the workspace's sharedKeys/action (the managed environment logs through a diagnostic setting, no
# getSharedKeys invoke); the subscription-scope containerappOperationStatuses/read (deploy's second role,
# deploy-status, at the subscription).
KNOWN_REFUSALS: dict[str, dict[str, set[tuple[str, str]]]] = {
    # Closed: the services carry the stable tags (the release's are on the task definitions, whose
    # tags-only change registers a new revision: replace_on_changes), and the running-tasks alarms'
    # read-back of their tags (cloudwatch:ListTagsForResource) is allowed.
    "aws": {kind: set() for kind in KINDS},
    # Every PUT of a container app carries managedEnvironmentId and the identity (linked checks), and is
    # polled at subscription scope: all granted. See AZURE_API for how certain each is.
    "azure": {kind: set() for kind in KINDS},
    "cloudfoundry": {kind: set() for kind in KINDS},
}
# The finding each target's KNOWN_REFUSALS stand for (none open; Azure's, issue 18, closed above).
FINDINGS: dict[str, str] = {}


def refused_calls(scenario: Scenario, double: Any) -> tuple[list[Call], list[Call], list[Change]]:
    changes = [c for c in changed_resources(scenario.before, scenario.after).values() if not any(c.name.endswith("-" + r) for r in RECORDS)]
    if scenario.target == "aws":
        calls, refused = aws_refused(scenario, changes)
    elif scenario.target == "azure":
        calls, refused = azure_refused(scenario, changes)
    else:
        calls, refused = cf_refused(scenario, changes, double)
    return calls, refused, changes


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", TARGETS)
def test_the_deploy_permission_allows_every_call_of_a_release(scenarios, capi, target, kind):
    report: list[str] = []
    found: set[tuple[str, str]] = set()
    for env, scenario in scenarios.get(target, kind).items():
        calls, refused, changes = refused_calls(scenario, capi)
        assert calls, f"{env}: no call replayed"
        for c in refused:
            found.add((c.type, c.action))
            report.append(f"{TARGETS[target]}-{env}: {c.resource}: {c.action} on {c.target} {dict(c.context) or ''} refused ({c.basis})")
    known = KNOWN_REFUSALS[target][kind]
    unexpected = sorted(found - known)
    fixed = sorted(known - found)
    assert not unexpected and not fixed, f"refused and not known: {unexpected}\nknown and no longer refused (update KNOWN_REFUSALS): {fixed}\n" + "\n".join(report)
    if known:
        pytest.xfail(f"{FINDINGS[target]} (refused: {'; '.join(f'{t} {a}' for t, a in sorted(known))})")


# --- a hostile holder of deploy: the same kind of change, elsewhere -------------------------------------


def test_aws_deploy_cannot_change_what_is_not_the_workload(scenarios):
    for env, scenario in scenarios.get("aws", "release").items():
        plan = scenario.after
        doc, deploy_arn = deploy_policy_aws(plan)
        d = plan.deployment
        region, account = d.config.block("aws:region"), d.target_config.accountId
        db = plan.one("aws:rds/instance:Instance")["inputs"]["identifier"]
        db_arn = f"arn:aws:rds:{region}:{account}:db:{db}"
        cluster = plan.one("aws:ecs/cluster:Cluster")["inputs"]["name"]
        secret = plan.one("aws:secretsmanager/secret:Secret")["inputs"]["name"]
        hostile = [
            ("rds:ModifyDBInstance", db_arn, {}),  # the database's size, backups, protection
            ("rds:AddTagsToResource", db_arn, {"aws:TagKeys": ["mxinfra:package-sha256"]}),  # the release tags on the database
            ("ec2:CreateTags", f"arn:aws:ec2:{region}:{account}:security-group/sg-0123456789abcdef0", {"aws:TagKeys": ["mxinfra:package-sha256"]}),
            ("ec2:AuthorizeSecurityGroupIngress", f"arn:aws:ec2:{region}:{account}:security-group/sg-0123456789abcdef0", {}),
            ("iam:PutRolePolicy", deploy_arn, {}),  # widening its own policy
            ("ecs:TagResource", f"arn:aws:ecs:{region}:{account}:cluster/{cluster}", {"aws:TagKeys": ["mxinfra:package-sha256"]}),
            ("secretsmanager:PutSecretValue", f"arn:aws:secretsmanager:{region}:{account}:secret:{secret}-AbCdEf", {}),
            ("ecs:DeregisterTaskDefinition", f"arn:aws:ecs:{region}:{account}:task-definition/{plan.prefix}:1", {}),
        ]
        allowed = [(a, r) for a, r, ctx in hostile if iam_allows(doc, a, r, ctx)]
        assert allowed == [], f"{env}: {allowed}"


def test_azure_deploy_cannot_change_what_is_not_the_workload(scenarios):
    for env, scenario in scenarios.get("azure", "release").items():
        plan = scenario.after
        roles = deploy_role_azure(plan)
        ids = azure_ids(plan)
        sub = ids["rg"].split("/resourceGroups/")[0]
        app = f"{ids['rg']}/providers/Microsoft.App/containerApps/{plan.prefix}"
        other_rg = ids["rg"].replace(f"/{plan.prefix}-rg", "/orders-other-rg")
        other_app = f"{other_rg}/providers/Microsoft.App/containerApps/{plan.prefix}"
        hostile = [
            ("Microsoft.Authorization/roleAssignments/write", f"{ids['rg']}/providers/Microsoft.Authorization/roleAssignments/00000000-0000-4000-8000-000000000000"),
            ("Microsoft.DBforPostgreSQL/flexibleServers/write", ids["server"]),
            ("Microsoft.App/managedEnvironments/write", ids["managed-environment"]),  # e.g. the release tags on the environment
            ("Microsoft.KeyVault/vaults/write", ids["vault"]),
            ("Microsoft.Storage/storageAccounts/write", ids["storage-account"]),
            ("Microsoft.App/containerApps/listSecrets/action", app),  # the apps' secrets (NotActions)
            ("Microsoft.OperationalInsights/workspaces/sharedKeys/action", ids["workspace"]),  # the logs' key
            # deploy-status is at the subscription: nothing of it beyond the operation statuses
            ("Microsoft.Authorization/roleAssignments/write", f"{sub}/providers/Microsoft.Authorization/roleAssignments/00000000-0000-4000-8000-000000000000"),
            ("Microsoft.App/containerApps/read", other_app),
            ("Microsoft.App/containerApps/listSecrets/action", other_app),
            ("Microsoft.App/locations/managedEnvironmentOperationStatuses/read", ids["operation-status"].replace("containerappOperationStatuses", "managedEnvironmentOperationStatuses")),
        ]
        allowed = [(a, r) for a, r in hostile if arm_allows_any(roles, a, r)]
        assert allowed == [], f"{env}: {allowed}"
        # and what it may change stays within the environment's resource group
        assert not arm_allows_any(roles, "Microsoft.App/containerApps/write", other_app)
        # the one subscription-wide action is the operation-status read
        (wide,) = [(d, s) for d, s in roles if s == [sub]]
        assert [a for p in wide[0]["permissions"] for a in p["actions"] + p["notActions"]] == ["Microsoft.App/locations/containerappOperationStatuses/read"]


# What `deploy` may still do in production's space to what is not the workload. A release uploads a
# package (POST /v3/packages and its upload: Admin and Space Developer only), so Cloud Foundry has no role
# narrower than space_developer that can release; on production that role exists only while a grant lasts
# (`mxinfra access grant`, 8 hours at most), and within it the space is the boundary: a space developer
# can change or delete the service instances and the route (Pulumi `protect` guards only what `pulumi`
# does), create a service key (the database's credentials), read the app's variables (ADMIN_PASSWORD, the
# licence key, secret constants) and its VCAP_SERVICES, run a task in the app's container, and switch the
# app's SSH feature back on, which gives no SSH while the space disallows it: `cf ssh` needs the space's
# and the app's SSH allowed, and only a Space or Org Manager may allow it on the space. Platform limits,
# written out in targets/cloudfoundry/README.md ("What deploy can still do on production").
KNOWN_CF_EXPOSED = {
    "PATCH /v3/service_instances/:guid",
    "DELETE /v3/service_instances/:guid",
    "DELETE /v3/routes/:guid",
    "POST /v3/service_credential_bindings",
    "GET /v3/apps/:guid/environment_variables",
    "GET /v3/apps/:guid/env",
    "POST /v3/apps/:guid/tasks",
    "PATCH /v3/apps/:guid/features/:name",
}
# What deploy may not: roles (its own grant's expiry included), the space, its SSH setting, other spaces.
CF_REFUSED_TO_DEPLOY = ["POST /v3/roles", "DELETE /v3/roles/:guid", "PATCH /v3/spaces/:guid", "PATCH /v3/spaces/:guid/features/:name", "POST /v3/spaces"]


def test_cf_deploy_cannot_change_what_is_not_the_workload(scenarios):
    for env, scenario in scenarios.get("cloudfoundry", "release").items():
        plan = scenario.after
        role = deploy_role_cf(plan)
        hostile = [*CF_REFUSED_TO_DEPLOY, *sorted(KNOWN_CF_EXPOSED)]
        permitted = {e for e in hostile if capi_permits(role, e)}
        assert permitted == KNOWN_CF_EXPOSED, f"{env} ({role}): {sorted(permitted)}"
        if plan.prepared.environment.is_production:
            # no SSH: the app's feature off, and the space (the target creates production's) disallows it,
            # which only a Space or Org Manager could change; the space outlives a destroy
            app = plan.one(CF_APP)
            assert app["inputs"]["ssh"] is False
            space = plan.one("pulumi-python:dynamic/cloudfoundry:Space")
            assert space["inputs"]["allowSsh"] is False and space["options"] == {"protect": True, "retainOnDelete": True}
            assert space["inputs"]["name"] == app["inputs"]["space"]
            assert not capi_permits(role, "PATCH /v3/spaces/:guid/features/:name")


def test_cf_grant_expiry_on_a_release(scenarios, capi, monkeypatch):
    """A release leaves CF production's GrantExpiry alone (time passing is no change); an up that does
    update it reads the log and removes nothing, even with a grant due, so the release manager's up never
    sends DELETE /v3/roles/:guid (which space_developer may not). The expiry still happens: the expiry app
    removes the due role on its own schedule, as the Space Manager identity it was given."""
    from mxinfra_cloudfoundry import expiry, grants
    from mxinfra_cloudfoundry.capi import Client
    from mxinfra_cloudfoundry.provider import GrantExpiryProvider

    scenario = scenarios.get("cloudfoundry", "release")["production"]
    plan = scenario.after
    changes = changed_resources(scenario.before, scenario.after)
    assert [c for c in changes.values() if c.type == CF_GRANTS] == []
    role = deploy_role_cf(plan)
    cfg = plan.deployment.target_config
    space = cfg.space_of("production", "production")[0]
    if not any(s["name"] == space for s in capi.objects["spaces"].values()):
        capi._add("spaces", name=space, org=capi.org_guid)
    report = plan.one(CF_GRANTS)
    props = {**{k: v for k, v in report["inputs"].items() if k != "__provider"}, "api": capi.url}
    principal = next(g.principal for g in plan.prepared.access.grants if g.permission.value == "deploy")
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)
    g = grants.grant(scenario.directory, plan.stack, principal, "deploy", "1h", client=Client.from_environment(capi.url), now=past)
    assert g["role"] == role

    monkeypatch.chdir(scenario.directory)  # where the engine runs the providers (relative repository input)
    capi.requests.clear()
    out = GrantExpiryProvider().update("grants-production", props, props)
    assert _endpoints(capi, list(capi.requests)) == []
    assert out.outs["dueGrants"] == [g["id"]] and g["id"] in capi.objects["roles"]  # reported, not removed

    settings = expiry.Settings(
        api=capi.url,
        where={"org": "acme", "space": space},
        environment="production",
        app=plan.deployment.config.app.name,
        repository=props["repository"],
        trust=tuple(props["trust"]),
        signer="file:.mxinfra/keys/dev-signing.pem",  # the example's file:// repository: its development key
    )
    capi.requests.clear()
    done = expiry.run_once(settings, base_dir=scenario.directory)
    sent = _endpoints(capi, list(capi.requests))
    assert [x["id"] for x in done.removed] == [g["id"]] and g["id"] not in capi.objects["roles"]
    assert "DELETE /v3/roles/:guid" in sent and not capi_permits(role, "DELETE /v3/roles/:guid")
    assert [e for e in sent if not capi_permits("space_manager", e)] == []  # all the expiry app needs: Space Manager


# --- the tables cover the targets ---------------------------------------------------------------------


def test_invoke_tables_cover_the_targets():
    """Every invoke a target's program makes on each up is in its table (a new one fails here)."""
    pattern = re.compile(r"\b(?:aws|azure)\.(\w+)\.((?:get|list)_\w+?)(?:_output)?\(")
    found = {}
    for target in ("aws", "azure"):
        source = "".join(p.read_text() for p in sorted((ROOT / "targets" / target / f"mxinfra_{target}").glob("*.py")))
        found[target] = {f"{m[0]}.{m[1]}" for m in pattern.findall(source)}
    assert found == {"aws": set(AWS_INVOKES), "azure": set(AZURE_INVOKES)}

