"""Group principals (`group:ORIGIN/NAME`): expanded through UAA's SCIM /Groups into per-user space roles,
kept in sync with membership (diff, update, read, delete), refused on production for non-MFA origins, and
eligibility through a group checked against UAA when `mxinfra access grant` runs."""

from __future__ import annotations

import datetime as dt

import pytest

from mxinfra.cli import main
from mxinfra.errors import UserError
from mxinfra_cloudfoundry import grants
from mxinfra_cloudfoundry.capi import Client
from mxinfra_cloudfoundry.provider import GroupSpaceRoleProvider
from mxinfra_cloudfoundry.uaa import UaaError

from cfhelpers import config

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def people(capi):
    ids = {n: capi.add_uaa_user(f"{n}@example.com", "corp-idp") for n in ("alice", "bob", "carol", "dave", "mallory")}
    ids["eve"] = capi.add_uaa_user("eve@example.com", "other-idp")
    nested = capi.add_uaa_group("release-helpers", [ids["carol"]])
    ids["group"] = capi.add_uaa_group("release-managers", [ids["alice"], ids["bob"], ids["eve"]], groups=[nested])
    return ids


def props(capi, **over):
    p = {"api": capi.url, "org": "acme", "space": "orders", "type": "space_developer", "group": "release-managers", "origin": "corp-idp", "principal": "group:corp-idp/release-managers", "permission": "deploy", "timeouts": {"job": 10}}
    p.update(over)
    return p


def holders(capi):
    return sorted(r["user_name"] for r in capi.objects["roles"].values() if r["type"] == "space_developer")


def test_expansion_creates_a_role_per_member_of_the_origin(capi, people):
    r = GroupSpaceRoleProvider().create(props(capi))
    # eve is of another origin: never expanded; carol comes through the nested group
    assert holders(capi) == ["corp-idp/alice@example.com", "corp-idp/bob@example.com", "corp-idp/carol@example.com"]
    assert sorted(r.outs["members"]) == sorted([people["alice"], people["bob"], people["carol"]])
    assert all(m["owned"] and m["role"] in capi.objects["roles"] for m in r.outs["members"].values())
    assert any(path == "/Groups" for _, path in capi.requests)


def test_membership_change_is_drift_and_update_syncs_it(capi, people):
    p = GroupSpaceRoleProvider()
    created = p.create(props(capi))
    state = created.outs
    assert not p.diff(created.id, state, props(capi)).changes  # nothing changed
    group = capi.uaa_groups[people["group"]]
    group["members"].append((people["dave"], "USER", "corp-idp"))  # added in the identity provider
    group["members"] = [m for m in group["members"] if m[0] != people["bob"]]  # and bob left
    d = p.diff(created.id, state, props(capi))
    assert d.changes and not d.replaces
    before = {uid: m["role"] for uid, m in state["members"].items()}
    state = p.update(created.id, state, props(capi)).outs
    assert holders(capi) == ["corp-idp/alice@example.com", "corp-idp/carol@example.com", "corp-idp/dave@example.com"]
    assert before[people["bob"]] not in capi.objects["roles"]
    assert state["members"][people["alice"]]["role"] == before[people["alice"]]  # untouched members keep their role
    assert not p.diff(created.id, state, props(capi)).changes


def test_a_role_removed_by_hand_shows_in_read_and_is_recreated(capi, people):
    p = GroupSpaceRoleProvider()
    created = p.create(props(capi))
    alice_role = created.outs["members"][people["alice"]]["role"]
    del capi.objects["roles"][alice_role]
    read = p.read(created.id, created.outs)
    assert people["alice"] not in read.outs["members"]
    assert p.diff(created.id, read.outs, props(capi)).changes
    state = p.update(created.id, read.outs, props(capi)).outs
    assert "corp-idp/alice@example.com" in holders(capi) and state["members"][people["alice"]]["role"] in capi.objects["roles"]


def test_a_role_the_member_already_had_is_kept_on_delete(capi, people):
    c = Client.connect(capi.url)
    own = c.create_role(capi.space_guid, "space_developer", "alice@example.com", "corp-idp")
    p = GroupSpaceRoleProvider()
    created = p.create(props(capi))
    assert created.outs["members"][people["alice"]] == {"origin": "corp-idp", "role": own["guid"], "owned": False}
    p.delete(created.id, created.outs)
    assert holders(capi) == ["corp-idp/alice@example.com"] and own["guid"] in capi.objects["roles"]


