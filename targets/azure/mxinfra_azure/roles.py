"""What each environment permission may do on Azure: a built-in role where one fits exactly, else the
actions of a custom role at the environment's resource group. Pure (tests check every action against
the resource providers' published REST operations)."""

from __future__ import annotations

# Built-in roles by GUID (the same in every tenant): the Backup vault reads the database's group as Reader.
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


APP_READ = [
    "Microsoft.App/containerApps/read",
    "Microsoft.App/containerApps/revisions/read",
    "Microsoft.App/containerApps/revisions/replicas/read",
    "Microsoft.App/managedEnvironments/read",
]

ACTIONS: dict[str, list[str]] = {
    # Update the environment's container apps (image, variables, scale) and operate their revisions.
    # No listSecrets, no managed environment changes, nothing outside Microsoft.App.
    "deploy": [
        *APP_READ,
        "Microsoft.App/containerApps/write",
        "Microsoft.App/containerApps/start/action",
        "Microsoft.App/containerApps/stop/action",
        "Microsoft.App/containerApps/revisions/activate/action",
        "Microsoft.App/containerApps/revisions/deactivate/action",
        "Microsoft.App/containerApps/revisions/restart/action",
        # Every update of a container app is a full PUT naming its managed environment and its identity,
        # and ARM checks both linked actions (github.com/microsoft/azure-container-apps issue 530). Nothing
        # new: the holder already chooses what that app runs, under that identity, in that environment.
        "Microsoft.App/managedEnvironments/join/action",
        "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
    ],
    # Read the runtime's state, its metrics and its logs.
    "monitor": [
        *APP_READ,
        "Microsoft.OperationalInsights/workspaces/read",
        # Log queries: the workspace's read operations (workspaces/query/read and the per-table
        # workspaces/query/<table>/read). The wildcard also matches reads that return keys: NOT_ACTIONS.
        "Microsoft.OperationalInsights/workspaces/*/read",
        "Microsoft.Insights/metrics/read",
        "Microsoft.Insights/metricDefinitions/read",
        "Microsoft.DBforPostgreSQL/flexibleServers/read",
    ],
    # Take and restore the environment's backups (backups.py), at its resource group only:
    "backups": [
        # the server's backups and on-demand backups; no server write here, which would also PATCH the
        # environment's own server (its backup retention, its administrator password): a restore's new
        # server is written in the restores group (RESTORES_ACTIONS) and reads its source from here;
        "Microsoft.DBforPostgreSQL/flexibleServers/read",
        "Microsoft.DBforPostgreSQL/flexibleServers/backups/read",
        "Microsoft.DBforPostgreSQL/flexibleServers/backups/write",
        # the restored server registers in the environment's private DNS zone (network.database_zone, in
        # this resource group): ARM's linked check of the server PUT asks for the zone's join ("Joins a
        # Private DNS Zone", learn.microsoft.com/azure/role-based-access-control/permissions/networking).
        # The group holds no other private DNS zone (the vault's and the blobs' are keyVaultDnsZoneId and
        # blobDnsZoneId, elsewhere); the join links nothing else without a write of its own (a DNS zone
        # group needs privateEndpoints writes, a VNet link privateDnsZones/virtualNetworkLinks/write).
        # The database subnet's join is VNET_ACTIONS["backups"], on that subnet alone;
        "Microsoft.Network/privateDnsZones/join/action",
        # the Backup vault's weekly and monthly backups: read them, take one now, restore one (the files
        # into the account, the database as files into a container), and follow the jobs and the
        # long-running POSTs (their Azure-AsyncOperation and Location URLs are under the vault);
        "Microsoft.DataProtection/backupVaults/read",
        "Microsoft.DataProtection/backupVaults/backupPolicies/read",
        "Microsoft.DataProtection/backupVaults/backupInstances/read",
        "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints/read",
        "Microsoft.DataProtection/backupVaults/backupInstances/findRestorableTimeRanges/action",
        "Microsoft.DataProtection/backupVaults/backupInstances/backup/action",
        "Microsoft.DataProtection/backupVaults/backupInstances/validateRestore/action",
        "Microsoft.DataProtection/backupVaults/backupInstances/restore/action",
        "Microsoft.DataProtection/backupVaults/backupInstances/operationResults/read",
        "Microsoft.DataProtection/backupVaults/backupJobs/read",
        "Microsoft.DataProtection/backupVaults/operationStatus/read",
        "Microsoft.DataProtection/backupVaults/operationResults/read",
        # the files' point-in-time restore (restoreBlobRanges) and its status, read from the account
        # (`az storage account show --expand blobRestoreStatus`); a vault restore of blobs checks the
        # account read as well. Neither lists keys nor reads a blob.
        "Microsoft.Storage/storageAccounts/read",
        "Microsoft.Storage/storageAccounts/restoreBlobRanges/action",
    ],
    # A read-only view of the environment for automation (changes still need deploy): every read, as the
    # built-in Reader has them, but the reads that return keys (NOT_ACTIONS).
    "api": ["*/read"],
    # The environment's alert rules and action groups (who receives them).
    "alerts": [
        "Microsoft.Insights/metricAlerts/read",
        "Microsoft.Insights/metricAlerts/write",
        "Microsoft.Insights/metricAlerts/delete",
        "Microsoft.Insights/actionGroups/read",
        "Microsoft.Insights/actionGroups/write",
        "Microsoft.Insights/actionGroups/delete",
    ],
    # RBAC administration at the resource group, constrained by the assignment's condition (access.py)
    # to this environment's other mxinfra roles.
    "manage": [
        "Microsoft.Authorization/roleAssignments/read",
        "Microsoft.Authorization/roleAssignments/write",
        "Microsoft.Authorization/roleAssignments/delete",
        "Microsoft.Authorization/roleDefinitions/read",
    ],
}

