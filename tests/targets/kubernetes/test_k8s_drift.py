"""Issue 19 on the kubernetes target.

F2: an environment's namespace must be its own: not a system namespace, not (by the `<app>-<env>`
convention, or by the owner labels of an existing namespace) another tier's or another app's.

F1: what runs is compared with the activity log (`mxinfra drift`, and the same check at `pulumi up`):
the StatefulSet's image, replicas, package annotation and a fingerprint of its runtime configuration, or
the MendixApp's sourceURL, replicas and runtime; on production a ValidatingAdmissionPolicy leaves changes
of what runs to the release identities.

The cluster is the local HTTPS API server of test_k8s_cluster.py, here answering GETs for the objects a
test puts in it (the engine suite asks a real kube-apiserver: tests/engine/test_release_path.py). The
"live" objects are the ones `mxinfra plan --out` renders, with the names the provider generates and the
fields the API server defaults added, and the records are written by the activity resource's own provider.
"""

from __future__ import annotations

import copy
import importlib
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pulumi
import pytest
import yaml

from mxinfra.cli import main
from mxinfra.components import MendixApp
from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.errors import ConfigError
from mxinfra.environments import Environment, Role

from k8s_stacks import IMAGE, K8S_VERSION, SECRET_KEYS, config, with_
from scaffold import record_deploy, run_drift
from test_k8s_cluster import ApiServer

from mxinfra_kubernetes.admission import policy_spec, release_condition
from mxinfra_kubernetes.config import namespace_label_issues, names_app, tiers_named
from mxinfra_kubernetes.running import RUNTIME_CONFIG_ANNOTATION, mendixapp_fingerprint, pod_fingerprint

k8s_target = importlib.import_module("mxinfra_kubernetes.target")
release_guard = importlib.import_module("mxinfra.release_guard")
VAP = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
EVIL = "registry.example.com/orders:evil@sha256:" + "66" * 32
SUFFIX = "(known after apply)"


def _issues(cfg: dict[str, Any], stack: str) -> list[Any]:
    with pytest.raises(ConfigError) as e:
        prepare(RawConfig(cfg, SECRET_KEYS), project="orders", stack=stack, base_dir=Path.cwd())
    return e.value.issues


def _test_stack(**block: Any) -> dict[str, Any]:
    """The F2 finding's stack: a test environment whose grants include a `user:` (no MFA) with backups."""
    cfg = config("test", role="test", instances=1, **block)
    cfg["mxinfra:access"] = [{"principal": "user:ci-bot", "environments": ["test"], "permissions": ["deploy", "monitor", "backups"]}]
    return cfg


# --- F2: whose namespace ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["namespace", "environments"])
def test_a_test_stack_cannot_take_the_production_namespace(where, project, capsys, engine_secrets):
    cfg = _test_stack(namespace="orders-production") if where == "namespace" else _test_stack(environments={"test": {"namespace": "orders-production"}})
    project.stack("test", cfg)
    rc = main(["plan", "-s", "test", "-C", str(project.path)])
    err = " ".join(capsys.readouterr().err.split())
    key = "mxinfra:kubernetes.namespace" if where == "namespace" else "mxinfra:kubernetes.environments.test.namespace"
    assert rc == 2 and "Traceback" not in err
    assert f"{key}: namespace 'orders-production' names the production tier, but environment 'test' is test: its Roles would grant user:ci-bot rights there" in err
    assert "(give environment 'test' a test namespace of 'orders' of its own, e.g. orders-test)" in err


