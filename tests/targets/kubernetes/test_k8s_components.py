"""The kubernetes target under the mock runtime: the exact child contract of each mode and role."""

from __future__ import annotations

import re

import jsonschema
import pulumi
import pulumi_kubernetes as k8s
import pytest

from mxinfra.components import ENVIRONMENT_TYPE, MendixApp
from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.testing import Computed, Sealed, public, reveal

from k8s_stacks import (
    ADMIN_PASSWORD,
    DB_URL,
    IMAGE,
    POD_LABELS,
    SOURCE,
    KUBE_TOKEN,
    KUBECONFIG_CONTENT,
    ROOT,
    S3_SECRET,
    SECRET_KEYS,
    config,
    load_schema,
    restricted_violations,
    with_,
)


STS = "kubernetes:apps/v1:StatefulSet"
SECRET = "kubernetes:core/v1:Secret"
CM = "kubernetes:core/v1:ConfigMap"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
SVC = "kubernetes:core/v1:Service"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
CR = "kubernetes:privatecloud.mendix.com/v1alpha1:MendixApp"

PLAIN_COMMON = {
    "namespace": "kubernetes:core/v1:Namespace",
    # backups (on by default): the scripts, the archives' claim, the CronJob and the restore template
    "backup-scripts": CM,
    "backups": PVC,
    # the file store's keys for the Jobs' rclone steps (the example's files are in S3: copied into each archive)
    "backup-files": SECRET,
    "backup": "kubernetes:batch/v1:CronJob",
    "restore": "kubernetes:batch/v1:CronJob",
    "config": CM,
    "database-secret": SECRET,
    "secret": SECRET,
    "headless-service": SVC,
    "service": SVC,
    "statefulset": STS,
    "ingress": "kubernetes:networking.k8s.io/v1:Ingress",
    "network-policy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    "quota": "kubernetes:core/v1:ResourceQuota",
    "limits": "kubernetes:core/v1:LimitRange",
    "role-deploy": ROLE,
    "role-monitor": ROLE,
    "rolebinding-deploy": BINDING,
    "rolebinding-monitor": BINDING,
}
# production only: the admission policy that lets only the release identities change what runs (admission.py)
RELEASE_GUARD = {
    "release-policy": "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy",
    "release-policy-binding": "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding",
}
IN_CLUSTER_DB = {"postgres-data": PVC, "postgres-service": SVC, "postgres": STS, "database-password": "random:index/randomPassword:RandomPassword"}


def deploy(pulumi_run, cfg, stack, opts=None):
    d = prepare(RawConfig(cfg, SECRET_KEYS), project="orders", stack=stack, base_dir=ROOT)
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}, opts), stack=stack, project="orders")
    return d, res


def target_children(res, env):
    """The environment's children created by this target (kubernetes and random resources), by kind suffix."""
    comp = res.one(ENVIRONMENT_TYPE, f"orders-{env}")
    kids = [r for r in res.descendants(comp) if r.type.startswith(("kubernetes:", "random:"))]
    for r in kids:
        assert r.parent == comp.urn, r.name  # every child hangs directly off the environment
        assert r.name.startswith(f"orders-{env}-"), r.name
    return {r.name[len(f"orders-{env}-"):]: r for r in kids if r.name != f"orders-{env}-admin-password"}


