"""The production rules as data: what each permission may let its holder do, stated once for every target.

A target declares, for each of the platform's permissions, the capabilities its IAM mapping really
grants (`declare_capabilities`, called when the target's access module is imported). The declaration
is checked here against the rules below, so a target that maps a permission too widely, or forgets
one, fails loudly at import time instead of granting something silently (or nothing). The conformance
suite (tests/targets/test_target_contract.py) then checks each installed target's rendered policies,
roles, bindings and space roles against its declaration, with probes of its cloud's own API. Pure.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .access import Permission


class Capability(str, enum.Enum):
    """What a grant lets its holder do to one environment."""

    OBSERVE = "observe"  # read logs, metrics and events
    # change what runs: package or image, configuration, instance count, start and stop. What runs reaches
    # what the app reaches (its database, files and secrets): a holder who runs a workload of their choosing
    # holds that reach through it. The capabilities below are direct grants; that indirect reach is bounded
    # by the release path (promotion, pinned packages, the activity log, drift), not by a cloud's IAM.
    RELEASE = "release"
    WRITE_SECRETS = "write-secrets"  # set secret constants and runtime secrets without reading them
    READ_SECRETS = "read-secrets"  # read the runtime's secrets: admin password, licence, storage keys
    SHELL = "shell"  # run commands inside the running app (ssh, exec): everything the app can reach
    BACKUP = "backup"  # take and download backups (reads every row and file)
    RESTORE = "restore"  # overwrite the environment's data from a backup
    # overwrite data with no backup of what it overwrites taken first: a restore that cannot be undone
    # beyond whatever window the cloud keeps on its own (the rule: production backs up first, server side)
    RESTORE_UNGUARDED = "restore-unguarded"
    DELETE_DATA = "delete-data"  # delete the database or the file storage
    EDIT_ALERTS = "edit-alerts"  # create, change and delete alert rules
    CALL_API = "call-api"  # act through the platform API with a non-interactive credential
    GRANT = "grant"  # create or widen grants: roles, assignments, bindings, space roles


# The most each permission may carry on production. A capability outside its permission's set would let
# that permission's holders do another permission's work (deploy restoring data, monitor releasing).
# Other tiers belong to the team: there only EXCLUSIVE holds.
ALLOWED: Mapping[Permission, frozenset[Capability]] = {
    Permission.DEPLOY: frozenset({Capability.OBSERVE, Capability.RELEASE, Capability.WRITE_SECRETS}),
    Permission.MONITOR: frozenset({Capability.OBSERVE}),
    Permission.BACKUPS: frozenset({Capability.OBSERVE, Capability.BACKUP, Capability.RESTORE}),
    Permission.API: frozenset({Capability.CALL_API, Capability.OBSERVE}),
    Permission.ALERTS: frozenset({Capability.EDIT_ALERTS, Capability.OBSERVE}),
    Permission.MANAGE: frozenset({Capability.GRANT, Capability.OBSERVE}),
}

# On every tier, only one permission may change what runs, restore over data, or create grants.
EXCLUSIVE: Mapping[Capability, Permission] = {
    Capability.RELEASE: Permission.DEPLOY,
    Capability.RESTORE: Permission.BACKUPS,
    Capability.GRANT: Permission.MANAGE,
}

# The one exclusive capability a platform limit may excuse, and for whom: a cloud whose only role that can
# release also overwrites the data (Cloud Foundry's space developer mints service keys). Never grant (it
# turns time-boxed access into standing access), never release by anyone but deploy.
EXCUSABLE_EXCLUSIVE: frozenset[tuple[Permission, Capability]] = frozenset({(Permission.DEPLOY, Capability.RESTORE)})
# Never granted on production by any permission: a production grant that can create grants turns
# time-boxed access into standing access; a shell or a secret read reaches the data around every
# rule; deleting production data is a platform step (unprotect, then destroy), never a grant; a restore
# over production's data backs it up first, and the cloud makes sure of it (a command that does is not
# enough: the holder can call the cloud's restore directly).
PRODUCTION_FORBIDDEN = frozenset({Capability.GRANT, Capability.SHELL, Capability.READ_SECRETS, Capability.DELETE_DATA, Capability.RESTORE_UNGUARDED})


@dataclass(frozen=True)
class NotGranted:
    """A permission the target's cloud has no object for: nothing is rendered, and the plan says why."""

    reason: str


@dataclass(frozen=True)
class Tiered:
    """A permission that grants less on production than elsewhere."""

    production: frozenset[Capability]
    other: frozenset[Capability]


@dataclass(frozen=True)
class PlatformLimit:
    """A capability the cloud gives every holder of the role that realises a permission, which no narrower
    role avoids (Cloud Foundry: a space developer reads the app's environment). Stated, not hidden: the
    contract accepts it only with the reason, the conformance suite lists it, the target's README says it."""

    permission: Permission
    capability: Capability
    reason: str


