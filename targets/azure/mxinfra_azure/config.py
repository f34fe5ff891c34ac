"""The `mxinfra:azure` block: what an organisation brings (subscription, network, image) and a few choices."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from mxinfra.artifacts import parse_image
from mxinfra.backups import RestorePoint, parse_restore_point
from mxinfra.exposure import parse_cidr
from mxinfra.schema import StrictModel

# ASCII only and fullmatch everywhere (`\d` accepts other scripts' digits, `$` a trailing newline).
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
GUID_RE = re.compile(GUID)
# Resource group names: letters, digits, `_`, `-`, `.`, `(`, `)`, at most 90, not ending with `.`.
RESOURCE_GROUP = r"[A-Za-z0-9_().-]{0,89}[A-Za-z0-9_()-]"
# VNet and subnet names: start with a letter or digit, end with a letter, digit or `_`.
NETWORK_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?"
# ARM ids are case-insensitive in their fixed segments; the names keep their case.
VNET_ID = re.compile(
    rf"/subscriptions/(?P<subscription>{GUID})/resourceGroups/(?P<group>{RESOURCE_GROUP})"
    rf"/providers/Microsoft\.Network/virtualNetworks/(?P<name>{NETWORK_NAME})",
    re.IGNORECASE,
)
SUBNET_ID = re.compile(rf"(?P<vnet>{VNET_ID.pattern})/subnets/(?P<subnet>{NETWORK_NAME})", re.IGNORECASE)
REGISTRY_ID = re.compile(
    rf"/subscriptions/{GUID}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft\.ContainerRegistry/registries/[A-Za-z0-9]{{5,50}}",
    re.IGNORECASE,
)
DNS_ZONE_ID = re.compile(
    rf"/subscriptions/{GUID}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft\.Network/privateDnsZones/(?P<zone>[a-z0-9.-]+)",
    re.IGNORECASE,
)
# The tiers a VNet is declared for (`networkTier`): production's VNet is production's alone.
PRODUCTION_TIER = "production"
NETWORK_TIERS = (PRODUCTION_TIER, "non-production")
# The zones Azure resolves private endpoints in (Key Vault, Blob Storage in the public cloud).
VAULT_ZONE = "privatelink.vaultcore.azure.net"
BLOB_ZONE = "privatelink.blob.core.windows.net"
IMAGE = re.compile(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]([a-z0-9._/-]*[a-z0-9])?)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?")

# Azure's public-cloud regions (`az account list-locations --query "[].name"`, physical regions only).
LOCATIONS = frozenset(
    """
    australiacentral australiacentral2 australiaeast australiasoutheast austriaeast belgiumcentral brazilsouth
    brazilsoutheast canadacentral canadaeast centralindia centralus chilecentral denmarkeast eastasia eastus
    eastus2 francecentral francesouth germanynorth germanywestcentral indonesiacentral israelcentral italynorth
    japaneast japanwest jioindiacentral jioindiawest koreacentral koreasouth malaysiawest mexicocentral
    newzealandnorth northcentralus northeurope norwayeast norwaywest polandcentral qatarcentral
    southafricanorth southafricawest southcentralus southeastasia southindia spaincentral swedencentral
    swedensouth switzerlandnorth switzerlandwest uaecentral uaenorth uksouth ukwest westcentralus westeurope
    westindia westus westus2 westus3
    """.split()
)
# Flexible Server storage sizes (GiB) that the service offers.
STORAGE_SIZES_GB = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32767)
# SKU name -> tier: B* Burstable, D* General Purpose, E* Memory Optimized.
SKU = re.compile(r"Standard_(?P<family>[BDE])[0-9]+[a-z]*(_v[0-9])?")
TIERS = {"B": "Burstable", "D": "GeneralPurpose", "E": "MemoryOptimized"}


class DatabaseConfig(StrictModel):
    """PostgreSQL Flexible Server sizing; defaults are per role (see README)."""

    skuName: str | None = Field(None, description="e.g. Standard_B2s or Standard_D2ds_v5; default by role")
    storageSizeGb: int = Field(32, description="one of the sizes Flexible Server offers: 32, 64, 128, ... 32767")
    version: str = Field("16", pattern=r"^1[3-7]$", description="PostgreSQL major version (13 to 17)")
    # Each value's format is checked with the stack (target.check), so that every problem of the key is in
    # one report with the rest of the block's.
    fromBackup: dict[str, str] = Field(
        default_factory=dict,
        description="environment -> the backup id or point in time (UTC) whose restored server the app uses instead of the environment's own",
    )

    def source(self, environment: str) -> RestorePoint | None:
        """The backup id or point in time `environment`'s app runs on (None: its own server), read by the
        core's rule; a ValueError for a malformed value (the config check reports it first)."""
        value = self.fromBackup.get(environment)
        return parse_restore_point(value) if value is not None else None

    @field_validator("skuName")
    @classmethod
    def _sku(cls, v: str | None) -> str | None:
        if v is not None and not SKU.fullmatch(v):
            raise ValueError(f"{v!r} is not a Flexible Server SKU (Standard_B1ms, Standard_D2ds_v5, Standard_E4ds_v5, ...)")
        return v

    @field_validator("storageSizeGb")
    @classmethod
    def _storage(cls, v: int) -> int:
        if v not in STORAGE_SIZES_GB:
            raise ValueError(f"{v} GiB is not offered; use one of {', '.join(map(str, STORAGE_SIZES_GB))}")
        return v


