"""What each permission's role really lets its holder do (roles.py, access.py), declared against the
core's production rules (mxinfra.capabilities): checked when this module is imported, and the rendered
role definitions and assignments checked against it by tests/targets/test_target_contract.py. Pure."""

from __future__ import annotations

from mxinfra.access import Permission
from mxinfra.capabilities import Capability as C
from mxinfra.capabilities import Tiered, declare_capabilities

CAPABILITIES = declare_capabilities(
    "azure",
    {
        # its container apps (image, variables, scale) and their revisions; never listSecrets
        Permission.DEPLOY: frozenset({C.RELEASE, C.OBSERVE}),
        Permission.MONITOR: frozenset({C.OBSERVE}),
        # the server's backups and restores into a new server, the Backup vault's backups and restores,
        # and the files' point-in-time restore (roles.py: the actions, at the environment's group only).
        # Azure RBAC cannot make a restore wait for a backup, so on production the role takes and lists
        # backups and restores nothing (roles.RESTORE_ONLY): the platform identity restores there.
        Permission.BACKUPS: Tiered(production=frozenset({C.BACKUP, C.OBSERVE}), other=frozenset({C.BACKUP, C.RESTORE, C.RESTORE_UNGUARDED, C.OBSERVE})),
        # the built-in Reader
        Permission.API: frozenset({C.CALL_API, C.OBSERVE}),
        Permission.ALERTS: frozenset({C.EDIT_ALERTS, C.OBSERVE}),
        # Assigning roles outside PIM would turn production's time-boxed access into standing access:
        # production's managers read the assignments; membership changes through reviewed config.
        Permission.MANAGE: Tiered(production=frozenset({C.OBSERVE}), other=frozenset({C.GRANT, C.OBSERVE})),
    },
)
