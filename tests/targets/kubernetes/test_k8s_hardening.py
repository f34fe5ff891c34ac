"""Issue 10 on the kubernetes target: no path around the production rules (each test fails on the old code)."""

from __future__ import annotations

import pytest

from mxinfra.access import Permission
from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.errors import ConfigError
from mxinfra.naming import Naming

from k8s_stacks import DIGEST, IMAGE, POD_LABELS, ROOT, SECRET_KEYS, config

from mxinfra_kubernetes import access
from mxinfra_kubernetes.config import KubernetesConfig, for_environment
from mxinfra_kubernetes.layout import Layout

ESCALATING = {"create", "update", "patch", "delete", "deletecollection", "bind", "escalate", "impersonate", "*"}


def _prepare(cfg, stack="production"):
    return prepare(RawConfig(cfg, SECRET_KEYS), project="orders", stack=stack, base_dir=ROOT)


def _issues(cfg, stack="production"):
    with pytest.raises(ConfigError) as e:
        _prepare(cfg, stack)
    return e.value.issues


def _layout(env="production", mode="plain", **block):
    b = KubernetesConfig.model_validate({"mode": mode, **block})
    return Layout.of(Naming("orders", env), for_environment(b, env), {})


# --- 1. manage cannot rewrite membership ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "operator"])
def test_manage_cannot_write_bindings_or_bind_roles(mode):
    rules = access.rules(Permission.MANAGE, _layout(mode=mode), mode)
    assert rules, "manage still sees the environment's RBAC"
    for r in rules:
        if "rbac.authorization.k8s.io" in r["apiGroups"]:
            assert not ESCALATING & set(r["verbs"]), r
    # no permission grants a write on RBAC objects
    for perm in Permission:
        for r in access.rules(perm, _layout(mode=mode), mode):
            if {"rolebindings", "roles", "clusterroles", "clusterrolebindings"} & set(r["resources"]):
                assert set(r["verbs"]) <= {"get", "list", "watch"}, (perm, r)


# --- 4. plain deploy never reads the runtime Secret ---------------------------------------------------


def test_plain_deploy_cannot_read_any_secret():
    for r in access.rules(Permission.DEPLOY, _layout(), "plain"):
        if "secrets" in r["resources"]:
            assert set(r["verbs"]) == {"update", "patch"}, r


# --- 5. Operator mode ---------------------------------------------------------------------------------


def test_operator_deploy_reads_only_its_own_mendixapp():
    for r in access.rules(Permission.DEPLOY, _layout(mode="operator"), "operator"):
        if "mendixapps" in r["resources"]:
            assert r.get("resourceNames") == ["orders-production"], r  # never every MendixApp of the namespace
            assert "list" not in r["verbs"]  # list ignores resourceNames
        if "secrets" in r["resources"]:
            assert not {"get", "list", "watch"} & set(r["verbs"]), r


def test_production_in_a_shared_operator_namespace_warns():
    cfg = config("production", mode="operator", namespace="mendix-apps")
    warnings = _prepare(cfg).environment("production").warnings
    assert any("Operator namespace mendix-apps" in w and "own" in w for w in warnings)
    # acceptance in the same shape does not get the production warning
    cfg = config("uat", role="acceptance", mode="operator", namespace="mendix-apps")
    assert not any("Operator namespace" in w for w in _prepare(cfg, "uat").environment("uat").warnings)


def test_backups_refused_in_operator_mode():
    cfg = config("production", mode="operator")
    cfg["mxinfra:access"] = [{"principal": "group:dba", "environments": ["production"], "permissions": ["backups"]}]
    (issue,) = _issues(cfg)
    assert issue.path == "mxinfra:access[0].permissions" and "ServiceAccount" in issue.message
    # plain mode keeps backups
    plain = config("production")
    plain["mxinfra:access"] = cfg["mxinfra:access"]
    _prepare(plain)


# --- 6. built-in subjects -----------------------------------------------------------------------------


@pytest.mark.parametrize("principal", ["group:system:masters", "group:system:authenticated", "group:system:serviceaccounts", "group:system:nodes"])
def test_production_refuses_builtin_groups(principal):
    cfg = config("production")
    cfg["mxinfra:access"] = [{"principal": principal, "environments": ["production"], "permissions": ["monitor"]}]
    (issue,) = _issues(cfg)
    assert issue.path == "mxinfra:access[0].principal" and "built-in" in issue.message