class StorageConfig(StrictModel):
    """The file storage account."""

    managedIdentity: bool | None = Field(None, description="runtime reaches Blob Storage with its managed identity (default: when the runtime version supports it)")
    publicNetworkAccess: bool = Field(False, description="keep the account reachable from public networks (never on production); default: private endpoint only")


class AzureConfig(StrictModel):
    """`mxinfra:azure`: the target's settings, shared by the stack's environments."""

    subscriptionId: str = Field(description="The subscription the stack deploys into (scopes and role definitions are built from it)")
    tenantId: str = Field(description="The Entra tenant of the subscription (Key Vault and identities)")
    vnetId: str = Field(description="Resource id of the VNet of this stack's tier: production's is production's alone")
    networkTier: str | None = Field(None, description="The tier the VNet is for: production (required by production, refused by every other tier) or non-production")
    infrastructureSubnetId: str = Field(description="Subnet of the Container Apps environment (at least /27, delegated to Microsoft.App/environments)")
    databaseSubnetId: str = Field(description="Subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers")
    privateEndpointSubnetId: str = Field(description="Subnet of the Key Vault's and storage account's private endpoints")
    keyVaultDnsZoneId: str = Field(description=f"The organisation's private DNS zone {VAULT_ZONE} (linked to the VNet): the Key Vault's private endpoint registers there")
    blobDnsZoneId: str = Field(description=f"The organisation's private DNS zone {BLOB_ZONE} (linked to the VNet): the storage account's private endpoint registers there")
    image: str = Field(min_length=1, description="The app's Docker-buildpack image; by digest (@sha256:...) on production")
    registryId: str | None = Field(None, description="Resource id of the Azure Container Registry holding the image: the runtime identity gets AcrPull on it")
    ipRestrictions: list[str] = Field(default_factory=list, description="IPv4 ranges allowed to reach the ingress; empty: everyone (refused on production)")
    allowPublicIngress: bool = Field(False, description="Explicit opt-in to an open or /8-and-wider ingress on production")
    authenticationContext: str | None = Field(
        None,
        description="Production: the Conditional Access authentication context (c1 to c99) every PIM activation of a production role "
        "requires; its policy must demand MFA at every sign-in (sign-in frequency: every time). Without it, PIM takes the MFA claim of "
        "any earlier sign-in that refreshed tokens still carry",
    )
    internal: bool = Field(False, description="An internal environment (reachable only inside the VNet)")
    cpu: dict[str, float] = Field(default_factory=dict, description="Environment name -> vCPU per instance; default: the Container Apps size for the memory")
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)

    @field_validator("subscriptionId", "tenantId")
    @classmethod
    def _guid(cls, v: str) -> str:
        if not GUID_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
        return v.lower()

    @field_validator("vnetId")
    @classmethod
    def _vnet(cls, v: str) -> str:
        if not VNET_ID.fullmatch(v):
            raise ValueError(f"{v!r} is not a VNet resource id (/subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<name>)")
        return v

    @field_validator("networkTier")
    @classmethod
    def _tier(cls, v: str | None) -> str | None:
        if v is not None and v not in NETWORK_TIERS:
            raise ValueError(f"{v!r} is not a network tier: {' or '.join(NETWORK_TIERS)}")
        return v

    @field_validator("infrastructureSubnetId", "databaseSubnetId", "privateEndpointSubnetId")
    @classmethod
    def _subnet(cls, v: str) -> str:
        if not SUBNET_ID.fullmatch(v):
            raise ValueError(f"{v!r} is not a subnet resource id (<VNet resource id>/subnets/<name>)")
        return v

    @field_validator("keyVaultDnsZoneId", "blobDnsZoneId")
    @classmethod
    def _zone(cls, v: str, info) -> str:
        m = DNS_ZONE_ID.fullmatch(v)
        want = VAULT_ZONE if info.field_name == "keyVaultDnsZoneId" else BLOB_ZONE
        if m is None or m["zone"].lower() != want:
            raise ValueError(f"{v!r} is not the resource id of a private DNS zone {want} (/subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Network/privateDnsZones/{want})")
        return v

    @field_validator("authenticationContext")
    @classmethod
    def _context(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"c([1-9]|[1-9][0-9])", v):
            raise ValueError(f"{v!r} is not an authentication context id: c1 to c99, as Conditional Access names them")
        return v

    @field_validator("registryId")
    @classmethod
    def _registry(cls, v: str | None) -> str | None:
        if v is not None and not REGISTRY_ID.fullmatch(v):
            raise ValueError(f"{v!r} is not a container registry resource id (/subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.ContainerRegistry/registries/<name>)")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not IMAGE.fullmatch(v) or parse_image(v) is None:
            raise ValueError(f"{v!r} is not an image reference (<registry>/<repository>[:tag][@sha256:<digest>])")
        return v

    @field_validator("ipRestrictions")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        for c in v:
            if parse_cidr(c).version != 4:
                raise ValueError(f"{c!r}: Container Apps IP restrictions take IPv4 ranges only")
        return v

    @property
    def production_network(self) -> bool:
        """True when the stack declares its VNet production's."""
        return self.networkTier == PRODUCTION_TIER

    @property
    def image_registry(self) -> str:
        """The registry host of the image."""
        return self.image.split("/", 1)[0]


def subnet_name(subnet_id: str) -> str:
    """The subnet's own name."""
    m = SUBNET_ID.fullmatch(subnet_id)
    return m["subnet"] if m else subnet_id


def tier_of(sku: str) -> str:
    """The Flexible Server tier of a SKU name."""
    m = SKU.fullmatch(sku)
    if m is None:
        raise ValueError(sku)
    return TIERS[m["family"]]


# How mxinfra:access names an Entra principal: `user:`, `group:` or `servicePrincipal:` and its object id.
PRINCIPAL = re.compile(rf"(?P<kind>user|group|servicePrincipal):(?P<id>{GUID})")
PRINCIPAL_TYPES = {"user": "User", "group": "Group", "servicePrincipal": "ServicePrincipal"}


def principal_parts(principal: str) -> tuple[str, str]:
    """(principal type as RBAC spells it, object id in lowercase) of `user:<guid>` and the like."""
    m = PRINCIPAL.fullmatch(principal)
    if m is None:
        raise ValueError(principal)
    return PRINCIPAL_TYPES[m["kind"]], m["id"].lower()
