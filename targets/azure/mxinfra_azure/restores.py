"""The restores resource group's Azure Policy: the only server anyone may write there is a point-in-time
restore of one of the environment's own servers.

`backups` creates a restore's new server in the restores group (roles.RESTORES_ACTIONS), and ARM authorizes
that PUT as `flexibleServers/write` whatever it creates: RBAC has no condition on `createMode` or
`sourceServerResourceId`. Without this policy a holder of `backups` of one environment who can read another
environment's server (its `monitor`, or `api`) could restore that server, production's among them, into
this group and read its rows; or create a new empty server of their own in the database subnet. Azure
Policy can tell: the request's `properties.createMode` and `properties.sourceServerResourceId` are policy
aliases of Flexible Server. A deny assignment at the group refuses every server write there but a
point-in-time restore whose source is in the environment's own resource group (its server, or the one
`database.fromBackup` serves from); ARM evaluates it after RBAC, for every caller the platform does not
exempt. No holder of an environment permission can change or exempt it (no policy writes in any role).
"""

from __future__ import annotations

from typing import Any

import pulumi_azure_native as azure

from mxinfra.target import EnvironmentContext

from .names import Names, stable_guid

SERVER_TYPE = "Microsoft.DBforPostgreSQL/flexibleServers"
RESTORE_MODE = "PointInTimeRestore"


def rule(names: Names) -> dict[str, Any]:
    """The policy rule: deny a Flexible Server write unless it is a point-in-time restore of a server of the
    environment's own resource group (aliases and `like` are case-insensitive, as ARM ids are)."""
    own = f"{names.scope}/providers/{SERVER_TYPE}/*"
    return {
        "if": {
            "allOf": [
                {"field": "type", "equals": SERVER_TYPE},
                {
                    "anyOf": [
                        {"field": f"{SERVER_TYPE}/createMode", "notEquals": RESTORE_MODE},
                        {"field": f"{SERVER_TYPE}/sourceServerResourceId", "notLike": own},
                    ]
                },
            ]
        },
        "then": {"effect": "deny"},
    }


def definition_name(names: Names) -> str:
    """The policy definition's name (a GUID, stable per environment and subscription)."""
    return stable_guid(names.scope, "policy", "restores")


def create(ctx: EnvironmentContext, names: Names, group: azure.resources.ResourceGroup) -> None:
    """The policy's definition (at the subscription: custom definitions live there) and its assignment at the
    restores group, both children of the environment."""
    prefix = ctx.naming.prefix
    what = f"{prefix}: in {names.restores_group}, only a point-in-time restore of a server of {names.resource_group} (mxinfra)"
    definition = azure.authorization.PolicyDefinition(
        ctx.naming.logical("restores-policy"),
        policy_definition_name=definition_name(names),
        policy_type="Custom",
        mode="Indexed",
        display_name=f"mxinfra {prefix} restores only",
        description=what,
        policy_rule=rule(names),
        opts=ctx.opts(),
    )
    azure.authorization.PolicyAssignment(
        ctx.naming.logical("restores-policy-assignment"),
        policy_assignment_name=stable_guid(names.restores_scope, "policy-assignment", "restores"),
        scope=names.restores_scope,
        policy_definition_id=definition.id,
        display_name=f"mxinfra {prefix} restores only",
        description=what,
        enforcement_mode="Default",
        non_compliance_messages=[{"message": f"{names.restores_group} holds only point-in-time restores of the servers of {names.resource_group} (mxinfra)"}],
        opts=ctx.opts(depends_on=[group]),
    )
