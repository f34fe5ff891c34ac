"""Environment permissions as IAM roles: one per permission, trusted by its principals, allowed exactly it."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from mxinfra.target import EnvironmentContext

from . import policies
from .config import AwsConfig
from .policies import Arns

DEFAULT_SESSION_SECONDS = 3600


def create(ctx: EnvironmentContext, cfg: AwsConfig, a: Arns) -> dict[str, pulumi.Output[str]]:
    """The access roles of the environment; returns permission -> role ARN."""
    n = ctx.naming
    roles = ctx.access.roles()
    granted = [r.permission.value for r in roles]
    arns: dict[str, pulumi.Output[str]] = {}
    for r in roles:
        perm = r.permission.value
        # The core already applied the production rules (MFA, 8-hour sessions): they are only realised here.
        role = aws.iam.Role(
            n.logical(f"role-{perm}"),
            name=a.role_name(perm),
            path=policies.ROLE_PATH,
            description=f"{n.prefix}: {perm} permission",
            assume_role_policy=json.dumps(policies.access_trust(r.principals, r.mfa_required, r.max_session_seconds, a.partition), sort_keys=True),
            max_session_duration=policies.mfa_session(r.max_session_seconds)[0] if r.mfa_required else r.max_session_seconds or DEFAULT_SESSION_SECONDS,
            permissions_boundary=cfg.permissionsBoundaryArn,
            tags={**dict(ctx.tags), "mxinfra:permission": perm},
            opts=ctx.opts(),
        )
        aws.iam.RolePolicy(
            n.logical(f"role-{perm}-policy"),
            name=perm,
            role=role.name,
            policy=json.dumps(policies.permission_policy(a, perm, granted), sort_keys=True),
            opts=ctx.opts(),
        )
        arns[perm] = role.arn
    return arns
