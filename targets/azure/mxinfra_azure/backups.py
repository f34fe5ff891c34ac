"""Backups of an environment with Azure's own services (`mxinfra:environments.<env>.backups`).

The tiers of the core's schema (mxinfra.backups: daily_days, weekly_weeks, monthly_months) map onto:
- daily: the services' own point-in-time restore. PostgreSQL Flexible Server keeps its backups
  7 to 35 days (`backup.backupRetentionDays`: daily_days, capped there); the blob service of the
  storage account restores any point within `restorePolicy.days` (daily_days), on blob versioning,
  the change feed and blob soft delete, which must outlast the restore window.
- weekly and monthly: an Azure Backup vault (Microsoft.DataProtection) with a weekly vaulted backup of
  the database (PostgreSQL flexible server long-term retention: pg_dump into the vault) and of the
  file container (vaulted blob backup), each kept `weekly_weeks`, the first of each month
  `monthly_months`. The database's days beyond the server's 35 are not kept: the server's maximum.

Blob soft delete and versioning are data protection, not backups: they stay on when an environment
turns its backups off (a release of the app that deletes or overwrites files must not be final), at
the role's days (storage.SOFT_DELETE_DAYS). Turned off: no restore policy, no change feed, no vault;
the server keeps its minimum of 7 days (Flexible Server cannot keep fewer).

The pure part (`settings`, `policy`, `vault_schedule`) decides every number; `create` runs only while
deploying. See the Azure target README, "Backups".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from mxinfra.backups import Backups, of_environment
from mxinfra.environments import Environment

from . import roles

if TYPE_CHECKING:
    import pulumi_azure_native as azure

    from mxinfra.target import EnvironmentContext

    from .database import Database
    from .names import Names
    from .storage import Files

# PostgreSQL Flexible Server keeps point-in-time backups 7 to 35 days.
DATABASE_MIN_DAYS, DATABASE_MAX_DAYS = 7, 35
# Blob soft delete keeps 1 to 365 days; the restore policy's days must be fewer than soft delete's.
BLOB_MAX_DAYS = 365
# Days a deleted blob or container stays recoverable, by role, whatever the backups (data protection).
SOFT_DELETE_DAYS = {"test": 7, "acceptance": 30, "production": 90}
# Days a deleted backup item stays recoverable in the vault (Azure's minimum, 14 to 180).
VAULT_SOFT_DELETE_DAYS = 14

# Built-in roles (the same GUID in every tenant), as Azure Backup documents them for the vault's identity.
STORAGE_ACCOUNT_BACKUP_CONTRIBUTOR = "e5e2a7ff-d759-4cd2-bb51-3152d37e2eb1"
POSTGRES_LTR_BACKUP = "c088a766-074b-43ba-90d4-1fb21feae531"  # PostgreSQL Flexible Server Long Term Retention Backup Role

# The data source types of Azure Backup (datasourceTypes of a policy, datasourceType of an instance).
BLOB_DATASOURCE = "Microsoft.Storage/storageAccounts/blobServices"
DATABASE_DATASOURCE = "Microsoft.DBforPostgreSQL/flexibleServers"
# Per data source: (resource type, backup type of its vaulted backup rule) as Azure Backup's manifests give them.
DATASOURCES = {
    BLOB_DATASOURCE: ("Microsoft.Storage/storageAccounts", "Discrete"),
    DATABASE_DATASOURCE: ("Microsoft.DBforPostgreSQL/flexibleServers", "Full"),
}

# The policies' one backup rule, which an on-demand backup into the vault names (backup_actions.py).
VAULT_RULE = "BackupWeekly"
# The vault's weekly schedule starts from a fixed Sunday, so the policy never changes by itself.
_SUNDAY = date(2024, 1, 7)
_DEFAULT_TIME = (2, 0)  # the core's default schedule: 02:00 UTC


@dataclass(frozen=True)
class Settings:
    """What an environment's backups become on Azure (every number the resources carry)."""

    enabled: bool
    database_days: int  # Flexible Server backupRetentionDays
    restore_days: int | None  # the blob restore policy's days (None: no restore policy, no change feed)
    soft_delete_days: int  # blob and container soft delete
    vault: bool  # a Backup vault with weekly and monthly tiers
    weekly_weeks: int
    monthly_months: int
    immutability: str  # the vault's: Locked on production (irreversible), else Disabled
    vault_soft_delete: str  # AlwaysOn on production (irreversible), else On
    redundancy: str  # the vault's storage: GeoRedundant on production, else LocallyRedundant
    schedule: str  # the vault's repeating interval (ISO 8601)


