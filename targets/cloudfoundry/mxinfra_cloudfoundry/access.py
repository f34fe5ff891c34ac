"""Environment permissions as Cloud Foundry space roles. Pure: the mapping, principals and the rules.

| permission | space role | why |
|---|---|---|
| deploy  | space_developer (or space_supporter, `deployRole`) | transporting a package means uploading bits and staging, which only a developer may; a supporter may start, stop, restart, scale and restage, but not upload packages nor read the app's environment |
| monitor | space_auditor | read-only: apps, logs, events, no environment variables |
| manage  | space_manager (production: space_auditor) | manages the space's roles (who else may deploy or monitor); on production it only sees them, since a space manager's roles never expire |
| backups, alerts, api | none: refused | the platform has no such role (below) |
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mxinfra.access import Permission
from mxinfra.errors import ConfigIssue

# Origins are the identity provider's key in UAA (`uaa` is UAA's own user store).
PRINCIPAL = re.compile(r"(?P<kind>user|group):(?P<origin>[A-Za-z0-9][A-Za-z0-9_.-]{0,35})/(?P<name>[^\s/][^\s]{0,254})")
UAA_ORIGIN = "uaa"

ROLE_OF = {Permission.DEPLOY: "space_developer", Permission.MONITOR: "space_auditor", Permission.MANAGE: "space_manager"}

NO_ROLE = {
    Permission.BACKUPS: "Cloud Foundry has no backup role: backups belong to the database service "
    "(e.g. SAP BTP PostgreSQL's backups and point-in-time restore in the BTP cockpit, or your broker's own); "
    "grant access there, or drop 'backups' from this entry",
    Permission.ALERTS: "Cloud Foundry has no alerting role: subscribe to the platform's alerting instead "
    "(e.g. SAP BTP Alert Notification, a log drain to your monitoring), or drop 'alerts' from this entry",
    Permission.API: "Cloud Foundry has no separate API right: the Cloud Controller API is what 'deploy', 'monitor' "
    "and 'manage' already grant through their space roles; drop 'api' from this entry",
}


@dataclass(frozen=True)
class Principal:
    """A UAA user, or a UAA group whose members of one identity provider (origin) it stands for."""

    kind: str  # user | group
    origin: str
    name: str

    @property
    def text(self) -> str:
        """The config form `user:ORIGIN/NAME` or `group:ORIGIN/NAME`."""
        return f"{self.kind}:{self.origin}/{self.name}"


def parse_principal(text: str) -> Principal | None:
    """`user:ORIGIN/NAME` or `group:ORIGIN/NAME`, or None."""
    m = PRINCIPAL.fullmatch(text)
    return Principal(m["kind"], m["origin"], m["name"]) if m else None


def space_role(permission: Permission, deploy_role: str = "space_developer", production: bool = False) -> str:
    """The space role realising `permission`; KeyError for the ones without one.

    On production `manage` is a space auditor: a space manager creates roles that never expire, which
    would turn production's time-boxed grants into standing ones (capabilities.py). Production's roles
    change through `mxinfra access grant` and the expiry app, run by the platform's identities."""
    if permission is Permission.DEPLOY:
        return deploy_role
    if permission is Permission.MANAGE and production:
        return "space_auditor"
    return ROLE_OF[permission]


def check_entries(entries: Sequence, production_envs: Sequence[str], mfa_origins: Sequence[str], file: str = "") -> list[ConfigIssue]:
    """Principals' form, permissions without a space role, and production's MFA-origin rule."""
    issues = []
    for i, entry in enumerate(entries):
        path = f"mxinfra:access[{i}]"
        principal = parse_principal(entry.principal)
        if principal is None:
            issues.append(
                ConfigIssue(
                    f"{path}.principal",
                    f"{entry.principal!r} is not a Cloud Foundry principal",
                    "use user:ORIGIN/USERNAME (e.g. user:sap.ids/alice@example.com) or group:ORIGIN/GROUP (a UAA group, its members of that origin); ORIGIN is the identity provider's origin in UAA",
                    file,
                )
            )
        for j, name in enumerate(entry.permissions):
            try:
                perm = Permission(name)
            except ValueError:
                continue  # the core reports unknown permissions
            if perm in NO_ROLE:
                issues.append(ConfigIssue(f"{path}.permissions[{j}]", f"'{name}' has no Cloud Foundry space role", NO_ROLE[perm], file))
        applies = [e for e in production_envs if "*" in entry.environments or e in entry.environments]
        if applies and principal is not None:
            if principal.origin == UAA_ORIGIN:
                issues.append(
                    ConfigIssue(
                        f"{path}.principal",
                        f"production environment {applies[0]!r} needs MFA, and the 'uaa' origin cannot enforce it (UAA's own MFA no longer exists)",
                        "use a user of an identity provider that enforces MFA and list its origin in mxinfra:cloudfoundry.mfaOrigins",
                        file,
                    )
                )
            elif principal.origin not in mfa_origins:
                issues.append(
                    ConfigIssue(
                        f"{path}.principal",
                        f"origin {principal.origin!r} is not listed as MFA-enforcing, so it cannot hold roles on production environment {applies[0]!r}",
                        f"add it to mxinfra:cloudfoundry.mfaOrigins once its identity provider enforces MFA (listed: {', '.join(mfa_origins) or 'none'})",
                        file,
                    )
                )
    return issues
