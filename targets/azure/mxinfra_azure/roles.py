"""What each environment permission may do on Azure: a built-in role where one fits exactly, else the
actions of a custom role at the environment's resource group. Pure (tests check every action against
the resource providers' published REST operations)."""

from __future__ import annotations

# Built-in roles by GUID (the same in every tenant).
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"

# api: a read-only view of the environment for automation (changes still need deploy).
BUILTIN = {"api": (READER, "Reader")}

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
        # Log queries: the workspace's read operations (query/read is a read of the workspace's tables).
        "Microsoft.OperationalInsights/workspaces/*/read",
        "Microsoft.Insights/metrics/read",
        "Microsoft.Insights/metricDefinitions/read",
        "Microsoft.DBforPostgreSQL/flexibleServers/read",
    ],
    # The server's backups, on-demand backups, and restores, which Flexible Server always makes into a new
    # server (a server write with createMode PointInTimeRestore in this resource group).
    "backups": [
        "Microsoft.DBforPostgreSQL/flexibleServers/read",
        "Microsoft.DBforPostgreSQL/flexibleServers/write",
        "Microsoft.DBforPostgreSQL/flexibleServers/backups/read",
        "Microsoft.DBforPostgreSQL/flexibleServers/backups/write",
    ],
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

# Never granted even where a wildcard might match later: the secrets of the apps.
NOT_ACTIONS: dict[str, list[str]] = {
    "deploy": ["Microsoft.App/containerApps/listSecrets/action"],
    "monitor": ["Microsoft.App/containerApps/listSecrets/action", "Microsoft.OperationalInsights/workspaces/sharedKeys/action"],
}


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
