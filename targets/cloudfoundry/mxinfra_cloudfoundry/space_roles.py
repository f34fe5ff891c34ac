"""The space-role resources of one environment: standing roles outside production; on production the
GrantExpiry that reports due grants, and the expiry app that removes them. Declarations only: what a grant
is and how one expires is `grants.py`, which the expiry app runs without Pulumi."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from mxinfra.access import Permission

from . import grants


def standing_roles(ctx: Any, cfg: Any, after: Sequence[Any] = ()) -> dict[str, Any]:
    """One SpaceRole per (permission, user) and one GroupSpaceRole per (permission, group) of a
    non-production environment; none on production."""
    from .access import parse_principal, space_role
    from .config import where
    from .provider import CfGroupSpaceRole, CfSpaceRole

    if ctx.environment.is_production:
        return {}
    space = list(after)
    out = {}
    for role in ctx.access.roles():
        if role.permission not in (Permission.DEPLOY, Permission.MONITOR, Permission.MANAGE):
            continue  # refused by check(); never reaches here from a valid config
        for text in role.principals:
            p = parse_principal(text)
            assert p is not None  # check() validated every principal
            key = f"role-{role.permission.value}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
            common = {**where(cfg, ctx.environment), "type": space_role(role.permission, cfg.deployRole), "origin": p.origin, "principal": text, "permission": role.permission.value, "timeouts": cfg.timeouts.model_dump()}
            if p.kind == "group":  # expanded through UAA when pulumi up runs, kept in sync with membership
                out[key] = CfGroupSpaceRole(ctx.naming.logical(key), {**common, "group": p.name}, ctx.opts(depends_on=space))
            else:
                out[key] = CfSpaceRole(ctx.naming.logical(key), {**common, "username": p.name}, ctx.opts(depends_on=space))
    return out


def grant_expiry(ctx: Any, cfg: Any, after: Sequence[Any] = ()) -> Any:
    """The production environment's GrantExpiry: reports due grants, removes every open one on destroy."""
    from mxinfra.governance.signing import signer_reference

    from .config import where
    from .provider import CfGrantExpiry

    props = {
        **where(cfg, ctx.environment),
        "environment": ctx.environment.name,
        "app": ctx.deployment.config.app.name,
        # as configured (a relative file:// stays relative): two checkouts declare the same inputs
        "repository": ctx.deployment.repository_input,
        "trust": grants.trust_refs(ctx.deployment.config.raw.values, ctx.environment.name),
        "signer": signer_reference(ctx.deployment.config, ctx.environment.name),
        "timeouts": cfg.timeouts.model_dump(),
    }
    return CfGrantExpiry(ctx.naming.logical("grants"), props, ctx.opts(depends_on=list(after)))


def create_expiry_app(ctx: Any, cfg: Any) -> Any:
    """The expiry app of a production environment, in `grantExpiry.space`."""
    import pulumi

    from .config import STACK
    from .database import metadata
    from .expiry import BUNDLE, SETTINGS, bundle, credential_variables, extras_for, settings_for
    from .provider import CfGrantExpiryApp

    ge = cfg.grantExpiry
    settings = settings_for(ctx, cfg)
    extras = extras_for(settings.repository, settings.signer)
    _, digest = bundle(extras)
    secret = {**credential_variables(ge.credentials), **ge.environment}
    place = {"api": cfg.api, **({"org": ge.org} if ge.org else {k: v for k, v in (("org", cfg.org), ("orgGuid", cfg.orgGuid)) if v}), "space": ge.space}
    props: dict[str, Any] = {
        **place,
        "name": ctx.naming.physical("grant-expiry", max_len=63),
        "buildpack": ge.buildpack,
        "stack": STACK,
        "environment": {SETTINGS: settings.to_json()},
        "secretEnvironment": pulumi.Output.secret(secret),
        "secretEnvironmentNames": sorted(secret),
        "package": {"bundle": BUNDLE, "extras": extras, "sha256": digest},
        "instances": 1,
        "memoryMb": ge.memoryMb,
        "diskMb": 1024,
        "healthCheck": {"type": "process", "timeout": 180},
        "routes": [],
        "services": [],
        "ssh": False,
        "metadata": metadata(ctx),
        "timeouts": cfg.timeouts.model_dump(),
    }
    return CfGrantExpiryApp(ctx.naming.logical("grant-expiry"), props, ctx.opts(additional_secret_outputs=["secretEnvironment"]))