@pytest.mark.parametrize(
    "namespace, says",
    [
        ("kube-system", "is the cluster's control-plane namespace"),
        ("kube-public", "is the cluster's public namespace"),
        ("kube-node-lease", "is the nodes' heartbeat namespace"),
        ("default", "is the cluster's default namespace"),
        ("ingress-nginx", "is the ingress controller's namespace (mxinfra:kubernetes.ingress.controllerNamespace)"),
        ("kube-flannel", "is reserved for the platform (kube-*, openshift-*)"),
        ("openshift-monitoring", "is reserved for the platform"),
        ("billing-test", "names a test namespace of another app (by the <app>-<environment> convention it is not 'orders''s)"),
        ("orders-prod-eu", "names the production tier"),
        ("staging-orders", "names the acceptance tier"),
    ],
)
def test_system_other_tier_and_other_app_namespaces_are_refused(namespace, says):
    (issue,) = _issues(_test_stack(namespace=namespace), "test")
    assert issue.path == "mxinfra:kubernetes.namespace"
    assert issue.message.startswith(f"namespace {namespace!r} ") and says in issue.message, issue.message
    assert "rights there" in issue.message and issue.fix.startswith("give environment 'test' a test namespace of 'orders' of its own")


def test_the_configured_dns_and_ingress_namespaces_are_infrastructure():
    (issue,) = _issues(_test_stack(namespace="dns", dnsNamespace="dns"), "test")
    assert "is the cluster DNS's namespace (mxinfra:kubernetes.dnsNamespace)" in issue.message
    (issue,) = _issues(_test_stack(namespace="edge", ingress={"domain": "apps.example.com", "controllerNamespace": "edge"}), "test")
    assert "is the ingress controller's namespace" in issue.message


@pytest.mark.parametrize("namespace", ["apps-orders", "orders-test-eu", "eu-orders-test", "mendix-apps", "orders", "team-a"])
def test_a_namespace_of_the_apps_own_tier_or_naming_no_tier_is_accepted(namespace):
    d = prepare(RawConfig(_test_stack(namespace=namespace), SECRET_KEYS), project="orders", stack="test", base_dir=Path.cwd())
    assert d.environment("test").environment.role is Role.TEST


def test_an_environments_default_namespace_is_checked_too():
    cfg = config("production", role="test", instances=1)  # an environment named production, of the test tier
    (issue,) = [i for i in _issues(cfg, "production") if "namespace" in i.path]
    assert issue.path == "mxinfra:kubernetes.environments.production.namespace"
    assert issue.message.startswith("the default namespace 'orders-production' (<app>-<environment>) names the production tier, but environment 'production' is test")
    # ... and one environment may not take another's default
    cfg = config("production", instances=2)
    cfg["mxinfra:environments"]["acceptance"] = {"instances": 1}
    cfg["mxinfra:access"][0]["environments"] = ["production", "acceptance"]
    cfg["mxinfra:kubernetes"]["environments"] = {"acceptance": {"namespace": "orders-production"}}
    found = [i for i in _issues(cfg, "production") if i.path == "mxinfra:kubernetes.environments.acceptance.namespace"]
    assert any(i.message == "namespace 'orders-production' is also environment 'production''s" for i in found), found
    assert any("names the production tier, but environment 'acceptance' is acceptance" in i.message for i in found), found


def test_a_plain_environment_may_not_use_an_operator_environments_namespace():
    cfg = config("production", mode="operator", namespace="mendix-apps")
    cfg["mxinfra:environments"]["acceptance"] = {"instances": 1}
    cfg["mxinfra:access"][0]["environments"] = ["production", "acceptance"]
    cfg["mxinfra:kubernetes"]["environments"] = {"acceptance": {"namespace": "mendix-apps"}}
    found = [i.message for i in _issues(cfg, "production")]
    assert any("already used by environment 'production'" in m for m in found), found


def test_tier_words_and_the_app_name():
    assert tiers_named("orders-production", "orders") == {Role.PRODUCTION}
    assert tiers_named("test-bench-uat", "test-bench") == {Role.ACCEPTANCE}  # the app's own words name no tier
    assert tiers_named("apps-orders", "orders") == set()
    assert names_app("eu-orders-prod", "orders") and not names_app("ordersx-prod", "orders")


