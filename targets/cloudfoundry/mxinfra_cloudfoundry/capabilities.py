"""What each permission's space role really lets its holder do (access.py), declared against the core's
production rules (mxinfra.capabilities): checked when this module is imported, and the space roles
checked against the Cloud Controller's permitted-roles table by tests/targets/test_target_contract.py.
Pure."""

from __future__ import annotations

from mxinfra.access import Permission
from mxinfra.capabilities import Capability as C
from mxinfra.capabilities import NotGranted, PlatformLimit, Tiered, declare_capabilities

from .access import NO_ROLE

CAPABILITIES = declare_capabilities(
    "cloudfoundry",
    {
        # space_developer: push, stage, start, stop, scale, set the environment; the two platform limits below
        Permission.DEPLOY: frozenset({C.RELEASE, C.OBSERVE, C.WRITE_SECRETS, C.READ_SECRETS, C.DELETE_DATA, C.BACKUP, C.RESTORE, C.RESTORE_UNGUARDED, C.SHELL}),
        Permission.MONITOR: frozenset({C.OBSERVE}),
        Permission.BACKUPS: NotGranted(NO_ROLE[Permission.BACKUPS]),
        Permission.API: NotGranted(NO_ROLE[Permission.API]),
        Permission.ALERTS: NotGranted(NO_ROLE[Permission.ALERTS]),
        # A space manager creates space roles that never expire: on production that would turn the
        # time-boxed grants into standing ones, so production's managers only see the space.
        Permission.MANAGE: Tiered(production=frozenset({C.OBSERVE}), other=frozenset({C.GRANT, C.OBSERVE})),
    },
    limits=[
        PlatformLimit(
            Permission.DEPLOY,
            C.READ_SECRETS,
            "Cloud Foundry has no role that can push a package without reading the app's environment "
            "(GET /v3/apps/:guid/env is permitted to every space developer) or minting a service key with the "
            "database's credentials (POST /v3/service_credential_bindings, type key, is permitted to space "
            "developers and supporters alike: with them a holder can also dump and overwrite the data, which is how "
            "`mxinfra backup download` and `restore --archive` work here); the only narrower role, space_supporter, "
            "cannot upload packages",
        ),
        PlatformLimit(
            Permission.DEPLOY,
            C.BACKUP,
            "a service key (POST /v3/service_credential_bindings, type key: space developers and supporters) holds the "
            "database's and the file store's credentials, with which a holder copies every row and file: `mxinfra backup "
            "download` works that way here, as deploy's role (no role can push without it; production's exists only while "
            "a time-boxed grant lasts)",
        ),
        PlatformLimit(
            Permission.DEPLOY,
            C.RESTORE,
            "with a service key's credentials a holder also overwrites the database and the files: `mxinfra backup restore "
            "--archive` works that way here, as deploy's role; the backups permission has no space role of its own (the "
            "brokers' backups are not the Cloud Controller's), so on Cloud Foundry the rule that only backups restores is "
            "the CLI's (its records, production's backup first), not the platform's",
        ),
        PlatformLimit(
            Permission.DEPLOY,
            C.RESTORE_UNGUARDED,
            "the service key's credentials overwrite the database and the files directly, with no backup taken first: "
            "production's backup first is `mxinfra backup restore`'s (it downloads one before restoring), which a holder "
            "who uses the credentials by hand skips; what undoes it then is the broker's own backups, where the offering has "
            "them (README: Backups, per broker), restored by their owners",
        ),
        PlatformLimit(
            Permission.DEPLOY,
            C.SHELL,
            "a space developer may run a task in the app's container (POST /v3/apps/:guid/tasks: any command, with the "
            "app's environment and bindings), which no push role avoids; `cf ssh` itself stays off (the space disallows "
            "it, and only a space or org manager may allow it)",
        ),
        PlatformLimit(
            Permission.DEPLOY,
            C.DELETE_DATA,
            "every space developer may delete the space's service instances (DELETE /v3/service_instances/:guid), "
            "the database included; Pulumi's protect guards only what pulumi does: production's developer role "
            "exists only while a time-boxed grant lasts (README: what deploy can still do on production)",
        ),
    ],
)
