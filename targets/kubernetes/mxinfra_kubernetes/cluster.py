"""The cluster a stack deploys to, found as the provider finds it: the kubeconfig and its context (checked
offline by `check`) and, before `pulumi up` declares anything, what the run asks of the cluster: its
StorageClasses (when a volume claim is declared), the environments' namespaces (owner labels) and what runs
(running.py, for `mxinfra drift` and the same check at `pulumi up`).

No Pulumi imports: `check` runs it in `mxinfra plan` too, and the target's `deploy_app` wraps the rest.

Why not the `kubernetes` client: the target needs a few reads (GETs of known objects) and the kubeconfig's
contexts; the official client would add itself and its dependency tree (google-auth, websocket-client,
requests-oauthlib, ...) to every installation for that, and pulumi-kubernetes does not expose its Go
client to the program. A failed StorageClass read is never an error (a warning, and `pulumi up` goes on);
what runs must be read (target.py says why): a failed read stops `pulumi up`, except where this reader
cannot authenticate as the provider would (`Unsupported`: an auth-provider user), which warns.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mxinfra.errors import ConfigIssue

from .config import BLOCK, PLACEHOLDER, Claim, KubernetesConfig, is_kubeconfig_content

STORAGE_CLASSES_PATH = "/apis/storage.k8s.io/v1/storageclasses"
# What marks the default class; the DefaultStorageClass admission plugin still honours the beta form.
DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class")
# Fields naming files, which client-go reads relative to the kubeconfig file that holds them.
_FILE_FIELDS = {"clusters": ("certificate-authority",), "users": ("client-certificate", "client-key", "tokenFile")}
_KUBECONFIG_FIX = (
    f"give the path of an existing kubeconfig file (relative to the project directory), or its content as a secret: "
    f"pulumi config set --secret --path '{BLOCK}.kubeconfig' \"$(cat KUBECONFIG_FILE)\""
)


class KubeconfigError(Exception):
    """A kubeconfig that cannot be read; the message names it and never quotes its content."""


class KubeconfigMissing(KubeconfigError):
    """The kubeconfig path names no file."""


class ClusterUnreadable(Exception):
    """The cluster could not be asked (no credentials, unreachable, forbidden); the message is the reason."""


class Unsupported(ClusterUnreadable):
    """The provider could authenticate, this reader cannot (an auth-provider plugin)."""


@dataclass(frozen=True)
class Kubeconfig:
    """A kubeconfig (a file, the files KUBECONFIG lists merged, or content) and where it came from."""

    source: str  # for messages: "the kubeconfig PATH[, PATH]", or "the kubeconfig content of KEY"
    clusters: Mapping[str, Mapping[str, Any]]
    users: Mapping[str, Mapping[str, Any]]
    contexts: Mapping[str, Mapping[str, Any]]
    current_context: str | None


@dataclass(frozen=True)
class ClusterAccess:
    """How to ask one cluster's API server: its URL, TLS settings and authentication headers."""

    server: str
    tls: ssl.SSLContext
    headers: Mapping[str, str]
    where: str  # "context NAME, https://server": for messages


@dataclass(frozen=True)
class StorageClass:
    """A StorageClass of the cluster."""

    name: str
    default: bool


# --- kubeconfig ----------------------------------------------------------------------------------------


def _parse(text: str, source: str, directory: Path | None) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # Only the line: a YAML error quotes the text around it, and content holds credentials.
        mark = getattr(e, "problem_mark", None)
        raise KubeconfigError(f"{source} does not parse as YAML" + (f" (line {mark.line + 1})" if mark else "")) from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{source} is not a mapping with clusters, users and contexts")
    for section, field_name in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
        items = doc.get(section) or []
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get(field_name) or {}, dict) for i in items):
            raise KubeconfigError(f"{source} is malformed: {section} must be a list of entries with a name and a {field_name} mapping")
        if directory is not None:
            for item in items:
                body = item.get(field_name) or {}
                for key in _FILE_FIELDS.get(section, ()):
                    if isinstance(body.get(key), str) and body[key] and not Path(body[key]).is_absolute():
                        body[key] = str(directory / body[key])
    return doc


