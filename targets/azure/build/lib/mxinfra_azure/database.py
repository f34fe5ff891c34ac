"""The database: PostgreSQL Flexible Server with private access only (delegated subnet, private DNS zone),
TLS enforced, a generated password held in Key Vault; zone-redundant HA and geo-redundant backups on production."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure
import pulumi_random

from mxinfra.target import EnvironmentContext

from . import keyvault, network
from .config import AzureConfig, tier_of
from .keyvault import Vault
from .names import Names

DB_NAME = "mendix"
DB_USER = "mendix"
PORT = 5432
# Per role: (default SKU, days of backups).
DEFAULTS = {
    "test": ("Standard_B1ms", 7),
    "acceptance": ("Standard_B2s", 14),
    "production": ("Standard_D2ds_v5", 35),
}


@dataclass
class Database:
    """The server and where the runtime finds it."""

    server: azure.dbforpostgresql.Server
    host: str  # the server's FQDN (known from its name)
    password_uri: pulumi.Output[str]
    user_uri: pulumi.Output[str]


def guarded(role: str) -> bool:
    """Acceptance and production data are locked against deletion and kept when Pulumi deletes."""
    return role in ("acceptance", "production")


def create(ctx: EnvironmentContext, cfg: AzureConfig, names: Names, group: azure.resources.ResourceGroup, location: str, zone: azure.privatedns.PrivateZone, vault: Vault) -> Database:
    """The password, the server, its TLS settings, the app's database and (acceptance, production) its lock."""
    n, env = ctx.naming, ctx.environment
    role = env.role.value
    default_sku, backup_days = DEFAULTS[role]
    sku = cfg.database.skuName or default_sku
    keep = guarded(role)
    password = pulumi_random.RandomPassword(
        n.logical("db-password"),
        length=32,
        special=True,
        # Characters that never need escaping in a JDBC URL or a shell.
        override_special="-_.~",
        min_lower=2,
        min_upper=2,
        min_numeric=2,
        opts=ctx.opts(),
    )
    server = azure.dbforpostgresql.Server(
        n.logical("db"),
        server_name=names.database_server,
        resource_group_name=group.name,
        location=location,
        version=cfg.database.version,
        sku={"name": sku, "tier": tier_of(sku)},
        storage={"storage_size_gb": cfg.database.storageSizeGb, "auto_grow": "Enabled"},
        administrator_login=DB_USER,
        administrator_login_password=pulumi.Output.secret(password.result),
        auth_config={"password_auth": "Enabled", "active_directory_auth": "Disabled"},
        network={
            "delegated_subnet_resource_id": cfg.databaseSubnetId,
            "private_dns_zone_arm_resource_id": zone.id,
            "public_network_access": "Disabled",
        },
        backup={"backup_retention_days": backup_days, "geo_redundant_backup": "Enabled" if env.is_production else "Disabled"},
        high_availability={"mode": "ZoneRedundant"} if env.is_production else {"mode": "Disabled"},
        tags=dict(ctx.tags),
        opts=ctx.opts(protect=keep, retain_on_delete=keep, additional_secret_outputs=["administratorLoginPassword"]),
    )
    for setting, value in (("require_secure_transport", "ON"), ("ssl_min_protocol_version", "TLSv1.2")):
        azure.dbforpostgresql.Configuration(
            n.logical(f"db-{setting.replace('_', '-')}"),
            server_name=server.name,
            resource_group_name=group.name,
            configuration_name=setting,
            value=value,
            source="user-override",
            opts=ctx.opts(),
        )
    azure.dbforpostgresql.Database(
        n.logical("db-database"),
        server_name=server.name,
        resource_group_name=group.name,
        database_name=DB_NAME,
        charset="UTF8",
        collation="en_US.utf8",
        opts=ctx.opts(protect=keep, retain_on_delete=keep),
    )
    if keep:
        network.lock(ctx, "db", server.id, "the database server")
    password_uri = keyvault.put(ctx, vault, "MXRUNTIME_DatabasePassword", password.result)
    user_uri = keyvault.put(ctx, vault, "MXRUNTIME_DatabaseUserName", DB_USER)
    return Database(server, f"{names.database_server}.postgres.database.azure.com", password_uri, user_uri)