def test_plain_test_role_with_in_cluster_database(pulumi_run):
    cfg = with_(config("test", instances=1), "mxinfra:kubernetes/database", {"inCluster": {"size": "2Gi"}})
    _, res = deploy(pulumi_run, cfg, "test")
    kids = target_children(res, "test")
    assert {k: r.type for k, r in kids.items()} == {**PLAIN_COMMON, **IN_CLUSTER_DB}
    for r in kids.values():
        if r.type.startswith("kubernetes:"):
            # every object named (rendered manifests are complete), but Secrets: the provider names them
            # so that a new value is a new Secret, replaced create-first (builder.Builder.secret)
            assert (r.input("metadata.name", None) is None) is (r.type == SECRET), r.name
            assert not r.delete_before_replace, r.name
            if r.type != "kubernetes:core/v1:Namespace":
                assert r.input("metadata.namespace") == "orders-test"
    ns = kids["namespace"]
    assert ns.input("metadata.name") == "orders-test"
    assert ns.input("metadata.labels")["mxinfra.io/environment"] == "test" and ns.input("metadata.labels")["mxinfra.io/role"] == "test"
    pg = kids["postgres"]
    assert pg.input("spec.replicas") == 1
    assert pg.input("spec.template.spec.volumes.0.persistentVolumeClaim.claimName") == kids["postgres-data"].input("metadata.name")
    assert pg.input("spec.template.spec.securityContext.runAsNonRoot") is True
    # not production: no protection
    assert not kids["postgres-data"].protect and not kids["postgres-data"].retain_on_delete
    db_secret = kids["database-secret"]
    assert isinstance(db_secret.inputs["stringData"], Sealed)
    assert db_secret.input("metadata.annotations")["mxinfra.io/secret-keys"] == "DATABASE_URL,POSTGRES_PASSWORD"
    # in-cluster PostgreSQL has no TLS, so no sslmode=require
    assert "DATABASE_CONNECTION_PARAMS" not in kids["config"].inputs["data"]
    assert kids["quota"].input("spec.hard") == {
        "pods": "3",
        "requests.cpu": "1",
        "limits.cpu": "3500m",
        "requests.memory": "3072Mi",
        "limits.memory": "3072Mi",
        "persistentvolumeclaims": "2",
        "requests.storage": f"{2048 + 20480}Mi",  # the database's and the backups' claims
    }


def test_plain_production_runtime_contract(pulumi_run):
    _, res = deploy(pulumi_run, config("production"), "production")
    kids = target_children(res, "production")
    assert {k: r.type for k, r in kids.items()} == {**PLAIN_COMMON, "pdb": "kubernetes:policy/v1:PodDisruptionBudget", **RELEASE_GUARD}
    sts = kids["statefulset"]
    assert sts.input("metadata.name") == "orders-production"
    assert sts.input("spec.replicas") == 2 and sts.input("spec.serviceName") == "orders-production-headless"
    assert sts.input("spec.selector.matchLabels") == {"app.kubernetes.io/component": "runtime", "app.kubernetes.io/instance": "orders-production"}
    pod = sts.input("spec.template.spec")
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1001, "fsGroup": 1001, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    assert c["image"] == IMAGE
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 1001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # MEMORY_LIMIT equals the container's memory limit
    assert c["env"] == [{"name": "MEMORY_LIMIT", "value": "2048M"}]
    assert c["resources"]["limits"]["memory"] == "2048Mi" == c["resources"]["requests"]["memory"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    # secrets only through Secrets; plain variables through the ConfigMap
    config_name = kids["config"].input("metadata.name")
    assert re.fullmatch(r"orders-production-config-[0-9a-f]{10}", config_name), config_name
    assert kids["config"].inputs["immutable"] is True
    assert c["envFrom"] == [
        {"configMapRef": {"name": config_name}},
        {"secretRef": {"name": "orders-production-secret-(known after apply)"}},
        {"secretRef": {"name": "orders-production-database-secret-(known after apply)"}},
    ]
    data = kids["config"].inputs["data"]
    assert data["MXRUNTIME_DTAPMode"] == "P" and data["CONSTANTS"] == '{"Orders.PageSize":20}'
    assert data["S3_BUCKET_NAME"] == "orders-files" and data["DATABASE_CONNECTION_PARAMS"] == '{"sslmode":"require"}'
    assert not {"ADMIN_PASSWORD", "DATABASE_URL", "S3_SECRET_ACCESS_KEY", "S3_ACCESS_KEY_ID"} & set(data)
    env_secret = kids["secret"].inputs["stringData"]
    assert isinstance(env_secret, Sealed)
    assert env_secret.value == {"ADMIN_PASSWORD": ADMIN_PASSWORD, "S3_ACCESS_KEY_ID": "KNOWNACCESSKEYID0042", "S3_SECRET_ACCESS_KEY": S3_SECRET}
    assert kids["database-secret"].inputs["stringData"].value == {"DATABASE_URL": DB_URL}
    # the exposure
    ing = kids["ingress"]
    assert ing.input("spec.ingressClassName") == "nginx"
    assert ing.input("spec.rules.0.host") == "orders-production.apps.example.com"
    assert ing.input("spec.tls") == [{"hosts": ["orders-production.apps.example.com"], "secretName": "orders-production-tls"}]
    assert ing.input("spec.rules.0.http.paths.0.backend.service") == {"name": "orders-production", "port": {"name": "http"}}
    np = kids["network-policy"]
    assert np.input("metadata.name") == "orders-production-network"
    assert np.input("spec.policyTypes") == ["Ingress", "Egress"]
    own = {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "orders-production"}}}
    assert np.input("spec.ingress") == [
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}], "ports": [{"port": 8080, "protocol": "TCP"}]},
        {"from": [own]},
    ]
    # egress: DNS, the environment's own pods, the database and the file store on their ports only
    assert np.input("spec.egress") == [
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"to": [own]},
        {"ports": [{"port": 5432, "protocol": "TCP"}]},
        {"ports": [{"port": 443, "protocol": "TCP"}]},
    ]
    assert kids["pdb"].input("spec") == {"maxUnavailable": 1, "selector": {"matchLabels": sts.input("spec.selector.matchLabels")}}
    assert kids["quota"].input("spec.hard")["requests.memory"] == f"{2 * 2048 + 512}Mi"


