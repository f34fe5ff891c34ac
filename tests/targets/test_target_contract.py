"""The conformance suite: every installed target keeps the core's production rules (mxinfra.capabilities).

For each target registered under the `mxinfra.targets` entry point:
1. It declares a capability table (`Target.capabilities`) that maps every permission; the core refused it
   at import time otherwise.
2. A hostile stack (the target's example production stack, with one principal granted every permission
   the target maps, on every environment) is planned offline, and each rendered grant (IAM role policy,
   Azure role definition at its scopes, Kubernetes Role, Cloud Foundry space role) is probed with the
   cloud's own operations: what it allows must be within what the table declares for that tier. The
   probes are this file's, not the target's: a target that widens a policy fails here.
3. Production grants a person holds are never standing where the target offers time-boxed elevation,
   and need MFA and at most 8 hours; production data is protected from deletion; every resource is a
   child of the environment's component and named with its prefix;.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
for _helpers in (HERE / "aws", HERE / "cloudfoundry"):
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))

from iam_eval import allows as iam_allows  # noqa: E402
from scaffold import copy_example, record_deploy  # noqa: E402

from mxinfra.access import Permission  # noqa: E402
from mxinfra.capabilities import PRODUCTION_FORBIDDEN, Capability, CapabilityTable, NotGranted  # noqa: E402
from mxinfra.plan import run_plan  # noqa: E402
from mxinfra.stackfile import _load_yaml  # noqa: E402
from mxinfra.target import ENTRY_POINT_GROUP, load_target  # noqa: E402

pytestmark = pytest.mark.slow

INSTALLED = sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))
STACK_PREFIX = {"aws": "aws-", "azure": "azure-", "cloudfoundry": "cf-", "kubernetes": ""}
EIGHT_HOURS = 8 * 3600
C = Capability


def test_the_four_targets_are_installed():
    """The suite runs over what is installed; here all four are (a target dropped from ./dev would pass silently)."""
    assert INSTALLED == ["aws", "azure", "cloudfoundry", "kubernetes"]


@pytest.mark.parametrize("name", INSTALLED)
def test_every_target_declares_every_permission(name):
    table = load_target(name).capabilities
    assert isinstance(table, CapabilityTable), f"{name}: Target.capabilities is not declared (mxinfra.capabilities.declare_capabilities)"
    assert set(table.entries) == set(Permission)
    limits = {(lim.permission, lim.capability) for lim in table.limits}
    for perm in Permission:
        prod = table.granted(perm, production=True)
        assert {c for c in prod & PRODUCTION_FORBIDDEN if (perm, c) not in limits} == set(), perm
    # a stated platform limit is part of what the permission grants, not a hidden extra
    assert all(cap in table.granted(perm, production=True) for perm, cap in limits), table.limits


# --- plans ----------------------------------------------------------------------------------------------


@dataclass
class Planned:
    target: str
    env: str
    production: bool
    result: Any

    @property
    def resources(self) -> list[dict[str, Any]]:
        return self.result.resources()

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == type_]

    def one(self, type_: str) -> dict[str, Any]:
        (r,) = self.of_type(type_)
        return r

    @property
    def deployment(self) -> Any:
        return self.result.deployment

    @property
    def prefix(self) -> str:
        (p,) = self.deployment.environments
        return p.naming.prefix

    def depends(self, resource: dict[str, Any], on: dict[str, Any]) -> bool:
        reg = {r.urn: r for r in self.result.registrations}[resource["urn"]]
        return on["urn"] in reg.dependencies


def _hostile(target: str, doc: dict[str, Any]) -> None:
    """One principal of the stack's own form holds every permission the target maps, on every environment."""
    table = load_target(target).capabilities
    assert table is not None
    config = doc["config"]
    entries = config["mxinfra:access"]
    mapped = [p.value for p in Permission if not isinstance(table.entries[p], NotGranted)]
    entries.append({"principal": entries[0]["principal"], "environments": ["*"], "permissions": mapped, "allowOnProduction": True})


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Planned]:
    cache: dict[tuple[str, str], Planned] = {}

    def get(target: str, env: str) -> Planned:
        if (target, env) not in cache:
            directory = copy_example(tmp_path_factory.mktemp(f"contract-{target}-{env}") / "project")
            stack = f"{STACK_PREFIX[target]}{env}"
            record_deploy(directory, f"{STACK_PREFIX[target]}acceptance")
            path = directory / "stacks" / f"Pulumi.{stack}.yaml"
            doc = _load_yaml(path)
            _hostile(target, doc)
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            result = run_plan(directory, stack)
            assert not result.gate_issues, [str(i) for i in result.gate_issues]
            (prepared,) = result.deployment.environments
            cache[(target, env)] = Planned(target, env, prepared.environment.is_production, result)
        return cache[(target, env)]

    return get


