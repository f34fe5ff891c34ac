"""The production rules as data (mxinfra.capabilities): a target's table is refused at import time when it
leaves a permission out or grants what the rules forbid; a stated platform limit is the one exception."""

from __future__ import annotations

import pytest

from mxinfra.access import Permission
from mxinfra.capabilities import Capability as C
from mxinfra.capabilities import NotGranted, PlatformLimit, TargetContractError, Tiered, declare_capabilities

KEEPS = {
    Permission.DEPLOY: frozenset({C.RELEASE, C.OBSERVE}),
    Permission.MONITOR: frozenset({C.OBSERVE}),
    Permission.BACKUPS: frozenset({C.BACKUP, C.RESTORE}),
    Permission.API: NotGranted("no such object"),
    Permission.ALERTS: frozenset({C.EDIT_ALERTS}),
    Permission.MANAGE: Tiered(production=frozenset({C.OBSERVE}), other=frozenset({C.GRANT, C.OBSERVE})),
}


def refused(entries, limits=()) -> str:
    with pytest.raises(TargetContractError) as info:
        declare_capabilities("probe", entries, limits)
    return str(info.value)


def test_a_table_that_keeps_the_rules_is_accepted():
    table = declare_capabilities("probe", KEEPS)
    assert table.granted(Permission.MANAGE, production=True) == {C.OBSERVE}
    assert table.granted(Permission.MANAGE, production=False) == {C.GRANT, C.OBSERVE}
    assert table.granted(Permission.API, production=True) == frozenset()
    assert table.not_granted(Permission.API) == "no such object"


def test_an_unmapped_permission_is_refused_loudly():
    entries = {k: v for k, v in KEEPS.items() if k is not Permission.BACKUPS}
    assert "target 'probe': permission 'backups' is not mapped" in refused(entries)


def test_a_production_grant_that_creates_grants_is_refused():
    message = refused({**KEEPS, Permission.MANAGE: frozenset({C.GRANT})})
    assert "permission 'manage' grants grant on production, which no production grant may" in message


@pytest.mark.parametrize("cap", [C.SHELL, C.READ_SECRETS, C.DELETE_DATA])
def test_production_forbidden_capabilities_are_refused_for_every_permission(cap):
    message = refused({**KEEPS, Permission.DEPLOY: frozenset({C.RELEASE, cap})})
    assert f"grants {cap.value} on production" in message


def test_a_production_restore_with_no_backup_first_is_refused_even_for_backups():
    message = refused({**KEEPS, Permission.BACKUPS: frozenset({C.BACKUP, C.RESTORE, C.RESTORE_UNGUARDED})})
    assert "permission 'backups' grants restore-unguarded on production, which no production grant may" in message
    # below production it is the team's: backups may restore without a backup first
    table = declare_capabilities("probe", {**KEEPS, Permission.BACKUPS: Tiered(production=frozenset({C.BACKUP, C.RESTORE}), other=frozenset({C.BACKUP, C.RESTORE, C.RESTORE_UNGUARDED}))})
    assert C.RESTORE_UNGUARDED in table.granted(Permission.BACKUPS, production=False)
    # a cloud that cannot make a restore wait for a backup says so, with the reason
    entries = {**KEEPS, Permission.BACKUPS: frozenset({C.BACKUP, C.RESTORE, C.RESTORE_UNGUARDED})}
    assert "needs its reason" in refused(entries, [PlatformLimit(Permission.BACKUPS, C.RESTORE_UNGUARDED, "")])
    table = declare_capabilities("probe", entries, [PlatformLimit(Permission.BACKUPS, C.RESTORE_UNGUARDED, "RBAC cannot make a restore wait for a backup")])
    assert C.RESTORE_UNGUARDED in table.granted(Permission.BACKUPS, production=True)


def test_an_unguarded_restore_is_a_restore():
    message = refused({**KEEPS, Permission.BACKUPS: Tiered(production=frozenset({C.BACKUP}), other=frozenset({C.BACKUP, C.RESTORE_UNGUARDED}))})
    assert "permission 'backups' (other tiers) grants restore-unguarded without restore: an unguarded restore is a restore, declare both" in message
    # and so only backups may hold it, unless a platform limit says why (deploy's on Cloud Foundry)
    assert "restore (only backups)" in refused({**KEEPS, Permission.MONITOR: Tiered(production=frozenset({C.OBSERVE}), other=frozenset({C.RESTORE, C.RESTORE_UNGUARDED}))})


def test_another_permissions_work_is_refused_on_every_tier():
    message = refused({**KEEPS, Permission.MONITOR: Tiered(production=frozenset({C.OBSERVE}), other=frozenset({C.OBSERVE, C.RELEASE}))})
    assert "permission 'monitor' (other tiers) grants release (only deploy)" in message
    message = refused({**KEEPS, Permission.DEPLOY: frozenset({C.RELEASE, C.RESTORE})})
    assert "restore (only backups)" in message
    # a cloud whose only release role also restores (Cloud Foundry's service keys) states it, with the reason
    entries = {**KEEPS, Permission.DEPLOY: frozenset({C.RELEASE, C.RESTORE})}
    assert "restore (only backups)" in refused(entries, [PlatformLimit(Permission.DEPLOY, C.RESTORE, "")])
    assert "restore (only backups)" in refused(entries, [PlatformLimit(Permission.MONITOR, C.RESTORE, "another permission's limit")])
    table = declare_capabilities("probe", entries, [PlatformLimit(Permission.DEPLOY, C.RESTORE, "the cloud's only push role mints database credentials")])
    assert C.RESTORE in table.granted(Permission.DEPLOY, production=True)
    # that is the one exclusive capability a limit excuses, and only for deploy: never grant, never release
    monitor = {**KEEPS, Permission.MONITOR: frozenset({C.OBSERVE, C.RELEASE, C.GRANT})}
    message = refused(monitor, [PlatformLimit(Permission.MONITOR, C.RELEASE, "x"), PlatformLimit(Permission.MONITOR, C.GRANT, "x")])
    assert "no platform limit excuses release, which only deploy may" in message and "no platform limit excuses grant" in message
    assert "grants grant on production" in message
    message = refused({**KEEPS, Permission.API: frozenset({C.CALL_API, C.RESTORE})}, [PlatformLimit(Permission.API, C.RESTORE, "a reason")])
    assert "no platform limit excuses restore, which only backups may" in message


def test_other_tiers_may_grant_more_than_production():
    table = declare_capabilities("probe", {**KEEPS, Permission.BACKUPS: Tiered(production=frozenset({C.OBSERVE}), other=frozenset({C.BACKUP, C.RESTORE, C.SHELL}))})
    assert C.SHELL in table.granted(Permission.BACKUPS, production=False)


def test_a_platform_limit_is_accepted_only_with_its_reason():
    entries = {**KEEPS, Permission.DEPLOY: frozenset({C.RELEASE, C.READ_SECRETS})}
    assert "read-secrets on production" in refused(entries)
    assert "needs its reason" in refused(entries, [PlatformLimit(Permission.DEPLOY, C.READ_SECRETS, " ")])
    table = declare_capabilities("probe", entries, [PlatformLimit(Permission.DEPLOY, C.READ_SECRETS, "the cloud's only push role reads the environment")])
    assert table.limits[0].capability is C.READ_SECRETS


def test_every_problem_is_in_one_report():
    message = refused({Permission.DEPLOY: frozenset({C.RELEASE, C.SHELL}), Permission.MONITOR: frozenset({C.GRANT})})
    assert message.count("\n") >= 5  # four unmapped, shell on production, grant outside manage
