"""Helpers of the Azure target's tests: stack configs and a mock run with cloud outputs."""

from __future__ import annotations

import copy
import fnmatch
from pathlib import Path
from typing import Any

from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.testing import walk_inputs
from scaffold import UNGATED

ROOT = Path(__file__).resolve().parents[3]
MDA = ROOT / "examples" / "orders" / "orders-1.4.2.mda"
SUB = "11111111-2222-3333-4444-555555555555"
TENANT = "99999999-8888-7777-6666-555555555555"
LOCATION = "westeurope"
ADMIN_PASSWORD = "Known-Admin-Pw-7f3a9c"
LICENSE_KEY = "Known-Licence-Key-51e2"
ENCRYPTION_KEY = "Known-Encryption-Key-0d4b"
SECRET_VALUES = (ADMIN_PASSWORD, LICENSE_KEY, ENCRYPTION_KEY)
VNET = f"/subscriptions/{SUB}/resourceGroups/network-rg/providers/Microsoft.Network/virtualNetworks/spoke"
DIGEST = "sha256:" + "ab" * 32
PEOPLE = "0a1b2c3d-0000-4000-8000-000000000001"
ONCALL = "0a1b2c3d-0000-4000-8000-000000000002"
ALICE = "0a1b2c3d-0000-4000-8000-000000000003"
ROBOT = "0a1b2c3d-0000-4000-8000-000000000004"

AZURE_BLOCK: dict[str, Any] = {
    "subscriptionId": SUB,
    "tenantId": TENANT,
    "vnetId": VNET,
    "infrastructureSubnetId": f"{VNET}/subnets/apps",
    "databaseSubnetId": f"{VNET}/subnets/db",
    "privateEndpointSubnetId": f"{VNET}/subnets/endpoints",
    "keyVaultDnsZoneId": f"/subscriptions/{SUB}/resourceGroups/dns/providers/Microsoft.Network/privateDnsZones/privatelink.vaultcore.azure.net",
    "blobDnsZoneId": f"/subscriptions/{SUB}/resourceGroups/dns/providers/Microsoft.Network/privateDnsZones/privatelink.blob.core.windows.net",
    "image": f"acme.azurecr.io/orders@{DIGEST}",
    "registryId": f"/subscriptions/{SUB}/resourceGroups/shared/providers/Microsoft.ContainerRegistry/registries/acme12",
    "ipRestrictions": ["198.51.100.0/24"],
}


def config(role: str = "production", *, azure: dict[str, Any] | None = None, access: list[dict[str, Any]] | None = None, env: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stack config of the example app with one environment named after `role`."""
    body: dict[str, Any] = {"role": role, "memory": 2048, "adminPassword": ADMIN_PASSWORD, "constants": {"Orders.PageSize": 20}}
    if role == "production":
        body.update(instances=3, license={"id": "lic-1", "key": LICENSE_KEY}, secretConstants={"Encryption.EncryptionKey": ENCRYPTION_KEY})
    body.update(env or {})
    if role == "production" and "requirePromotionFrom" not in body:
        body.setdefault("ungated", dict(UNGATED))  # no acceptance deploy recorded here: said explicitly (issue 19, F6)
    block = copy.deepcopy(AZURE_BLOCK)
    if role == "production":
        block["networkTier"] = "production"  # production's VNet is declared its own
    block.update(azure or {})
    return {
        "azure-native:location": LOCATION,
        "mxinfra:app": {"name": "orders", "package": str(MDA), "target": "azure"},
        "mxinfra:environments": {role: body},
        "mxinfra:access": access
        if access is not None
        else [
            {"principal": f"group:{PEOPLE}", "environments": [role], "permissions": ["deploy", "monitor", "backups"]},
            {"principal": f"group:{ONCALL}", "environments": [role], "permissions": ["monitor", "alerts"]},
            {"principal": f"user:{ALICE}", "environments": [role], "permissions": ["manage", "api"], "allowOnProduction": True},
            {"principal": f"servicePrincipal:{ROBOT}", "environments": [role], "permissions": ["api"], "allowOnProduction": True},
        ],
        "mxinfra:azure": block,
    }


def deployment(cfg: dict[str, Any], stack: str = "azure-production") -> Any:
    """The validated deployment of `cfg` (environments marked secret, as the engine would)."""
    return prepare(RawConfig(cfg, frozenset({"mxinfra:environments"})), project="orders", stack=stack, base_dir=ROOT)


walk = walk_inputs  # every key and leaf of a structure of inputs, secrets unwrapped


def env_of(app: Any) -> dict[str, dict[str, Any]]:
    """A container app's environment variables: name -> {value | secretRef}."""
    return {e["name"]: e for e in app.input("template.containers.0.env")}


def rbac_allows(definition: dict[str, Any], action: str) -> bool:
    """Azure RBAC's reading of one custom role's permissions (as rendered: camelCase keys): some `actions`
    pattern matches and no `notActions` pattern does, case-insensitively, `*` matching any characters."""
    a = action.lower()
    return any(
        any(fnmatch.fnmatchcase(a, x.lower()) for x in p.get("actions", [])) and not any(fnmatch.fnmatchcase(a, x.lower()) for x in p.get("notActions", []))
        for p in definition["permissions"]
    )