# --- probes: the cloud's own operations, per capability -------------------------------------------------


@dataclass
class Grant:
    """One rendered grant and the question "may its holder perform this probe?"."""

    permission: Permission
    allows: Callable[[Any], bool]


def _observed(grant: Grant, probes: dict[Capability, list[Any]]) -> set[Capability]:
    return {cap for cap, ps in probes.items() if any(grant.allows(p) for p in ps)}


# AWS: the role's inline policy, every Allow taken at its widest (a hostile holder meets any condition it
# can set, such as tags on the request); an unconditional Deny still wins.
def _aws_widest(doc: dict[str, Any]) -> dict[str, Any]:
    stmts = []
    for s in doc["Statement"]:
        if s["Effect"] == "Allow":
            stmts.append({k: v for k, v in s.items() if k != "Condition"})
        elif "Condition" not in s:
            stmts.append(s)
    return {"Version": doc.get("Version", "2012-10-17"), "Statement": stmts}


def aws_grants(p: Planned) -> tuple[list[Grant], dict[Capability, list[Any]]]:
    d = p.deployment
    region, account = d.config.block("aws:region"), d.target_config.accountId
    arn = lambda svc, res: f"arn:aws:{svc}:{region}:{account}:{res}"  # noqa: E731
    db = p.one("aws:rds/instance:Instance")["inputs"]["identifier"]
    cluster = p.one("aws:ecs/cluster:Cluster")["inputs"]["name"]
    services = [r["inputs"]["name"] for r in p.of_type("aws:ecs/service:Service")]
    secret = p.one("aws:secretsmanager/secret:Secret")["inputs"]["name"]
    bucket = p.one("aws:s3/bucketV2:BucketV2")["inputs"]["bucket"] if p.of_type("aws:s3/bucketV2:BucketV2") else p.one("aws:s3/bucket:Bucket")["inputs"]["bucket"]
    probes: dict[Capability, list[Any]] = {
        C.RELEASE: [("ecs:UpdateService", arn("ecs", f"service/{cluster}/{s}")) for s in services],
        C.READ_SECRETS: [("secretsmanager:GetSecretValue", arn("secretsmanager", f"secret:{secret}-AbCdEf"))],
        C.WRITE_SECRETS: [("secretsmanager:PutSecretValue", arn("secretsmanager", f"secret:{secret}-AbCdEf"))],
        C.SHELL: [("ecs:ExecuteCommand", arn("ecs", f"cluster/{cluster}")), ("ecs:ExecuteCommand", arn("ecs", f"task/{cluster}/0123456789abcdef"))],
        C.BACKUP: [("rds:CreateDBSnapshot", arn("rds", f"db:{db}"))]
        + [("backup:StartBackupJob", arn("backup", f"backup-vault:{v['inputs']['name']}")) for v in p.of_type("aws:backup/vault:Vault")],
        C.RESTORE: [("rds:RestoreDBInstanceToPointInTime", arn("rds", f"db:{db}-restored"))]
        + [("backup:StartRestoreJob", arn("backup", "recovery-point:0123abcd-4567-89ef-0123-456789abcdef")) for _ in p.of_type("aws:backup/vault:Vault")],
        C.DELETE_DATA: [("rds:DeleteDBInstance", arn("rds", f"db:{db}")), ("s3:DeleteBucket", f"arn:aws:s3:::{bucket}"), ("s3:DeleteObject", f"arn:aws:s3:::{bucket}/model/x")],
        C.EDIT_ALERTS: [("cloudwatch:DeleteAlarms", arn("cloudwatch", f"alarm:{p.prefix}-x")), ("sns:Subscribe", arn("sns", f"{p.prefix}-alerts"))],
        C.GRANT: [(a, f"arn:aws:iam::{account}:role/mxinfra/{p.prefix}-deploy") for a in ("iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:UpdateAssumeRolePolicy")]
        + [("iam:CreateRole", f"arn:aws:iam::{account}:role/x")],
        C.OBSERVE: [("logs:GetLogEvents", arn("logs", f"log-group:/mxinfra/{p.prefix}:log-stream:x")), ("ecs:DescribeServices", arn("ecs", f"service/{cluster}/{services[0]}"))],
    }
    grants = []
    for role in p.of_type("aws:iam/role:Role"):
        perm = (role["inputs"].get("tags") or {}).get("mxinfra:permission")
        if perm is None:
            continue
        policies = [r for r in p.of_type("aws:iam/rolePolicy:RolePolicy") if p.depends(r, role)]
        attached = [r for r in p.resources if r["type"].startswith("aws:iam/rolePolicyAttachment") and p.depends(r, role)]
        assert len(policies) == 1 and not attached, (role["name"], [r["name"] for r in policies + attached])
        doc = _aws_widest(json.loads(policies[0]["inputs"]["policy"]))
        grants.append(Grant(Permission(perm), lambda probe, doc=doc: iam_allows(doc, probe[0], probe[1], {})))
    return grants, probes


