"""The access model: exactly what is asked for, with the production rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mxinfra.access import Permission, check_access, grants_for
from mxinfra.config import AccessEntry
from mxinfra.environments import Environment, Role

PROD = Environment(name="production", role=Role.PRODUCTION)
ACC = Environment(name="acceptance", role=Role.ACCEPTANCE)
PERF = Environment(name="perf", role=Role.PRODUCTION)  # a custom name with the production tier


def entry(**kw):
    kw.setdefault("principal", "group:ops")
    kw.setdefault("environments", ["production", "acceptance"])
    kw.setdefault("permissions", ["deploy", "monitor"])
    return AccessEntry(**kw)


def test_production_grants_need_mfa_and_eight_hour_sessions():
    acc = grants_for(PROD, [entry()])
    assert {(g.permission, g.mfa_required, g.max_session_seconds) for g in acc.grants} == {
        (Permission.DEPLOY, True, 28800),
        (Permission.MONITOR, True, 28800),
    }
    assert {(g.permission, g.mfa_required, g.max_session_seconds) for g in grants_for(ACC, [entry()]).grants} == {
        (Permission.DEPLOY, False, None),
        (Permission.MONITOR, False, None),
    }


def test_role_name_does_not_matter_only_the_tier():
    assert all(g.mfa_required for g in grants_for(PERF, [entry(environments=["perf"])]).grants)


def test_shorter_sessions_are_kept_longer_ones_refused_on_production():
    acc = grants_for(PROD, [entry(maxSessionSeconds=3600)])
    assert {g.max_session_seconds for g in acc.grants} == {3600}
    issues = check_access([entry(maxSessionSeconds=43200)], [PROD])
    assert issues and issues[0].path == "mxinfra:access[0].maxSessionSeconds"


def test_api_on_production_needs_explicit_opt_in():
    issues = check_access([entry(permissions=["api"])], [PROD, ACC])
    assert len(issues) == 1 and "allowOnProduction" in issues[0].fix and "production" in issues[0].message
    assert check_access([entry(permissions=["api"], allowOnProduction=True)], [PROD, ACC]) == []
    assert check_access([entry(permissions=["api"], environments=["acceptance"])], [PROD, ACC]) == []


def test_manage_on_production_without_mfa_is_refused():
    issues = check_access([entry(permissions=["manage"], mfa=False)], [PROD])
    assert issues and issues[0].path == "mxinfra:access[0].mfa"
    # issue 10.3: alerts on production is a role a person assumes too: MFA and at most 8 hours, always
    assert [i.path for i in check_access([entry(permissions=["alerts"], mfa=False)], [PROD])] == ["mxinfra:access[0].mfa"]
    assert [i.path for i in check_access([entry(permissions=["alerts"], maxSessionSeconds=12 * 3600)], [PROD])] == ["mxinfra:access[0].maxSessionSeconds"]
    assert {(g.mfa_required, g.max_session_seconds) for g in grants_for(PROD, [entry(permissions=["alerts"])]).grants} == {(True, 8 * 3600)}


def test_unknown_permission():
    issues = check_access([entry(permissions=["monitr"])], [PROD])
    assert issues[0].path == "mxinfra:access[0].permissions[0]" and "monitor" in issues[0].fix


def test_roles_group_principals_per_permission():
    acc = grants_for(PROD, [entry(principal="group:b"), entry(principal="group:a", permissions=["monitor"])])
    roles = {r.permission: r.principals for r in acc.roles()}
    assert roles == {Permission.DEPLOY: ("group:b",), Permission.MONITOR: ("group:a", "group:b")}


def test_wildcard_environments():
    assert grants_for(ACC, [entry(environments=["*"])]).grants


perm_lists = st.lists(st.sampled_from([p.value for p in Permission if p is not Permission.API]), min_size=1, unique=True)
entries = st.lists(
    st.builds(
        AccessEntry,
        principal=st.sampled_from(["group:a", "group:b", "user:c"]),
        environments=st.lists(st.sampled_from(["production", "acceptance", "*"]), min_size=1, unique=True),
        permissions=perm_lists,
    ),
    max_size=5,
)


@given(entries)
def test_never_grants_anything_not_asked_for(es):
    for env in (PROD, ACC):
        asked = {
            (e.principal, p) for e in es if env.name in e.environments or "*" in e.environments for p in e.permissions
        }
        got = {(g.principal, g.permission.value) for g in grants_for(env, es).grants}
        assert got == asked