def test_owner_labels_of_an_existing_namespace():
    env = Environment("test", Role.TEST)  # type: ignore[arg-type]
    key = "mxinfra:kubernetes.namespace"
    assert namespace_label_issues("team-a", {}, "orders", env, key) == []
    assert namespace_label_issues("team-a", {"mxinfra.io/app": "orders", "mxinfra.io/role": "test", "mxinfra.io/environment": "test"}, "orders", env, key) == []
    (i,) = namespace_label_issues("team-a", {"mxinfra.io/role": "production"}, "orders", env, key)
    assert i.message == "namespace 'team-a' is a production namespace (label mxinfra.io/role), but environment 'test' is test"
    (i,) = namespace_label_issues("team-a", {"mxinfra.io/app": "billing"}, "orders", env, key)
    assert i.message == "namespace 'team-a' belongs to app 'billing' (label mxinfra.io/app), not 'orders'"
    (i,) = namespace_label_issues("team-a", {"mxinfra.io/app": "orders", "mxinfra.io/environment": "qa"}, "orders", env, key)
    assert "is environment 'qa''s" in i.message


# --- release identities and the admission policy ---------------------------------------------------------


def _prod(**block: Any) -> dict[str, Any]:
    cfg = config("production", releaseIdentities=["group:orders-release"], **block)
    cfg["mxinfra:access"].append({"principal": "group:orders-release", "environments": ["production"], "permissions": ["deploy", "monitor"]})
    return cfg


@pytest.mark.parametrize(
    "identities, says",
    [
        (["orders-release"], "is not a Kubernetes RBAC subject"),
        (["group:system:authenticated"], "is a Kubernetes built-in subject"),
        (["group:release-bots"], "'group:release-bots' does not hold deploy on production: the release identity applies each release there"),
    ],
)
def test_release_identities_are_checked(identities, says):
    cfg = _prod()
    cfg["mxinfra:kubernetes"]["releaseIdentities"] = identities
    (issue,) = _issues(cfg, "production")
    assert issue.path == "mxinfra:kubernetes.releaseIdentities[0]" and says in issue.message


def test_production_without_a_release_identity_is_warned():
    d = prepare(RawConfig(config("production"), SECRET_KEYS), project="orders", stack="production", base_dir=Path.cwd())
    (w,) = [w for w in d.environment("production").warnings if "releaseIdentities" in w]
    assert "lets only cluster administrators (system:masters) change what runs" in w
    d = prepare(RawConfig(_prod(), SECRET_KEYS), project="orders", stack="production", base_dir=Path.cwd())
    assert not [w for w in d.environment("production").warnings if "releaseIdentities" in w]


def _deploy(pulumi_run: Any, cfg: dict[str, Any], stack: str) -> Any:
    d = prepare(RawConfig(cfg, SECRET_KEYS), project="orders", stack=stack, base_dir=Path.cwd())
    return pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=stack, project="orders")