def test_no_secret_in_non_secret_inputs(pulumi_run):
    _, res = deploy(pulumi_run, config("production"), "production")
    for r in res:
        if r.type == SECRET:
            continue
        text = repr(public(r.inputs))
        for value in (ADMIN_PASSWORD, "Known-Db-Pw", S3_SECRET, "KNOWNACCESSKEYID0042"):
            assert value not in text, (r.name, value)


def test_production_local_files_are_protected(pulumi_run):
    cfg = with_(config("production", instances=1), "mxinfra:kubernetes/storage", {"local": {"size": "20Gi", "storageClass": "fast"}})
    _, res = deploy(pulumi_run, cfg, "production")
    kids = target_children(res, "production")
    files = kids["files"]
    assert files.type == PVC and files.protect and files.retain_on_delete
    assert files.input("spec") == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}, "storageClassName": "fast"}
    pod = kids["statefulset"].input("spec.template.spec")
    assert pod["volumes"] == [{"name": "files", "persistentVolumeClaim": {"claimName": "orders-production-files"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "files", "mountPath": "/opt/mendix/build/data/files"}]
    assert "pdb" not in kids  # one instance
    # deleting the namespace would delete the claim: protected with it; everything else is not data
    assert sorted(k for k, r in kids.items() if r.protect) == ["backups", "files", "namespace"]
    assert kids["namespace"].retain_on_delete


def test_existing_namespace_and_azure_storage(pulumi_run):
    cfg = config("production")
    cfg = with_(cfg, "mxinfra:kubernetes/namespace", "apps-orders")
    cfg = with_(cfg, "mxinfra:kubernetes/storage", {"azure": {"accountName": "ordersfiles", "container": "files", "accountKey": "Known-Azure-Key"}})
    _, res = deploy(pulumi_run, cfg, "production")
    kids = target_children(res, "production")
    assert "namespace" not in kids
    # every namespaced object in it; the release guard is cluster-scoped and selects it by name
    assert {r.input("metadata.namespace") for k, r in kids.items() if k not in RELEASE_GUARD} == {"apps-orders"}
    policy = kids["release-policy"].input("spec.matchConstraints.namespaceSelector")
    assert policy == {"matchLabels": {"kubernetes.io/metadata.name": "apps-orders"}}
    data = kids["config"].inputs["data"]
    assert data["AZURE_CONTAINER_NAME"] == "files" and data["MXRUNTIME_com_mendix_core_StorageService"] == "com.mendix.storage.azure"
    assert kids["secret"].inputs["stringData"].value["MXRUNTIME_com_mendix_storage_azure_AccountKey"] == "Known-Azure-Key"


def test_config_map_is_named_by_its_content(pulumi_run):
    # pulumi-kubernetes replaces a ConfigMap whose data changes; a fixed name made that delete-before-create
    # (found by the engine suite). Named by content, a change is a new object the pods move to.
    names = []
    for page_size in (20, 20, 30):
        cfg = config("production")
        cfg["mxinfra:environments"]["production"]["constants"]["Orders.PageSize"] = page_size
        _, res = deploy(pulumi_run, cfg, "production")
        kids = target_children(res, "production")
        name = kids["config"].input("metadata.name")
        refs = [e["configMapRef"]["name"] for e in kids["statefulset"].input("spec.template.spec.containers.0.envFrom") if "configMapRef" in e]
        assert refs == [name] and kids["config"].inputs["immutable"] is True
        assert not kids["config"].delete_before_replace
        names.append(name)
    assert names[0] == names[1] != names[2], names  # same content, same name; new content, new name


def test_rbac_roles_and_subjects(pulumi_run):
    cfg = config("acceptance", instances=1)
    cfg["mxinfra:access"] = [
        {"principal": "group:devs", "environments": ["acceptance"], "permissions": ["deploy", "monitor", "backups", "manage", "alerts"]},
        {"principal": "user:alice@example.com", "environments": ["acceptance"], "permissions": ["monitor"]},
        {"principal": "serviceaccount:ci/deployer", "environments": ["acceptance"], "permissions": ["deploy"]},
    ]
    d, res = deploy(pulumi_run, cfg, "acceptance")
    kids = target_children(res, "acceptance")
    roles = {k: r for k, r in kids.items() if r.type == ROLE}
    assert set(roles) == {"role-deploy", "role-monitor", "role-backups", "role-manage"}  # alerts: no RBAC object
    mon = kids["rolebinding-monitor"]
    assert mon.input("roleRef") == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "orders-acceptance-monitor"}
    assert mon.input("subjects") == [
        {"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "User", "name": "alice@example.com", "apiGroup": "rbac.authorization.k8s.io"},
    ]
    assert kids["rolebinding-deploy"].input("subjects") == [
        {"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"},
    ]
    deploy_rules = roles["role-deploy"].input("rules")
    assert {"apiGroups": ["apps"], "resources": ["statefulsets", "statefulsets/scale"], "resourceNames": ["orders-acceptance"], "verbs": ["update", "patch"]} in deploy_rules
    # deploy writes the runtime Secret (admin password, storage keys) but never reads it
    assert {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["orders-acceptance-secret-(known after apply)"], "verbs": ["update", "patch"]} in deploy_rules
    assert not [r for r in deploy_rules if "secrets" in r["resources"] and {"get", "list", "watch"} & set(r["verbs"])]
    # a constant change (a new content-named ConfigMap, the old one deleted) is the deploy group's step
    assert {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]} in deploy_rules
    mon_rules = roles["role-monitor"].input("rules")
    assert mon_rules[0] == {"apiGroups": [""], "resources": ["pods", "pods/log", "events"], "verbs": ["get", "list", "watch"]}
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in mon_rules)
    backup_rules = roles["role-backups"].input("rules")
    assert {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["orders-acceptance-database-secret-(known after apply)"], "verbs": ["get"]} in backup_rules
    assert any(r["apiGroups"] == ["batch"] and "create" in r["verbs"] for r in backup_rules)
    # backups never reads the runtime secret (admin password)
    assert not any("orders-acceptance-secret-(known after apply)" in r.get("resourceNames", []) for r in backup_rules)
    # manage sees the environment's RBAC; it can neither write a binding nor bind a Role (escalate, bind)
    manage_rules = roles["role-manage"].input("rules")
    assert manage_rules == [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["get", "list", "watch"]}]
    warnings = d.environment("acceptance").warnings
    assert any(w.startswith("alerts for group:devs") for w in warnings)
    assert not any("MFA" in w for w in warnings)  # not production


