"""The database: PostgreSQL Flexible Server with private access only (delegated subnet, private DNS zone),
TLS enforced, a generated password held in Key Vault; zone-redundant HA and geo-redundant backups on production;
point-in-time backups kept the environment's daily backup tier (backups.py).

Which server serves the app is decided here, once (`in_service`): the environment's own, or, with
`mxinfra:azure.database.fromBackup.<env>`, a NEW server restored from the environment's server to a point
in time (a backup id: the time it names, its completion time), `<server>-from-<label>` by the core's rule.
The runtime takes the host of the `Database` `create` returns; the environment's server stays declared as
it is (protected, retained, locked where it had them): switching never drops its data.

`in_service` and the naming are pure; `create` imports Pulumi and runs only while deploying.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from hashlib import sha256
from typing import TYPE_CHECKING, Any

from mxinfra.backups import RESTORED_KIND, RestorePoint, beyond_retention

from .config import AzureConfig, tier_of
from .names import Names

if TYPE_CHECKING:
    import pulumi
    import pulumi_azure_native as azure

    from mxinfra.environments import Environment
    from mxinfra.target import EnvironmentContext

    from .keyvault import Vault

DB_NAME = "mendix"
DB_USER = "mendix"
PORT = 5432
# Per role: the default SKU.
DEFAULT_SKUS = {"test": "Standard_B1ms", "acceptance": "Standard_B2s", "production": "Standard_D2ds_v5"}


# Flexible Server names: 3-63 lowercase letters, digits and hyphens (a global DNS name).
SERVER_NAME_MAX = 63
# What a point-in-time restore sets only on creation: the restored server ignores later changes of them.
RESTORE_INPUTS = ["createMode", "sourceServerResourceId", "pointInTimeUTC"]


@dataclass(frozen=True)
class Restored:
    """The restored server that serves the app instead of the environment's own."""

    point: RestorePoint  # the configured backup id or point in time
    server: str  # <server>-from-<label>, within Flexible Server's 63 characters
    kind: str  # its logical name's kind: db-from-<label>, next to the environment's `db`


def restored_server_name(server: str, label: str, kind: str = RESTORED_KIND) -> str:
    """`<server>-<kind>-<label>` (`kind` "": `<server>-<label>`, the copy `mxinfra backup restore` makes) in
    Azure's lowercase; where that passes 63 characters, the server's name shortened in front of
    `-<kind>-<digest>` (a digest of the server's full name and the label: server names are global DNS
    names, so the environment's unique suffix must not be cut away). Never `server`."""
    infix = f"-{kind}" if kind else ""
    name = f"{server}{infix}-{label.lower()}"
    if len(name) <= SERVER_NAME_MAX:
        return name
    tail = f"{infix}-{sha256(f'{server}/{label}'.encode()).hexdigest()[:12]}"
    return server[: SERVER_NAME_MAX - len(tail)].rstrip("-") + tail


def in_service(cfg: AzureConfig, environment: str, server: str) -> Restored | None:
    """THE decision of which server serves `environment`: None for its own `server`, else the server
    restored to the point `database.fromBackup.<environment>` names. Its name follows from the key alone:
    another time is another server, never the same one replaced. A ValueError for a malformed key, which
    the config check reports before anything runs."""
    point = cfg.database.source(environment)
    if point is None:
        return None
    name = restored_server_name(server, point.label)
    return Restored(point, name, "db-" + name.removeprefix(server + "-") if name.startswith(server + "-") else f"db-{RESTORED_KIND}-{point.label.lower()}")


@dataclass(frozen=True)
class ServerSize:
    """The environment's server's compute, storage and high availability: its own, the restored server's in
    service, and the most a restore into its restores group may ask for (restores.py)."""

    sku: str
    storage_gb: int
    high_availability: str  # the mode: ZoneRedundant on production, Disabled below
    # Set only when a server is created (Azure refuses to change it later): it follows the role, not the
    # backups block, so an opt-out never asks to replace production's server.
    geo_redundant_backup: str


def server_size(cfg: AzureConfig, env: Environment) -> ServerSize:
    """The environment's ServerSize: `database.skuName` (or the role's default) and `storageSizeGb`."""
    production = env.is_production
    return ServerSize(
        cfg.database.skuName or DEFAULT_SKUS[env.role.value],
        cfg.database.storageSizeGb,
        "ZoneRedundant" if production else "Disabled",
        "Enabled" if production else "Disabled",
    )


def restore_sources(cfg: AzureConfig, environment: str, names: Names) -> list[str]:
    """The names of the servers a restore of `environment` may come from (restores.py's policies): its own,
    and the one in service."""
    restored = in_service(cfg, environment, names.database_server)
    return [names.database_server] + ([restored.server] if restored is not None else [])


def retention_days(env: Environment) -> int:
    """How far back the environment's server restores a point in time: its backupRetentionDays."""
    from . import backups

    return backups.settings(env).database_days