def settings(env: Environment) -> Settings:
    """The Azure settings of `env`'s backups (the defaults when it has no `backups` block)."""
    b = of_environment(env)
    production = env.is_production
    floor = SOFT_DELETE_DAYS[env.role.value]
    restore = _restore_days(b)
    # Azure requires soft delete to outlast the restore window (restorePolicy.days < deleteRetentionPolicy.days).
    soft_delete = floor if restore is None else min(BLOB_MAX_DAYS, max(floor, restore + 1))
    return Settings(
        enabled=b.enabled,
        database_days=database_days(b),
        restore_days=restore,
        soft_delete_days=soft_delete,
        vault=b.enabled and (b.weekly_weeks > 0 or b.monthly_months > 0),
        weekly_weeks=b.weekly_weeks if b.enabled else 0,
        monthly_months=b.monthly_months if b.enabled else 0,
        immutability="Locked" if production else "Disabled",
        vault_soft_delete="AlwaysOn" if production else "On",
        redundancy="GeoRedundant" if production else "LocallyRedundant",
        schedule=vault_schedule(b.schedule),
    )


def database_days(b: Backups) -> int:
    """Flexible Server's backup retention: the daily tier within the server's 7 to 35 days; its minimum
    when backups are off (the server always keeps some). The weekly and monthly tiers are the vault's."""
    if not b.enabled:
        return DATABASE_MIN_DAYS
    return min(DATABASE_MAX_DAYS, max(DATABASE_MIN_DAYS, b.daily_days))


def _restore_days(b: Backups) -> int | None:
    """The blob restore window: the daily tier, at least a day, below soft delete's 365 (None: off)."""
    if not b.enabled:
        return None
    return min(BLOB_MAX_DAYS - 1, max(1, b.daily_days))


def vault_schedule(cron: str) -> str:
    """The vault's weekly repeating interval at the time of day (and day of week) of the core's cron
    schedule where it names one; else Sunday 02:00 UTC (a vault schedules daily or weekly only)."""
    fields = cron.split()
    minute, hour = _DEFAULT_TIME[1], _DEFAULT_TIME[0]
    weekday = 0  # cron's: 0 (or 7) is Sunday
    if cron in ("@daily", "@midnight", "@weekly"):
        minute, hour = 0, 0
    elif len(fields) == 5:
        if fields[0].isdigit() and fields[1].isdigit():
            minute, hour = int(fields[0]), int(fields[1])
        if fields[4].isdigit():
            weekday = int(fields[4]) % 7
    start = _SUNDAY + timedelta(days=weekday)
    return f"R/{start.isoformat()}T{hour:02d}:{minute:02d}:00+00:00/P1W"


def _lifecycle(duration: str) -> dict[str, Any]:
    return {
        "delete_after": {"object_type": "AbsoluteDeleteOption", "duration": duration},
        "source_data_store": {"data_store_type": "VaultStore", "object_type": "DataStoreInfoBase"},
        "target_data_store_copy_settings": [],
    }


def policy(datasource: str, s: Settings) -> dict[str, Any]:
    """The vault's backup policy of `datasource`: a weekly backup into the vault store, kept
    `weekly_weeks` (at least one week: a policy needs a default rule), and the first of each month
    `monthly_months` (no monthly rule when that tier is off)."""
    _, backup_type = DATASOURCES[datasource]
    tags: list[dict[str, Any]] = [{"is_default": True, "tagging_priority": 99, "tag_info": {"tag_name": "Default"}}]
    rules: list[dict[str, Any]] = [{"object_type": "AzureRetentionRule", "name": "Default", "is_default": True, "lifecycles": [_lifecycle(f"P{max(1, s.weekly_weeks)}W")]}]
    if s.monthly_months > 0:
        tags.append(
            {
                "is_default": False,
                "tagging_priority": 15,
                "tag_info": {"tag_name": "Monthly"},
                "criteria": [{"object_type": "ScheduleBasedBackupCriteria", "absolute_criteria": ["FirstOfMonth"]}],
            }
        )
        rules.append({"object_type": "AzureRetentionRule", "name": "Monthly", "is_default": False, "lifecycles": [_lifecycle(f"P{s.monthly_months}M")]})
    backup_rule = {
        "object_type": "AzureBackupRule",
        "name": VAULT_RULE,
        "backup_parameters": {"object_type": "AzureBackupParams", "backup_type": backup_type},
        "data_store": {"data_store_type": "VaultStore", "object_type": "DataStoreInfoBase"},
        "trigger": {
            "object_type": "ScheduleBasedTriggerContext",
            "schedule": {"repeating_time_intervals": [s.schedule], "time_zone": "UTC"},
            "tagging_criteria": tags,
        },
    }
    return {"object_type": "BackupPolicy", "datasource_types": [datasource], "policy_rules": [backup_rule, *rules]}


def blob_service(s: Settings) -> dict[str, Any]:
    """The BlobServiceProperties inputs of the files' account: versioning and soft delete always; the
    change feed and the restore policy (point-in-time restore) with backups. Off is written as off, so
    turning backups off disables them rather than leaving the last setting in place."""
    days = s.soft_delete_days
    out: dict[str, Any] = {
        "is_versioning_enabled": True,
        # A restore policy refuses permanent deletes of soft-deleted versions: kept off always.
        "delete_retention_policy": {"enabled": True, "days": days, "allow_permanent_delete": False},
        "container_delete_retention_policy": {"enabled": True, "days": days},
    }
    if s.restore_days is None:
        out["restore_policy"] = {"enabled": False}
        out["change_feed"] = {"enabled": False}
    else:
        out["restore_policy"] = {"enabled": True, "days": s.restore_days}
        # The change feed must cover the restore window; kept as long as soft delete.
        out["change_feed"] = {"enabled": True, "retention_in_days": days}
    return out


