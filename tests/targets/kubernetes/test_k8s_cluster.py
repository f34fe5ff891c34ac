"""Issue 18: the StorageClass of every claim, the fail-fast check against the cluster, and kubeconfig/context errors.

The cluster is played by a local HTTPS server with its own CA, answering GET
/apis/storage.k8s.io/v1/storageclasses as the API server does (the engine suite asks a real kube-apiserver).
"""

from __future__ import annotations

import base64
import datetime
import importlib
import ipaddress
import json
import ssl
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mxinfra.components import MendixApp
from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.errors import ConfigError
from mxinfra.cli import main

from k8s_stacks import KUBECONFIG_CONTENT, ROOT, SECRET_KEYS, config, with_

k8s_target = importlib.import_module("mxinfra_kubernetes.target")
release_guard = importlib.import_module("mxinfra.release_guard")  # the module: the package's `target` is the instance
from mxinfra_kubernetes.cluster import ClusterUnreadable, preflight_issues  # noqa: E402
from mxinfra_kubernetes.config import Claim  # noqa: E402

PVC = "kubernetes:core/v1:PersistentVolumeClaim"
STS = "kubernetes:apps/v1:StatefulSet"
KEY = "mxinfra:kubernetes.storageClass"
TOKEN = "cluster-token-4471"
DEFAULT = "storageclass.kubernetes.io/is-default-class"


def _test_stack(**block: Any) -> dict[str, Any]:
    """The test environment with both claims: the in-cluster database's and the local files'."""
    cfg = config("test", instances=1, **block)
    cfg = with_(cfg, "mxinfra:kubernetes/database", {"inCluster": {"size": "2Gi"}})
    return with_(cfg, "mxinfra:kubernetes/storage", {"local": {"size": "1Gi"}})


def _prepare(cfg: dict[str, Any], stack: str = "test") -> Any:
    return prepare(RawConfig(cfg, SECRET_KEYS), project="orders", stack=stack, base_dir=ROOT)


def _claims_run(pulumi_run, cfg, stack="test", opts=None):
    d = _prepare(cfg, stack)
    return pulumi_run(lambda: MendixApp("orders", {"deployment": d}, opts), stack=stack, project="orders")


# --- the key: storageClassName on every claim ---------------------------------------------------------


@pytest.mark.parametrize(
    "block, env, db, files, want",
    [
        # the backups claim without a key of its own (backups.storageClass): the environment's class, else the block's
        (None, None, None, None, {"postgres-data": None, "files": None, "backups": None}),
        ("fast-ssd", None, None, None, {"postgres-data": "fast-ssd", "files": "fast-ssd", "backups": "fast-ssd"}),
        ("fast-ssd", "env-class", None, None, {"postgres-data": "env-class", "files": "env-class", "backups": "env-class"}),
        ("fast-ssd", None, "db-class", None, {"postgres-data": "db-class", "files": "fast-ssd", "backups": "fast-ssd"}),
        (None, None, None, "files.example.com", {"postgres-data": None, "files": "files.example.com", "backups": None}),
        ("fast-ssd", "env-class", "db-class", "files-class", {"postgres-data": "db-class", "files": "files-class", "backups": "env-class"}),
    ],
)
def test_every_claim_carries_the_storage_class_in_effect(pulumi_run, block, env, db, files, want):
    cfg = _test_stack()
    if block is not None:
        cfg = with_(cfg, "mxinfra:kubernetes/storageClass", block)
    if env is not None:
        cfg = with_(cfg, "mxinfra:kubernetes/environments", {"test": {"storageClass": env}})
    if db is not None:
        cfg = with_(cfg, "mxinfra:kubernetes/database.inCluster.storageClass", db)
    if files is not None:
        cfg = with_(cfg, "mxinfra:kubernetes/storage.local.storageClass", files)
    res = _claims_run(pulumi_run, cfg)
    claims = {r.name.removeprefix("orders-test-"): r.input("spec") for r in res.of_type(PVC)}
    size = {"postgres-data": "2Gi", "files": "1Gi", "backups": "20Gi"}
    expected = {}
    for kind, cls in want.items():
        expected[kind] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size[kind]}}}
        if cls is not None:
            expected[kind]["storageClassName"] = cls
    assert claims == expected
    # No StatefulSet claims volumes of its own: the three claims above are every volume the target asks for.
    assert [r.name for r in res.of_type(STS) if r.input("spec.volumeClaimTemplates", None) is not None] == []