@pytest.mark.parametrize("mode", ["plain", "operator"])
def test_production_gets_the_release_guard_and_it_validates(pulumi_run, mode):
    res = _deploy(pulumi_run, _prod() if mode == "plain" else with_(_prod(mode="operator"), "mxinfra:kubernetes/namespace", "mendix-apps"), "production")
    (policy,) = res.of_type(VAP)
    (binding,) = res.of_type(VAP + "Binding")
    name = "mxinfra-orders-production-release-only" if mode == "plain" else "mxinfra-mendix-apps-orders-production-release-only"
    assert policy.input("metadata.name") == name and binding.input("spec") == {"policyName": name, "validationActions": ["Deny"]}
    for r in (policy, binding):
        kubernetes_validate.validate({"apiVersion": "admissionregistration.k8s.io/v1", "kind": r.type.rsplit(":", 1)[1], **r.inputs}, K8S_VERSION, strict=True)
    spec = policy.input("spec")
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConditions"] == [{"name": "not-a-release-identity", "expression": "!(request.userInfo.groups.exists(g, g in ['system:masters', 'orders-release']))"}]
    ns = "orders-production" if mode == "plain" else "mendix-apps"
    assert spec["matchConstraints"]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": ns}}
    rules = spec["matchConstraints"]["resourceRules"]
    assert rules[0]["resources"] == (["statefulsets"] if mode == "plain" else ["mendixapps"]) and rules[0]["operations"] == ["UPDATE"]
    assert rules[1] == {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps", "secrets"], "operations": ["CREATE", "UPDATE", "DELETE"]}
    assert all(v["reason"] == "Forbidden" and "only its release identities (group:orders-release) and cluster administrators may" in v["message"] for v in spec["validations"])
    # plain mode keeps backups (on by default on production): the Jobs' scripts run with the database's
    # credentials, so writing them is refused too; the Operator's environments have no such Jobs
    scripts = [v["expression"] for v in spec["validations"] if "backup Jobs' scripts" in v["message"]]
    if mode == "plain":
        (mounted,) = {v["configMap"]["name"] for c in res.of_type("kubernetes:batch/v1:CronJob") for v in c.input("spec.jobTemplate.spec.template.spec.volumes") if "configMap" in v}
        assert [e.split(" || (request.operation == 'UPDATE'")[0] for e in scripts] == [f"!(request.resource.resource == 'configmaps' && request.name == '{mounted}')"]
        assert mounted == "orders-production-backup-scripts"
    else:
        assert scripts == []


def test_other_tiers_get_no_release_guard(pulumi_run):
    assert _deploy(pulumi_run, config("acceptance", instances=1), "acceptance").of_type(VAP) == []


def test_the_release_condition_names_each_form_of_identity():
    cond = release_condition(["group:rel", "user:bot@example.com", "serviceaccount:ci/releaser"])
    assert cond == (
        "request.userInfo.groups.exists(g, g in ['system:masters', 'rel'])"
        " || request.userInfo.username in ['bot@example.com', 'system:serviceaccount:ci:releaser']"
    )
    assert "'it\\'s'" in release_condition(["group:it's"])  # a quote cannot end the CEL string


def test_the_policy_guards_only_the_environments_objects():
    spec = policy_spec("ns", "orders-production", "plain", {"config": "orders-production-config", "secret": "orders-production-secret"}, ["group:rel"], "production", "orders-production-backup-scripts")
    template, annotations, owners, objects, scripts = (v["expression"] for v in spec["validations"])
    # additions only: the garbage collector removes finalizers of a workload the platform deletes
    assert owners == (
        "!(request.resource.resource == 'statefulsets' && request.name == 'orders-production') || "
        "((!has(object.metadata.ownerReferences) || object.metadata.ownerReferences.all(x, has(oldObject.metadata.ownerReferences) && x in oldObject.metadata.ownerReferences))"
        " && (!has(object.metadata.finalizers) || object.metadata.finalizers.all(x, has(oldObject.metadata.finalizers) && x in oldObject.metadata.finalizers)))"
    )
    # the garbage collector finishes a deletion a release identity started: finalizers removed, nothing else
    released = (
        "request.operation == 'UPDATE' && has(oldObject.metadata.deletionTimestamp)"
        " && (!has(object.metadata.finalizers) || object.metadata.finalizers.all(x, has(oldObject.metadata.finalizers) && x in oldObject.metadata.finalizers))"
        " && (has(object.data) == has(oldObject.data) && (!has(object.data) || object.data == oldObject.data))"
        " && (has(object.metadata.labels) == has(oldObject.metadata.labels) && (!has(object.metadata.labels) || object.metadata.labels == oldObject.metadata.labels))"
        " && (has(object.metadata.annotations) == has(oldObject.metadata.annotations) && (!has(object.metadata.annotations) || object.metadata.annotations == oldObject.metadata.annotations))"
        " && (has(object.metadata.ownerReferences) == has(oldObject.metadata.ownerReferences) && (!has(object.metadata.ownerReferences) || object.metadata.ownerReferences == oldObject.metadata.ownerReferences))"
        " && (request.resource.resource != 'configmaps' || (has(object.binaryData) == has(oldObject.binaryData) && (!has(object.binaryData) || object.binaryData == oldObject.binaryData)))"
        " && (request.resource.resource != 'secrets' || (has(object.type) == has(oldObject.type) && (!has(object.type) || object.type == oldObject.type)))"
    )
    assert scripts == f"!(request.resource.resource == 'configmaps' && request.name == 'orders-production-backup-scripts') || ({released})"
    assert template.startswith("!(request.resource.resource == 'statefulsets' && request.name == 'orders-production') || (object.spec.template.spec == oldObject.spec.template.spec")
    assert "k == 'kubectl.kubernetes.io/restartedAt'" in template  # `kubectl rollout restart` stays the deploy group's
    assert "!k.startsWith('mxinfra.io/')" in annotations
    assert objects == (
        "!(request.resource.resource in ['configmaps', 'secrets'] && (request.name.startsWith('orders-production-config-') || request.name.startsWith('orders-production-secret-')))"
        f" || ({released})"
    )


# --- what runs: the fingerprint, read back from a cluster -------------------------------------------------


SECURE = {"secure": "v1:AAAA"}


def _secure(cfg: dict[str, Any]) -> dict[str, Any]:
    """`cfg` with its secret values stored encrypted, as a stack file holds them (offline: `[secret]`)."""
    out = copy.deepcopy(cfg)
    out["mxinfra:environments"]["production"]["adminPassword"] = SECURE
    k = out["mxinfra:kubernetes"]
    if "database" in k:
        k["database"]["url"] = SECURE
    if "storage" in k:
        k["storage"]["s3"].update(accessKeyId=SECURE, secretAccessKey=SECURE)
    return out


def _live(doc: dict[str, Any]) -> dict[str, Any]:
    """A rendered document as the API server returns it: provider-generated names, server defaults added."""
    text = json.dumps(doc).replace(SUFFIX, "x7k2m9q4")
    live = json.loads(text)
    if live["kind"] == "StatefulSet":
        pod = live["spec"]["template"]["spec"]
        pod.update(dnsPolicy="ClusterFirst", restartPolicy="Always", schedulerName="default-scheduler")
        for c in pod["containers"]:
            c.update(terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File")
        live["metadata"]["uid"] = "2c5ea4c0-4067-11e9-8bad-9b1deb4d3b7d"
    return live


class Cluster:
    """The objects served (path -> object); every other path is a 404."""

    def __init__(self, api: ApiServer) -> None:
        self.api = api
        self.objects: dict[str, dict[str, Any]] = {}
        self.forbidden: set[str] = set()

    def put(self, doc: dict[str, Any]) -> None:
        md = doc["metadata"]
        base = {"StatefulSet": "/apis/apps/v1", "ConfigMap": "/api/v1", "MendixApp": "/apis/privatecloud.mendix.com/v1alpha1", "Namespace": "/api/v1"}[doc["kind"]]
        plural = doc["kind"].lower() + "s"
        path = f"{base}/namespaces/{md['namespace']}/{plural}/{md['name']}" if "namespace" in md else f"{base}/{plural}/{md['name']}"
        self.objects[path] = doc

    def kubeconfig(self, tmp_path: Path) -> Path:
        path = tmp_path / "kubeconfig"
        path.write_text(self.api.kubeconfig())
        return path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    api = ApiServer(tmp_path)
    served = Cluster(api)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server name)
            api.requests.append({"path": self.path})
            if self.path in served.forbidden:
                body, status = {"kind": "Status", "code": 403, "reason": "Forbidden"}, 403
            elif self.path in served.objects:
                body, status = served.objects[self.path], 200
            else:
                body, status = {"kind": "Status", "code": 404, "reason": "NotFound"}, 404
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    api.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _rendered(project: Any, stack: str, tmp_path: Path, capsys: Any) -> dict[str, dict[str, Any]]:
    out = tmp_path / f"plan-{stack}"
    assert main(["plan", "-s", stack, "-C", str(project.path), "--out", str(out)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    docs = [d for d in yaml.safe_load_all((out / "kubernetes" / f"{stack}.yaml").read_text()) if d]
    return {d["kind"]: d for d in docs}


@pytest.fixture
def released(project: Any, cluster: Cluster, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Production released: the plan's objects live in the cluster, its deploy record in the log."""
    project.stack("production", _secure(_prod()))
    docs = _rendered(project, "production", tmp_path, capsys)
    for kind in ("StatefulSet", "ConfigMap"):
        cluster.put(_live(docs[kind]))
    record_deploy(project.path, "production")
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path)))
    return docs


def _sts(cluster: Cluster) -> dict[str, Any]:
    return cluster.objects["/apis/apps/v1/namespaces/orders-production/statefulsets/orders-production"]


def test_the_fingerprint_of_what_runs_is_the_one_the_release_wrote(released, cluster):
    sts = _sts(cluster)
    cm = released["ConfigMap"]
    prefixes = ["orders-production-secret", "orders-production-database-secret"]
    live = pod_fingerprint(sts["spec"]["template"]["spec"], {cm["metadata"]["name"]: cm["data"]}, prefixes)
    assert live == sts["metadata"]["annotations"][RUNTIME_CONFIG_ANNOTATION]
    # everything the runtime gets besides its image and the Secrets' values changes it
    pod = sts["spec"]["template"]["spec"]
    for change in (
        lambda p: p["containers"][0]["env"].append({"name": "MX_Orders_ApiUrl", "value": "https://evil.example.com"}),
        lambda p: p["containers"][0]["envFrom"].append({"configMapRef": {"name": "mine"}}),
        lambda p: p["containers"].append({"name": "sidecar", "image": "evil:latest"}),
        lambda p: p.update(serviceAccountName="orders-operator"),
        lambda p: p["containers"][0]["envFrom"][1]["secretRef"].update(name="orders-production-tls"),
    ):
        edited = copy.deepcopy(pod)
        change(edited)
        assert pod_fingerprint(edited, {cm["metadata"]["name"]: cm["data"]}, prefixes) != live
    assert pod_fingerprint(pod, {cm["metadata"]["name"]: {**cm["data"], "SCHEDULED_EVENTS": "NONE"}}, prefixes) != live
    assert pod_fingerprint(pod, {}, prefixes) != live  # the ConfigMap deleted
    # a rotated Secret is a new provider-generated name, not another configuration
    rotated = json.loads(json.dumps(pod).replace("x7k2m9q4", "p0p0p0p0"))
    assert pod_fingerprint(rotated, {cm["metadata"]["name"]: cm["data"]}, prefixes) == live


def test_drift_is_clean_after_a_release(released, project, capsys):
    rc, out, err = _drift(project, capsys)
    assert rc == 0, err
    assert out.startswith("production: StatefulSet orders-production/orders-production runs what the last record (seq 1: deploy by")


def test_drift_names_an_image_set_by_hand(released, cluster, project, capsys):
    _sts(cluster)["spec"]["template"]["spec"]["containers"][0]["image"] = EVIL
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert f"production: StatefulSet orders-production/orders-production runs image {EVIL}, but the last record (seq 1: deploy by" in err
    assert f"names image {IMAGE}: an unrecorded change (put back what the record names (kubectl -n orders-production set image statefulset/orders-production mendix={IMAGE})" in err


def test_drift_names_a_scale_and_a_configuration_change(released, cluster, project, capsys):
    sts = _sts(cluster)
    sts["spec"]["replicas"] = 4
    sts["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "MX_Orders_ApiUrl", "value": "https://evil.example.com"})
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert "runs 4 instance(s), but the last record (seq 1: deploy by" in err and "names 2: an unrecorded scale" in err
    assert "StatefulSet orders-production/orders-production's runtime configuration (containers, env, ConfigMaps) hashes to" in err
    assert "changed after the release (put back what the last release applied (kubectl -n orders-production rollout undo statefulset/orders-production" in err


def test_a_workload_nobody_recorded_is_an_unrecorded_deployment(project, cluster, tmp_path, capsys, monkeypatch):
    project.stack("production", _secure(_prod()))
    docs = _rendered(project, "production", tmp_path, capsys)
    cluster.put(_live(docs["StatefulSet"]))
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path)))
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "StatefulSet orders-production/orders-production runs, but the activity log records no deployment of it" in err