# Azure: each custom role definition at the scopes it is assigned or PIM-eligible at; the built-in roles
# by their published actions.
BUILTIN_ACTIONS = {"acdd72a7-3385-48ef-bd42-f606fba81ae7": {"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}}


def _arm(patterns: Iterable[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), x.lower()) for x in patterns)


def azure_grants(p: Planned) -> tuple[list[Grant], dict[Capability, list[Any]]]:
    sub = p.deployment.target_config.subscriptionId
    rg = f"/subscriptions/{sub}/resourceGroups/{p.one('azure-native:resources:ResourceGroup')['inputs']['resourceGroupName']}"
    name = lambda t, key: p.one(t)["inputs"][key]  # noqa: E731
    app = f"{rg}/providers/Microsoft.App/containerApps/{p.prefix}"
    server = f"{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{name('azure-native:dbforpostgresql:Server', 'serverName')}"
    storage = f"{rg}/providers/Microsoft.Storage/storageAccounts/{name('azure-native:storage:StorageAccount', 'accountName')}"
    vault = f"{rg}/providers/Microsoft.KeyVault/vaults/{name('azure-native:keyvault:Vault', 'vaultName')}"
    workspace = f"{rg}/providers/Microsoft.OperationalInsights/workspaces/{name('azure-native:operationalinsights:Workspace', 'workspaceName')}"
    backup_vaults = [f"{rg}/providers/Microsoft.DataProtection/backupVaults/{v['inputs']['vaultName']}" for v in p.of_type("azure-native:dataprotection:BackupVault")]
    probes: dict[Capability, list[Any]] = {
        C.RELEASE: [("Microsoft.App/containerApps/write", app, False)],
        C.READ_SECRETS: [
            ("Microsoft.App/containerApps/listSecrets/action", app, False),
            ("Microsoft.OperationalInsights/workspaces/sharedKeys/action", workspace, False),
            ("Microsoft.Storage/storageAccounts/listKeys/action", storage, False),
            ("Microsoft.KeyVault/vaults/secrets/getSecret/action", f"{vault}/secrets/admin-password", True),
        ],
        C.WRITE_SECRETS: [("Microsoft.KeyVault/vaults/secrets/setSecret/action", f"{vault}/secrets/admin-password", True)],
        C.BACKUP: [("Microsoft.DBforPostgreSQL/flexibleServers/backups/write", f"{server}/backups/x", False)]
        + [("Microsoft.DataProtection/backupVaults/backupInstances/backup/action", f"{bv}/backupInstances/x", False) for bv in backup_vaults],
        C.RESTORE: [("Microsoft.Storage/storageAccounts/restoreBlobRanges/action", storage, False)]
        + [("Microsoft.DataProtection/backupVaults/backupInstances/restore/action", f"{bv}/backupInstances/x", False) for bv in backup_vaults],
        C.DELETE_DATA: [("Microsoft.DBforPostgreSQL/flexibleServers/delete", server, False), ("Microsoft.Storage/storageAccounts/delete", storage, False)],
        C.EDIT_ALERTS: [("Microsoft.Insights/metricAlerts/write", f"{rg}/providers/Microsoft.Insights/metricAlerts/x", False)],
        C.GRANT: [
            ("Microsoft.Authorization/roleAssignments/write", f"{rg}/providers/Microsoft.Authorization/roleAssignments/00000000-0000-4000-8000-000000000000", False),
            ("Microsoft.Authorization/roleDefinitions/write", f"{rg}/providers/Microsoft.Authorization/roleDefinitions/x", False),
        ],
        C.OBSERVE: [("Microsoft.App/containerApps/read", app, False)],
    }
    grants = []
    definitions = {r["urn"]: r for r in p.of_type("azure-native:authorization:RoleDefinition")}
    for t in ("azure-native:authorization:RoleAssignment", "azure-native:authorization:PimRoleEligibilitySchedule"):
        for g in p.of_type(t):
            perm = next((x for x in Permission if g["name"].startswith(f"{p.prefix}-") and f"-{x.value}" in g["name"][len(p.prefix) :]), None)
            if perm is None:
                continue
            scope = g["inputs"]["scope"]
            owned = [d for d in definitions.values() if p.depends(g, d)]
            if owned:
                (d,) = owned
                perms = d["inputs"]["permissions"]
            else:
                guid = str(g["inputs"]["roleDefinitionId"]).rsplit("/", 1)[-1]
                assert guid in BUILTIN_ACTIONS, f"{g['name']}: built-in role {guid}: add its published actions"
                perms = [BUILTIN_ACTIONS[guid]]

            def allows(probe: Any, perms: Any = perms, scope: str = scope) -> bool:
                action, rid, data = probe
                if not (rid.lower() == scope.lower() or rid.lower().startswith(scope.lower().rstrip("/") + "/")):
                    return False
                yes, no = ("dataActions", "notDataActions") if data else ("actions", "notActions")
                return any(_arm(x.get(yes, []), action) and not _arm(x.get(no, []), action) for x in perms)

            grants.append(Grant(perm, allows))
    return grants, probes


# Kubernetes: each Role's rules, as the API server's RBAC authorizer matches them. Creating a pod (or
# anything that makes pods) runs any command with any Secret of the namespace mounted.
def _rbac_allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str | None) -> bool:
    for r in rules:
        if not (set(r.get("apiGroups", [])) & {group, "*"} and set(r.get("resources", [])) & {resource, "*"} and set(r.get("verbs", [])) & {verb, "*"}):
            continue
        names = r.get("resourceNames") or []
        if not names or (name is not None and verb != "create" and name in names):
            return True
    return False