def test_a_declared_permission_that_renders_no_rule_fails_loudly(pulumi_run, monkeypatch):
    """A target that forgets a permission fails loudly (issue 19): capabilities.py declares `manage`
    granted; with its rules gone, the plan stops instead of binding a Role that lets the holder do nothing."""
    from mxinfra_kubernetes import access

    real = access.rules
    monkeypatch.setattr(access, "rules", lambda permission, *a, **kw: [] if permission.value == "manage" else real(permission, *a, **kw))
    cfg = config("acceptance", instances=1)
    cfg["mxinfra:access"] = [{"principal": "group:devs", "environments": ["acceptance"], "permissions": ["manage", "alerts"]}]
    with pytest.raises(Exception, match="declares 'manage' granted, but access._rules renders no rule for it"):
        deploy(pulumi_run, cfg, "acceptance")


def test_production_mfa_warning():
    d = prepare(RawConfig(config("production"), SECRET_KEYS), project="orders", stack="production", base_dir=ROOT)
    (w,) = [w for w in d.environment("production").warnings if "MFA" in w]
    assert "identity provider must enforce MFA" in w and "8 hours" in w and "ops" in w


def test_operator_mode_contract(pulumi_run):
    cfg = config("uat", role="acceptance", instances=3, mode="operator", namespace="mendix-apps")
    cfg["mxinfra:environments"]["uat"]["secretConstants"] = {"Encryption.EncryptionKey": "Known-Encryption-Key-1234"}
    cfg["mxinfra:environments"]["uat"]["license"] = {"id": "lic-1", "key": "Known-License-Key"}
    cfg["mxinfra:environments"]["uat"]["scheduledEvents"] = ["Orders.SE_SendInvoices"]
    d, res = deploy(pulumi_run, cfg, "uat")
    kids = target_children(res, "uat")
    assert {k: r.type for k, r in kids.items()} == {
        "secret": SECRET,
        "mendixapp": CR,
        "network-policy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "role-deploy": ROLE,
        "role-monitor": ROLE,
        "rolebinding-deploy": BINDING,
        "rolebinding-monitor": BINDING,
    }
    app = kids["mendixapp"]
    # the secret fields are secrets where they sit; the rest of the CR stays reviewable
    assert not isinstance(app.inputs["spec"], Sealed) and not isinstance(app.inputs["spec"]["runtime"], Sealed)
    spec = app.inputs["spec"]
    assert spec["sourceURL"] == SOURCE
    assert spec["mendixRuntimeVersion"] == d.package.runtime_version
    assert spec["replicas"] == 3 and spec["appURL"] == "orders-uat.apps.example.com"
    assert spec["tls"] == {"enableTLS": True}
    assert spec["database"] == {"servicePlan": "pg"} and spec["storage"] == {"servicePlan": "s3"}
    assert spec["resources"]["limits"]["memory"] == "2048Mi"
    assert spec["runtime"]["dtapMode"] == "A"
    assert spec["runtime"]["scheduledEventExecution"] == "SPECIFIED" and spec["runtime"]["myScheduledEvents"] == ["Orders.SE_SendInvoices"]
    assert spec["runtime"]["microflowConstants"] == {"Orders.PageSize": "20"}
    assert spec["runtime"]["environmentVariables"] == [
        {"name": "MX_Encryption_EncryptionKey", "valueFrom": {"secretKeyRef": {"name": "orders-uat-secret-(known after apply)", "key": "MX_Encryption_EncryptionKey"}}}
    ]
    assert kids["secret"].inputs["stringData"].value == {"MX_Encryption_EncryptionKey": "Known-Encryption-Key-1234"}
    assert app.input("metadata.name") == "orders-uat" and app.input("metadata.namespace") == "mendix-apps"
    import base64

    runtime = spec["runtime"]
    assert isinstance(runtime["mxAdminPassword"], Sealed) and isinstance(runtime["runtimeLicense"]["key"], Sealed)
    assert base64.b64decode(runtime["mxAdminPassword"].value).decode() == ADMIN_PASSWORD
    assert reveal(runtime["runtimeLicense"]) == {"type": "offline", "id": "lic-1", "key": "Known-License-Key"}
    # the CR (its secret fields shown as [secret]) passes the repo's schema
    from mxinfra_kubernetes.render import manifests

    docs = manifests([{"type": r.type, "name": r.name, "inputs": public(r.inputs)} for r in kids.values()])
    (cr,) = [x for x in docs if x["kind"] == "MendixApp"]
    assert cr["spec"]["runtime"]["mxAdminPassword"] == "[secret]"
    jsonschema.Draft202012Validator(load_schema()).validate(cr)
    # deploy reads and writes only its own MendixApp (another's carries that environment's admin password)
    deploy_rules = kids["role-deploy"].input("rules")
    assert deploy_rules == [
        {"apiGroups": ["privatecloud.mendix.com"], "resources": ["mendixapps"], "resourceNames": ["orders-uat"], "verbs": ["get", "watch", "update", "patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["orders-uat-secret-(known after apply)"], "verbs": ["update", "patch"]},
    ]
    # the Operator's pods (by their labels): in from the controller; out to DNS, each other and egress: only
    np = kids["network-policy"]
    assert np.input("spec.podSelector") == {"matchLabels": POD_LABELS}
    assert np.input("spec.policyTypes") == ["Ingress", "Egress"]
    assert np.input("spec.egress") == [
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"to": [{"podSelector": {"matchLabels": POD_LABELS}}]},
    ]


def _assert_provider(res, provider_urn):
    kube = [r for r in res if r.type.startswith("kubernetes:")]
    assert kube
    for r in kube:
        assert r.provider.startswith(provider_urn + "::"), (r.name, r.provider)


def test_user_supplied_provider_reaches_every_child(pulumi_run):
    d = prepare(RawConfig(config("production"), SECRET_KEYS), project="orders", stack="production", base_dir=ROOT)

    def program():
        provider = k8s.Provider("user-cluster", context="prod-cluster")
        MendixApp("orders", {"deployment": d}, pulumi.ResourceOptions(providers=[provider]))

    res = pulumi_run(program, stack="production", project="orders")
    provider = res.one("pulumi:providers:kubernetes", "user-cluster")
    _assert_provider(res, provider.urn)


@pytest.mark.parametrize("mode", ["plain", "operator"])
def test_configured_context_creates_the_provider(pulumi_run, mode):
    cfg = config("production", mode=mode, context="prod-cluster")
    _, res = deploy(pulumi_run, cfg, "production")
    provider = res.one("pulumi:providers:kubernetes")
    assert provider.name == "orders-shared-kubernetes" and provider.inputs["context"] == "prod-cluster"
    assert provider.parent == res.one("mxinfra:index:MendixApp", "orders").urn
    _assert_provider(res, provider.urn)


def test_generated_admin_password_stays_unknown(pulumi_run):
    cfg = config("test", instances=1)
    del cfg["mxinfra:environments"]["test"]["adminPassword"]
    _, res = deploy(pulumi_run, cfg, "test")
    secret = res.one(SECRET, "orders-test-secret")
    assert isinstance(secret.inputs["stringData"], (Sealed, Computed))


# --- Pod Security ------------------------------------------------------------------------------------

RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "v1.30",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/audit-version": "v1.30",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "v1.30",
}


