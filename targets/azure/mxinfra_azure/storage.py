"""File storage: a StorageV2 account per environment (private, TLS 1.2, HTTPS only, versioned, soft delete,
with backups point-in-time restore of its blobs) and a private container; the runtime reaches it with its
managed identity where its version can."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azure_native as azure

from mxinfra.mda import RuntimeVersion
from mxinfra.target import EnvironmentContext

from . import backups, keyvault, network
from .config import AzureConfig
from .keyvault import Vault
from .names import FILES_CONTAINER, Names

CONTAINER = FILES_CONTAINER
# Built-in role: read, write and delete blobs (data actions) — given on the container only.
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
# The first runtime whose Azure Blob store takes `com.mendix.storage.azure.UseDefaultAzureCredential`.
# Mendix's runtime documentation lists the setting with this version; older runtimes need the account key.
DEFAULT_CREDENTIAL_SINCE = RuntimeVersion(10, 10, 0)
# Days a deleted or overwritten file stays recoverable, by role, at least (backups.py raises it above the
# restore window of the environment's daily backup tier).
SOFT_DELETE_DAYS = backups.SOFT_DELETE_DAYS


@dataclass
class Files:
    """The account, the container and how the runtime authenticates to them."""

    account: azure.storage.StorageAccount
    container: azure.storage.BlobContainer
    mode: str  # "managed-identity" or "account-key"
    reason: str
    endpoint: str
    account_key_uri: Any = None  # the vault secret's versioned URI (account-key mode)
    grants: tuple[Any, ...] = ()


def auth_mode(cfg: AzureConfig, runtime_version: RuntimeVersion) -> tuple[str, str]:
    """("managed-identity" | "account-key", why) for this runtime and config."""
    supported = runtime_version >= DEFAULT_CREDENTIAL_SINCE
    since = f"{DEFAULT_CREDENTIAL_SINCE.major}.{DEFAULT_CREDENTIAL_SINCE.minor}"
    if cfg.storage.managedIdentity is False:
        return "account-key", "storage.managedIdentity: false"
    if cfg.storage.managedIdentity is True:
        return "managed-identity", "storage.managedIdentity: true"
    if supported:
        return "managed-identity", f"runtime {runtime_version} supports UseDefaultAzureCredential (Mendix {since} and later)"
    return "account-key", f"runtime {runtime_version} predates UseDefaultAzureCredential (Mendix {since}): the account key, held in Key Vault"


def create(ctx: EnvironmentContext, cfg: AzureConfig, names: Names, group: azure.resources.ResourceGroup, location: str, ident: azure.managedidentity.UserAssignedIdentity, vault: Vault) -> Files:
    """The account, its blob service settings, the container, its private endpoint and the runtime's access."""
    n, env = ctx.naming, ctx.environment
    mode, reason = auth_mode(cfg, ctx.metadata.runtime_version)
    managed = mode == "managed-identity"
    account = azure.storage.StorageAccount(
        n.logical("files"),
        account_name=names.storage_account,
        resource_group_name=group.name,
        location=location,
        kind="StorageV2",
        sku={"name": "Standard_ZRS" if env.is_production else "Standard_LRS"},
        access_tier="Hot",
        allow_blob_public_access=False,
        minimum_tls_version="TLS1_2",
        enable_https_traffic_only=True,
        # With the managed identity nothing needs the account key: shared-key (and SAS) access is off.
        allow_shared_key_access=not managed,
        default_to_o_auth_authentication=managed,
        allow_cross_tenant_replication=False,
        public_network_access="Enabled" if cfg.storage.publicNetworkAccess else "Disabled",
        network_rule_set={"default_action": "Allow" if cfg.storage.publicNetworkAccess else "Deny", "bypass": "None"},
        tags=dict(ctx.tags),
        opts=ctx.opts(protect_data=True),
    )
    # Versioning and soft delete always; with backups the change feed and point-in-time restore of the
    # blobs within the daily tier (backups.blob_service).
    azure.storage.BlobServiceProperties(
        n.logical("files-blob-service"),
        account_name=account.name,
        resource_group_name=group.name,
        blob_services_name="default",
        **backups.blob_service(backups.settings(env)),
        opts=ctx.opts(),
    )
    container = azure.storage.BlobContainer(
        n.logical("files-container"),
        account_name=account.name,
        resource_group_name=group.name,
        container_name=CONTAINER,
        public_access="None",
        opts=ctx.opts(protect_data=True),
    )
    network.private_endpoint(ctx, cfg, "files", group, location, account.id, "blob", cfg.blobDnsZoneId)
    if env.is_production:
        network.lock(ctx, "files", account.id, "the file storage account")
    endpoint = f"https://{names.storage_account}.blob.core.windows.net"
    if managed:
        grant = azure.authorization.RoleAssignment(
            n.logical("identity-files"),
            role_assignment_name=names.assignment_guid("identity", "files"),
            scope=container.id,
            role_definition_id=names.role_definition_id(STORAGE_BLOB_DATA_CONTRIBUTOR),
            principal_id=ident.principal_id,
            principal_type="ServicePrincipal",
            description=f"{n.prefix}: the runtime reads and writes its files",
            opts=ctx.opts(),
        )
        return Files(account, container, mode, reason, endpoint, grants=(grant,))
    keys = azure.storage.list_storage_account_keys_output(account_name=account.name, resource_group_name=group.name)
    key = pulumi.Output.secret(keys.keys.apply(lambda ks: ks[0].value if ks else None))
    uri = keyvault.put(ctx, vault, "MXRUNTIME_com_mendix_storage_azure_AccountKey", key)
    return Files(account, container, mode, reason, endpoint, account_key_uri=uri)