POD_MAKERS = [("", "pods", "create"), ("batch", "jobs", "create"), ("batch", "cronjobs", "create"), ("apps", "deployments", "create"), ("apps", "statefulsets", "create"), ("apps", "daemonsets", "create"), ("apps", "replicasets", "create"), ("", "pods/exec", "create"), ("", "pods/attach", "create")]


def kubernetes_grants(p: Planned) -> tuple[list[Grant], dict[Capability, list[Any]]]:
    workload = p.prefix
    probes: dict[Capability, list[Any]] = {
        C.RELEASE: [("apps", "statefulsets", "patch", workload), ("privatecloud.mendix.com", "mendixapps", "patch", workload)],
        C.READ_SECRETS: [("", "secrets", v, None) for v in ("get", "list", "watch")] + [(g, r, v, None) for g, r, v in POD_MAKERS],
        C.SHELL: [(g, r, v, None) for g, r, v in POD_MAKERS],
        C.WRITE_SECRETS: [("", "secrets", "patch", None), ("", "secrets", "update", None)],
        C.BACKUP: [("batch", "jobs", "create", None)],
        C.RESTORE: [("batch", "jobs", "create", None)],
        C.DELETE_DATA: [("", "persistentvolumeclaims", "delete", None), ("apps", "statefulsets", "delete", None), ("", "namespaces", "delete", None)],
        C.GRANT: [("rbac.authorization.k8s.io", r, v, None) for r in ("roles", "rolebindings") for v in ("create", "update", "patch", "bind", "escalate")],
        C.OBSERVE: [("", "pods/log", "get", None), ("", "pods", "list", None), ("apps", "statefulsets", "get", workload)],
    }
    grants = []
    for role in p.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role"):
        perm = (role["inputs"]["metadata"].get("annotations") or {}).get("mxinfra.io/permission")
        if perm is None:
            continue
        rules = role["inputs"]["rules"]
        grants.append(Grant(Permission(perm), lambda probe, rules=rules: _rbac_allows(rules, *probe)))
    return grants, probes