@dataclass
class Vault:
    """The environment's Backup vault and what it protects (None where backups have no vault)."""

    vault: Any
    policies: dict[str, Any]
    instances: dict[str, Any]
    grants: dict[str, Any]


def create(
    ctx: EnvironmentContext,
    names: Names,
    group: azure.resources.ResourceGroup,
    location: str,
    files: Files,
    db: Database,
) -> Vault | None:
    """The vault (production: immutability locked, soft delete always on, protected and locked against
    deletion), its two policies, its identity's roles and a backup instance per data source."""
    import pulumi_azure_native as azure

    from . import network
    from .names import FILES_CONTAINER as CONTAINER

    s = settings(ctx.environment)
    if not s.vault:
        return None
    n, production = ctx.naming, ctx.environment.is_production
    vault = azure.dataprotection.BackupVault(
        n.logical("backup-vault"),
        vault_name=names.backup_vault,
        resource_group_name=group.name,
        location=location,
        identity={"type": "SystemAssigned"},
        properties={
            # The vault's redundancy cannot change once it protects anything.
            "storage_settings": [{"datastore_type": "VaultStore", "type": s.redundancy}],
            "security_settings": {
                # Locked and AlwaysOn cannot be undone: production's backups outlive any grant.
                "immutability_settings": {"state": s.immutability},
                "soft_delete_settings": {"state": s.vault_soft_delete, "retention_duration_in_days": VAULT_SOFT_DELETE_DAYS},
            },
            # The environment's backups are restored within its subscription only.
            "feature_settings": {"cross_subscription_restore_settings": {"state": "Disabled"}},
        },
        tags=dict(ctx.tags),
        opts=ctx.opts(protect_data=True),
    )
    if production:
        network.lock(ctx, "backup-vault", vault.id, "the backup vault")
    principal = vault.identity.apply(lambda i: i.principal_id if i else None)

    def grant(kind: str, scope: Any, role: str, what: str) -> Any:
        return azure.authorization.RoleAssignment(
            n.logical(f"backup-vault-{kind}"),
            role_assignment_name=names.assignment_guid("backup-vault", kind),
            scope=scope,
            role_definition_id=names.role_definition_id(role),
            principal_id=principal,
            principal_type="ServicePrincipal",
            description=f"{n.prefix}: the backup vault {what}",
            opts=ctx.opts(depends_on=[vault]),
        )

    grants = {
        "files": grant("files", files.account.id, STORAGE_ACCOUNT_BACKUP_CONTRIBUTOR, "backs up the files"),
        "db": grant("db", db.server.id, POSTGRES_LTR_BACKUP, "backs up the database"),
        # Azure Backup reads the server's resource group (Reader) to discover and validate it.
        "reader": grant("reader", names.scope, roles.READER, "reads the database's resource group"),
    }
    policies, instances = {}, {}
    for kind, datasource, target_id, target_name, extra, deps in (
        ("files", BLOB_DATASOURCE, files.account.id, names.storage_account, [grants["files"]], [files.container]),
        ("db", DATABASE_DATASOURCE, db.server.id, names.database_server, [grants["db"], grants["reader"]], []),
    ):
        policies[kind] = azure.dataprotection.BackupPolicy(
            n.logical(f"backup-policy-{kind}"),
            backup_policy_name=n.physical(f"{kind}-weekly-monthly", max_len=100),
            vault_name=vault.name,
            resource_group_name=group.name,
            properties=policy(datasource, s),
            opts=ctx.opts(),
        )
        resource_type, _ = DATASOURCES[datasource]
        info = {
            "resource_id": target_id,
            "resource_uri": target_id,
            "resource_name": target_name,
            "resource_type": resource_type,
            "resource_location": location,
            "datasource_type": datasource,
        }
        properties: dict[str, Any] = {
            "object_type": "BackupInstance",
            "friendly_name": target_name,
            "data_source_info": {**info, "object_type": "Datasource"},
            "policy_info": {"policy_id": policies[kind].id},
        }
        if datasource == BLOB_DATASOURCE:
            properties["policy_info"]["policy_parameters"] = {"backup_datasource_parameters_list": [{"object_type": "BlobBackupDatasourceParameters", "containers_list": [CONTAINER]}]}
        else:
            properties["data_source_set_info"] = {**info, "object_type": "DatasourceSet"}
        instances[kind] = azure.dataprotection.BackupInstance(
            n.logical(f"backup-{kind}"),
            backup_instance_name=names.backup_instance(kind),
            vault_name=vault.name,
            resource_group_name=group.name,
            properties=properties,
            tags=dict(ctx.tags),
            # Azure Backup validates the vault's access when the instance is created: the roles come first.
            opts=ctx.opts(depends_on=[*extra, *deps]),
        )
    return Vault(vault, policies, instances, grants)


__all__ = ["VAULT_RULE", "Settings", "Vault", "blob_service", "create", "database_days", "policy", "settings", "vault_schedule"]
