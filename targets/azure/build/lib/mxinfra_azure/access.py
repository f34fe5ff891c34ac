"""Environment permissions as Azure RBAC at the environment's resource group: one role per permission,
standing assignments outside production, PIM eligibility with MFA and 8-hour activations on production."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_azure_native as azure

from mxinfra.access import PRODUCTION_SESSION_SECONDS
from mxinfra.target import EnvironmentContext

from . import pim, roles
from .config import AzureConfig
from .names import Names
from .runtime import Runtime
from .target import principal_parts


@dataclass
class Access:
    """What the environment exports: permission -> role definition id, and the scope of each."""

    definition_ids: dict[str, Any] = field(default_factory=dict)
    scopes: dict[str, str] = field(default_factory=dict)


def definition_guid(names: Names, permission: str) -> str:
    """The role definition GUID of `permission` (built-in or the environment's custom role)."""
    builtin = roles.BUILTIN.get(permission)
    return builtin[0] if builtin else names.role_definition_guid(permission)


def create(ctx: EnvironmentContext, cfg: AzureConfig, names: Names, group: azure.resources.ResourceGroup, rt: Runtime) -> Access:
    """The roles, their assignments or eligibilities, and on production their PIM policies."""
    n = ctx.naming
    out = Access()
    granted = ctx.access.roles()
    # manage may hand out the environment's other roles, never itself.
    others = [definition_guid(names, p) for p in roles.ACTIONS if p != "manage"]
    if any(r.permission.value == "api" for r in granted):
        others.append(roles.READER)
    for r in granted:
        perm = r.permission.value
        guid = definition_guid(names, perm)
        if perm in roles.BUILTIN:
            definition_id: Any = names.role_definition_id(guid)
        else:
            definition = azure.authorization.RoleDefinition(
                n.logical(f"role-{perm}"),
                role_definition_id=guid,
                scope=names.scope,
                role_name=f"mxinfra {n.prefix} {perm}",
                description=f"{n.prefix}: the {perm} permission (mxinfra)",
                role_type="CustomRole",
                permissions=[{"actions": list(roles.ACTIONS[perm]), "not_actions": list(roles.NOT_ACTIONS.get(perm, [])), "data_actions": [], "not_data_actions": []}],
                assignable_scopes=[names.scope],
                opts=ctx.opts(depends_on=[group]),
            )
            definition_id = definition.id
        out.definition_ids[perm] = definition_id
        out.scopes[perm] = names.scope
        condition = roles.manage_condition(others) if perm == "manage" else None
        # Production: no standing access for people at all (alerts too: its role edits alert rules).
        pim_needed = r.mfa_required or ctx.environment.is_production
        eligible = [p for p in r.principals if pim_needed and principal_parts(p)[0] != "ServicePrincipal"]
        standing = [p for p in r.principals if p not in eligible]
        for principal in standing:
            kind, object_id = principal_parts(principal)
            azure.authorization.RoleAssignment(
                n.logical(f"grant-{perm}-{object_id}"),
                role_assignment_name=names.assignment_guid(perm, object_id),
                scope=names.scope,
                role_definition_id=definition_id,
                principal_id=object_id,
                principal_type=kind,
                description=f"{n.prefix}: {perm} ({principal})",
                condition=condition,
                condition_version="2.0" if condition else None,
                opts=ctx.opts(depends_on=[group]),
            )
        if not eligible:
            continue
        session = min(r.max_session_seconds or PRODUCTION_SESSION_SECONDS, PRODUCTION_SESSION_SECONDS) if ctx.environment.is_production else (r.max_session_seconds or PRODUCTION_SESSION_SECONDS)
        lookup = pim.PolicyLookup(n.logical(f"role-{perm}-policy-lookup"), names.scope, definition_id, opts=ctx.opts(depends_on=[group]))
        policy = azure.authorization.RoleManagementPolicy(
            n.logical(f"role-{perm}-policy"),
            scope=names.scope,
            role_management_policy_name=lookup.policy_name,
            rules=pim.policy_rules(session),
            opts=ctx.opts(),
        )
        for principal in eligible:
            kind, object_id = principal_parts(principal)
            azure.authorization.PimRoleEligibilitySchedule(
                n.logical(f"eligible-{perm}-{object_id}"),
                scope=names.scope,
                role_definition_id=definition_id,
                principal_id=object_id,
                justification=f"{n.prefix}: {perm} ({principal}), managed by mxinfra",
                schedule_info={"expiration": {"type": "NoExpiration"}},
                condition=condition,
                condition_version="2.0" if condition else None,
                # The activation rules are in place before anyone becomes eligible.
                opts=ctx.opts(depends_on=[policy]),
            )
    return out


__all__ = ["Access", "create", "pulumi"]
