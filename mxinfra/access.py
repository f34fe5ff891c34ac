"""The access model: who may do what on which environment, with the platform's production rules. Pure.

Targets realise these grants in their own IAM; none of them re-decides MFA, session length or whether
a permission may be granted.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .environments import Environment
from .errors import ConfigIssue, suggest

if TYPE_CHECKING:
    from .config import AccessEntry

PRODUCTION_SESSION_SECONDS = 8 * 3600


class Permission(str, enum.Enum):
    """The platform's per-environment permissions."""

    DEPLOY = "deploy"  # transport a package, start/stop, change constants and scheduled events
    MONITOR = "monitor"  # logs and metrics
    BACKUPS = "backups"
    API = "api"
    ALERTS = "alerts"
    MANAGE = "manage"  # change permissions

    @property
    def operates(self) -> bool:
        """Whether the permission acts on the environment (receiving alerts does not)."""
        return self is not Permission.ALERTS


@dataclass(frozen=True, order=True)
class Grant:
    """One principal's permission on one environment, with the session rules a target must enforce."""

    environment: str
    permission: Permission
    principal: str
    mfa_required: bool
    max_session_seconds: int | None


@dataclass(frozen=True)
class AccessRole:
    """All principals holding one permission on one environment: the unit a target turns into an IAM role."""

    environment: str
    permission: Permission
    principals: tuple[str, ...]
    mfa_required: bool
    max_session_seconds: int | None


@dataclass(frozen=True)
class EnvironmentAccess:
    """The grants of one environment."""

    environment: str
    grants: tuple[Grant, ...]

    def roles(self) -> tuple[AccessRole, ...]:
        """The grants grouped per permission, in permission order, principals sorted."""
        out = []
        for perm in Permission:
            gs = [g for g in self.grants if g.permission is perm]
            if gs:
                out.append(
                    AccessRole(
                        self.environment,
                        perm,
                        tuple(sorted({g.principal for g in gs})),
                        any(g.mfa_required for g in gs),
                        min((g.max_session_seconds for g in gs if g.max_session_seconds), default=None),
                    )
                )
        return tuple(out)

    @property
    def principals(self) -> tuple[str, ...]:
        """Every principal with any grant here."""
        return tuple(sorted({g.principal for g in self.grants}))


def _applies(entry: AccessEntry, env: Environment) -> bool:
    return "*" in entry.environments or env.name in entry.environments


def check_access(entries: Sequence[AccessEntry], envs: Sequence[Environment], file: str = "") -> list[ConfigIssue]:
    """The config problems in `mxinfra:access`: unknown permissions and the production rules."""
    issues = []
    valid = [p.value for p in Permission]
    for i, entry in enumerate(entries):
        path = f"mxinfra:access[{i}]"
        perms = []
        for j, name in enumerate(entry.permissions):
            try:
                perms.append(Permission(name))
            except ValueError:
                issues.append(ConfigIssue(f"{path}.permissions[{j}]", f"unknown permission {name!r}", suggest(name, valid) or f"one of {', '.join(valid)}", file))
        for env in envs:
            if not (_applies(entry, env) and env.is_production):
                continue
            if Permission.API in perms and not entry.allowOnProduction:
                issues.append(ConfigIssue(f"{path}.permissions", f"'api' on production environment {env.name!r} bypasses two-factor authentication", "grant it explicitly with allowOnProduction: true, or drop production from this entry", file))
            # Every production role a person assumes, receiving alerts included, needs MFA and at most 8 hours.
            operating = [p.value for p in perms]
            if entry.mfa is False and operating:
                issues.append(ConfigIssue(f"{path}.mfa", f"production environment {env.name!r} requires MFA for {', '.join(operating)}", "remove 'mfa: false' or drop production from this entry", file))
            if entry.maxSessionSeconds is not None and entry.maxSessionSeconds > PRODUCTION_SESSION_SECONDS and operating:
                issues.append(ConfigIssue(f"{path}.maxSessionSeconds", f"production sessions last at most {PRODUCTION_SESSION_SECONDS} seconds (8 hours)", f"use {PRODUCTION_SESSION_SECONDS} or less", file))
    return issues


def grants_for(env: Environment, entries: Sequence[AccessEntry]) -> EnvironmentAccess:
    """Exactly the grants the entries ask for on `env`, with MFA and session rules applied."""
    grants = set()
    for entry in entries:
        if not _applies(entry, env):
            continue
        for name in entry.permissions:
            perm = Permission(name)
            if env.is_production:  # every permission: a role a person assumes on production
                mfa = True
                session = min(entry.maxSessionSeconds or PRODUCTION_SESSION_SECONDS, PRODUCTION_SESSION_SECONDS)
            else:
                mfa = bool(entry.mfa)
                session = entry.maxSessionSeconds
            grants.add(Grant(env.name, perm, entry.principal, mfa, session))
    return EnvironmentAccess(env.name, tuple(sorted(grants)))