def _merged(docs: Sequence[dict[str, Any]], source: str) -> Kubeconfig:
    # As kubectl merges the files KUBECONFIG lists: the first file to define a name (or a current context) wins.
    found: dict[str, dict[str, Mapping[str, Any]]] = {"clusters": {}, "users": {}, "contexts": {}}
    current = None
    for doc in docs:
        for section, field_name in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for item in doc.get(section) or []:
                found[section].setdefault(item["name"], item.get(field_name) or {})
        current = current or doc.get("current-context") or None
    return Kubeconfig(source, found["clusters"], found["users"], found["contexts"], current if isinstance(current, str) else None)


def read_files(paths: Sequence[Path]) -> Kubeconfig | None:
    """The kubeconfig files among `paths` that exist, merged; None when none does."""
    existing = [p for p in paths if p.is_file()]
    if not existing:
        return None
    docs = []
    for path in existing:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise KubeconfigError(f"cannot read the kubeconfig {path}: {e.__class__.__name__}") from None
        docs.append(_parse(text, f"the kubeconfig {path}", path.parent))
    return _merged(docs, "the kubeconfig " + ", ".join(str(p) for p in existing))


def ambient_paths(env: Mapping[str, str]) -> list[Path]:
    """Where the provider looks without a configured kubeconfig: the KUBECONFIG list, else ~/.kube/config."""
    listed = env.get("KUBECONFIG")
    if listed:
        return [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def resolve_kubeconfig(value: str | None, env: Mapping[str, str], cwd: Path, key: str = f"{BLOCK}.kubeconfig") -> Kubeconfig | None:
    """The kubeconfig the provider reads for the config value `value` (a path, content, or None for the
    ambient one); None when there is none to read (no ambient file, or a secret an offline plan cannot see)."""
    if value is None:
        return read_files(ambient_paths(env))
    if value == PLACEHOLDER:
        return None
    if is_kubeconfig_content(value):
        source = f"the kubeconfig content of {key}"
        return _merged([_parse(value, source, None)], source)
    path = Path(value).expanduser()
    path = path if path.is_absolute() else cwd / path
    if not path.is_file():
        raise KubeconfigMissing(f"no kubeconfig file at {path}")
    return read_files([path])


def kubeconfig_issues(block: KubernetesConfig, secret: bool, file: str = "", env: Mapping[str, str] | None = None, cwd: Path | None = None) -> list[ConfigIssue]:
    """A configured kubeconfig must be a readable kubeconfig holding the context the provider will use
    (`context`, else its current one); with the ambient kubeconfig, a configured `context` must be in it."""
    env = os.environ if env is None else env
    key, ctx_key = f"{BLOCK}.kubeconfig", f"{BLOCK}.context"
    value = block.kubeconfig
    if value is None and block.context is None:
        return []  # the ambient kubeconfig and its current context: the stack asks for nothing in it
    # A secret that is not short and blank-free may be content in an unexpected form: not echoed.
    if value is not None and secret and (len(value) > 255 or any(c.isspace() for c in value)):
        value_shown = None
    else:
        value_shown = value
    try:
        kc = resolve_kubeconfig(value, env, cwd or Path.cwd())
    except KubeconfigMissing as e:
        message = str(e) if value_shown is not None else "no kubeconfig file at the (secret) path it names"
        return [ConfigIssue(key, message, _KUBECONFIG_FIX, file)]
    except KubeconfigError as e:
        if value is None:
            return [ConfigIssue(ctx_key, f"context {block.context!r} cannot be looked up: {e}", "fix the kubeconfig file, or point KUBECONFIG at one that has the context", file)]
        return [ConfigIssue(key, str(e), _KUBECONFIG_FIX, file)]
    if kc is None:
        return []  # no ambient kubeconfig here, or a secret the offline plan cannot read: nothing to compare
    contexts = sorted(kc.contexts)
    listing = f"its contexts: {', '.join(contexts)}" if contexts else "it has no contexts"
    if block.context is not None:
        if block.context not in kc.contexts:
            return [ConfigIssue(ctx_key, f"context {block.context!r} is not in {kc.source}", listing, file)]
    elif value is not None:
        # Without `context` the provider uses the file's current context: it must name one the file has.
        if kc.current_context is None:
            return [ConfigIssue(ctx_key, f"not set, and {kc.source} has no current-context", f"set it to one of the kubeconfig's contexts ({listing})", file)]
        if kc.current_context not in kc.contexts:
            return [ConfigIssue(ctx_key, f"not set, and the current-context {kc.current_context!r} of {kc.source} is not among its contexts", f"set it to one of them ({listing})", file)]
    return []


# --- asking the cluster ---------------------------------------------------------------------------------


def _pem(entry: Mapping[str, Any], field_name: str) -> bytes | None:
    """A certificate or key given inline (`<field>-data`, base64) or as a file (`<field>`)."""
    if entry.get(f"{field_name}-data"):
        try:
            return base64.b64decode(entry[f"{field_name}-data"], validate=True)
        except (ValueError, TypeError):
            raise ClusterUnreadable(f"the kubeconfig's {field_name}-data is not base64") from None
    if entry.get(field_name):
        try:
            return Path(entry[field_name]).expanduser().read_bytes()
        except OSError as e:
            raise ClusterUnreadable(f"cannot read the kubeconfig's {field_name} {entry[field_name]}: {e.__class__.__name__}") from None
    return None


def _exec_credential(spec: Mapping[str, Any], env: Mapping[str, str], run: Callable[..., subprocess.CompletedProcess[str]]) -> Mapping[str, Any]:
    """Run the user's exec credential plugin (aws eks get-token, kubelogin, gke-gcloud-auth-plugin) as client-go does."""
    command = spec.get("command")
    if not isinstance(command, str) or not command:
        raise ClusterUnreadable("the kubeconfig's exec credential plugin names no command")
    child_env = dict(env)
    for item in spec.get("env") or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            child_env[item["name"]] = str(item.get("value", ""))
    api = spec.get("apiVersion") or "client.authentication.k8s.io/v1"
    child_env["KUBERNETES_EXEC_INFO"] = json.dumps({"apiVersion": api, "kind": "ExecCredential", "spec": {"interactive": False}})
    try:
        # No stdin: a plugin that would prompt fails instead of waiting for an answer nobody gives.
        proc = run([command, *[str(a) for a in spec.get("args") or []]], env=child_env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ClusterUnreadable(f"the kubeconfig's exec credential plugin {command} did not run ({e.__class__.__name__})") from None
    if proc.returncode != 0:
        raise ClusterUnreadable(f"the kubeconfig's exec credential plugin {command} exited with status {proc.returncode}")
    try:
        status = json.loads(proc.stdout).get("status")
    except (ValueError, AttributeError):
        status = None
    if not isinstance(status, dict):
        raise ClusterUnreadable(f"the kubeconfig's exec credential plugin {command} printed no ExecCredential status")
    return status


def cluster_access(kc: Kubeconfig, context: str | None, env: Mapping[str, str] | None = None, run: Callable[..., Any] = subprocess.run) -> ClusterAccess:
    """How the provider reaches the cluster of `context` (else the current one): server, TLS and credentials."""
    env = os.environ if env is None else env
    name = context or kc.current_context
    if not name or name not in kc.contexts:
        raise ClusterUnreadable(f"{kc.source} has no context {name!r}" if name else f"{kc.source} has no current-context")
    ctx = kc.contexts[name]
    cluster = kc.clusters.get(str(ctx.get("cluster")))
    if not cluster or not isinstance(cluster.get("server"), str):
        raise ClusterUnreadable(f"context {name!r} of {kc.source} names no cluster with a server")
    user = kc.users.get(str(ctx.get("user")), {})
    server = cluster["server"]
    ca = _pem(cluster, "certificate-authority")
    try:
        tls = ssl.create_default_context(cadata=ca.decode()) if ca else ssl.create_default_context()
    except (ssl.SSLError, UnicodeDecodeError):
        raise ClusterUnreadable(f"the certificate authority of context {name!r} is not a PEM certificate") from None
    if cluster.get("insecure-skip-tls-verify") is True:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    headers: dict[str, str] = {}
    cert, key = _pem(user, "client-certificate"), _pem(user, "client-key")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            token = Path(user["tokenFile"]).expanduser().read_text().strip()
        except OSError as e:
            raise ClusterUnreadable(f"cannot read the kubeconfig's tokenFile {user['tokenFile']}: {e.__class__.__name__}") from None
    if isinstance(user.get("exec"), dict):
        status = _exec_credential(user["exec"], env, run)
        token = status.get("token") or token
        if status.get("clientCertificateData") and status.get("clientKeyData"):
            cert, key = str(status["clientCertificateData"]).encode(), str(status["clientKeyData"]).encode()
    elif user.get("auth-provider"):
        raise Unsupported(f"context {name!r} authenticates with an auth-provider plugin, which this check does not run")
    if cert and key:
        # ssl loads a client certificate from files only: a private directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="mxinfra-kube-") as d:
            cert_file, key_file = Path(d) / "client.crt", Path(d) / "client.key"
            cert_file.write_bytes(cert)
            key_file.touch(mode=0o600)
            key_file.write_bytes(key)
            try:
                tls.load_cert_chain(cert_file, key_file)
            except ssl.SSLError:
                raise ClusterUnreadable(f"the client certificate of context {name!r} does not load") from None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif user.get("username") and user.get("password"):
        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    return ClusterAccess(server, tls, headers, f"context {name}, {server}")


class Forbidden(ClusterUnreadable):
    """The identity may not read the object (HTTP 403)."""


def _get(access: ClusterAccess, path: str, what: str, timeout: float, *, missing_ok: bool = False) -> bytes | None:
    """The body of GET `path`; None for 404 when `missing_ok`; ClusterUnreadable (Forbidden for 403) otherwise."""
    request = urllib.request.Request(access.server.rstrip("/") + path, headers={"Accept": "application/json", **access.headers})
    try:
        with urllib.request.urlopen(request, context=access.tls, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        if e.code == 404 and missing_ok:
            return None
        if e.code == 403:
            raise Forbidden(f"the identity may not read {what} (HTTP 403 from {access.where})") from None
        if e.code == 401:
            raise ClusterUnreadable(f"the API server refused the credentials (HTTP 401 from {access.where})") from None
        raise ClusterUnreadable(f"reading {what} failed with HTTP {e.code} ({access.where})") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e.__class__.__name__
        raise ClusterUnreadable(f"the API server did not answer ({access.where}: {reason})") from None


def get_object(access: ClusterAccess, path: str, what: str, timeout: float = 10.0) -> dict[str, Any] | None:
    """The object at `path` (e.g. /apis/apps/v1/namespaces/N/statefulsets/S), None when it does not exist."""
    body = _get(access, path, what, timeout, missing_ok=True)
    if body is None:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ClusterUnreadable(f"the answer to GET {path} is not a Kubernetes object ({access.where})")
    return doc


def list_storage_classes(access: ClusterAccess, timeout: float = 10.0) -> list[StorageClass]:
    """The cluster's StorageClasses (GET /apis/storage.k8s.io/v1/storageclasses)."""
    try:
        body = _get(access, STORAGE_CLASSES_PATH, "storageclasses", timeout)
    except Forbidden:
        raise ClusterUnreadable(f"the deploy identity may not list storageclasses (HTTP 403 from {access.where}): it has no cluster-scope read") from None
    try:
        items = json.loads(body or b"")["items"] or []
        classes = []
        for item in items:
            meta = item["metadata"]
            notes = meta.get("annotations") or {}
            classes.append(StorageClass(str(meta["name"]), any(notes.get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS)))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ClusterUnreadable(f"the answer to GET {STORAGE_CLASSES_PATH} is not a StorageClassList ({access.where})") from None
    return sorted(classes, key=lambda c: c.name)


def storage_class_issues(claims: Sequence[Claim], classes: Sequence[StorageClass], where: str, file: str = "") -> list[ConfigIssue]:
    """What keeps the claims from binding: a named class the cluster does not have, or no class named and no default."""
    names = [c.name for c in classes]
    listing = ", ".join(f"{c.name} (default)" if c.default else c.name for c in classes)
    fix = f"the cluster's StorageClasses: {listing}" if classes else "the cluster has no StorageClass at all: install a volume provisioner with a StorageClass first (kubectl get storageclass)"
    has_default = any(c.default for c in classes)
    # One issue per key: the block's storageClass usually covers several claims.
    by_key: dict[tuple[str, str | None], list[Claim]] = {}
    for claim in claims:
        if (claim.storage_class is None and not has_default) or (claim.storage_class is not None and claim.storage_class not in names):
            by_key.setdefault((claim.key, claim.storage_class), []).append(claim)
    issues = []
    for (key, name), found in by_key.items():
        what = ", ".join(f"{c.environment}/{c.kind}" for c in found)
        if name is None:
            message = f"not set, and the cluster ({where}) has no default StorageClass: the claims {what} would never bind and `pulumi up` would time out"
            issues.append(ConfigIssue(key, message, f"set it to a class of the cluster, or mark one default; {fix}", file))
        else:
            message = f"StorageClass {name!r} does not exist in the cluster ({where}): the claims {what} would never bind and `pulumi up` would time out"
            issues.append(ConfigIssue(key, message, fix, file))
    return issues


def access_for(kubeconfig: str | None, context: str | None, env: Mapping[str, str] | None = None, cwd: Path | None = None, run: Callable[..., Any] = subprocess.run) -> ClusterAccess:
    """How to ask the cluster the provider deploys to (`kubeconfig`: a path, content, or None for the
    ambient one); ClusterUnreadable when it cannot be asked."""
    env = os.environ if env is None else env
    try:
        kc = resolve_kubeconfig(kubeconfig, env, cwd or Path.cwd())
    except KubeconfigError as e:
        raise ClusterUnreadable(str(e)) from None
    if kc is None:
        if kubeconfig is None and context is None and env.get("KUBERNETES_SERVICE_HOST"):
            return in_cluster_access(env)  # as the provider does inside a pod (a pipeline's ServiceAccount)
        raise ClusterUnreadable("no kubeconfig to read (KUBECONFIG is unset and there is no ~/.kube/config)" if kubeconfig is None else "the kubeconfig is a secret this run cannot read")
    return cluster_access(kc, context, env, run)


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster_access(env: Mapping[str, str], directory: Path = SERVICE_ACCOUNT_DIR) -> ClusterAccess:
    """The pod's own ServiceAccount (token and CA mounted by the kubelet), as client-go's in-cluster config."""
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "443")
    try:
        token = (directory / "token").read_text().strip()
        tls = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    except (OSError, ssl.SSLError) as e:
        raise ClusterUnreadable(f"running in a pod, but its ServiceAccount credentials in {directory} cannot be read ({e.__class__.__name__})") from None
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return ClusterAccess(server, tls, {"Authorization": f"Bearer {token}"}, f"in-cluster, {server}")


def preflight_issues(
    claims: Sequence[Claim],
    kubeconfig: str | None,
    context: str | None,
    file: str = "",
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    run: Callable[..., Any] = subprocess.run,
    timeout: float = 10.0,
) -> list[ConfigIssue]:
    """Ask the cluster the provider will use whether the claims can bind; ClusterUnreadable if it cannot be asked."""
    access = access_for(kubeconfig, context, env, cwd, run)
    return storage_class_issues(claims, list_storage_classes(access, timeout), access.where, file)