@pytest.mark.parametrize("principal", ["group:system:unauthenticated", "user:system:anonymous"])
@pytest.mark.parametrize("env,role", [("production", None), ("test", "test"), ("acceptance", "acceptance")])
def test_anonymous_refused_everywhere(principal, env, role):
    cfg = config(env, role=role, instances=1)
    cfg["mxinfra:access"] = [{"principal": principal, "environments": [env], "permissions": ["monitor"]}]
    issues = _issues(cfg, env)
    assert [i.path for i in issues] == ["mxinfra:access[0].principal"]
    assert "without credentials" in issues[0].message


def test_non_production_still_accepts_other_subjects():
    cfg = config("test", role="test", instances=1)
    cfg["mxinfra:access"] = [
        {"principal": "group:system:authenticated", "environments": ["test"], "permissions": ["monitor"]},
        {"principal": "user:ci-bot", "environments": ["test"], "permissions": ["deploy"]},
    ]
    _prepare(cfg, "test")


# --- 9. digests on production and gated environments --------------------------------------------------


def test_production_refuses_a_tagged_image():
    cfg = config("production", image="registry.example.com/orders:1.4.2")
    (issue,) = _issues(cfg)
    assert issue.path == "mxinfra:kubernetes.image" and "mutable tag" in issue.message and "@sha256:" in issue.fix


def test_gated_acceptance_refuses_a_tagged_image_override():
    cfg = config("uat", role="acceptance", instances=1, environments={"uat": {"image": "registry.example.com/orders:1.4.2"}})
    cfg["mxinfra:environments"]["uat"]["requirePromotionFrom"] = "test"
    cfg["mxinfra:environments"]["test"] = {"role": "test"}
    cfg["mxinfra:access"] = []
    issues = _issues(cfg, "uat")
    assert [i.path for i in issues if "mutable" in i.message] == ["mxinfra:kubernetes.environments.uat.image"]


def test_ungated_acceptance_may_run_a_tag():
    _prepare(config("uat", role="acceptance", instances=1, image="registry.example.com/orders:1.4.2"), "uat")


def test_production_operator_refuses_a_package_url():
    op = {"sourceURL": "https://packages.example.com/orders.mda", "databasePlan": "pg", "storagePlan": "s3", "podLabels": POD_LABELS}
    (issue,) = _issues(config("production", mode="operator", operator=op))
    assert issue.path == "mxinfra:kubernetes.operator.sourceURL" and "not verified" in issue.message and "oci-image://" in issue.fix
    op["sourceURL"] = "oci-image://registry.example.com/orders:1.4.2"
    (issue,) = _issues(config("production", mode="operator", operator=op))
    assert "mutable tag" in issue.message


def test_activity_log_records_the_digest(pulumi_run):
    from mxinfra.components import MendixApp

    d = _prepare(config("production"))
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="production", project="orders")
    (activity,) = [r for r in res if r.name == "orders-production-activity"]
    assert activity.inputs["artifact"] == IMAGE and activity.inputs["artifact"].endswith("@" + DIGEST)


# --- 10. egress ---------------------------------------------------------------------------------------


def _policy(pulumi_run, cfg, env="production"):
    from mxinfra.components import MendixApp

    d = _prepare(cfg, env)
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=env, project="orders")
    (np,) = [r for r in res if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"]
    return d, np


def test_plain_egress_is_limited_and_the_list_is_applied(pulumi_run):
    cfg = config(
        "production",
        database={"url": "postgres://u:p@db.internal:5432/orders", "port": 6432, "networks": ["10.30.0.0/24"]},
        storage={"s3": {"bucket": "b", "endpoint": "https://minio.example.com:9000"}, "networks": ["10.40.0.0/24"]},
        egress=[{"cidr": "203.0.113.10/32", "ports": [443], "description": "payments API"}],
    )
    d, np = _policy(pulumi_run, cfg)
    assert "Egress" in np.input("spec.policyTypes")
    egress = np.input("spec.egress")
    assert {"to": [{"ipBlock": {"cidr": "10.30.0.0/24"}}], "ports": [{"port": 6432, "protocol": "TCP"}]} in egress
    assert {"to": [{"ipBlock": {"cidr": "10.40.0.0/24"}}], "ports": [{"port": 9000, "protocol": "TCP"}]} in egress
    assert {"to": [{"ipBlock": {"cidr": "203.0.113.10/32"}}], "ports": [{"port": 443, "protocol": "TCP"}]} in egress
    # every rule names its ports or its peers: nothing admits any address on any port
    assert all(r.get("ports") or r.get("to") for r in egress)
    assert not any("admits any address" in w for w in d.environment("production").warnings)


def test_open_default_destinations_are_warned():
    warnings = _prepare(config("production")).environment("production").warnings
    assert any("the database (tcp/5432" in w for w in warnings)
    assert any("the file store (tcp/443" in w for w in warnings)


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "10.0.0.0/8", "2000::/9", "2001:db8::/32"])
def test_wide_egress_on_production_needs_the_opt_in_ipv6_too(cidr):
    """An IPv6 /9 is as wide as 2^119 addresses: the /8 bound of IPv4 does not apply to it (issue 19, F22)."""
    rule = {"cidr": cidr, "ports": [443], "description": "anything"}
    (issue,) = _issues(config("production", egress=[rule]))
    assert issue.path == "mxinfra:kubernetes.egress[0].cidr" and "IPv6 /32" in issue.message
    narrow = {"cidr": "2001:db8::/48", "ports": [443], "description": "a partner"}
    _prepare(config("production", egress=[narrow]))  # no ConfigError