# On production, manage only reads who holds what: assigning roles there would bypass PIM and turn the
# time-boxed access into standing access (mxinfra.capabilities: no production grant creates grants).
PRODUCTION_MANAGE = ["Microsoft.Authorization/roleAssignments/read", "Microsoft.Authorization/roleDefinitions/read"]


# What only a restore uses: below production alone. A restore overwrites the files in place
# (restoreBlobRanges, a vault restore), and Azure RBAC cannot make either wait for a backup: a holder could
# call them directly and skip the backup first that a restore over production takes (mxinfra.capabilities:
# no production grant restores unguarded). So production's backups role takes and lists backups and
# restores nothing (nor the restore's new server: RESTORES_ACTIONS and VNET_ACTIONS below are not held on
# production either); a restore into production is the platform identity's, which takes the backup first
# through `mxinfra backup restore` (backup_actions: refusal), as a Kubernetes production restore is.
RESTORE_ONLY: dict[str, frozenset[str]] = {
    "backups": frozenset(
        {
            "Microsoft.Network/privateDnsZones/join/action",
            "Microsoft.DataProtection/backupVaults/backupInstances/validateRestore/action",
            "Microsoft.DataProtection/backupVaults/backupInstances/restore/action",
            "Microsoft.Storage/storageAccounts/read",
            "Microsoft.Storage/storageAccounts/restoreBlobRanges/action",
        }
    ),
}


def actions(permission: str, production: bool) -> list[str]:
    """The custom role's actions for `permission` on an environment of that tier."""
    if permission == "manage" and production:
        return list(PRODUCTION_MANAGE)
    if production:
        return [a for a in ACTIONS[permission] if a not in RESTORE_ONLY.get(permission, frozenset())]
    return list(ACTIONS[permission])


def restores_actions(permission: str, production: bool) -> list[str] | None:
    """`permission`'s actions in the restores group on an environment of that tier (None: no role there)."""
    return None if production and permission in RESTORE_ONLY else RESTORES_ACTIONS.get(permission)


def vnet_actions(permission: str, production: bool) -> list[str] | None:
    """`permission`'s actions on the stack's network on an environment of that tier (None: no role there)."""
    return None if production and permission in RESTORE_ONLY else VNET_ACTIONS.get(permission)


# Never granted even where a wildcard might match later: the secrets of the apps, and the keys a read of
# the workspace can return. The workspace's shared keys as Microsoft's built-in Log Analytics Reader
# excludes them (NotActions workspaces/sharedKeys/read), and their POST form; a storage insight config,
# whose API description gives its storage account key read visibility (azure-mgmt-loganalytics models:
# StorageAccount.key), so its GET may return the key.
KEY_READS = [
    "Microsoft.OperationalInsights/workspaces/sharedKeys/action",
    "Microsoft.OperationalInsights/workspaces/sharedKeys/read",
    "Microsoft.OperationalInsights/workspaces/storageInsightConfigs/read",
]
NOT_ACTIONS: dict[str, list[str]] = {
    "deploy": ["Microsoft.App/containerApps/listSecrets/action"],
    "monitor": ["Microsoft.App/containerApps/listSecrets/action", *KEY_READS],
    # and the action groups' receivers, whose webhook and Logic App URLs carry tokens (monitor has no such read)
    "api": ["Microsoft.App/containerApps/listSecrets/action", *KEY_READS, "Microsoft.Insights/actionGroups/read"],
}

# Actions a permission needs in the environment's restores resource group (names.restores_group), in a role
# of their own defined and assigned there, to the same principals under the same rules (standing; below
# production only, restores_actions): backups creates a restore's new server there (a point-in-time
# restore, Servers_Create) and follows it. ARM authorizes a server PUT as flexibleServers/write whether it
# creates a server or changes one, and RBAC has no condition on which: at the environment's group it would
# let the holder shorten the running server's backup retention or set its administrator password. The
# group holds nothing but restored copies, which its Azure Policy makes sure of (restores.py).
RESTORES_ACTIONS: dict[str, list[str]] = {
    "backups": ["Microsoft.DBforPostgreSQL/flexibleServers/read", "Microsoft.DBforPostgreSQL/flexibleServers/write"],
}
RESTORES_SUFFIX = "restores"


