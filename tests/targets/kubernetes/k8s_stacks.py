"""Stack configs and helpers shared by the kubernetes target's tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from scaffold import UNGATED

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_MDA = ROOT / "examples" / "orders" / "orders-1.4.2.mda"
SCHEMA = ROOT / "targets" / "kubernetes" / "mxinfra_kubernetes" / "schemas" / "mendixapp.schema.json"
K8S_VERSION = "1.30.0"  # the pinned Kubernetes version every rendered object is validated against

ADMIN_PASSWORD = "Known-Admin-Pw-7781!"
DB_URL = "postgres://orders:Known-Db-Pw-5512@db.internal:5432/orders"
S3_KEY_ID = "KNOWNACCESSKEYID0042"
S3_SECRET = "Known-S3-Secret-9931"
ENCRYPTION_KEY = "Known-Encryption-Key-1234"
# Production and promotion-gated environments run digest-pinned artifacts only.
DIGEST = "sha256:" + "3f" * 32
IMAGE = f"registry.example.com/orders:1.4.2@{DIGEST}"
SOURCE = f"oci-image://registry.example.com/orders-mda@{DIGEST}"
POD_LABELS = {"app": "orders-production"}
KNOWN_SECRETS = (ADMIN_PASSWORD, "Known-Db-Pw-5512", S3_KEY_ID, S3_SECRET, ENCRYPTION_KEY)


def config(env: str = "production", role: str | None = None, *, instances: int = 2, mode: str = "plain", **block: Any) -> dict[str, Any]:
    """A full stack config of the example app with one environment on the kubernetes target."""
    envcfg: dict[str, Any] = {"instances": instances, "memory": 2048, "constants": {"Orders.PageSize": 20}, "adminPassword": ADMIN_PASSWORD}
    if role:
        envcfg["role"] = role
    if (role or env) == "production":
        envcfg["ungated"] = dict(UNGATED)  # no acceptance deploy recorded here: said explicitly (issue 19, F6)
    k8s: dict[str, Any] = {"mode": mode, "ingress": {"domain": "apps.example.com"}}
    if mode == "plain":
        k8s.update(
            image=IMAGE,
            database={"url": DB_URL},
            storage={"s3": {"bucket": "orders-files", "endpoint": "https://s3.example.com", "accessKeyId": S3_KEY_ID, "secretAccessKey": S3_SECRET}},
        )
    else:
        k8s["operator"] = {"sourceURL": SOURCE, "databasePlan": "pg", "storagePlan": "s3", "podLabels": POD_LABELS}
    k8s.update(block)
    return {
        "mxinfra:app": {"name": "orders", "package": str(EXAMPLE_MDA), "target": "kubernetes"},
        "mxinfra:environments": {env: envcfg},
        "mxinfra:access": [{"principal": "group:ops", "environments": [env], "permissions": ["deploy", "monitor"]}],
        "mxinfra:kubernetes": k8s,
    }


SECRET_KEYS = frozenset({"mxinfra:environments", "mxinfra:kubernetes"})


def with_(cfg: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `cfg` with the dotted `path` (below a top-level key) set to `value` (None deletes)."""
    out = copy.deepcopy(cfg)
    key, _, rest = path.partition("/")
    cur = out[key]
    parts = rest.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {}) if isinstance(cur, dict) else cur[int(p)]
    if value is None:
        cur.pop(parts[-1], None)
    elif isinstance(cur, list):
        cur[int(parts[-1])] = value
    else:
        cur[parts[-1]] = value
    return out


def load_schema() -> dict[str, Any]:
    """The repo's MendixApp JSON schema."""
    return json.loads(SCHEMA.read_text())


KUBE_TOKEN = "Known-Kube-Token-8823"
KUBECONFIG_CONTENT = f"""apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {{server: "https://prod.example.com:6443"}}
users:
- name: deployer
  user: {{token: {KUBE_TOKEN}}}
contexts:
- name: prod
  context: {{cluster: prod, user: deployer}}
current-context: prod
"""

# The `restricted` Pod Security Standard (Kubernetes v1.30), field by field.
_RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret", "name"}
_SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What in a pod spec the `restricted` Pod Security level (v1.30) forbids; empty: admitted."""
    out = []
    psc = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(key)
    for v in pod.get("volumes") or []:
        if set(v) - _RESTRICTED_VOLUMES:
            out.append(f"volume {v.get('name')}: {sorted(set(v) - _RESTRICTED_VOLUMES)}")
    for s in psc.get("sysctls") or []:
        if s["name"] not in _SAFE_SYSCTLS:
            out.append(f"sysctl {s['name']}")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        out.append(f"pod seccomp {pod_seccomp}")
    for c in [*(pod.get("initContainers") or []), *pod["containers"], *(pod.get("ephemeralContainers") or [])]:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f"{name}: hostPort")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {caps['add']}")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser 0")
        if (sc.get("seccompProfile") or {}).get("type", pod_seccomp) not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccomp must be RuntimeDefault or Localhost")
        if sc.get("procMount") not in (None, "Default"):
            out.append(f"{name}: procMount")
    return out
