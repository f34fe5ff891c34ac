"""The Azure slice of backups (issue 21) under the mock runtime: the database's point-in-time retention,
the files' soft delete, versioning, change feed and point-in-time restore, the Backup vault with its
policies, instances and its identity's roles, production's guards, the backups permission, the plan's
notes, and what an opt-out leaves."""

from __future__ import annotations

import json

import pytest

from mxinfra.components import ENVIRONMENT_TYPE, MendixApp
from mxinfra.errors import ConfigError
from mxinfra_azure import backups, render, roles
from mxinfra_azure.target import AzureTarget

from azhelpers import LOCATION, SUB, config, deployment, rbac_allows
from azure_operations import operations

T = "azure-native:"
ROLES = ("test", "acceptance", "production")
VAULT, POLICY, INSTANCE = f"{T}dataprotection:BackupVault", f"{T}dataprotection:BackupPolicy", f"{T}dataprotection:BackupInstance"
ASSIGNMENT, LOCK = f"{T}authorization:RoleAssignment", f"{T}authorization:ManagementLockByScope"
ROLE_IDS = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/"
STORAGE_ACCOUNT_BACKUP_CONTRIBUTOR = "e5e2a7ff-d759-4cd2-bb51-3152d37e2eb1"
POSTGRES_LTR_BACKUP = "c088a766-074b-43ba-90d4-1fb21feae531"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
VAULT_PRINCIPAL = "7e57ab1e-0000-4000-8000-00000000b0b0"
# What the vault's backups are, in the core's words: every child the Azure slice adds for them.
BACKUP_CHILDREN = {
    "backup-vault": VAULT,
    "backup-policy-files": POLICY,
    "backup-policy-db": POLICY,
    "backup-files": INSTANCE,
    "backup-db": INSTANCE,
    "backup-vault-files": ASSIGNMENT,
    "backup-vault-db": ASSIGNMENT,
    "backup-vault-reader": ASSIGNMENT,
}

_CACHE: dict[str, tuple] = {}


def _vault_identity(args):
    """The cloud's answers (test_azure_update's), and for the vault its identity's principal id."""
    from test_azure_update import cloud

    state = dict(cloud(args))
    if args.typ == VAULT:
        state.update(name=args.inputs["vaultName"], identity={"type": "SystemAssigned", "principalId": VAULT_PRINCIPAL})
    return state


def run(pulumi_run, role: str, backups_block: dict | None = None, *, applied: bool = False):
    """One mock run of the example app with `backups_block` as the environment's `backups` (cached)."""
    key = json.dumps([role, backups_block, applied], sort_keys=True)
    if key not in _CACHE:
        d = deployment(config(role, env={"backups": backups_block} if backups_block is not None else None))
        kw = {"preview": False, "outputs": _vault_identity} if applied else {}
        res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="azure-production", project="orders", **kw)
        _CACHE[key] = (d, res)
    return _CACHE[key]


def kids(res, role: str) -> dict[str, object]:
    env = res.one(ENVIRONMENT_TYPE)
    return {r.name.removeprefix(f"orders-{role}-"): r for r in res.children(env)}