@pytest.mark.parametrize(
    "backups, env_backups, want",
    [
        ({"storageClass": "archive"}, None, ("archive", "20Gi", "mxinfra:kubernetes.backups.storageClass")),
        ({"size": "30Gi"}, None, ("fast-ssd", "30Gi", KEY)),
        # an environment's backups block replaces the block's whole (as every environments.<env> key does)
        ({"storageClass": "archive", "size": "30Gi"}, {"size": "5Gi"}, ("fast-ssd", "5Gi", KEY)),
        (None, {"storageClass": "cold", "size": "1Ti"}, ("cold", "1Ti", "mxinfra:kubernetes.environments.test.backups.storageClass")),
    ],
)
def test_the_backups_claim_takes_its_own_class_and_size(pulumi_run, backups, env_backups, want):
    from mxinfra_kubernetes.backups import claim
    from mxinfra_kubernetes.config import KubernetesConfig, for_environment

    cfg = _test_stack(storageClass="fast-ssd")
    if backups is not None:
        cfg = with_(cfg, "mxinfra:kubernetes/backups", backups)
    if env_backups is not None:
        cfg = with_(cfg, "mxinfra:kubernetes/environments", {"test": {"backups": env_backups}})
    cls, size, key = want
    res = _claims_run(pulumi_run, cfg)
    claims = {r.name.removeprefix("orders-test-"): r.input("spec") for r in res.of_type(PVC)}
    assert claims["backups"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "storageClassName": cls}
    # the other claims keep the block's class: the key is the backups claim's alone
    assert claims["postgres-data"]["storageClassName"] == claims["files"]["storageClassName"] == "fast-ssd"
    # the quota counts the claim at its size: 2Gi + 1Gi + the backups
    (quota,) = [r for r in res.of_type("kubernetes:core/v1:ResourceQuota")]
    mib = {"20Gi": 20 * 1024, "30Gi": 30 * 1024, "5Gi": 5 * 1024, "1Ti": 1024 * 1024}[size]
    assert quota.input("spec.hard")["requests.storage"] == f"{3 * 1024 + mib}Mi"
    # the StorageClass check at `pulumi up` names the key that set the class
    block = KubernetesConfig.model_validate(cfg["mxinfra:kubernetes"])
    from mxinfra.environments import Environment, Role

    found = claim(for_environment(block, "test"), Environment("test", Role.TEST))
    assert (found.storage_class, found.key) == (cls, key)


def test_an_environment_override_can_return_to_the_cluster_default(pulumi_run):
    cfg = with_(_test_stack(storageClass="fast-ssd"), "mxinfra:kubernetes/environments", {"test": {"storageClass": None}})
    res = _claims_run(pulumi_run, cfg)
    assert [r.input("spec.storageClassName", None) for r in res.of_type(PVC)] == [None, None, None]


@pytest.mark.parametrize(
    "where, value",
    [
        ("storageClass", "Fast_SSD"),
        ("storageClass", ""),
        ("storageClass", "fast\n"),
        ("environments.test.storageClass", "a b"),
        ("database.inCluster.storageClass", "-fast"),
        ("storage.local.storageClass", "x" * 254),
    ],
)
def test_storage_class_must_be_a_storage_class_name(where, value):
    cfg = _test_stack()
    if where.startswith("environments."):
        cfg = with_(cfg, "mxinfra:kubernetes/environments", {"test": {}})
    cfg = with_(cfg, f"mxinfra:kubernetes/{where}", value)
    with pytest.raises(ConfigError) as e:
        _prepare(cfg)
    (issue,) = e.value.issues
    assert issue.path == f"mxinfra:kubernetes.{where}"
    assert issue.message.startswith("not a StorageClass name: lowercase DNS labels separated by dots")


def test_storage_class_is_documented():
    from mxinfra_kubernetes.config import KubernetesConfig

    assert "every PersistentVolumeClaim" in KubernetesConfig.model_fields["storageClass"].description
    readme = (ROOT / "targets" / "kubernetes" / "README.md").read_text()
    assert "storageClass: standard" in readme and "`mxinfra:kubernetes.storageClass`" in readme