def test_an_unreadable_cluster_is_said_plainly(released, cluster, project, capsys):
    cluster.forbidden.add("/apis/apps/v1/namespaces/orders-production/statefulsets/orders-production")
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "production: what runs could not be read from the cluster: the identity may not read StatefulSet orders-production/orders-production (HTTP 403" in err


def test_pulumi_up_refuses_in_the_same_words_before_declaring_anything(released, cluster, project, capsys, pulumi_run, monkeypatch):
    _sts(cluster)["spec"]["template"]["spec"]["containers"][0]["image"] = EVIL
    _, _, said = _drift(project, capsys)
    monkeypatch.setattr(release_guard, "under_mocks", lambda: False)  # as under a real engine
    d = prepare(RawConfig(_prod(), SECRET_KEYS), project="orders", stack="production", base_dir=project.path)
    declared: list[str] = []
    monkeypatch.setattr(pulumi.CustomResource, "__init__", lambda self, t, *a, **k: declared.append(t))
    with pytest.raises(pulumi.RunError) as e:
        pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="production", project="orders")
    refused = " ".join(str(e.value).split())
    assert said == f"error: {refused}" and declared == []
    # put back, and the same run declares the environment
    monkeypatch.undo()
    monkeypatch.setattr(release_guard, "under_mocks", lambda: False)
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(project.path.parent)))
    _sts(cluster)["spec"]["template"]["spec"]["containers"][0]["image"] = IMAGE
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="production", project="orders")
    assert len(res.of_type("kubernetes:apps/v1:StatefulSet")) == 1


