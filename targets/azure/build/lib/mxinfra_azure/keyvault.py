"""Secrets: a Key Vault per environment (RBAC, purge protection, private endpoint only) and the runtime's
user-assigned identity, which alone reads them (Key Vault Secrets User)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_azure_native as azure

from mxinfra.environments import Secret
from mxinfra.target import EnvironmentContext

from . import network
from .config import AzureConfig
from .names import Names

# Built-in role: read secret contents (data action Microsoft.KeyVault/vaults/secrets/getSecret/action).
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
# Days a deleted vault or secret stays recoverable (purge protection keeps them for that long).
SOFT_DELETE_DAYS = {"test": 7, "acceptance": 30, "production": 90}


@dataclass
class Vault:
    """The vault and the secrets written to it (name -> versioned secret URI)."""

    vault: azure.keyvault.Vault
    group: azure.resources.ResourceGroup
    identity: azure.managedidentity.UserAssignedIdentity
    reader: azure.authorization.RoleAssignment
    uris: dict[str, pulumi.Output[str]] = field(default_factory=dict)


def secret_name(variable: str) -> str:
    """The Key Vault (and Container Apps) secret name of an environment variable: lowercase, `-` only."""
    return re.sub(r"[^a-z0-9]+", "-", variable.lower()).strip("-")[:127]


def identity(ctx: EnvironmentContext, names: Names, group: azure.resources.ResourceGroup, location: str) -> azure.managedidentity.UserAssignedIdentity:
    """The runtime's identity: pulls the image, reads the vault's secrets, (with managed identity) the files."""
    return azure.managedidentity.UserAssignedIdentity(
        ctx.naming.logical("identity"),
        resource_name_=names.identity,
        resource_group_name=group.name,
        location=location,
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )


def create(ctx: EnvironmentContext, cfg: AzureConfig, names: Names, group: azure.resources.ResourceGroup, location: str, ident: azure.managedidentity.UserAssignedIdentity) -> Vault:
    """The vault, its private endpoint and the identity's read access."""
    n, role = ctx.naming, ctx.environment.role.value
    vault = azure.keyvault.Vault(
        n.logical("vault"),
        vault_name=names.key_vault,
        resource_group_name=group.name,
        location=location,
        properties={
            "tenant_id": cfg.tenantId,
            "sku": {"family": "A", "name": "standard"},
            "enable_rbac_authorization": True,
            "enable_soft_delete": True,
            "soft_delete_retention_in_days": SOFT_DELETE_DAYS[role],
            "enable_purge_protection": True,
            "public_network_access": "Disabled",
            "network_acls": {"default_action": "Deny", "bypass": "None"},
            "enabled_for_deployment": False,
            "enabled_for_disk_encryption": False,
            "enabled_for_template_deployment": False,
        },
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )
    network.private_endpoint(ctx, cfg, "vault", group, location, vault.id, "vault", cfg.keyVaultDnsZoneId)
    reader = azure.authorization.RoleAssignment(
        n.logical("identity-secrets-user"),
        role_assignment_name=names.assignment_guid("identity", "secrets-user"),
        scope=vault.id,
        role_definition_id=names.role_definition_id(KEY_VAULT_SECRETS_USER),
        principal_id=ident.principal_id,
        principal_type="ServicePrincipal",
        description=f"{n.prefix}: the runtime reads its secrets",
        opts=ctx.opts(),
    )
    return Vault(vault, group, ident, reader)


def _versioned(properties: Any) -> str | None:
    if properties is None:
        return None
    if isinstance(properties, dict):
        return properties.get("secret_uri_with_version") or properties.get("secretUriWithVersion")
    return getattr(properties, "secret_uri_with_version", None)


def put(ctx: EnvironmentContext, v: Vault, variable: str, value: Any) -> pulumi.Output[str]:
    """Write `value` (a Secret, an Output or a string, always stored as a Pulumi secret) as the vault
    secret of `variable`; returns its versioned URI (a new value is a new version, so a new revision)."""
    name = secret_name(variable)
    plain = value.reveal() if isinstance(value, Secret) else value
    secret = azure.keyvault.Secret(
        ctx.naming.logical(f"secret-{name}"),
        secret_name=name,
        vault_name=v.vault.name,
        resource_group_name=v.group.name,
        properties={"value": pulumi.Output.secret(plain), "content_type": "text/plain"},
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )
    # The URI names the secret, it does not hold it: the vault's RBAC guards the value. Key Vault always
    # returns the versioned URI; the versionless one (the latest version) stands in only where no cloud
    # answers (the offline plan's echoed state).
    latest = pulumi.Output.concat("https://", v.vault.name, ".vault.azure.net/secrets/", name)
    uri = pulumi.Output.unsecret(
        pulumi.Output.all(secret.properties, latest).apply(lambda a: _versioned(a[0]) or a[1])
    )
    v.uris[name] = uri
    return uri
