"""Helpers of the Cloud Foundry target's tests: stack configs and a validated deployment."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from scaffold import UNGATED

ROOT = Path(__file__).resolve().parents[3]
MDA = ROOT / "examples" / "orders" / "orders-1.4.2.mda"
ADMIN_PASSWORD = "Known-Admin-Pw-7f3a9c"
LICENSE_KEY = "Known-Licence-Key-51e2"
ENCRYPTION_KEY = "Known-Encryption-Key-0d4b"
SECRET_VALUES = (ADMIN_PASSWORD, LICENSE_KEY, ENCRYPTION_KEY)
BUILDPACK_URL = "https://github.com/mendix/cf-mendix-buildpack/releases/download/v5.0.20/cf-mendix-buildpack.zip"
BUILDPACK_DIGEST = "3e8b1c5d7f9a2b4c6e8d0f1a3c5e7b9d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e"  # the example stacks' placeholder
BUILDPACK = f"{BUILDPACK_URL}#sha256={BUILDPACK_DIGEST}"

CF_BLOCK: dict[str, Any] = {
    "api": "https://api.cf.example.com",
    "org": "acme",
    "space": "orders",
    "domain": "apps.example.com",
    "buildpack": BUILDPACK,
    "mfaOrigins": ["corp-idp"],
    "database": {"offering": "postgresql-db", "plan": "standard"},
    "storage": {"offering": "objectstore", "plan": "s3-standard"},
}


def config(role: str = "production", *, cf: dict[str, Any] | None = None, access: list[dict[str, Any]] | None = None, env: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stack config of the example app with one environment named after `role`."""
    body: dict[str, Any] = {"role": role, "memory": 2048, "adminPassword": ADMIN_PASSWORD, "constants": {"Orders.PageSize": 20}}
    if role == "production":
        body.update(instances=2, license={"id": "lic-1", "key": LICENSE_KEY}, secretConstants={"Encryption.EncryptionKey": ENCRYPTION_KEY})
    body.update(env or {})
    if role == "production" and "requirePromotionFrom" not in body:
        body.setdefault("ungated", dict(UNGATED))  # no acceptance deploy recorded here: said explicitly (issue 19, F6)
    block = copy.deepcopy(CF_BLOCK)
    block.update(cf or {})
    return {
        "mxinfra:app": {"name": "orders", "package": str(MDA), "target": "cloudfoundry"},
        "mxinfra:environments": {role: body},
        "mxinfra:access": access
        if access is not None
        else [
            {"principal": "user:corp-idp/alice@example.com", "environments": [role], "permissions": ["deploy", "monitor"]},
            {"principal": "user:corp-idp/bob@example.com", "environments": [role], "permissions": ["manage"]},
        ],
        "mxinfra:cloudfoundry": block,
    }


def deployment(cfg: dict[str, Any], stack: str = "cf-production") -> Any:
    """The validated deployment of `cfg` (environments marked secret, as the engine would)."""
    return prepare(RawConfig(cfg, frozenset({"mxinfra:environments"})), project="orders", stack=stack, base_dir=ROOT)


def release(capi: Any, cfg: dict[str, Any], monkeypatch: Any, stack: str, app: str, services: list[str] | None = None) -> str:
    """What `pulumi up` of `cfg`'s one environment leaves running: the app created by the target's provider
    (bound to `services`, guids); its guid."""
    from mxinfra_cloudfoundry.provider import AppProvider

    # the pinned buildpack's download is checked against its digest by test_cf_provider; not here
    monkeypatch.setattr("mxinfra_cloudfoundry.provider.check_buildpack", lambda reference, timeout: None)
    d = deployment(cfg, stack)
    p = d.environments[0]
    props = {
        "api": capi.url,
        "org": "acme",
        "space": "orders",
        "name": app,
        "buildpack": d.target_config.buildpack,
        "stack": "cflinuxfs4",
        "environment": {"MEMORY_LIMIT": "2048M"},
        "secretEnvironment": {"ADMIN_PASSWORD": "pw-1"},
        "package": {"path": str(MDA), "sha256": d.package.sha256, "modelVersion": d.package.model_version},
        "instances": p.settings.instances,
        "memoryMb": 2048,
        "diskMb": 2048,
        "healthCheck": {"type": "http", "endpoint": "/", "timeout": 600, "invocationTimeout": 10},
        "routes": [],
        "services": list(services or []),
        "ssh": False,
        "metadata": {"labels": dict(p.release_labels), "annotations": dict(p.release_annotations)},
        "timeouts": {"upload": 10, "staging": 10, "start": 10, "job": 10},
    }
    return AppProvider().create(props).id
