"""The two Azure Policies around a restore of an environment's database: what its restores group takes, and
where its own servers may be restored to.

`backups` creates a restore's new server in the restores group (roles.RESTORES_ACTIONS), and ARM authorizes
that PUT as `flexibleServers/write` whatever it creates: RBAC has no condition on `createMode` or
`sourceServerResourceId`. Without a policy, a holder of `backups` of one environment who can read another
environment's server (its `monitor`, or `api`) could restore that server, production's among them, into
this group and read its rows; or create a new empty server of their own, or a replica, in the database
subnet; and a reader of a server who may write servers anywhere else in the subscription could restore it
there. Azure Policy can tell: the request's `properties.createMode`, `sourceServerResourceId`,
`administratorLoginPassword`, `network`, and of its size `sku.name`, `storage.storageSizeGB`,
`highAvailability.mode` and `backup.geoRedundantBackup`, are policy aliases of Flexible Server.

- At the restores group (`rule`): every Flexible Server write is denied but a point-in-time restore of one
  of the environment's own servers (`database.restore_sources`: its server, and the one `database.fromBackup`
  serves from, by exact id), into the database subnet, carrying no administrator password and no public access,
  and no bigger than the environment's own server where Azure Policy can tell (`database.server_size`: its
  SKU, at most its storage, HA and geo-redundant backup off or as its own), so that a restore below
  production costs what its environment does. A storage tier, IOPS or throughput has no alias: not capped.
- At the subscription (`source_rule`): a write of a Flexible Server whose source is any server of the
  environment's own group or its restores group (its server, a retired `fromBackup` one, a restored copy)
  is denied outside those two groups.

Each condition a restore must meet denies when its field is missing (`not` of a positive test: `in`,
`equals` and `like` are false for an absent value), rather than relying on how a negative operator reads an
absent value. The size caps are the exception: a restore that leaves a size out (the command's does) gets
its source's, one of the environment's own servers, or less. ARM evaluates both after RBAC, for every caller the platform does not exempt; no role of an
environment holds a policy write, delete or exemption.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_azure_native as azure

from mxinfra.target import EnvironmentContext

from .config import AzureConfig
from .database import ServerSize, restore_sources, server_size
from .names import Names, stable_guid

SERVER_TYPE = "Microsoft.DBforPostgreSQL/flexibleServers"
RESTORE_MODE = "PointInTimeRestore"
_CREATE_MODE = f"{SERVER_TYPE}/createMode"
_SOURCE = f"{SERVER_TYPE}/sourceServerResourceId"


def _set_and(field: str, test: dict[str, Any]) -> dict[str, Any]:
    """`test` of `field` where the request sets it (left out, a restore takes its source's)."""
    return {"allOf": [{"field": field, "exists": "true"}, test]}


def rule(servers: list[str], subnet: str, size: ServerSize) -> dict[str, Any]:
    """The restores group's rule: deny a Flexible Server write unless it is a point-in-time restore of one of
    `servers` into `subnet`, with no administrator password, no public network access and nothing bigger
    than `size` (the SKU itself, at most its storage, HA and geo-redundant backup off or as its own)."""
    sku, storage, ha, geo = (f"{SERVER_TYPE}/{x}" for x in ("sku.name", "storage.storageSizeGB", "highAvailability.mode", "backup.geoRedundantBackup"))
    return {
        "if": {
            "allOf": [
                {"field": "type", "equals": SERVER_TYPE},
                {
                    "anyOf": [
                        {"not": {"field": _CREATE_MODE, "equals": RESTORE_MODE}},
                        {"not": {"field": _SOURCE, "in": servers}},
                        {"field": f"{SERVER_TYPE}/administratorLoginPassword", "exists": "true"},
                        {"field": f"{SERVER_TYPE}/network.publicNetworkAccess", "equals": "Enabled"},
                        {"not": {"field": f"{SERVER_TYPE}/network.delegatedSubnetResourceId", "equals": subnet}},
                        _set_and(sku, {"not": {"field": sku, "equals": size.sku}}),
                        _set_and(storage, {"field": storage, "greater": size.storage_gb}),
                        _set_and(ha, {"not": {"field": ha, "in": sorted({"Disabled", size.high_availability})}}),
                        _set_and(geo, {"not": {"field": geo, "in": sorted({"Disabled", size.geo_redundant_backup})}}),
                    ]
                },
            ]
        },
        "then": {"effect": "deny"},
    }


def source_rule(names: Names) -> dict[str, Any]:
    """The subscription's rule: deny a Flexible Server write whose source is any server of the environment's
    own group or its restores group (its server, a retired `fromBackup` one, a restored copy: all hold its
    rows) anywhere but those two groups."""
    return {
        "if": {
            "allOf": [
                {"field": "type", "equals": SERVER_TYPE},
                {
                    "anyOf": [
                        {"field": _SOURCE, "like": f"{names.scope}/providers/{SERVER_TYPE}/*"},
                        {"field": _SOURCE, "like": f"{names.restores_scope}/providers/{SERVER_TYPE}/*"},
                    ]
                },
                {"not": {"field": "id", "like": f"{names.scope}/*"}},
                {"not": {"field": "id", "like": f"{names.restores_scope}/*"}},
            ]
        },
        "then": {"effect": "deny"},
    }


def _policy(ctx: EnvironmentContext, names: Names, kind: str, scope: str, rule_: dict[str, Any], what: str, message: str, after: list[Any]) -> azure.authorization.PolicyAssignment:
    """A custom policy definition (at the subscription: custom definitions live there) and its assignment at
    `scope`, both children of the environment."""
    prefix = ctx.naming.prefix
    definition = azure.authorization.PolicyDefinition(
        ctx.naming.logical(f"{kind}-policy"),
        policy_definition_name=stable_guid(names.scope, "policy", kind),
        policy_type="Custom",
        mode="Indexed",
        display_name=f"mxinfra {prefix} {kind}",
        description=what,
        policy_rule=rule_,
        opts=ctx.opts(),
    )
    return azure.authorization.PolicyAssignment(
        ctx.naming.logical(f"{kind}-policy-assignment"),
        # the environment's scope in the name: the subscription's assignments of several environments differ
        policy_assignment_name=stable_guid(names.scope, scope, "policy-assignment", kind),
        scope=scope,
        policy_definition_id=definition.id,
        display_name=f"mxinfra {prefix} {kind}",
        description=what,
        enforcement_mode="Default",
        non_compliance_messages=[{"message": message}],
        opts=ctx.opts(depends_on=after),
    )


def restores_policy(ctx: EnvironmentContext, cfg: AzureConfig, names: Names, group: azure.resources.ResourceGroup) -> pulumi.Resource:
    """The restores group's policy assignment (what grants there wait for)."""
    servers = [f"{names.scope}/providers/{SERVER_TYPE}/{name}" for name in restore_sources(cfg, ctx.environment.name, names)]
    what = f"{ctx.naming.prefix}: in {names.restores_group}, only a point-in-time restore of a server of {names.resource_group} (mxinfra)"
    message = (
        f"{names.restores_group} holds only point-in-time restores of the servers of {names.resource_group}, in its database subnet, with no password "
        "or public access set, and no bigger than the environment's server (mxinfra)"
    )
    return _policy(ctx, names, "restores", names.restores_scope, rule(servers, cfg.databaseSubnetId, server_size(cfg, ctx.environment)), what, message, [group])


def source_policy(ctx: EnvironmentContext, names: Names) -> pulumi.Resource:
    """The subscription's policy assignment: the environment's servers are restored into its two groups only."""
    what = f"{ctx.naming.prefix}: its servers restored only into {names.resource_group} or {names.restores_group} (mxinfra)"
    message = f"a server of {names.resource_group} or {names.restores_group} is restored or replicated only into those groups (mxinfra)"
    return _policy(ctx, names, "restored-only-here", names.subscription_scope, source_rule(names), what, message, [])