# --- a local API server ------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool = False, ip: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class ApiServer:
    """What the test serves and what it was asked."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.status = 200
        self.classes: list[tuple[str, dict[str, str]]] = []
        self.requests: list[dict[str, Any]] = []
        ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert("test-ca", ca_key, "test-ca", ca_key, ca=True)
        self.ca_key = ca_key
        key = ec.generate_private_key(ec.SECP256R1())
        (directory / "server.crt").write_bytes(_pem(_cert("apiserver", key, "test-ca", ca_key, ip="127.0.0.1")))
        (directory / "server.key").write_bytes(_pem(key))
        (directory / "ca.crt").write_bytes(_pem(self.ca))

    def client_cert(self, cn: str) -> tuple[bytes, bytes]:
        """A client certificate the server's CA signed, and its key (PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        return _pem(_cert(cn, key, "test-ca", self.ca_key)), _pem(key)

    def kubeconfig(self, *, context: str = "test-cluster", user: dict[str, Any] | None = None, ca: bytes | None = None) -> str:
        """A kubeconfig for this server (CA inline, token auth unless `user` says otherwise)."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": self.url, "certificate-authority-data": base64.b64encode(ca or _pem(self.ca)).decode()}}],
            "users": [{"name": "deployer", "user": user if user is not None else {"token": TOKEN}}],
            "contexts": [{"name": context, "context": {"cluster": "local", "user": "deployer"}}],
            "current-context": context,
        }
        return yaml.safe_dump(doc)


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[ApiServer]:
    """A loopback HTTPS server that answers the StorageClass list (or `status`), recording each request."""
    api = ApiServer(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server name)
            peer = self.connection.getpeercert()
            cn = dict(x[0] for x in peer["subject"]).get("commonName") if peer else None
            api.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"), "client": cn})
            if self.path != "/apis/storage.k8s.io/v1/storageclasses":
                body, status = {"kind": "Status", "code": 404}, 404
            elif api.status != 200:
                body, status = {"kind": "Status", "code": api.status, "reason": "Forbidden" if api.status == 403 else "Unauthorized"}, api.status
            else:
                items = [{"metadata": {"name": n, **({"annotations": a} if a else {})}, "provisioner": "example.com/disk"} for n, a in api.classes]
                body, status = {"kind": "StorageClassList", "apiVersion": "storage.k8s.io/v1", "metadata": {}, "items": items}, 200
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
    tls.load_verify_locations(tmp_path / "ca.crt")
    tls.verify_mode = ssl.CERT_OPTIONAL  # client certificates are one way to authenticate, tokens another
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    api.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _claims(*pairs: tuple[str | None, str]) -> list[Claim]:
    """The test environment's database claim for each (storage class, key)."""
    return [Claim("test", "postgres-data", cls, key) for cls, key in pairs]


def _ask(api: ApiServer, claims: list[Claim], tmp_path: Path, **kw: Any) -> list[Any]:
    kc = tmp_path / "kubeconfig"
    kc.write_text(kw.pop("text", None) or api.kubeconfig())
    return preflight_issues(claims, str(kc), kw.pop("context", None), "Pulumi.test.yaml", env={}, cwd=tmp_path, timeout=5, **kw)


# --- the check itself ------------------------------------------------------------------------------


def test_named_class_that_exists_passes_and_the_token_is_sent(apiserver, tmp_path):
    apiserver.classes = [("standard", {DEFAULT: "true"}), ("fast-ssd", {})]
    assert _ask(apiserver, _claims(("fast-ssd", KEY)), tmp_path) == []
    assert apiserver.requests == [{"path": "/apis/storage.k8s.io/v1/storageclasses", "authorization": f"Bearer {TOKEN}", "client": None}]


def test_named_class_missing_from_the_cluster(apiserver, tmp_path):
    apiserver.classes = [("standard", {DEFAULT: "true"}), ("fast-ssd", {})]
    key = "mxinfra:kubernetes.database.inCluster.storageClass"
    (issue,) = _ask(apiserver, [Claim("test", "postgres-data", "gold", key), Claim("test", "files", "fast-ssd", KEY)], tmp_path)
    assert issue.path == key and issue.file == "Pulumi.test.yaml"
    assert issue.message.startswith(f"StorageClass 'gold' does not exist in the cluster (context test-cluster, {apiserver.url})")
    assert "test/postgres-data" in issue.message and "test/files" not in issue.message
    assert issue.fix == "the cluster's StorageClasses: fast-ssd, standard (default)"