Entry = frozenset[Capability] | Tiered | NotGranted


class TargetContractError(Exception):
    """A target's declared mapping breaks the production rules or leaves a permission unmapped."""


@dataclass(frozen=True)
class CapabilityTable:
    """One target's permission -> capabilities mapping, checked against the rules."""

    target: str
    entries: Mapping[Permission, Entry]
    limits: tuple[PlatformLimit, ...] = ()

    def granted(self, permission: Permission, production: bool) -> frozenset[Capability]:
        """What `permission` grants on an environment of that tier (empty: not granted)."""
        entry = self.entries[permission]
        if isinstance(entry, NotGranted):
            return frozenset()
        if isinstance(entry, Tiered):
            return entry.production if production else entry.other
        return entry

    def not_granted(self, permission: Permission) -> str | None:
        """Why the target grants nothing for `permission`, or None when it maps it."""
        entry = self.entries[permission]
        return entry.reason if isinstance(entry, NotGranted) else None


def contract_problems(target: str, entries: Mapping[Permission, Entry], limits: Iterable[PlatformLimit] = ()) -> list[str]:
    """Every way `entries` breaks the rules above (empty: it keeps them)."""
    problems = []
    accepted = set()  # the limits that excuse what they name: with a reason, and of a kind a limit may excuse
    for lim in limits:
        if lim.capability is Capability.GRANT:
            problems.append(f"permission {lim.permission.value!r}: no platform limit excuses grant (it turns time-boxed access into standing access)")
        elif lim.capability in EXCLUSIVE and EXCLUSIVE[lim.capability] is not lim.permission and (lim.permission, lim.capability) not in EXCUSABLE_EXCLUSIVE:
            problems.append(f"permission {lim.permission.value!r}: no platform limit excuses {lim.capability.value}, which only {EXCLUSIVE[lim.capability].value} may")
        elif lim.reason.strip():
            accepted.add((lim.permission, lim.capability))
    for perm in Permission:
        if perm not in entries:
            problems.append(f"permission {perm.value!r} is not mapped: declare its capabilities, or NotGranted('why') when the cloud has no object for it")
            continue
        entry = entries[perm]
        if isinstance(entry, NotGranted):
            if not entry.reason.strip():
                problems.append(f"permission {perm.value!r}: NotGranted needs the reason the plan shows")
            continue
        tiers = {"production": entry.production, "other tiers": entry.other} if isinstance(entry, Tiered) else {"every tier": entry}
        for tier, caps in tiers.items():
            unknown = [c for c in caps if not isinstance(c, Capability)]
            if unknown:
                problems.append(f"permission {perm.value!r} ({tier}): {unknown!r} are not capabilities")
                continue
            # a cloud whose only role that can release also restores (Cloud Foundry's space developer mints
            # service keys) says so as a PlatformLimit: stated with its reason, never silently granted
            exclusive = sorted(f"{c.value} (only {EXCLUSIVE[c].value})" for c in caps if c in EXCLUSIVE and EXCLUSIVE[c] is not perm and (perm, c) not in accepted)
            if exclusive:
                problems.append(f"permission {perm.value!r} ({tier}) grants {', '.join(exclusive)}")
            if Capability.RESTORE_UNGUARDED in caps and Capability.RESTORE not in caps:
                problems.append(f"permission {perm.value!r} ({tier}) grants {Capability.RESTORE_UNGUARDED.value} without restore: an unguarded restore is a restore, declare both")
            if tier != "other tiers":
                extra = sorted(c.value for c in caps - ALLOWED[perm] if (perm, c) not in accepted)
                if extra:
                    problems.append(f"permission {perm.value!r} ({tier}) grants {', '.join(extra)}, beyond what {perm.value!r} may on production ({', '.join(sorted(c.value for c in ALLOWED[perm]))})")
                banned = sorted(c.value for c in caps & PRODUCTION_FORBIDDEN if (perm, c) not in accepted)
                if banned:
                    problems.append(f"permission {perm.value!r} grants {', '.join(banned)} on production, which no production grant may")
    for key in entries:
        if not isinstance(key, Permission):
            problems.append(f"{key!r} is not a permission (one of {', '.join(p.value for p in Permission)})")
    return [f"target {target!r}: {p}" for p in problems]


def declare_capabilities(target: str, entries: Mapping[Permission, Entry], limits: Iterable[PlatformLimit] = ()) -> CapabilityTable:
    """A target's mapping, refused at import time when it breaks the rules or leaves a permission out."""
    limits = tuple(limits)
    problems = contract_problems(target, entries, limits)
    for lim in limits:
        if not lim.reason.strip():
            problems.append(f"target {target!r}: the platform limit {lim.permission.value}/{lim.capability.value} needs its reason")
    if problems:
        raise TargetContractError("\n".join(problems))
    return CapabilityTable(target, dict(entries), limits)