def test_pulumi_up_refuses_a_namespace_labelled_for_another_tier(project, cluster, tmp_path, pulumi_run, monkeypatch):
    cluster.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"mxinfra.io/app": "orders", "mxinfra.io/role": "production"}}})
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path)))
    monkeypatch.setattr(release_guard, "under_mocks", lambda: False)
    d = prepare(RawConfig(_test_stack(namespace="team-a"), SECRET_KEYS), project="orders", stack="test", base_dir=project.path)
    with pytest.raises(pulumi.RunError) as e:
        pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="test", project="orders")
    assert "mxinfra:kubernetes.namespace: namespace 'team-a' is a production namespace (label mxinfra.io/role), but environment 'test' is test" in str(e.value)
    # a deploy identity that may not read namespaces (cluster-scoped) is not stopped by it
    cluster.forbidden.add("/api/v1/namespaces/team-a")
    assert pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="test", project="orders").of_type("kubernetes:apps/v1:StatefulSet")


def test_operator_mode_compares_the_source_url_and_runtime(project, cluster, tmp_path, capsys, monkeypatch):
    cfg = _secure(with_(_prod(mode="operator"), "mxinfra:kubernetes/namespace", "mendix-apps"))
    cfg["mxinfra:environments"]["production"]["secretConstants"] = {"Encryption.EncryptionKey": SECURE}
    project.stack("production", cfg)
    docs = _rendered(project, "production", tmp_path, capsys)
    app = _live(docs["MendixApp"])
    # the Operator's defaults in fields the target does not set, and the secret fields, are not compared
    app["spec"]["runtime"].update(mxAdminPassword="c2VjcmV0", logAutosubscribeLevel="INFO")
    cluster.put(app)
    assert mendixapp_fingerprint(app["spec"], ["orders-production-secret"]) == app["metadata"]["annotations"][RUNTIME_CONFIG_ANNOTATION]
    record_deploy(project.path, "production")
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig(tmp_path)))
    assert _drift(project, capsys)[0] == 0
    app["spec"]["sourceURL"] = "https://evil.example.com/orders.mda"
    app["spec"]["runtime"]["microflowConstants"]["Orders.PageSize"] = "1000"
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "MendixApp mendix-apps/orders-production runs sourceURL https://evil.example.com/orders.mda" in err
    assert "kubectl -n mendix-apps patch mendixapp orders-production --type merge -p '{\"spec\":{\"sourceURL\":\"oci-image://" in err
    assert "runtime configuration (containers, env, ConfigMaps) hashes to" in err