# Cloud Foundry: the space role of each grant, against the Cloud Controller's permitted roles per endpoint
# (the documentation's table in tests/targets/test_release_scope.py).
def cloudfoundry_grants(p: Planned) -> tuple[list[Grant], dict[Capability, list[Any]]]:
    from test_release_scope import capi_permits

    from mxinfra_cloudfoundry.access import space_role

    probes: dict[Capability, list[Any]] = {
        C.RELEASE: ["POST /v3/packages", "PATCH /v3/apps/:guid/relationships/current_droplet", "POST /v3/processes/:guid/actions/scale"],
        C.READ_SECRETS: ["GET /v3/apps/:guid/environment_variables"],
        C.WRITE_SECRETS: ["PATCH /v3/apps/:guid/environment_variables"],
        C.DELETE_DATA: ["DELETE /v3/service_instances/:guid"],
        C.GRANT: ["POST /v3/roles", "DELETE /v3/roles/:guid"],
        C.OBSERVE: ["GET /v3/processes/:guid/stats"],
    }
    grants = []
    cfg = p.deployment.target_config
    (prepared,) = p.deployment.environments
    if p.production:
        # Production roles are never standing: `mxinfra access grant` creates the permission's space role.
        standing = [r for t in ("SpaceRole", "GroupSpaceRole") for r in p.of_type(f"pulumi-python:dynamic/cloudfoundry:{t}")]
        assert standing == [], [r["name"] for r in standing]
        for role in prepared.access.roles():
            try:
                name = space_role(role.permission, cfg.deployRole, production=True)
            except KeyError:
                continue
            grants.append(Grant(role.permission, lambda e, name=name: capi_permits(name, e)))
    else:
        for t in ("SpaceRole", "GroupSpaceRole"):
            for r in p.of_type(f"pulumi-python:dynamic/cloudfoundry:{t}"):
                grants.append(Grant(Permission(r["inputs"]["permission"]), lambda e, name=r["inputs"]["type"]: capi_permits(name, e)))
    return grants, probes


GRANTS = {"aws": aws_grants, "azure": azure_grants, "kubernetes": kubernetes_grants, "cloudfoundry": cloudfoundry_grants}


