"""What each permission's IAM role really lets its holder do (policies.py), declared against the core's
production rules (mxinfra.capabilities): checked when this module is imported, and the rendered policies
checked against it by tests/targets/test_target_contract.py. Pure."""

from __future__ import annotations

from mxinfra.access import Permission
from mxinfra.capabilities import Capability as C
from mxinfra.capabilities import Tiered, declare_capabilities

CAPABILITIES = declare_capabilities(
    "aws",
    {
        # a new task definition revision and the services' update; the running-tasks alarms follow the count
        Permission.DEPLOY: frozenset({C.RELEASE, C.OBSERVE}),
        Permission.MONITOR: frozenset({C.OBSERVE}),
        # snapshots of its own instance, restores into new instances of its own (tagged) name; AWS Backup jobs
        # into its own vault and restores of its own (tagged) recovery points, run as its bounded backup role.
        # On production the bucket's points are restored only by the files-restore state machine, which backs
        # production up first (files_restore.py; the role's Deny of recovery-point:* in policies.py).
        Permission.BACKUPS: Tiered(
            production=frozenset({C.BACKUP, C.RESTORE, C.OBSERVE}),
            other=frozenset({C.BACKUP, C.RESTORE, C.RESTORE_UNGUARDED, C.OBSERVE}),
        ),
        Permission.API: frozenset({C.CALL_API, C.OBSERVE}),
        # subscribe to the environment's alarm topic; the alarms themselves are the stack's
        Permission.ALERTS: frozenset({C.EDIT_ALERTS, C.OBSERVE}),
        # reads the environment's access roles; membership changes through reviewed config only
        Permission.MANAGE: frozenset({C.OBSERVE}),
    },
)