def test_inside_a_pod_the_pods_service_account_reads_what_runs(released, cluster, tmp_path):
    from mxinfra_kubernetes.cluster import get_object, in_cluster_access

    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("pod-token\n")
    (sa / "ca.crt").write_bytes((tmp_path / "ca.crt").read_bytes())
    port = cluster.api.url.rsplit(":", 1)[1]
    access = in_cluster_access({"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}, sa)
    assert access.headers == {"Authorization": "Bearer pod-token"}
    assert get_object(access, "/apis/apps/v1/namespaces/orders-production/statefulsets/orders-production", "it")["spec"]["replicas"] == 2


def test_an_auth_provider_user_is_warned_not_stopped(released, cluster, project, pulumi_run, monkeypatch, tmp_path):
    doc = yaml.safe_load(cluster.api.kubeconfig(user={"auth-provider": {"name": "oidc", "config": {"id-token": "x"}}}))
    (tmp_path / "oidc").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "oidc"))
    monkeypatch.setattr(release_guard, "under_mocks", lambda: False)
    _sts(cluster)["spec"]["template"]["spec"]["containers"][0]["image"] = EVIL
    d = prepare(RawConfig(_prod(), SECRET_KEYS), project="orders", stack="production", base_dir=project.path)
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="production", project="orders")
    (w,) = [w for w in res.warnings if "what runs was not compared with the activity log" in w]
    assert "authenticates with an auth-provider plugin" in w