@pytest.mark.parametrize("annotation", [DEFAULT, "storageclass.beta.kubernetes.io/is-default-class"])
def test_unnamed_class_uses_the_default(apiserver, tmp_path, annotation):
    apiserver.classes = [("standard", {annotation: "true"})]
    assert _ask(apiserver, _claims((None, KEY)), tmp_path) == []


def test_no_default_class_names_the_key_and_the_classes(apiserver, tmp_path):
    # "false" and other values do not make a class the default
    apiserver.classes = [("slow", {DEFAULT: "false"}), ("fast-ssd", {})]
    claims = [Claim("test", "postgres-data", None, KEY), Claim("test", "files", None, KEY)]
    (issue,) = _ask(apiserver, claims, tmp_path)
    assert issue.path == KEY
    assert issue.message.startswith(f"not set, and the cluster (context test-cluster, {apiserver.url}) has no default StorageClass")
    assert "test/postgres-data, test/files" in issue.message and "time out" in issue.message
    assert issue.fix.endswith("the cluster's StorageClasses: fast-ssd, slow")


def test_a_cluster_without_any_class(apiserver, tmp_path):
    (issue,) = _ask(apiserver, _claims((None, KEY)), tmp_path)
    assert issue.path == KEY and "no StorageClass at all" in issue.fix


@pytest.mark.parametrize("status, words", [(403, "may not list storageclasses (HTTP 403"), (401, "refused the credentials (HTTP 401")])
def test_forbidden_or_refused_is_unreadable_not_an_error(apiserver, tmp_path, status, words):
    apiserver.status = status
    with pytest.raises(ClusterUnreadable) as e:
        _ask(apiserver, _claims((None, KEY)), tmp_path)
    assert words in str(e.value) and TOKEN not in str(e.value)


def test_the_servers_certificate_is_verified(apiserver, tmp_path):
    other = ec.generate_private_key(ec.SECP256R1())
    wrong_ca = _pem(_cert("other-ca", other, "other-ca", other, ca=True))
    with pytest.raises(ClusterUnreadable) as e:
        _ask(apiserver, _claims((None, KEY)), tmp_path, text=apiserver.kubeconfig(ca=wrong_ca))
    assert "did not answer" in str(e.value) and "CERTIFICATE_VERIFY_FAILED" in str(e.value)
    assert apiserver.requests == []


def test_an_unreachable_server_is_unreadable(apiserver, tmp_path):
    text = apiserver.kubeconfig().replace(apiserver.url, "https://127.0.0.1:1")
    with pytest.raises(ClusterUnreadable, match="did not answer"):
        _ask(apiserver, _claims((None, KEY)), tmp_path, text=text)


def test_the_named_context_is_the_one_asked(apiserver, tmp_path):
    doc = yaml.safe_load(apiserver.kubeconfig())
    doc["clusters"].append({"name": "elsewhere", "cluster": {"server": "https://127.0.0.1:1"}})
    doc["contexts"].append({"name": "other", "context": {"cluster": "elsewhere", "user": "deployer"}})
    doc["current-context"] = "other"
    apiserver.classes = [("standard", {DEFAULT: "true"})]
    assert _ask(apiserver, _claims((None, KEY)), tmp_path, text=yaml.safe_dump(doc), context="test-cluster") == []
    assert len(apiserver.requests) == 1


def test_client_certificate_authentication(apiserver, tmp_path):
    cert, key = apiserver.client_cert("deployer-cert")
    user = {"client-certificate-data": base64.b64encode(cert).decode(), "client-key-data": base64.b64encode(key).decode()}
    apiserver.classes = [("standard", {DEFAULT: "true"})]
    assert _ask(apiserver, _claims((None, KEY)), tmp_path, text=apiserver.kubeconfig(user=user)) == []
    assert apiserver.requests[0]["client"] == "deployer-cert" and apiserver.requests[0]["authorization"] is None


