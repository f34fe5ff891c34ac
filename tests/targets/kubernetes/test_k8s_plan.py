"""`mxinfra plan` with the kubernetes target: the example stacks, rendered manifests, secrets and bad config."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mxinfra.cli import main

from k8s_stacks import K8S_VERSION, KNOWN_SECRETS, KUBE_TOKEN, KUBECONFIG_CONTENT, ROOT, config, load_schema, restricted_violations, with_


EXAMPLE_STACKS = ["test", "acceptance", "production", "operator"]


def plan(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["plan", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def validate_manifest(path: Path) -> list[dict]:
    """Every object of a rendered file: strict kubernetes-validate, or the repo schema for MendixApps."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    schema = jsonschema.Draft202012Validator(load_schema())
    for doc in docs:
        if doc["kind"] == "MendixApp":
            schema.validate(doc)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    return docs


def test_pinned_version_is_supported():
    from kubernetes_validate import utils

    assert K8S_VERSION in utils.all_versions() or utils.major_minor(K8S_VERSION) in [utils.major_minor(v) for v in utils.all_versions()]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_example_stack_renders_valid_manifests(stack, capsys, tmp_path, example_project):
    rc, out, err = plan(capsys, "-s", stack, "-C", str(example_project), "--out", str(tmp_path))
    assert rc == 0, err
    assert "target kubernetes" in out and f"wrote {tmp_path / 'kubernetes' / stack}.yaml".replace("\n", "") in out.replace("\n", "")
    files = sorted((tmp_path / "kubernetes").iterdir())
    assert [f.name for f in files] == [f"{stack}.yaml"]
    docs = validate_manifest(files[0])
    kinds = [d["kind"] for d in docs]
    if stack == "operator":
        assert kinds.count("MendixApp") == 1 and "StatefulSet" not in kinds and "Namespace" not in kinds
    else:
        assert kinds.count("StatefulSet") == (2 if stack == "test" else 1)
        assert {"Namespace", "Service", "Ingress", "NetworkPolicy", "ResourceQuota", "LimitRange", "ConfigMap", "Secret", "Role", "RoleBinding"} <= set(kinds)
        assert ("PodDisruptionBudget" in kinds) == (stack == "production")
    for d in docs:
        if d["kind"] == "Secret":
            assert d["stringData"] and set(d["stringData"].values()) == {"[secret]"}
        if d["kind"] == "StatefulSet":
            assert restricted_violations(d["spec"]["template"]["spec"]) == [], d["metadata"]["name"]
        if d["kind"] == "Namespace":
            assert d["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_rendering_is_deterministic(capsys, tmp_path, example_project):
    for out in ("a", "b"):
        assert plan(capsys, "-s", "production", "-C", str(example_project), "--out", str(tmp_path / out))[0] == 0
    assert (tmp_path / "a/kubernetes/production.yaml").read_text() == (tmp_path / "b/kubernetes/production.yaml").read_text()


def test_production_plan_tree(capsys, monkeypatch, example_project):
    monkeypatch.setenv("COLUMNS", "300")  # one line per tree entry
    rc, out, err = plan(capsys, "-s", "production", "-C", str(example_project))
    assert rc == 0, err
    text = " ".join(out.split())
    assert "kubernetes:apps/v1:StatefulSet orders-production-statefulset" in text
    assert "pod orders-production-0 is the cluster leader" in text
    assert "identity provider must enforce MFA" in text and "release-managers" in text


@pytest.mark.parametrize("mode", ["plain", "operator"])
def test_no_secret_value_in_output_or_manifests(project, capsys, tmp_path, engine_secrets, mode):
    cfg = config("production", mode=mode)
    cfg["mxinfra:environments"]["production"]["secretConstants"] = {"Encryption.EncryptionKey": "Known-Encryption-Key-1234"}
    project.stack("production", cfg)
    rc, as_json, err = plan(capsys, "-s", "production", "-C", str(project.path), "--json", "--out", str(tmp_path))
    assert rc == 0, err
    rc, tree, err2 = plan(capsys, "-s", "production", "-C", str(project.path))
    assert rc == 0, err2
    written = (tmp_path / "kubernetes" / "production.yaml").read_text()
    validate_manifest(tmp_path / "kubernetes" / "production.yaml")
    for text in (as_json, err, tree, err2, written):
        for value in KNOWN_SECRETS:
            assert value not in text
    # the secrets are there, masked, and only in Secret objects / the CR's secret fields
    doc = json.loads(as_json)
    masked = [r["name"] for r in doc["resources"] if "[secret]" in json.dumps(r["inputs"])]
    # ... and the activity resource's keyed digests of the secrets (it records which secret changed)
    expected = {"plain": ["orders-production-activity", "orders-production-backup-files", "orders-production-database-secret", "orders-production-secret"], "operator": ["orders-production-activity", "orders-production-mendixapp", "orders-production-secret"]}
    assert sorted(masked) == expected[mode]


def _error(project, capsys, cfg, stack="production") -> str:
    project.stack(stack, cfg)
    rc, _, err = plan(capsys, "-s", stack, "-C", str(project.path))
    assert rc == 2, err
    assert "Traceback" not in err
    return " ".join(err.split())


def test_in_cluster_database_refused_on_production(project, capsys, engine_secrets):
    err = _error(project, capsys, with_(config("production"), "mxinfra:kubernetes/database", {"inCluster": {}}))
    assert "mxinfra:kubernetes.database.inCluster: an in-cluster database is for test environments only" in err


def test_in_cluster_database_refused_on_acceptance_override(project, capsys, engine_secrets):
    cfg = config("uat", role="acceptance", instances=1)
    cfg["mxinfra:kubernetes"]["environments"] = {"uat": {"database": {"inCluster": {}}}}
    err = _error(project, capsys, cfg, stack="uat")
    assert "mxinfra:kubernetes.environments.uat.database.inCluster" in err


def test_local_files_refused_with_two_instances(project, capsys, engine_secrets):
    err = _error(project, capsys, with_(config("production", instances=2), "mxinfra:kubernetes/storage", {"local": {}}))
    assert "mxinfra:kubernetes.storage.local: local files need a single instance" in err


def test_unknown_principal_form_refused(project, capsys, engine_secrets):
    cfg = with_(config("acceptance", instances=1), "mxinfra:access/0.principal", "arn:aws:iam::123456789012:role/ops")
    err = _error(project, capsys, cfg, stack="acceptance")
    assert "mxinfra:access[0].principal" in err and "group:NAME, user:NAME or serviceaccount:NAMESPACE/NAME" in err


@pytest.mark.parametrize("principal", ["user:alice@example.com", "serviceaccount:ci/deployer"])
def test_production_accepts_only_groups(project, capsys, engine_secrets, principal):
    err = _error(project, capsys, with_(config("production"), "mxinfra:access/0.principal", principal))
    assert "mxinfra:access[0].principal: production environment(s) production accept only group: principals" in err


def test_plain_text_secret_fields_refused(project, capsys):
    # no engine_secrets: every secret-typed field of the block is in plain text
    cfg = config("production")
    del cfg["mxinfra:environments"]["production"]["adminPassword"]
    err = _error(project, capsys, cfg)
    for path in ("mxinfra:kubernetes.database.url", "mxinfra:kubernetes.storage.s3.accessKeyId", "mxinfra:kubernetes.storage.s3.secretAccessKey"):
        assert f"{path}: is stored in plain text" in err
    for value in KNOWN_SECRETS:
        assert value not in err


def test_missing_pieces_are_named(project, capsys, engine_secrets):
    cfg = config("production")
    for path in ("image", "database", "storage", "ingress"):
        cfg = with_(cfg, f"mxinfra:kubernetes/{path}", None)
    err = _error(project, capsys, cfg)
    for path in ("mxinfra:kubernetes.image", "mxinfra:kubernetes.database", "mxinfra:kubernetes.storage", "mxinfra:kubernetes.ingress.host"):
        assert f"{path}:" in err
    err = _error(project, capsys, with_(config("production", mode="operator"), "mxinfra:kubernetes/operator.sourceURL", "http://x/app.mda"))
    assert "mxinfra:kubernetes.operator.sourceURL: must be an HTTPS URL" in err
    err = _error(project, capsys, with_(config("production"), "mxinfra:kubernetes/modee", "plain"))
    assert "mxinfra:kubernetes.modee: unknown key" in err


def test_cli_start_up_does_not_import_pulumi_kubernetes():
    import subprocess
    import sys

    code = (
        "import sys; from mxinfra.target import installed_targets, load_target\n"
        "assert 'kubernetes' in installed_targets(); load_target('kubernetes')\n"
        "print('HEAVY', sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_kubernetes')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "HEAVY []" in out, out


# --- values the target cannot use are config errors (exit 2 with the key path), never a traceback ----


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("cpu", {"limit": "2Gi"}, "mxinfra:kubernetes.cpu.limit"),
        ("cpu", {"request": "1.5m"}, "mxinfra:kubernetes.cpu.request"),
        ("cpu", {"request": "250m\n"}, "mxinfra:kubernetes.cpu.request"),
        ("cpu", {"request": "0.0001"}, "mxinfra:kubernetes.cpu.request"),
        ("cpu", {"request": "3", "limit": "2"}, "mxinfra:kubernetes.cpu"),
        ("storage", {"local": {"size": "10m"}}, "mxinfra:kubernetes.storage.local.size"),
        ("storage", {"local": {"size": "10Gi\n"}}, "mxinfra:kubernetes.storage.local.size"),
        ("storage", {"local": {"size": "0Gi"}}, "mxinfra:kubernetes.storage.local.size"),
        ("database", {"inCluster": {"size": "1.5"}}, None),  # 1.5 bytes is a valid quantity: accepted
        ("database", {"inCluster": {"size": "2k"}}, None),
        ("database", {"inCluster": {"size": "5Xi"}}, "mxinfra:kubernetes.database.inCluster.size"),
    ],
)
def test_bad_quantities_are_config_errors(project, capsys, engine_secrets, path, value, where):
    cfg = with_(config("test", instances=1), f"mxinfra:kubernetes/{path}", value)
    project.stack("test", cfg)
    rc, _, err = plan(capsys, "-s", "test", "-C", str(project.path))
    assert "Traceback" not in err and "internal error" not in err
    if where is None:
        assert rc == 0, err
    else:
        assert rc == 2, err
        assert f"{where}:" in " ".join(err.split())


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("mxinfra:kubernetes/namespace", "orders\n", "mxinfra:kubernetes.namespace"),
        ("mxinfra:kubernetes/environments", {"production": {"namespace": "orders\n"}}, "mxinfra:kubernetes.environments.production.namespace"),
        ("mxinfra:kubernetes/ingress", {"host": "orders.example.com\n"}, "mxinfra:kubernetes.ingress.host"),
        ("mxinfra:kubernetes/ingress", {"domain": "example.com\n"}, "mxinfra:kubernetes.ingress.domain"),
        ("mxinfra:kubernetes/ingress", {"domain": "example.com", "controllerNamespace": "ingress-nginx\n"}, "mxinfra:kubernetes.ingress.controllerNamespace"),
        ("mxinfra:access/0.principal", "group:ops\n", "mxinfra:access[0].principal"),
        ("mxinfra:access/0.principal", "group: ops", "mxinfra:access[0].principal"),
    ],
)
def test_trailing_newlines_are_refused(project, capsys, engine_secrets, path, value, where):
    err = _error(project, capsys, with_(config("production"), path, value))
    assert f"{where}:" in err