def aged_point_in_time(cfg: AzureConfig, env: Environment, now: datetime | None = None) -> str | None:
    """The plan's warning for a `database.fromBackup` time beyond the server's backup retention: the restore
    cannot be created any more, but a server restored from it before is kept (its restore inputs are
    ignored after creation), which the offline plan cannot tell; Azure refuses a new restore with its message."""
    try:
        point = cfg.database.source(env.name)
    except ValueError:
        return None  # the config check reports it
    why = beyond_retention(point, now or datetime.now(timezone.utc), retention_days(env)) if point is not None else None
    if why is None:
        return None
    return f"database.fromBackup: {why}: pulumi up keeps the restored server if it was created from it before; else Azure refuses the restore (name a later time)"


@dataclass
class Database:
    """The server the app uses and where the runtime finds it; `server` is the environment's own, which
    stays declared while a restored one serves."""

    server: azure.dbforpostgresql.Server
    host: str  # the FQDN of the server the app uses (known from its name)
    password_uri: pulumi.Output[str]
    user_uri: pulumi.Output[str]
    serving: azure.dbforpostgresql.Server | None = None  # the restored server in service (None: `server`)
    restored: Restored | None = None


def guarded(role: str) -> bool:
    """Acceptance and production data are locked against deletion and kept when Pulumi deletes."""
    return role in ("acceptance", "production")


def create(ctx: EnvironmentContext, cfg: AzureConfig, names: Names, group: azure.resources.ResourceGroup, location: str, zone: azure.privatedns.PrivateZone, vault: Vault) -> Database:
    """The password, the server, its TLS settings, the app's database and (acceptance, production) its lock;
    and, when `database.fromBackup` says so, the restored server with the same, which serves the app."""
    import pulumi
    import pulumi_azure_native as azure
    import pulumi_random

    from . import backups, keyvault, network

    n, env = ctx.naming, ctx.environment
    role = env.role.value
    size = server_size(cfg, env)
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
    # Every setting of the environment's server but its credentials: a restored server gets the same.
    settings: dict[str, Any] = dict(
        resource_group_name=group.name,
        location=location,
        version=cfg.database.version,
        sku={"name": size.sku, "tier": tier_of(size.sku)},
        storage={"storage_size_gb": size.storage_gb, "auto_grow": "Enabled"},
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
            "geo_redundant_backup": size.geo_redundant_backup,
        },
        high_availability={"mode": size.high_availability},
        tags=dict(ctx.tags),
    )
    server = azure.dbforpostgresql.Server(
        n.logical("db"),
        server_name=names.database_server,
        administrator_login=DB_USER,
        administrator_login_password=pulumi.Output.secret(password.result),
        **settings,
        opts=ctx.opts(protect=keep, retain_on_delete=keep, additional_secret_outputs=["administratorLoginPassword"]),
    )

    def guarantees(kind: str, of: azure.dbforpostgresql.Server, retain: bool) -> None:
        """TLS enforced, the app's database `mendix` and (acceptance, production) the delete lock."""
        for setting, value in (("require_secure_transport", "ON"), ("ssl_min_protocol_version", "TLSv1.2")):
            azure.dbforpostgresql.Configuration(
                n.logical(f"{kind}-{setting.replace('_', '-')}"),
                server_name=of.name,
                resource_group_name=group.name,
                configuration_name=setting,
                value=value,
                source="user-override",
                # a restored server outlives the key (retained): its TLS settings stay with it when forgotten
                opts=ctx.opts(**({"retain_on_delete": True} if retain and kind != "db" else {})),
            )
        azure.dbforpostgresql.Database(
            n.logical(f"{kind}-database"),
            server_name=of.name,
            resource_group_name=group.name,
            database_name=DB_NAME,
            charset="UTF8",
            collation="en_US.utf8",
            opts=ctx.opts(protect=keep, retain_on_delete=retain),
        )
        if keep:
            network.lock(ctx, kind, of.id, "the database server" if kind == "db" else "the restored database server in service", retain=kind != "db")

    guarantees("db", server, keep)
    restored = in_service(cfg, env.name, names.database_server)
    serving = None
    if restored is not None:
        # A NEW server, restored from the environment's server to the point in time (a backup id: the time
        # it names), with every setting of it. Its administrator and password are the source's at that time:
        # the generated password the runtime reads from Key Vault. It holds data written while it served:
        # whatever the tier, removing or changing the key forgets it (retain_on_delete), never deletes it;
        # its restore inputs matter only on creation.
        serving = azure.dbforpostgresql.Server(
            n.logical(restored.kind),
            server_name=restored.server,
            create_mode="PointInTimeRestore",
            source_server_resource_id=server.id,
            point_in_time_utc=restored.point.iso,
            **settings,
            opts=ctx.opts(protect=keep, retain_on_delete=True, ignore_changes=list(RESTORE_INPUTS)),
        )
        # The database `mendix` came with the restore: declared (an idempotent PUT) for its guards.
        guarantees(restored.kind, serving, True)
    password_uri = keyvault.put(ctx, vault, "MXRUNTIME_DatabasePassword", password.result)
    user_uri = keyvault.put(ctx, vault, "MXRUNTIME_DatabaseUserName", DB_USER)
    host = restored.server if restored is not None else names.database_server
    return Database(server, f"{host}.postgres.database.azure.com", password_uri, user_uri, serving, restored)