def test_exec_credential_plugin(apiserver, tmp_path):
    # As client-go runs it: KUBERNETES_EXEC_INFO in, an ExecCredential on stdout, the kubeconfig's env added.
    script = (
        "import json, os; info = json.loads(os.environ['KUBERNETES_EXEC_INFO']); "
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential', "
        "'status': {'token': os.environ['PREFIX'] + str(info['spec']['interactive'])}}))"
    )
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable, "args": ["-c", script], "env": [{"name": "PREFIX", "value": "exec-"}]}}
    apiserver.classes = [("standard", {DEFAULT: "true"})]
    assert _ask(apiserver, _claims((None, KEY)), tmp_path, text=apiserver.kubeconfig(user=user)) == []
    assert apiserver.requests[0]["authorization"] == "Bearer exec-False"
    failing = {"exec": {"command": sys.executable, "args": ["-c", "raise SystemExit(3)"]}}
    with pytest.raises(ClusterUnreadable, match="exited with status 3"):
        _ask(apiserver, _claims((None, KEY)), tmp_path, text=apiserver.kubeconfig(user=failing))


def test_no_kubeconfig_at_all_is_unreadable(tmp_path):
    with pytest.raises(ClusterUnreadable, match="no kubeconfig to read"):
        preflight_issues(_claims((None, KEY)), None, None, env={"KUBECONFIG": str(tmp_path / "none")}, cwd=tmp_path)


# --- where it runs: a real engine only, before any object --------------------------------------------


def _class_requests(api: ApiServer) -> list[dict[str, Any]]:
    """The StorageClass lists asked (every `pulumi up` also reads what runs: test_k8s_drift.py)."""
    return [r for r in api.requests if r["path"] == "/apis/storage.k8s.io/v1/storageclasses"]


def _pulumi_up(monkeypatch):
    """Run the target as under a real engine (the mock runtime stands in for it, the check does not know)."""
    monkeypatch.setattr(release_guard, "under_mocks", lambda: False)


def test_pulumi_up_stops_before_declaring_anything(pulumi_run, apiserver, tmp_path, monkeypatch):
    apiserver.classes = [("fast-ssd", {})]
    (tmp_path / "kc").write_text(apiserver.kubeconfig())
    _pulumi_up(monkeypatch)
    registered: list[str] = []
    monkeypatch.setattr(k8s.Provider, "__init__", lambda *a, **k: registered.append("provider"))
    cfg = _test_stack(kubeconfig=str(tmp_path / "kc"))
    cfg["mxinfra:kubernetes"]["environments"] = {"test": {"storageClass": "gold"}}
    with pytest.raises(pulumi.RunError) as e:
        _claims_run(pulumi_run, cfg)
    text = str(e.value)
    assert text.startswith("1 problem(s) in the stack config")
    assert "mxinfra:kubernetes.environments.test.storageClass: StorageClass 'gold' does not exist in the cluster (context test-cluster" in text
    assert "(the cluster's StorageClasses: fast-ssd)" in text
    assert registered == [] and len(apiserver.requests) == 1


def test_pulumi_up_reads_the_default_providers_config(pulumi_run, apiserver, tmp_path, monkeypatch):
    # no context/kubeconfig in the block: the provider (and the check) use kubernetes:kubeconfig
    (tmp_path / "kc").write_text(apiserver.kubeconfig())
    _pulumi_up(monkeypatch)
    d = _prepare(_test_stack())
    with pytest.raises(pulumi.RunError, match=r"mxinfra:kubernetes.storageClass: not set, and the cluster \(context test-cluster"):
        pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="test", project="orders", config={"kubernetes:kubeconfig": str(tmp_path / "kc")})
    apiserver.classes = [("standard", {DEFAULT: "true"})]
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="test", project="orders", config={"kubernetes:kubeconfig": str(tmp_path / "kc")})
    assert len(res.of_type(PVC)) == 3 and len(_class_requests(apiserver)) == 2


def test_pulumi_up_carries_on_with_a_warning_when_forbidden(pulumi_run, apiserver, tmp_path, monkeypatch):
    apiserver.status = 403
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kc"))
    (tmp_path / "kc").write_text(apiserver.kubeconfig())
    _pulumi_up(monkeypatch)
    res = _claims_run(pulumi_run, _test_stack())
    assert len(res.of_type(PVC)) == 3 and len(_class_requests(apiserver)) == 1
    (warning,) = [w for w in res.warnings if "StorageClasses were not checked" in w]
    assert "HTTP 403" in warning and "mxinfra:kubernetes.storageClass" in warning and TOKEN not in warning