def test_an_unreachable_cluster_stops_pulumi_up(released, cluster, project, pulumi_run, monkeypatch, tmp_path):
    (tmp_path / "gone").write_text(cluster.api.kubeconfig().replace(cluster.api.url, "https://127.0.0.1:1"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "gone"))
    monkeypatch.setattr(release_guard, "under_mocks", lambda: False)
    d = prepare(RawConfig(_prod(), SECRET_KEYS), project="orders", stack="production", base_dir=project.path)
    with pytest.raises(pulumi.RunError, match="what runs could not be read from the cluster to compare it with the activity log: the API server did not answer"):
        pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="production", project="orders")



def test_what_runs_says_its_tier(released, cluster, tmp_path):
    """Issue 19, F18: the observed workload carries the tier the release labelled it with, which the core
    compares with the tier the stack declares (mxinfra.drift.tier_downgrade; a stack that declares
    `production` another tier is refused earlier, by its namespace's tier)."""
    from mxinfra_kubernetes.cluster import access_for
    from mxinfra_kubernetes.running import ROLE_LABEL, observe_plain

    assert released["StatefulSet"]["metadata"]["labels"][ROLE_LABEL] == "production"
    seen = observe_plain(access_for(str(cluster.kubeconfig(tmp_path)), None), "production", "orders-production", "orders-production", [])
    assert seen.exists and seen.role == "production"


def _drift(project: Any, capsys: Any) -> tuple[int, str, str]:
    return run_drift(project, capsys, "production")