def test_another_group_replaces(capi, people):
    p = GroupSpaceRoleProvider()
    created = p.create(props(capi))
    assert p.diff(created.id, created.outs, props(capi, group="other")).replaces == ["group"]


def test_missing_group_and_missing_scope(capi, people):
    with pytest.raises(UaaError, match="no group 'nobody'"):
        GroupSpaceRoleProvider().create(props(capi, group="nobody"))
    capi.scim_status = 403
    with pytest.raises(UaaError, match="scim.read"):
        GroupSpaceRoleProvider().create(props(capi))
    assert capi.objects["roles"] == {}


# --- config ---------------------------------------------------------------------------------------


def plan(project, capsys, role, principal):
    cfg = config(role, access=[{"principal": principal, "environments": [role], "permissions": ["deploy"]}])
    for key in ("adminPassword", "license", "secretConstants"):
        cfg["mxinfra:environments"][role].pop(key, None)
    project.stack("cf-x", cfg)
    rc = main(["plan", "-s", "cf-x", "-C", str(project.path)])
    return rc, capsys.readouterr()


def test_group_principal_plans_as_a_group_role(project, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    rc, out = plan(project, capsys, "test", "group:sap.default/developers")
    assert rc == 0, out.err
    assert "space role space_developer for each member of UAA group developers of origin sap.default (deploy" in out.out


@pytest.mark.parametrize("principal,message", [("group:sap.default/release-managers", "origin 'sap.default' is not listed as MFA-enforcing"), ("group:uaa/release-managers", "the 'uaa' origin cannot enforce it")])
def test_group_of_a_non_mfa_origin_is_refused_on_production(project, capsys, principal, message):
    rc, out = plan(project, capsys, "production", principal)
    assert rc == 2 and "mxinfra:access[0].principal" in out.err and message in out.err, out.err


# --- grants through a group -------------------------------------------------------------------------


@pytest.fixture
def prod(project):
    cfg = config("production", access=[{"principal": "group:corp-idp/release-managers", "environments": ["production"], "permissions": ["deploy"], "maxSessionSeconds": 7200}])
    for key in ("adminPassword", "license", "secretConstants"):
        cfg["mxinfra:environments"]["production"].pop(key, None)
    project.stack("cf-production", cfg)
    return project


def test_grant_to_a_member_of_an_eligible_group(capi, people, prod):
    c = Client.from_environment(capi.url)
    r = grants.grant(prod.path, "cf-production", "user:corp-idp/carol@example.com", "deploy", "2h", client=c, now=T0)
    assert r["through"] == ["group:corp-idp/release-managers"] and r["expires"] == "2026-03-01T11:00:00Z"
    assert capi.objects["roles"][r["id"]]["user_name"] == "corp-idp/carol@example.com"
    with pytest.raises(UserError, match="at most 2h00m"):  # the group entry's session limit applies
        grants.grant(prod.path, "cf-production", "user:corp-idp/alice@example.com", "deploy", "3h", client=c, now=T0)


@pytest.mark.parametrize(
    "principal,message",
    [
        ("user:corp-idp/mallory@example.com", "UAA does not have it as a member of group:corp-idp/release-managers"),  # a UAA user, not in the group
        ("user:corp-idp/nobody@example.com", "UAA does not have it as a member"),  # not a UAA user at all
        ("user:other-idp/eve@example.com", "not eligible"),  # in the group, but of an origin the entry does not name
        ("group:corp-idp/release-managers", "a grant is for one person"),
    ],
)
def test_grant_refused_to_non_members(capi, people, prod, principal, message):
    c = Client.from_environment(capi.url)
    with pytest.raises(UserError, match=message):
        grants.grant(prod.path, "cf-production", principal, "deploy", "1h", client=c, now=T0)
    assert capi.objects["roles"] == {}


def test_grant_refused_after_leaving_the_group(capi, people, prod):
    c = Client.from_environment(capi.url)
    assert grants.grant(prod.path, "cf-production", "user:corp-idp/bob@example.com", "deploy", "1h", client=c, now=T0)
    group = capi.uaa_groups[people["group"]]
    group["members"] = [m for m in group["members"] if m[0] != people["bob"]]
    with pytest.raises(UserError, match="not eligible"):
        grants.grant(prod.path, "cf-production", "user:corp-idp/bob@example.com", "deploy", "1h", client=c, now=T0)