@pytest.mark.parametrize(("env", "mode"), [("test", "plain"), ("production", "plain"), ("production", "operator")])
def test_created_namespace_enforces_restricted_pod_security(pulumi_run, env, mode):
    _, res = deploy(pulumi_run, config(env, instances=1, mode=mode), env)
    labels = target_children(res, env)["namespace"].input("metadata.labels")
    assert RESTRICTED_LABELS.items() <= labels.items()
    assert labels["mxinfra.io/environment"] == env  # the standard labels stay


def test_every_pod_the_target_creates_is_restricted(pulumi_run):
    cfg = with_(config("test", instances=1), "mxinfra:kubernetes/database", {"inCluster": {}})
    cfg = with_(cfg, "mxinfra:kubernetes/storage", {"local": {"size": "1Gi"}})
    _, res = deploy(pulumi_run, cfg, "test")
    kids = target_children(res, "test")
    pods = {k: r.input("spec.template.spec") for k, r in kids.items() if r.type == STS}
    assert set(pods) == {"statefulset", "postgres"}
    for name, pod in pods.items():
        assert restricted_violations(pod) == [], name
        assert pod["automountServiceAccountToken"] is False
    pg = pods["postgres"]
    # the official postgres image's user and group; fsGroup makes the volume group-writable for it
    assert pg["securityContext"] == {"runAsNonRoot": True, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999, "seccompProfile": {"type": "RuntimeDefault"}}
    (c,) = pg["containers"]
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 999,
        "runAsGroup": 999,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # initdb needs a directory it owns: a subdirectory of the (root-owned, group-writable) volume
    (mount,) = c["volumeMounts"]
    pgdata = next(e["value"] for e in c["env"] if e["name"] == "PGDATA")
    assert pgdata.startswith(mount["mountPath"] + "/") and pgdata != mount["mountPath"]