@pytest.mark.parametrize("env", ["test", "production"])
@pytest.mark.parametrize("name", INSTALLED)
def test_rendered_grants_stay_within_the_declared_capabilities(planned, name, env):
    assert name in GRANTS, f"{name}: the conformance suite has no probes for this target's grants; add them"
    p = planned(name, env)
    table = load_target(name).capabilities
    assert table is not None
    grants, probes = GRANTS[name](p)
    assert grants, f"{name}-{env}: no grant rendered"
    seen = {g.permission for g in grants}
    problems = []
    for perm in Permission:
        wanted = table.granted(perm, p.production)
        if perm in {r.permission for r in p.deployment.environments[0].access.roles()} and wanted and perm not in seen:
            problems.append(f"{perm.value}: declared {sorted(c.value for c in wanted)} but nothing rendered")
        if isinstance(table.entries[perm], NotGranted) and perm in seen:
            problems.append(f"{perm.value}: declared not granted, yet rendered")
    for g in grants:
        observed = _observed(g, probes)
        beyond = observed - table.granted(g.permission, p.production)
        if beyond:
            problems.append(f"{g.permission.value} ({'production' if p.production else 'other tiers'}): the rendered grant also allows {', '.join(sorted(c.value for c in beyond))}")
        if p.production:
            forbidden = observed & PRODUCTION_FORBIDDEN - {lim.capability for lim in table.limits if lim.permission is g.permission}
            if forbidden:
                problems.append(f"{g.permission.value}: production grant allows {', '.join(sorted(c.value for c in forbidden))}")
        if C.RELEASE in observed and g.permission is not Permission.DEPLOY:
            problems.append(f"{g.permission.value}: changes what runs, which only deploy may")
        if C.RESTORE in observed and g.permission is not Permission.BACKUPS:
            problems.append(f"{g.permission.value}: restores over data, which only backups may")
        if C.GRANT in observed and g.permission is not Permission.MANAGE:
            problems.append(f"{g.permission.value}: creates grants, which only manage may (and never on production)")
    assert not problems, f"{name}-{env}:\n" + "\n".join(sorted(set(problems)))


@pytest.mark.parametrize("name", INSTALLED)
def test_production_data_is_protected_and_resources_are_the_environments(planned, name):
    p = planned(name, "production")
    data_types = ("aws:rds/instance:Instance", "aws:s3/bucketV2:BucketV2", "aws:s3/bucket:Bucket", "azure-native:dbforpostgresql:Server", "azure-native:storage:StorageAccount", "kubernetes:core/v1:PersistentVolumeClaim", "pulumi-python:dynamic/cloudfoundry:ServiceInstance")
    data = [r for r in p.resources if r["type"] in data_types or r["type"].endswith(":CfServiceInstance")]
    assert data or name == "kubernetes", f"{name}: no data resource found on production"
    unprotected = [r["name"] for r in data if not (r.get("options") or {}).get("protect")]
    assert unprotected == [], f"{name}: production data without protect: {unprotected}"
    components = [r for r in p.resources if r["type"] == "mxinfra:index:MendixEnvironment"]
    assert len(components) == 1
    app = p.deployment.config.app.name
    by_urn = {r["urn"]: r for r in p.resources}
    for r in p.resources:
        if r["type"].startswith("mxinfra:index:") or r["type"].startswith("pulumi:providers:"):
            continue
        chain, cur = [], r
        while cur is not None and not cur["type"].startswith("mxinfra:index:"):
            chain.append(cur["name"])
            cur = by_urn.get(cur["parent"])
        assert cur is not None, f"{name}: {r['name']} is not a child of the app's components ({' <- '.join(chain)})"
        # an environment's resources carry its prefix; what the app's environments share, the app's name
        prefix = p.prefix if cur["type"] == "mxinfra:index:MendixEnvironment" else app
        assert r["name"].startswith(prefix + "-"), f"{name}: {r['name']} is not named with the prefix {prefix!r} of {cur['name']}"


# --- tier isolation and names ---------------------------------------------------------------------------

# Where an environment lives, per target: the keys of its block a test-tier stack could point at
# production's (a network, a namespace, a space). Each must be refused (issue 19: F2, F3, F14).
PLACEMENT = {
    "aws": ("vpcId", "vpcCidr", "vpcTags", "subnetIds", "loadBalancerSubnetIds"),
    "azure": ("vnetId", "networkTier", "infrastructureSubnetId", "databaseSubnetId", "privateEndpointSubnetId"),
    "cloudfoundry": ("spaces",),
    "kubernetes": ("namespace",),
}


def _plan_refused(directory: Path, stack: str) -> list[str]:
    from mxinfra.errors import ConfigError

    try:
        run_plan(directory, stack)
    except ConfigError as e:
        return [f"{i.path}: {i.message}" for i in e.issues]
    return []