def test_wide_egress_on_production_needs_the_opt_in():
    rule = {"cidr": "0.0.0.0/0", "ports": [443], "description": "anything"}
    (issue,) = _issues(config("production", egress=[rule]))
    assert issue.path == "mxinfra:kubernetes.egress[0].cidr"
    d = _prepare(config("production", egress=[rule], allowWideEgress=True))
    assert any("0.0.0.0/0" in w and "large part of the internet" in w for w in d.environment("production").warnings)


@pytest.mark.parametrize(
    "rule,key",
    [
        ({"cidr": "10.0.0.1/8", "ports": [443], "description": "x"}, "cidr"),
        ({"cidr": "10.0.0.0/24", "ports": [0], "description": "x"}, "ports"),
        ({"cidr": "10.0.0.0/24", "ports": [], "description": "x"}, "ports"),
        ({"cidr": "10.0.0.0/24", "ports": [443]}, "description"),
        ({"cidr": "10.0.0.0/24", "ports": [443], "description": "x", "protocol": "icmp"}, "protocol"),
    ],
)
def test_egress_rules_are_validated(rule, key):
    (issue,) = _issues(config("production", egress=[rule]))
    assert issue.path == f"mxinfra:kubernetes.egress[0].{key}"


def test_operator_mode_needs_the_pod_labels():
    op = {"sourceURL": "oci-image://registry.example.com/orders@" + DIGEST, "databasePlan": "pg", "storagePlan": "s3"}
    (issue,) = _issues(config("production", mode="operator", operator=op))
    assert issue.path == "mxinfra:kubernetes.operator.podLabels"


# --- 13. image references -----------------------------------------------------------------------------


@pytest.mark.parametrize("image", ["registry.example.com/*:1.4.2", "registry.example.com/Orders:1", "registry.example.com/orders:1.4.2\n", "registry.example.com/orders@sha256:abc", " orders:1"])
def test_image_must_be_a_reference(image):
    issues = _issues(config("test", role="test", instances=1, image=image, database={"inCluster": {}}), "test")
    assert [i.path for i in issues] == ["mxinfra:kubernetes.image"]


# --- README: the RBAC table says what the Roles allow ---------------------------------------------


def _readme_rows():
    text = (ROOT / "targets" / "kubernetes" / "README.md").read_text()
    section = text.split("## Access: `mxinfra:access` as namespaced RBAC", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] in {p.value for p in Permission}:
            rows[cells[0]] = cells[1].lower()
    return rows


@pytest.mark.parametrize("mode", ["plain", "operator"])
@pytest.mark.parametrize("permission", [p for p in Permission if p not in access.UNMAPPED])
def test_readme_rbac_table_names_every_verb_and_resource(permission, mode):
    row = _readme_rows()[permission.value]
    words = set(row.replace("/", " ").replace(",", " ").replace(";", " ").replace("`", " ").replace("(", " ").replace(")", " ").split())
    for rule in access.rules(permission, _layout(mode=mode), mode):
        for verb in rule["verbs"]:
            assert verb in words, (permission.value, verb)
        for resource in rule["resources"]:
            stem = resource.split("/")[0].rstrip("s").replace("persistentvolumeclaim", "pvc").replace("mendixapp", "mendixapp")
            assert stem in row.replace(" ", ""), (permission.value, resource)
