"""Environment permissions as Azure RBAC at the environment's resource group: one role per permission,
standing assignments outside production, PIM eligibility with MFA and 8-hour activations on production.
What a permission needs above the resource group (deploy's operation-status read) is a second role at
the subscription, and what it needs on the stack's network (deploy's read of the VNet, backups' join of
the database subnet) a role assigned at that one resource, held by the same principals under the same rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_azure_native as azure

from mxinfra.access import PRODUCTION_SESSION_SECONDS, AccessRole
from mxinfra.backups import of_environment
from mxinfra.target import EnvironmentContext

from . import pim, roles
from . import restores as restores_policy
from .config import AzureConfig
from .names import Names
from .runtime import Runtime
from .config import principal_parts


@dataclass
class Access:
    """What the environment exports: permission -> role definition id, and the scope of each."""

    definition_ids: dict[str, Any] = field(default_factory=dict)
    scopes: dict[str, str] = field(default_factory=dict)


def create(ctx: EnvironmentContext, cfg: AzureConfig, names: Names, group: azure.resources.ResourceGroup, rt: Runtime) -> Access:
    """The roles, their assignments or eligibilities, and on production their PIM policies."""
    out = Access()
    granted = ctx.access.roles()
    production = ctx.environment.is_production
    # manage may hand out the environment's other roles, never itself.
    others = [names.role_definition_guid(p) for p in roles.ACTIONS if p != "manage"]
    restores = restores_group(ctx, names, group) if of_environment(ctx.environment).enabled or any(r.permission.value in roles.RESTORES_ACTIONS for r in granted) else None
    # the restores group takes only restores of this environment's servers, and they are restored nowhere
    # else (restores.py); a grant there waits for its policy
    policed = [restores_policy.restores_policy(ctx, cfg, names, restores)] if restores is not None else []
    restores_policy.source_policy(ctx, names)
    for r in granted:
        perm = r.permission.value
        guid = names.role_definition_guid(perm)
        definition_id = _definition(ctx, names, group, perm, guid, names.scope, roles.actions(perm, production), roles.NOT_ACTIONS.get(perm, []))
        out.definition_ids[perm] = definition_id
        out.scopes[perm] = names.scope
        condition = roles.manage_condition(others) if perm == "manage" and not production else None
        _grant(ctx, names, group, r, perm, definition_id, names.scope, condition, auth_context=cfg.authenticationContext)
        above = roles.SUBSCRIPTION_ACTIONS.get(perm)
        if above:
            # The same principals, under the same rules (standing or PIM eligible), at the subscription.
            what = f"{ctx.naming.prefix}: the {perm} permission's reads at the subscription (mxinfra)"
            _companion(ctx, names, group, r, out, roles.subscription_role(perm), names.subscription_scope, names.subscription_scope, above, what, auth_context=cfg.authenticationContext)
        in_restores = roles.restores_actions(perm, production)
        if in_restores:
            # The same principals, in the group a restore's new server is created in
            assert restores is not None
            what = f"{ctx.naming.prefix}: the {perm} permission's restored servers (mxinfra)"
            _companion(ctx, names, restores, r, out, roles.restores_role(perm), names.restores_scope, names.restores_scope, in_restores, what, after=policed, auth_context=cfg.authenticationContext)
        on_vnet = roles.vnet_actions(perm, production)
        if on_vnet and cfg.vnetId:
            # The same principals, on one resource of the stack's network: deploy reads the VNet (its tier is
            # checked before every `pulumi up`); backups joins the database subnet (a restore's new server).
            # Defined at the VNet's resource group (every subnet the stack names is the VNet's: config check).
            key, purpose = roles.VNET_SCOPES[perm]
            what = f"{ctx.naming.prefix}: the {perm} permission's {purpose} (mxinfra)"
            _companion(ctx, names, group, r, out, roles.vnet_role(perm), cfg.vnetId.split("/providers/", 1)[0], getattr(cfg, key), on_vnet, what, auth_context=cfg.authenticationContext)
    return out


def restores_group(ctx: EnvironmentContext, names: Names, group: azure.resources.ResourceGroup) -> azure.resources.ResourceGroup:
    """The group a restore's new servers are created in (names.restores_group), under its policy (restores.py):
    whenever the environment has backups, whoever holds them. Retained on delete: azure-native deletes a resource group with everything in
    it, and a restored copy someone works with must not go with an access change or a destroy (the
    platform removes the group and its servers by hand)."""
    return azure.resources.ResourceGroup(
        ctx.naming.logical("restores-rg"), resource_group_name=names.restores_group, location=group.location, tags=dict(ctx.tags), opts=ctx.opts(retain_on_delete=True)
    )


def _companion(
    ctx: EnvironmentContext,
    names: Names,
    group: azure.resources.ResourceGroup,
    r: AccessRole,
    out: Access,
    name: str,
    defined_at: str,
    held_at: str,
    actions: list[str],
    what: str,
    after: Sequence[pulumi.Resource] = (),
    auth_context: str | None = None,
) -> None:
    """A role beside a permission's own, `name`, defined at `defined_at` and held at `held_at` by the same
    principals under the same rules (standing, or PIM eligible)."""
    definition_id = _definition(ctx, names, group, name, names.role_definition_guid(name), defined_at, actions, [], what)
    out.definition_ids[name] = definition_id
    out.scopes[name] = held_at
    _grant(ctx, names, group, r, name, definition_id, held_at, None, after, auth_context=auth_context)


def _definition(
    ctx: EnvironmentContext,
    names: Names,
    group: azure.resources.ResourceGroup,
    name: str,
    guid: str,
    scope: str,
    actions: list[str],
    not_actions: list[str],
    description: str | None = None,
) -> Any:
    """A custom role `mxinfra <app>-<env> <name>`, assignable at `scope` only; returns its id."""
    n = ctx.naming
    definition = azure.authorization.RoleDefinition(
        n.logical(f"role-{name}"),
        role_definition_id=guid,
        scope=scope,
        role_name=f"mxinfra {n.prefix} {name}",
        description=description or f"{n.prefix}: the {name} permission (mxinfra)",
        role_type="CustomRole",
        permissions=[{"actions": list(actions), "not_actions": list(not_actions), "data_actions": [], "not_data_actions": []}],
        assignable_scopes=[scope],
        opts=ctx.opts(depends_on=[group]),
    )
    return definition.id


# Assignments whose role changed since they were first made, named anew so that Pulumi replaces them: ARM
# may refuse a PUT of another role on an existing assignment's name. api was the built-in Reader.
ROLE_CHANGED = {"api": ("custom",)}


def _grant(
    ctx: EnvironmentContext,
    names: Names,
    group: azure.resources.ResourceGroup,
    r: AccessRole,
    name: str,
    definition_id: Any,
    scope: str,
    condition: str | None,
    after: Sequence[pulumi.Resource] = (),
    auth_context: str | None = None,
) -> None:
    """`r`'s principals get role `name` at `scope`: standing assignments, or PIM eligibility with its policy
    (on production, `auth_context`: the Conditional Access context each activation requires)."""
    n = ctx.naming
    # Production: no standing access for people at all (alerts too: its role edits alert rules).
    pim_needed = r.mfa_required or ctx.environment.is_production
    eligible = [p for p in r.principals if pim_needed and principal_parts(p)[0] != "ServicePrincipal"]
    standing = [p for p in r.principals if p not in eligible]
    if ctx.environment.is_production and r.permission.value != "api" and standing:
        # check() refuses this (a service principal cannot satisfy MFA); never create it if a caller skipped it.
        raise ValueError(f"{n.prefix}: a standing production assignment of {name} for {', '.join(standing)}")
    for principal in standing:
        kind, object_id = principal_parts(principal)
        azure.authorization.RoleAssignment(
            n.logical(f"grant-{name}-{object_id}"),
            role_assignment_name=names.assignment_guid(name, object_id, *ROLE_CHANGED.get(name, ())),
            scope=scope,
            role_definition_id=definition_id,
            principal_id=object_id,
            principal_type=kind,
            description=f"{n.prefix}: {name} ({principal})",
            condition=condition,
            condition_version="2.0" if condition else None,
            opts=ctx.opts(depends_on=[group, *after]),
        )
    if not eligible:
        return
    session = min(r.max_session_seconds or PRODUCTION_SESSION_SECONDS, PRODUCTION_SESSION_SECONDS) if ctx.environment.is_production else (r.max_session_seconds or PRODUCTION_SESSION_SECONDS)
    lookup = pim.PolicyLookup(n.logical(f"role-{name}-policy-lookup"), scope, definition_id, opts=ctx.opts(depends_on=[group]))
    policy = azure.authorization.RoleManagementPolicy(
        n.logical(f"role-{name}-policy"),
        scope=scope,
        role_management_policy_name=lookup.policy_name,
        rules=pim.policy_rules(session, auth_context if ctx.environment.is_production else None),
        opts=ctx.opts(),
    )
    for principal in eligible:
        kind, object_id = principal_parts(principal)
        azure.authorization.PimRoleEligibilitySchedule(
            n.logical(f"eligible-{name}-{object_id}"),
            scope=scope,
            role_definition_id=definition_id,
            principal_id=object_id,
            justification=f"{n.prefix}: {name} ({principal}), managed by mxinfra",
            schedule_info={"expiration": {"type": "NoExpiration"}},
            condition=condition,
            condition_version="2.0" if condition else None,
            # The activation rules are in place before anyone becomes eligible.
            opts=ctx.opts(depends_on=[policy, *after]),
        )


__all__ = ["Access", "create", "pulumi"]
