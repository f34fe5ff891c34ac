"""Stack configs and helpers shared by the kubernetes target's tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_MDA = ROOT / "examples" / "orders" / "orders-1.4.2.mda"
SCHEMA = ROOT / "targets" / "kubernetes" / "mxinfra_kubernetes" / "schemas" / "mendixapp.schema.json"
K8S_VERSION = "1.30.0"  # the pinned Kubernetes version every rendered object is validated against

ADMIN_PASSWORD = "Known-Admin-Pw-7781!"
DB_URL = "postgres://orders:Known-Db-Pw-5512@db.internal:5432/orders"
S3_KEY_ID = "KNOWNACCESSKEYID0042"
S3_SECRET = "Known-S3-Secret-9931"
ENCRYPTION_KEY = "Known-Encryption-Key-1234"
KNOWN_SECRETS = (ADMIN_PASSWORD, "Known-Db-Pw-5512", S3_KEY_ID, S3_SECRET, ENCRYPTION_KEY)


def config(env: str = "production", role: str | None = None, *, instances: int = 2, mode: str = "plain", **block: Any) -> dict[str, Any]:
    """A full stack config of the example app with one environment on the kubernetes target."""
    envcfg: dict[str, Any] = {"instances": instances, "memory": 2048, "constants": {"Orders.PageSize": 20}, "adminPassword": ADMIN_PASSWORD}
    if role:
        envcfg["role"] = role
    k8s: dict[str, Any] = {"mode": mode, "ingress": {"domain": "apps.example.com"}}
    if mode == "plain":
        k8s.update(
            image="registry.example.com/orders:1.4.2",
            database={"url": DB_URL},
            storage={"s3": {"bucket": "orders-files", "endpoint": "https://s3.example.com", "accessKeyId": S3_KEY_ID, "secretAccessKey": S3_SECRET}},
        )
    else:
        k8s["operator"] = {"sourceURL": "https://packages.example.com/orders.mda", "databasePlan": "pg", "storagePlan": "s3"}
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