def scope(role: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/orders-{role}-rg"


def rules_of(policy) -> dict[str, dict]:
    return {r["name"]: r for r in policy.inputs["properties"]["policyRules"]}


def duration(rule: dict) -> str:
    (lifecycle,) = rule["lifecycles"]
    assert lifecycle["sourceDataStore"] == {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"}
    return lifecycle["deleteAfter"]["duration"]


# --- what every environment with backups gets ----------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_backup_children_are_the_environments(pulumi_run, role):
    _, res = run(pulumi_run, role)
    children = kids(res, role)
    for name, type_ in BACKUP_CHILDREN.items():
        assert children[name].type == type_, name
    # nothing of dataprotection outside the environment's component, nothing more than the above
    assert {r.name for r in res if r.type.startswith(f"{T}dataprotection:")} == {f"orders-{role}-{k}" for k, t in BACKUP_CHILDREN.items() if t.startswith(f"{T}dataprotection:")}
    assert ("backup-vault-lock" in children) == (role == "production")


@pytest.mark.parametrize("role", ROLES)
def test_database_keeps_the_daily_tier(pulumi_run, role):
    _, res = run(pulumi_run, role)
    backup = res.one(f"{T}dbforpostgresql:Server").inputs["backup"]
    # the core's default daily tier, 14 days; geo-redundant on production only (set at creation)
    assert backup == {"backupRetentionDays": 14, "geoRedundantBackup": "Enabled" if role == "production" else "Disabled"}


@pytest.mark.parametrize("role", ROLES)
def test_files_point_in_time_restore_within_soft_delete(pulumi_run, role):
    _, res = run(pulumi_run, role)
    blob = res.one(f"{T}storage:BlobServiceProperties")
    assert blob.name == f"orders-{role}-files-blob-service"
    soft = {"test": 15, "acceptance": 30, "production": 90}[role]  # past the 14-day window, never below the role's days
    i = blob.inputs
    assert i["isVersioningEnabled"] is True
    assert i["deleteRetentionPolicy"] == {"enabled": True, "days": soft, "allowPermanentDelete": False}
    assert i["containerDeleteRetentionPolicy"] == {"enabled": True, "days": soft}
    assert i["restorePolicy"] == {"enabled": True, "days": 14}
    assert i["restorePolicy"]["days"] < i["deleteRetentionPolicy"]["days"]  # Azure refuses it otherwise
    assert i["changeFeed"] == {"enabled": True, "retentionInDays": soft}


@pytest.mark.parametrize("role", ROLES)
def test_vault(pulumi_run, role):
    _, res = run(pulumi_run, role)
    production = role == "production"
    vault = kids(res, role)["backup-vault"]
    i = vault.inputs
    assert i["vaultName"] == f"orders-{role}-backups" and i["location"] == LOCATION
    assert i["identity"] == {"type": "SystemAssigned"}
    assert i["tags"]["mxinfra:environment"] == role
    p = i["properties"]
    assert p["securitySettings"] == {
        "immutabilitySettings": {"state": "Locked" if production else "Disabled"},
        "softDeleteSettings": {"state": "AlwaysOn" if production else "On", "retentionDurationInDays": 14},
    }
    assert p["storageSettings"] == [{"datastoreType": "VaultStore", "type": "GeoRedundant" if production else "LocallyRedundant"}]
    assert p["featureSettings"] == {"crossSubscriptionRestoreSettings": {"state": "Disabled"}}
    # production's backups are production data: protected, kept, and locked against deletion
    assert (vault.protect, vault.retain_on_delete) == (production, production)
    locks = [r for r in res.of_type(LOCK) if r.inputs["scope"] == f"orders-{role}-backup-vault-id"]
    if production:
        (lock,) = locks
        assert lock.name == "orders-production-backup-vault-lock"
        assert lock.inputs["level"] == "CanNotDelete" and lock.inputs["lockName"] == "orders-production-backup-vault-no-delete"
    else:
        assert locks == []


@pytest.mark.parametrize("kind,datasource,backup_type", [("files", "Microsoft.Storage/storageAccounts/blobServices", "Discrete"), ("db", "Microsoft.DBforPostgreSQL/flexibleServers", "Full")])
def test_policies_hold_the_weekly_and_monthly_tiers(pulumi_run, kind, datasource, backup_type):
    _, res = run(pulumi_run, "acceptance")
    children = kids(res, "acceptance")
    policy = children[f"backup-policy-{kind}"]
    assert policy.inputs["backupPolicyName"] == f"orders-acceptance-{kind}-weekly-monthly"
    assert children["backup-vault"].urn in policy.dependencies
    props = policy.inputs["properties"]
    assert props["objectType"] == "BackupPolicy" and props["datasourceTypes"] == [datasource]
    rules = rules_of(policy)
    assert set(rules) == {"BackupWeekly", "Default", "Monthly"}
    weekly = rules["BackupWeekly"]
    assert weekly["objectType"] == "AzureBackupRule"
    assert weekly["backupParameters"] == {"objectType": "AzureBackupParams", "backupType": backup_type}
    assert weekly["dataStore"] == {"dataStoreType": "VaultStore", "objectType": "DataStoreInfoBase"}
    trigger = weekly["trigger"]
    assert trigger["schedule"] == {"repeatingTimeIntervals": ["R/2024-01-07T02:00:00+00:00/P1W"], "timeZone": "UTC"}  # the default cron's 02:00 UTC
    tags = {t["tagInfo"]["tagName"]: t for t in trigger["taggingCriteria"]}
    assert tags["Default"]["isDefault"] is True and "criteria" not in tags["Default"]
    assert tags["Monthly"]["isDefault"] is False and tags["Monthly"]["taggingPriority"] < tags["Default"]["taggingPriority"]
    assert tags["Monthly"]["criteria"] == [{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": ["FirstOfMonth"]}]
    # the core's defaults: weeklies 13 weeks, monthlies 12 months
    assert rules["Default"]["isDefault"] is True and duration(rules["Default"]) == "P13W"
    assert rules["Monthly"]["isDefault"] is False and duration(rules["Monthly"]) == "P12M"


def test_backup_instances(pulumi_run):
    _, res = run(pulumi_run, "production")
    children = kids(res, "production")
    files, db = children["backup-files"], children["backup-db"]
    assert files.inputs["backupInstanceName"] == "orders-production-files-backup"
    assert db.inputs["backupInstanceName"] == "orders-production-db-backup"
    account = res.one(f"{T}storage:StorageAccount").inputs["accountName"]
    server = res.one(f"{T}dbforpostgresql:Server").inputs["serverName"]
    f = files.inputs["properties"]
    assert f["objectType"] == "BackupInstance"
    assert f["dataSourceInfo"] == {
        "objectType": "Datasource",
        "datasourceType": "Microsoft.Storage/storageAccounts/blobServices",
        "resourceType": "Microsoft.Storage/storageAccounts",
        "resourceID": "orders-production-files-id",
        "resourceUri": "orders-production-files-id",
        "resourceName": account,
        "resourceLocation": LOCATION,
    }
    assert f["policyInfo"] == {
        "policyId": "orders-production-backup-policy-files-id",
        "policyParameters": {"backupDatasourceParametersList": [{"objectType": "BlobBackupDatasourceParameters", "containersList": ["mendix-files"]}]},
    }
    d = db.inputs["properties"]
    source = {
        "datasourceType": "Microsoft.DBforPostgreSQL/flexibleServers",
        "resourceType": "Microsoft.DBforPostgreSQL/flexibleServers",
        "resourceID": "orders-production-db-id",
        "resourceUri": "orders-production-db-id",
        "resourceName": server,
        "resourceLocation": LOCATION,
    }
    assert d["dataSourceInfo"] == {**source, "objectType": "Datasource"}
    assert d["dataSourceSetInfo"] == {**source, "objectType": "DatasourceSet"}
    assert d["policyInfo"] == {"policyId": "orders-production-backup-policy-db-id"}
    # Azure Backup checks the vault's access when an instance is created: its roles exist first
    assert {children["backup-vault-files"].urn, children["files-container"].urn} <= set(files.dependencies)
    assert {children["backup-vault-db"].urn, children["backup-vault-reader"].urn} <= set(db.dependencies)


@pytest.mark.parametrize("role", ROLES)
def test_vault_identity_holds_the_documented_roles_on_this_environment_only(pulumi_run, role):
    _, res = run(pulumi_run, role, applied=True)
    children = kids(res, role)
    grants = {k: children[f"backup-vault-{k}"].inputs for k in ("files", "db", "reader")}
    expected = {
        "files": (STORAGE_ACCOUNT_BACKUP_CONTRIBUTOR, f"orders-{role}-files-id"),
        "db": (POSTGRES_LTR_BACKUP, f"orders-{role}-db-id"),
        "reader": (READER, scope(role)),
    }
    for kind, (guid, where) in expected.items():
        g = grants[kind]
        assert (g["roleDefinitionId"], g["scope"]) == (ROLE_IDS + guid, where), kind
        assert g["principalId"] == VAULT_PRINCIPAL and g["principalType"] == "ServicePrincipal", kind
    # the policies and instances are the vault's (its name, as ARM returns it)
    for kind in ("files", "db"):
        assert children[f"backup-policy-{kind}"].inputs["vaultName"] == f"orders-{role}-backups"
        assert children[f"backup-{kind}"].inputs["vaultName"] == f"orders-{role}-backups"
    # the vault's identity holds nothing else anywhere
    held = [r for r in res.of_type(ASSIGNMENT) if r.inputs.get("principalId") == VAULT_PRINCIPAL]
    assert sorted(r.name for r in held) == sorted(f"orders-{role}-backup-vault-{k}" for k in expected)


# --- the numbers follow the config ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "role,retention,db_days,restore,soft",
    [
        ("acceptance", {"daily": 40}, 35, 40, 41),  # the server's 35 at most; soft delete outlasts the window
        ("test", {"daily": 3}, 7, 3, 7),  # the server's 7 at least; the role's soft delete
        ("production", {"daily": 364}, 35, 364, 365),
        ("production", {"daily": 3000}, 35, 364, 365),  # soft delete's 365 at most, the window a day less
        ("test", {"daily": 0}, 7, 1, 7),
    ],
)
def test_daily_tier_bounds(pulumi_run, role, retention, db_days, restore, soft):
    _, res = run(pulumi_run, role, {"retention": retention})
    assert res.one(f"{T}dbforpostgresql:Server").inputs["backup"]["backupRetentionDays"] == db_days
    blob = res.one(f"{T}storage:BlobServiceProperties").inputs
    assert blob["restorePolicy"] == {"enabled": True, "days": restore}
    assert blob["deleteRetentionPolicy"]["days"] == blob["containerDeleteRetentionPolicy"]["days"] == soft
    assert blob["changeFeed"] == {"enabled": True, "retentionInDays": soft}


def test_weekly_and_monthly_tiers_follow_the_config(pulumi_run):
    _, res = run(pulumi_run, "acceptance", {"retention": {"weekly": 4, "monthly": 0}, "schedule": "30 23 * * 5"})
    for kind in ("files", "db"):
        policy = kids(res, "acceptance")[f"backup-policy-{kind}"]
        rules = rules_of(policy)
        # no monthly tier: no monthly rule and no monthly tag
        assert set(rules) == {"BackupWeekly", "Default"} and duration(rules["Default"]) == "P4W"
        trigger = rules["BackupWeekly"]["trigger"]
        assert [t["tagInfo"]["tagName"] for t in trigger["taggingCriteria"]] == ["Default"]
        # the cron's Friday 23:30 UTC (2024-01-12 is a Friday)
        assert trigger["schedule"]["repeatingTimeIntervals"] == ["R/2024-01-12T23:30:00+00:00/P1W"]
    _, res = run(pulumi_run, "acceptance", {"retention": {"weekly": 0, "monthly": 6}})
    rules = rules_of(kids(res, "acceptance")["backup-policy-db"])
    # a policy needs a default rule: a week, the monthlies six months
    assert duration(rules["Default"]) == "P1W" and duration(rules["Monthly"]) == "P6M"


def test_no_long_tiers_no_vault_but_point_in_time_restore(pulumi_run):
    _, res = run(pulumi_run, "acceptance", {"retention": {"weekly": 0, "monthly": 0}})
    assert not [r for r in res if r.type.startswith(f"{T}dataprotection:") or "-backup-vault" in r.name]
    assert res.one(f"{T}storage:BlobServiceProperties").inputs["restorePolicy"] == {"enabled": True, "days": 14}
    assert res.one(f"{T}dbforpostgresql:Server").inputs["backup"]["backupRetentionDays"] == 14


@pytest.mark.parametrize(
    "cron,interval",
    [
        ("0 2 * * *", "R/2024-01-07T02:00:00+00:00/P1W"),
        ("15 4 * * 1", "R/2024-01-08T04:15:00+00:00/P1W"),
        ("0 3 * * 7", "R/2024-01-07T03:00:00+00:00/P1W"),
        ("*/30 * * * *", "R/2024-01-07T02:00:00+00:00/P1W"),  # not one time a day: the default time
        ("@daily", "R/2024-01-07T00:00:00+00:00/P1W"),
    ],
)
def test_vault_schedule(cron, interval):
    assert backups.vault_schedule(cron) == interval


# --- turned off -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role,block", [("test", {"enabled": False}), ("production", {"enabled": False, "reason": "a throwaway demo, rebuilt from source"})])
def test_disabled_backups_leave_only_data_protection(pulumi_run, role, block):
    d, res = run(pulumi_run, role, block)
    # no vault, no policy, no instance, no role for a vault, no vault lock
    assert not [r for r in res if r.type.startswith(f"{T}dataprotection:") or "backup-vault" in r.name]
    # soft delete and versioning stay (data protection: a bad release's deletes stay recoverable), at the
    # role's days; point-in-time restore and the change feed are written off, not left as they were
    blob = res.one(f"{T}storage:BlobServiceProperties").inputs
    soft = {"test": 7, "production": 90}[role]
    assert blob["isVersioningEnabled"] is True
    assert blob["deleteRetentionPolicy"] == {"enabled": True, "days": soft, "allowPermanentDelete": False}
    assert blob["containerDeleteRetentionPolicy"] == {"enabled": True, "days": soft}
    assert blob["restorePolicy"] == {"enabled": False} and blob["changeFeed"] == {"enabled": False}
    # the server keeps its minimum (it cannot keep none); geo-redundancy, fixed at creation, follows the role
    assert res.one(f"{T}dbforpostgresql:Server").inputs["backup"] == {"backupRetentionDays": 7, "geoRedundantBackup": "Enabled" if role == "production" else "Disabled"}
    # the production data guards are untouched
    if role == "production":
        assert {r.name for r in res.of_type(LOCK)} == {"orders-production-db-lock", "orders-production-files-lock"}
        (prepared,) = d.environments
        assert any("production has no backups (a throwaway demo, rebuilt from source)" in w for w in prepared.warnings)


def test_production_opt_out_needs_a_reason():
    with pytest.raises(ConfigError) as e:
        deployment(config("production", env={"backups": {"enabled": False}}))
    assert [i.path for i in e.value.issues] == ["mxinfra:environments.production.backups.reason"]
    # with backups on, production says nothing about them
    (prepared,) = deployment(config("production")).environments
    assert not [w for w in prepared.warnings if "backups" in w]


def test_the_opt_out_warning_is_the_targets_own():
    d = deployment(config("production", env={"backups": {"enabled": False, "reason": "demo"}}))
    (prepared,) = d.environments
    warnings = AzureTarget().warnings(prepared.environment, prepared.access, d.target_config)
    assert [w for w in warnings if "no backups" in w] == ["production has no backups (demo): nothing can be restored after a bad release or a lost database"]


# --- who may take and restore them ----------------------------------------------------------------------

# Every operation that takes a backup, restores one (over data or into a new server) or changes what is
# kept, in the providers' REST operations (the SDKs' request builders, azure_operations.py).
TAKE_OR_RESTORE = sorted(
    {op for op in operations("Microsoft.DataProtection") if op.startswith("microsoft.dataprotection/backupvaults/") and op.endswith("/action")}
    | {"microsoft.storage/storageaccounts/restoreblobranges/action", "microsoft.dbforpostgresql/flexibleservers/backups/write", "microsoft.dbforpostgresql/flexibleservers/write"}
)
NEEDED = (
    "Microsoft.DataProtection/backupVaults/backupInstances/backup/action",
    "Microsoft.DataProtection/backupVaults/backupInstances/restore/action",
    "Microsoft.DataProtection/backupVaults/backupInstances/validateRestore/action",
    "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints/read",
    "Microsoft.DataProtection/backupVaults/backupInstances/findRestorableTimeRanges/action",
    "Microsoft.DataProtection/backupVaults/backupJobs/read",
    "Microsoft.DataProtection/backupVaults/operationStatus/read",
    "Microsoft.Storage/storageAccounts/restoreBlobRanges/action",
    "Microsoft.Storage/storageAccounts/read",
    "Microsoft.DBforPostgreSQL/flexibleServers/backups/write",
)
# What only a restore needs: below production alone (roles.RESTORE_ONLY; on production the platform identity
# restores, since RBAC cannot make a restore wait for the backup of what it overwrites).
RESTORING = (
    "Microsoft.DataProtection/backupVaults/backupInstances/restore/action",
    "Microsoft.DataProtection/backupVaults/backupInstances/validateRestore/action",
    "Microsoft.Storage/storageAccounts/restoreBlobRanges/action",
    "Microsoft.Storage/storageAccounts/read",
    "Microsoft.Network/privateDnsZones/join/action",
)
# What the backups permission must never do: delete or weaken the backups, change what is kept, read keys
# or blobs, grant, or act on another environment's vault by a role of its own above the group.
NEVER = (
    "Microsoft.DataProtection/backupVaults/write",
    "Microsoft.DataProtection/backupVaults/delete",
    "Microsoft.DataProtection/backupVaults/backupPolicies/write",
    "Microsoft.DataProtection/backupVaults/backupPolicies/delete",
    "Microsoft.DataProtection/backupVaults/backupInstances/write",
    "Microsoft.DataProtection/backupVaults/backupInstances/delete",
    "Microsoft.DataProtection/backupVaults/backupInstances/stopProtection/action",
    "Microsoft.DataProtection/backupVaults/backupInstances/suspendBackups/action",
    "Microsoft.DataProtection/backupVaults/backupResourceGuardProxies/write",
    "Microsoft.DataProtection/backupVaults/backupResourceGuardProxies/delete",
    "Microsoft.Storage/storageAccounts/write",
    "Microsoft.Storage/storageAccounts/delete",
    "Microsoft.Storage/storageAccounts/listKeys/action",
    "Microsoft.Storage/storageAccounts/blobServices/write",
    "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
    "Microsoft.DBforPostgreSQL/flexibleServers/delete",
    # a server write at the environment's group is a PATCH of its running server too (backup retention,
    # administrator password): a restore's new server is written in the restores group (backups-restores)
    "Microsoft.DBforPostgreSQL/flexibleServers/write",
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/locks/delete",
)


@pytest.mark.parametrize("role", ("acceptance", "production"))
def test_backups_permission_takes_and_restores_this_environments_backups(pulumi_run, role):
    _, res = run(pulumi_run, role)
    definition = res.named(f"orders-{role}-role-backups").inputs
    assert definition["assignableScopes"] == [scope(role)] and definition["scope"] == scope(role)
    assert definition["permissions"][0]["dataActions"] == []  # never a blob's content
    production = role == "production"
    for action in NEEDED:
        assert rbac_allows(definition, action) == (not production or action not in RESTORING), action
    for action in (*NEVER, *(RESTORING if production else ())):
        assert not rbac_allows(definition, action), action
    # held at the environment's resource group only (PIM eligible on production)
    kind = "PimRoleEligibilitySchedule" if production else "RoleAssignment"
    held = [r for r in res.of_type(f"{T}authorization:{kind}") if r.inputs.get("roleDefinitionId") == f"orders-{role}-role-backups-id"]
    assert held and {r.inputs["scope"] for r in held} == {scope(role)}
    # a restore's new server: written in the restores group alone, by a role held there alone; none on
    # production, whose restores group (created all the same) is the platform identity's
    restores = f"/subscriptions/{SUB}/resourceGroups/orders-{role}-restores-rg"
    assert res.named(f"orders-{role}-restores-rg").inputs["resourceGroupName"] == f"orders-{role}-restores-rg"
    if production:
        assert not [r.name for r in res if "backups-restores" in r.name or "backups-network" in r.name]
        return
    made = res.named(f"orders-{role}-role-backups-restores").inputs
    assert made["assignableScopes"] == [restores] and rbac_allows(made, "Microsoft.DBforPostgreSQL/flexibleServers/write")
    assert not rbac_allows(made, "Microsoft.DBforPostgreSQL/flexibleServers/delete")
    held = [r for r in res.of_type(f"{T}authorization:{kind}") if r.inputs.get("roleDefinitionId") == f"orders-{role}-role-backups-restores-id"]
    assert held and {r.inputs["scope"] for r in held} == {restores}


@pytest.mark.parametrize("role", ("test", "production"))
def test_no_other_permission_takes_or_restores_a_backup(pulumi_run, role):
    _, res = run(pulumi_run, role)
    assert "microsoft.dataprotection/backupvaults/backupinstances/restore/action" in TAKE_OR_RESTORE
    definitions = {r.name.removeprefix(f"orders-{role}-role-"): r.inputs for r in res.of_type(f"{T}authorization:RoleDefinition")}
    # api is the built-in Reader: reads only
    definitions["api"] = {"permissions": [{"actions": ["*/read"], "notActions": []}]}
    assert set(definitions) >= {"deploy", "deploy-status", "monitor", "backups", "alerts", "manage", "api"}
    for name, definition in definitions.items():
        allowed = [op for op in TAKE_OR_RESTORE if rbac_allows(definition, op)]
        if name == "backups-restores":  # (in the restores group alone: test above)
            assert allowed == ["microsoft.dbforpostgresql/flexibleservers/write"], allowed
        elif name == "backups":
            restoring = {"microsoft.dataprotection/backupvaults/backupinstances/restore/action", "microsoft.storage/storageaccounts/restoreblobranges/action"}
            assert "microsoft.dataprotection/backupvaults/backupinstances/backup/action" in allowed
            # on production the platform identity restores (roles.RESTORE_ONLY)
            assert restoring & set(allowed) == (set() if role == "production" else restoring), allowed
        else:
            assert allowed == [], (name, allowed)


def test_backups_actions_are_the_roles_only_source():
    # the table the custom role is built from holds them for backups and for no other permission
    for perm, actions in roles.ACTIONS.items():
        lowered = {a.lower() for a in actions}
        vaulted = {a for a in lowered if a.startswith("microsoft.dataprotection/") or "restoreblobranges" in a}
        assert bool(vaulted) == (perm == "backups"), perm


# --- the plan says what is kept -------------------------------------------------------------------------


def _as_planned(res) -> list[dict]:
    return [
        {"type": r.type, "name": r.name, "inputs": r.inputs, "options": {k: v for k, v in (("protect", r.protect), ("retainOnDelete", r.retain_on_delete)) if v}}
        for r in res
    ]


def test_plan_notes_state_the_backups(pulumi_run):
    _, res = run(pulumi_run, "production")
    notes = render.notes(_as_planned(res))
    vault = [n for n in notes if n.startswith("Backup vault ")]
    assert vault == [
        "Backup vault orders-production-backups: database: weekly (R/2024-01-07T02:00:00+00:00/P1W) kept 13 weeks, the first of each month 12 months; "
        "files: weekly (R/2024-01-07T02:00:00+00:00/P1W) kept 13 weeks, the first of each month 12 months; "
        "immutability Locked, soft delete AlwaysOn (14 days), GeoRedundant storage, Pulumi-protected, retained on delete, CanNotDelete lock"
    ]
    assert "files: blob versioning on, deleted blobs kept 90 days, deleted containers 90 days; backups: point-in-time restore of the last 14 days (change feed kept 90 days)" in notes
    assert any("point-in-time backups kept 14 days (geo-redundant Enabled, set at creation only)" in n for n in notes)
    _, res = run(pulumi_run, "test")
    (vault,) = [n for n in render.notes(_as_planned(res)) if n.startswith("Backup vault ")]
    assert vault.endswith("immutability Disabled, soft delete On (14 days), LocallyRedundant storage")


def test_plan_notes_of_disabled_backups(pulumi_run):
    _, res = run(pulumi_run, "test", {"enabled": False})
    notes = render.notes(_as_planned(res))
    assert not [n for n in notes if n.startswith("Backup vault ")]
    assert "backups: no Backup vault (backups off, or no weekly or monthly tier): nothing is kept beyond the daily tier" in notes
    assert "files: blob versioning on, deleted blobs kept 7 days, deleted containers 7 days; no point-in-time restore (backups off)" in notes


def test_rendered_files_include_the_backups(pulumi_run):
    _, res = run(pulumi_run, "production")
    docs = render.documents(_as_planned(res))
    assert docs["backup-vault.backup-vault.json"]["options"] == {"protect": True, "retainOnDelete": True}
    assert docs["backup-vault.backup-vault.json"]["inputs"]["properties"]["securitySettings"]["immutabilitySettings"] == {"state": "Locked"}
    assert {"backup-policy-files.backup-policy.json", "backup-policy-db.backup-policy.json", "backup-files.backup-instance.json", "backup-db.backup-instance.json", "files-blob-service.blob-service.json"} <= set(docs)
    assert {"backup-vault-files.assignment.json", "backup-vault-db.assignment.json", "backup-vault-reader.assignment.json"} <= set(docs)


def test_settings_of_the_defaults_and_of_an_opt_out():
    s = backups.settings(deployment(config("production")).environments[0].environment)
    assert (s.vault, s.weekly_weeks, s.monthly_months, s.immutability, s.vault_soft_delete, s.redundancy) == (True, 13, 12, "Locked", "AlwaysOn", "GeoRedundant")
    s = backups.settings(deployment(config("test", env={"backups": {"enabled": False}})).environments[0].environment)
    assert (s.vault, s.restore_days, s.database_days, s.soft_delete_days, s.weekly_weeks, s.monthly_months) == (False, None, 7, 7, 0, 0)
