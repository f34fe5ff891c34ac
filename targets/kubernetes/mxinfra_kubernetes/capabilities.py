"""What each permission's Role really lets its holder do (access.py), declared against the core's
production rules (mxinfra.capabilities): checked when this module is imported, and the rendered Roles
checked against it by tests/targets/test_target_contract.py. Pure."""

from __future__ import annotations

from mxinfra.access import Permission
from mxinfra.capabilities import Capability as C
from mxinfra.capabilities import NotGranted, Tiered, declare_capabilities

CAPABILITIES = declare_capabilities(
    "kubernetes",
    {
        # its StatefulSet (or MendixApp), the runtime ConfigMaps, and writing (never reading) its Secret. In
        # operator mode the MendixApp holds the admin password and licence, and whoever writes it reads them:
        # below production that is the team's (declared for plain mode too: a declaration is per target, not
        # per mode); on production only the release identities are bound (access.deploy_subjects), the
        # pipeline that writes those secrets anyway, which this table (per permission) cannot tell from people
        Permission.DEPLOY: Tiered(
            production=frozenset({C.RELEASE, C.WRITE_SECRETS, C.OBSERVE}),
            other=frozenset({C.RELEASE, C.WRITE_SECRETS, C.OBSERVE, C.READ_SECRETS}),
        ),
        Permission.MONITOR: frozenset({C.OBSERVE}),
        # A backup is a Job the holder creates; a pod it creates may mount any Secret of the namespace and
        # run any command, so on production the holder follows the platform's backup jobs and starts none.
        Permission.BACKUPS: Tiered(
            production=frozenset({C.OBSERVE}),
            other=frozenset({C.BACKUP, C.RESTORE, C.RESTORE_UNGUARDED, C.OBSERVE, C.SHELL, C.READ_SECRETS}),
        ),
        Permission.API: NotGranted("every Kubernetes permission is API access already: grant the permission the automation needs"),
        Permission.ALERTS: NotGranted("Kubernetes RBAC has no alert object: alerts are routed by the cluster's monitoring stack"),
        # sees who holds what; bindings change only through reviewed config and `pulumi up`
        Permission.MANAGE: frozenset({C.OBSERVE}),
    },
)