def restores_role(permission: str) -> str:
    """The name of `permission`'s role in the restores group (`backups` -> `backups-restores`)."""
    return f"{permission}-{RESTORES_SUFFIX}"


# Actions a permission needs above its environment's resource group, in a role of their own assigned at
# the subscription (a role assigned at the subscription would grant its resource-group actions there too).
# deploy: azure-native polls a container app's long-running PUT at the Azure-AsyncOperation URL ARM
# returns, /subscriptions/{s}/providers/Microsoft.App/locations/{region}/containerappOperationStatuses/{id},
# and ARM authorizes that GET at the subscription (AuthorizationFailed for a principal with access to the
# resource group only: microsoft/azure-container-apps#215). It reads the status of an operation by its id;
# the final GET of the app is at the resource group (containerApps/read in ACTIONS).
SUBSCRIPTION_ACTIONS: dict[str, list[str]] = {
    "deploy": ["Microsoft.App/locations/containerappOperationStatuses/read"],
}
# The subscription-scope role's name beside its permission's: `<permission>-status` (role, grant and
# eligibility names derive from it).
SUBSCRIPTION_SUFFIX = "status"
# Actions on the stack's network (the VNet's resource group, the network team's), in a role of their own
# defined at the VNet's resource group and assigned at ONE resource of it alone (VNET_SCOPES), to the same
# principals under the same rules (standing below production, PIM eligible on production; backups' below
# production only, vnet_actions):
# - deploy, on the VNet: `pulumi up` reads the VNet's tier tag and subnets before it declares anything
#   (network.check_tier, F14);
# - backups, on the database subnet (`databaseSubnetId`) alone: `mxinfra backup restore` creates a new server
#   by point-in-time restore in the source server's delegated subnet, and ARM's linked access check of that
#   server PUT asks the caller for the join of the subnet it names (Microsoft's SDK reference states that
#   check for a Container Instances subnet reference: "The caller must have Microsoft.Network/virtualNetworks/
#   subnets/join/action permission on this subnet (enforced via a linked access check at create/update
#   time)", learn.microsoft.com/javascript/api/@azure/arm-containerinstance/subnetreference; for this PUT,
#   LinkedAuthorizationFailed on the subnet of a Flexible Server's VNet in another resource group:
#   github.com/Azure/azure-cli/issues/17883). The operation is "Joins a virtual network" in Microsoft's
#   resource-provider operations reference (learn.microsoft.com/azure/role-based-access-control/permissions/
#   networking) and in the subnet permissions table (learn.microsoft.com/azure/virtual-network/
#   virtual-network-manage-subnet#permissions). A subnet delegated to Microsoft.DBforPostgreSQL/
#   flexibleServers takes Flexible Servers only ("No other Azure resource types can be in the delegated
#   subnet": learn.microsoft.com/azure/postgresql/network/concepts-networking-private), so the join lets
#   the holder place nothing but servers there. Not another subnet, not the VNet (no subnet or VNet writes).
# The private DNS zone the restored server registers in is the environment's own, in its resource group
# (network.database_zone): its join is in ACTIONS["backups"].
VNET_ACTIONS: dict[str, list[str]] = {
    "deploy": ["Microsoft.Network/virtualNetworks/read"],
    "backups": ["Microsoft.Network/virtualNetworks/subnets/join/action"],
}
# Where each is assigned: the `mxinfra:azure` key naming that one resource, and what the role is for (its
# description: deploy's as it always was, so nothing deployed changes).
VNET_SCOPES: dict[str, tuple[str, str]] = {
    "deploy": ("vnetId", "read of the stack's VNet"),
    "backups": ("databaseSubnetId", "join of the database subnet (a restore's new server)"),
}
VNET_SUFFIX = "network"


def vnet_role(permission: str) -> str:
    """The name of `permission`'s network role (`deploy` -> `deploy-network`, `backups` -> `backups-network`)."""
    return f"{permission}-{VNET_SUFFIX}"


def subscription_role(permission: str) -> str:
    """The name of `permission`'s subscription-scope role (`deploy` -> `deploy-status`)."""
    return f"{permission}-{SUBSCRIPTION_SUFFIX}"


def manage_condition(role_guids: list[str]) -> str:
    """The ABAC condition (version 2.0) of the manage assignment: write and delete role assignments only
    of the listed role definitions (the environment's other roles; never manage itself)."""
    ids = ", ".join(sorted(role_guids))
    return (
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
        f"(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{ids}}})) AND "
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
        f"(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{ids}}}))"
    )