@pytest.mark.parametrize("principal", ["serviceaccount:ci\n/deployer", "serviceaccount:ci/deployer\n", "user:alice\n"])
def test_principal_parsing_uses_the_whole_string(principal):
    from mxinfra_kubernetes.config import parse_principal

    assert parse_principal(principal) is None
    assert parse_principal(principal.replace("\n", "")) is not None


def test_quantity_readers_use_the_whole_string():
    from mxinfra_kubernetes.layout import cpu_milli, mib

    assert cpu_milli("250m") == 250 and cpu_milli("0.5") == 500 and mib("5Gi") == 5120 and mib("1G") == 954
    with pytest.raises(ValueError):
        mib("5Gi\n")


# --- kubeconfig content is a credential -------------------------------------------------------------


def test_plain_text_kubeconfig_content_refused(project, capsys):
    # no engine_secrets: the block is in plain text
    cfg = with_(config("production"), "mxinfra:kubernetes/kubeconfig", KUBECONFIG_CONTENT)
    del cfg["mxinfra:environments"]["production"]["adminPassword"]
    err = _error(project, capsys, cfg)
    assert "mxinfra:kubernetes.kubeconfig: kubeconfig content is stored in plain text" in err
    assert KUBE_TOKEN not in err


def test_plain_text_kubeconfig_path_accepted(project, capsys, tmp_path):
    # a path names a file; only its content is a credential
    from mxinfra_kubernetes.config import is_kubeconfig_content

    (tmp_path / "prod.kubeconfig").write_text(KUBECONFIG_CONTENT)
    cfg = with_(config("production"), "mxinfra:kubernetes/kubeconfig", str(tmp_path / "prod.kubeconfig"))
    del cfg["mxinfra:environments"]["production"]["adminPassword"]
    err = _error(project, capsys, cfg)  # refused for the other plain-text secrets only
    assert "mxinfra:kubernetes.kubeconfig" not in err and "mxinfra:kubernetes.database.url: is stored in plain text" in err
    assert not is_kubeconfig_content("/etc/mxinfra/prod.kubeconfig") and not is_kubeconfig_content("~/.kube/config")
    assert is_kubeconfig_content(KUBECONFIG_CONTENT) and is_kubeconfig_content('{"apiVersion": "v1", "kind": "Config"}')


@pytest.mark.parametrize("mode", ["plain", "operator"])
def test_kubeconfig_token_never_in_plan_output(project, capsys, tmp_path, engine_secrets, mode):
    project.stack("production", with_(config("production", mode=mode), "mxinfra:kubernetes/kubeconfig", KUBECONFIG_CONTENT))
    out = tmp_path / "out"
    rc, as_json, err = plan(capsys, "-s", "production", "-C", str(project.path), "--json", "--out", str(out))
    assert rc == 0, err
    rc, tree, err2 = plan(capsys, "-s", "production", "-C", str(project.path))
    assert rc == 0, err2
    written = [p.read_text() for p in out.rglob("*") if p.is_file()]
    assert written
    for text in (as_json, err, tree, err2, *written):
        assert KUBE_TOKEN not in text
    provider = [r for r in json.loads(as_json)["resources"] if r["type"] == "pulumi:providers:kubernetes"]
    assert provider and "[secret]" in json.dumps(provider[0]["inputs"])