@pytest.mark.parametrize("name", INSTALLED)
def test_a_test_stack_cannot_use_productions_network_namespace_or_space(tmp_path, name):
    assert name in PLACEMENT, f"{name}: say which keys place an environment (network, namespace, space)"
    directory = copy_example(tmp_path / "project")
    prefix = STACK_PREFIX[name]
    production = _load_yaml(directory / "stacks" / f"Pulumi.{prefix}production.yaml")["config"][f"mxinfra:{name}"]
    path = directory / "stacks" / f"Pulumi.{prefix}test.yaml"
    doc = _load_yaml(path)
    block = doc["config"][f"mxinfra:{name}"]
    assert _plan_refused(directory, f"{prefix}test") == []
    for key in PLACEMENT[name]:
        if key == "spaces":
            block["spaces"] = {"test": next(iter(production["spaces"].values()))}
        elif key == "namespace":
            block["namespace"] = production.get("namespace") or "orders-production"
        elif key in production:
            block[key] = production[key]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    refused = _plan_refused(directory, f"{prefix}test")
    assert refused, f"{name}: a test stack placed in production's {', '.join(PLACEMENT[name])} was planned"
    # refused for where it is placed, not for something else the edit broke
    keys = tuple(f"mxinfra:{name}.{k}" for k in PLACEMENT[name])
    assert any(r.startswith(keys) and "production" in r.split(":", 2)[-1] and "unknown key" not in r for r in refused), refused


@pytest.mark.parametrize("name", INSTALLED)
def test_names_read_back_one_way(tmp_path, name):
    """`orders`/`prod-eu` and `orders-prod`/`eu` would name the same roles, databases, buckets, namespaces and
    apps: an environment name has no '-', so `<app>-<environment>` reads back one way (issue 19, F15)."""
    directory = copy_example(tmp_path / "project")
    prefix = STACK_PREFIX[name]
    path = directory / "stacks" / f"Pulumi.{prefix}test.yaml"
    doc = _load_yaml(path)
    envs = doc["config"]["mxinfra:environments"]
    (old,) = list(envs)
    envs["test-eu"] = envs.pop(old)
    text = yaml.safe_dump(doc, sort_keys=False).replace(f"[{old}]", "[test-eu]").replace(f"- {old}\n", "- test-eu\n")
    path.write_text(text)
    refused = _plan_refused(directory, f"{prefix}test")
    assert any(r.startswith("mxinfra:environments.test-eu:") and "no '-'" in r for r in refused), refused


# A principal no person stands behind: it cannot answer an MFA prompt, so on production it may hold `api`
# alone (issue 19, F12). AWS and Cloud Foundry have no such form in `mxinfra:access`: there every production
# grant requires MFA (AWS: the trust policy's MultiFactorAuthPresent; CF: an mfaOrigins identity provider).
MACHINE_PRINCIPAL = {"azure": "servicePrincipal:0a1b2c3d-0000-4000-8000-0000000000aa", "kubernetes": "serviceaccount:ci/deployer"}


def _mapped(name: str) -> list[str]:
    table = load_target(name).capabilities
    assert table is not None
    return [p.value for p in Permission if p is not Permission.API and table.not_granted(p) is None]


@pytest.mark.parametrize(("name", "permission"), [(n, p) for n in sorted(MACHINE_PRINCIPAL) for p in _mapped(n)])
def test_a_machine_principal_holds_nothing_but_api_on_production(tmp_path, name, permission):
    directory = copy_example(tmp_path / "project")
    record_deploy(directory, f"{STACK_PREFIX[name]}acceptance")
    path = directory / "stacks" / f"Pulumi.{STACK_PREFIX[name]}production.yaml"
    doc = _load_yaml(path)
    doc["config"]["mxinfra:access"].append({"principal": MACHINE_PRINCIPAL[name], "environments": ["production"], "permissions": [permission]})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    refused = _plan_refused(directory, f"{STACK_PREFIX[name]}production")
    index = len(doc["config"]["mxinfra:access"]) - 1
    assert any(r.startswith(f"mxinfra:access[{index}]") for r in refused), refused