def test_restricted_checker_catches_what_the_level_forbids():
    ok = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}, "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}
    assert restricted_violations(ok) == []
    bad = {**ok, "hostPID": True, "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}
    bad["containers"] = [{"name": "c", "securityContext": {"privileged": True}}]
    found = " ".join(restricted_violations(bad))
    for word in ("hostPID", "hostPath", "privileged", "allowPrivilegeEscalation", "drop ALL"):
        assert word in found


def _prepared(cfg, stack):
    return prepare(RawConfig(cfg, SECRET_KEYS), project="orders", stack=stack, base_dir=ROOT)


@pytest.mark.parametrize("mode", ["plain", "operator"])
def test_existing_namespace_warns_about_pod_security(mode):
    d = _prepared(config("acceptance", instances=1, mode=mode, namespace="apps-orders"), "acceptance")
    (w,) = [w for w in d.environment("acceptance").warnings if "Pod Security" in w]
    assert "namespace apps-orders is not created by mxinfra" in w and "pod-security.kubernetes.io/enforce=restricted" in w
    assert "deploy" in w and "backups" in w
    # a created namespace is labelled, so no warning
    d = _prepared(config("acceptance", instances=1, mode=mode), "acceptance")
    assert not any("Pod Security" in w for w in d.environment("acceptance").warnings)


def test_existing_namespace_warning_follows_the_environment_override():
    cfg = config("acceptance", instances=1)
    cfg["mxinfra:kubernetes"]["environments"] = {"acceptance": {"namespace": "shared-apps"}}
    (w,) = [w for w in _prepared(cfg, "acceptance").environment("acceptance").warnings if "Pod Security" in w]
    assert "namespace shared-apps " in w


# --- kubeconfig ------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["content", "path"])
def test_kubeconfig_reaches_the_provider_as_a_secret(pulumi_run, form, tmp_path):
    kubeconfig = KUBECONFIG_CONTENT
    if form == "path":
        kubeconfig = str(tmp_path / "prod.kubeconfig")
        (tmp_path / "prod.kubeconfig").write_text(KUBECONFIG_CONTENT)
    _, res = deploy(pulumi_run, config("production", kubeconfig=kubeconfig), "production")
    provider = res.one("pulumi:providers:kubernetes")
    assert isinstance(provider.inputs["kubeconfig"], Sealed)
    assert provider.inputs["kubeconfig"].value == kubeconfig
    for r in res:
        assert KUBE_TOKEN not in repr(public(r.inputs)), r.name


# --- operator mode: the CR is the environment's data --------------------------------------------------


def test_operator_production_cr_is_protected_and_retained(pulumi_run):
    _, res = deploy(pulumi_run, config("production", instances=2, mode="operator"), "production")
    kids = target_children(res, "production")
    for kind in ("mendixapp", "namespace"):
        assert kids[kind].protect and kids[kind].retain_on_delete, kind
    assert sorted(k for k, r in kids.items() if r.protect) == ["mendixapp", "namespace"]


def test_operator_production_deploy_binds_the_release_identities_alone(pulumi_run):
    """The MendixApp holds the admin password and licence, and a patch's answer is the whole object: on
    production in operator mode the deploy Role (its MendixApp, by name) is bound to the release identities
    alone, and the plan names every other deploy holder as holding nothing there. Below production, and in
    plain mode, every deploy holder is bound."""
    cfg = config("production", instances=2, mode="operator", releaseIdentities=["group:release"])
    cfg["mxinfra:access"].append({"principal": "group:release", "environments": ["production"], "permissions": ["deploy", "monitor"]})
    d, res = deploy(pulumi_run, cfg, "production")
    kids = target_children(res, "production")
    assert kids["rolebinding-deploy"].input("subjects") == [{"kind": "Group", "name": "release", "apiGroup": "rbac.authorization.k8s.io"}]
    assert {"kind": "Group", "name": "ops", "apiGroup": "rbac.authorization.k8s.io"} in kids["rolebinding-monitor"].input("subjects")
    (mendixapps,) = [r for r in kids["role-deploy"].input("rules") if "mendixapps" in r["resources"]]
    assert "get" in mendixapps["verbs"] and mendixapps["resourceNames"] == ["orders-production"]
    warned = [w for w in d.environment("production").warnings if "binds nothing on production in operator mode" in w]
    assert len(warned) == 1 and warned[0].startswith("deploy of group:ops binds nothing") and "mxinfra:kubernetes.releaseIdentities" in warned[0], warned
    # without a release identity no one holds deploy there (the plan says why)
    d, res = deploy(pulumi_run, config("production", instances=2, mode="operator"), "production")
    assert "rolebinding-deploy" not in target_children(res, "production") and "role-deploy" not in target_children(res, "production")
    assert any(w.startswith("deploy of group:ops binds nothing") for w in d.environment("production").warnings)
    # below production, and plain production: every deploy holder
    for cfg, env in ((config("uat", role="acceptance", instances=1, mode="operator"), "uat"), (config("production"), "production")):
        d, res = deploy(pulumi_run, cfg, env)
        assert target_children(res, env)["rolebinding-deploy"].input("subjects") == [{"kind": "Group", "name": "ops", "apiGroup": "rbac.authorization.k8s.io"}]
        assert not any("binds nothing" in w for w in d.environment(env).warnings)


def test_operator_acceptance_cr_is_not_protected(pulumi_run):
    _, res = deploy(pulumi_run, config("uat", role="acceptance", instances=1, mode="operator"), "uat")
    kids = target_children(res, "uat")
    assert not any(r.protect or r.retain_on_delete for r in kids.values())


# --- artifact ------------------------------------------------------------------------------------------


def _artifact(cfg, env):
    from mxinfra_kubernetes import target

    d = _prepared(cfg, env)
    return target.artifact(d.environment(env).environment, d.target_config), d.environment(env).artifact


def test_artifact_is_the_image_in_plain_mode():
    assert _artifact(config("production"), "production") == (IMAGE,) * 2
    cfg = config("production")
    hotfix = "registry.example.com/orders:1.4.2-hotfix@sha256:" + "ab" * 32
    cfg["mxinfra:kubernetes"]["environments"] = {"production": {"image": hotfix}}
    assert _artifact(cfg, "production")[0] == hotfix


def test_artifact_is_the_source_url_in_operator_mode():
    assert _artifact(config("uat", role="acceptance", mode="operator"), "uat")[0] == SOURCE
    cfg = config("uat", role="acceptance", mode="operator")
    override = {"sourceURL": "https://packages.example.com/orders-uat.mda", "databasePlan": "pg-uat", "storagePlan": "s3", "podLabels": POD_LABELS}
    cfg["mxinfra:kubernetes"]["environments"] = {"uat": {"operator": override}}
    assert _artifact(cfg, "uat")[0] == "https://packages.example.com/orders-uat.mda"


def test_artifact_is_pure_and_tolerates_an_invalid_block():
    from mxinfra.environments import Environment, Role

    from mxinfra_kubernetes import target
    from mxinfra_kubernetes.config import KubernetesConfig

    block = KubernetesConfig.model_validate({"image": "reg.example.com/a:1", "environments": {"b": {"image": "reg.example.com/a:2"}}})
    assert target.artifact(Environment("a", Role.TEST), block) == "reg.example.com/a:1"
    assert target.artifact(Environment("b", Role.TEST), block) == "reg.example.com/a:2"
    assert target.artifact(Environment("a", Role.TEST), None) is None
    operator = KubernetesConfig.model_validate({"mode": "operator", "image": "ignored:1", "operator": {"sourceURL": "https://x.example.com/a.mda", "databasePlan": "p", "storagePlan": "s"}})
    assert target.artifact(Environment("a", Role.TEST), operator) == "https://x.example.com/a.mda"


def test_the_quota_is_sized_for_the_ceiling_the_deploy_group_scales_within(pulumi_run):
    """Issue 18: a scale by the deploy group changed the ResourceQuota, which it cannot write. With
    maxInstances the quota is the platform's ceiling, and scaling below it leaves the quota alone."""
    quotas = []
    for instances in (2, 3):
        cfg = config("production")
        cfg["mxinfra:kubernetes"]["maxInstances"] = 4
        cfg["mxinfra:environments"]["production"]["instances"] = instances
        _, res = deploy(pulumi_run, cfg, "production")
        quotas.append(target_children(res, "production")["quota"].input("spec.hard"))
    assert quotas[0] == quotas[1] and quotas[0]["pods"] == "5"  # 4 instances and one backup job


def test_max_instances_below_the_instances_is_refused(capsys, tmp_path):
    from mxinfra.cli import main

    from scaffold import ProjectDir

    project = ProjectDir(tmp_path / "p")
    cfg = config("production")
    cfg["mxinfra:kubernetes"]["maxInstances"] = 1
    project.stack("production", cfg)
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 2
    assert "mxinfra:kubernetes.maxInstances: is 1, below environment 'production''s 2 instances" in capsys.readouterr().err