def test_pulumi_up_does_not_ask_for_the_callers_provider(pulumi_run, apiserver, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kc"))
    (tmp_path / "kc").write_text(apiserver.kubeconfig())  # the ambient cluster has no class: not the one deployed to
    _pulumi_up(monkeypatch)

    def program():
        MendixApp("orders", {"deployment": _prepare(_test_stack())}, pulumi.ResourceOptions(providers=[k8s.Provider("render", render_yaml_to_directory="out")]))

    res = pulumi_run(program, stack="test", project="orders")
    assert len(res.of_type(PVC)) == 3 and apiserver.requests == []


def test_without_claims_the_classes_are_not_asked(pulumi_run, apiserver, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kc"))
    (tmp_path / "kc").write_text(apiserver.kubeconfig())
    _pulumi_up(monkeypatch)
    # production's only claim would be its backups' (external database, S3 files): opted out here
    no_backups = with_(config("production"), "mxinfra:environments/production.backups", {"enabled": False, "reason": "the test needs no claim"})
    res = _claims_run(pulumi_run, no_backups, "production")
    assert res.of_type(PVC) == []
    # (what runs is read at every `pulumi up`, to compare it with the activity log: test_k8s_drift.py)
    assert _class_requests(apiserver) == []


def test_plan_never_asks_the_cluster(project, capsys, apiserver, tmp_path, monkeypatch, engine_secrets):
    # the same cluster (no class at all) that stops `pulumi up`: the offline plan declares everything
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kc"))
    (tmp_path / "kc").write_text(apiserver.kubeconfig())
    project.stack("test", _test_stack(storageClass="fast-ssd"))
    rc = main(["plan", "-s", "test", "-C", str(project.path), "--out", str(tmp_path / "out")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    claims = [d for d in yaml.safe_load_all((tmp_path / "out" / "kubernetes" / "test.yaml").read_text()) if d and d["kind"] == "PersistentVolumeClaim"]
    assert sorted(d["spec"]["storageClassName"] for d in claims) == ["fast-ssd", "fast-ssd", "fast-ssd"]
    assert apiserver.requests == []


# --- B: the kubeconfig file and the context ------------------------------------------------------------


def _issues(cfg, stack="production"):
    with pytest.raises(ConfigError) as e:
        _prepare(cfg, stack)
    return e.value.issues


def test_missing_kubeconfig_file(tmp_path):
    missing = tmp_path / "nope" / "prod.kubeconfig"
    (issue,) = _issues(config("production", kubeconfig=str(missing), context="prod"))
    assert issue.path == "mxinfra:kubernetes.kubeconfig" and issue.message == f"no kubeconfig file at {missing}"
    assert "pulumi config set --secret --path 'mxinfra:kubernetes.kubeconfig'" in issue.fix


def test_relative_kubeconfig_path_is_from_the_project_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (issue,) = _issues(config("production", kubeconfig="kube/prod.yaml"))
    assert issue.message == f"no kubeconfig file at {tmp_path / 'kube' / 'prod.yaml'}"
    (tmp_path / "kube").mkdir()
    (tmp_path / "kube" / "prod.yaml").write_text(KUBECONFIG_CONTENT)
    _prepare(config("production", kubeconfig="kube/prod.yaml"))


def test_unknown_context_in_the_configured_file(tmp_path):
    kc = tmp_path / "prod.kubeconfig"
    doc = yaml.safe_load(KUBECONFIG_CONTENT)
    doc["contexts"].append({"name": "staging", "context": {"cluster": "prod", "user": "deployer"}})
    kc.write_text(yaml.safe_dump(doc))
    (issue,) = _issues(config("production", kubeconfig=str(kc), context="nope"))
    assert issue.path == "mxinfra:kubernetes.context"
    assert issue.message == f"context 'nope' is not in the kubeconfig {kc}" and issue.fix == "its contexts: prod, staging"
    _prepare(config("production", kubeconfig=str(kc), context="staging"))


def test_unknown_context_in_kubeconfig_content():
    (issue,) = _issues(config("production", kubeconfig=KUBECONFIG_CONTENT, context="nope"))
    assert issue.path == "mxinfra:kubernetes.context"
    assert issue.message == "context 'nope' is not in the kubeconfig content of mxinfra:kubernetes.kubeconfig"
    assert issue.fix == "its contexts: prod"


def test_configured_file_without_a_usable_current_context(tmp_path):
    kc = tmp_path / "k"
    kc.write_text(KUBECONFIG_CONTENT.replace("current-context: prod", "current-context: gone"))
    (issue,) = _issues(config("production", kubeconfig=str(kc)))
    assert issue.path == "mxinfra:kubernetes.context" and "'gone'" in issue.message and str(kc) in issue.message and "prod" in issue.fix
    kc.write_text(KUBECONFIG_CONTENT.replace("current-context: prod", ""))
    (issue,) = _issues(config("production", kubeconfig=str(kc)))
    assert issue.message == f"not set, and the kubeconfig {kc} has no current-context"


def test_a_file_that_is_not_a_kubeconfig(tmp_path):
    kc = tmp_path / "k"
    kc.write_text(f"clusters: [unclosed\n  token: {TOKEN}\n")
    (issue,) = _issues(config("production", kubeconfig=str(kc)))
    assert issue.path == "mxinfra:kubernetes.kubeconfig" and issue.message.startswith(f"the kubeconfig {kc} does not parse as YAML (line")
    assert TOKEN not in str(issue)


def test_unknown_context_in_the_ambient_kubeconfig(tmp_path, monkeypatch):
    # KUBECONFIG lists files: their contexts merge; a file that does not exist is skipped, as kubectl does
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text(KUBECONFIG_CONTENT)
    b.write_text(KUBECONFIG_CONTENT.replace("name: prod\n  context", "name: dev\n  context"))
    monkeypatch.setenv("KUBECONFIG", f"{a}:{tmp_path / 'absent'}:{b}")
    (issue,) = _issues(config("production", context="nope"))
    assert issue.path == "mxinfra:kubernetes.context"
    assert issue.message == f"context 'nope' is not in the kubeconfig {a}, {b}" and issue.fix == "its contexts: dev, prod"
    _prepare(config("production", context="dev"))
    # no ambient kubeconfig on this machine: nothing to compare the context with
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    _prepare(config("production", context="nope"))


def test_plan_reports_file_and_context_problems_at_once(project, capsys, tmp_path, engine_secrets):
    """The issue's own reproduction: `kubeconfig: /nonexistent` and `context: nope` in a stack file, exit 2."""
    project.stack("production", config("production", kubeconfig=str(tmp_path / "nonexistent"), image="registry.example.com/orders:1.4.2"))
    rc = main(["plan", "-s", "production", "-C", str(project.path)])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and "Traceback" not in err
    assert f"mxinfra:kubernetes.kubeconfig: no kubeconfig file at {tmp_path / 'nonexistent'}" in err
    assert "mxinfra:kubernetes.image" in err  # every problem in the one report (here: a tag on production)
    kc = tmp_path / "kc"
    kc.write_text(KUBECONFIG_CONTENT)
    project.stack("production", config("production", kubeconfig=str(kc), context="nope"))
    rc = main(["plan", "-s", "production", "-C", str(project.path)])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2 and f"mxinfra:kubernetes.context: context 'nope' is not in the kubeconfig {kc} (its contexts: prod)" in err


def test_the_program_refuses_them_as_the_plan_does(project, pulumi_run, capsys, tmp_path):
    """`pulumi up` runs the same check: the engine's config, a RunError with the same lines, nothing declared."""
    from mxinfra.program import run
    from mxinfra.stackfile import as_pulumi_config, read_project, read_stack_config

    kc = tmp_path / "kc"
    kc.write_text(KUBECONFIG_CONTENT)
    project.stack("production", config("production", kubeconfig=str(kc), context="nope"))
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 2
    line = f"mxinfra:kubernetes.context: context 'nope' is not in the kubeconfig {kc} (its contexts: prod)"
    assert line in capsys.readouterr().err
    cfg, secret_keys = as_pulumi_config(read_stack_config(read_project(project.path), "production"))
    with pytest.raises(pulumi.RunError) as refused:
        pulumi_run(lambda: run(project.path), config=cfg, secret_keys=secret_keys, stack="production", project="orders")
    assert line in str(refused.value)
