"""The database: PostgreSQL Flexible Server with private access only (delegated subnet, private DNS zone),
TLS enforced, a generated password held in Key Vault; zone-redundant HA and geo-redundant backups on production;
point-in-time backups kept the environment's daily backup tier (backups.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure
import pulumi_random

from mxinfra.target import EnvironmentContext

from . import backups, keyvault, network
from .config import AzureConfig, tier_of
from .keyvault import Vault
from .names import Names

DB_NAME = "mendix"
DB_USER = "mendix"
PORT = 5432
# Per role: the default SKU.
DEFAULT_SKUS = {"test": "Standard_B1ms", "acceptance": "Standard_B2s", "production": "Standard_D2ds_v5"}


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
    sku = cfg.database.skuName or DEFAULT_SKUS[role]
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
        backup={
            # The daily tier, within the server's 7 to 35 days (backups.database_days). The weekly and
            # monthly tiers are the Backup vault's long-term retention (backups.create), not the server's.
            "backup_retention_days": backups.settings(env).database_days,
            # Set only when the server is created (Azure refuses to change it later): it follows the
            # role, not the backups block, so an opt-out never asks to replace production's server.
            "geo_redundant_backup": "Enabled" if env.is_production else "Disabled",
        },
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
