"""Time-boxed production grants: created with an expiry in the activity log, removed when due."""

from __future__ import annotations

import datetime as dt

import pytest

from mxinfra.errors import UserError
from mxinfra.governance.activity import ActivityLog
from mxinfra.governance.store import open_store
from mxinfra_cloudfoundry import grants
from mxinfra_cloudfoundry.capi import Client

from cfhelpers import config

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def prod(project):
    cfg = config("production")
    for key in ("adminPassword", "license", "secretConstants"):
        cfg["mxinfra:environments"]["production"].pop(key, None)
    project.stack("cf-production", cfg)
    return project


def test_grant_then_expire(capi, prod):
    c = Client.from_environment(capi.url)
    r = grants.grant(prod.path, "cf-production", "user:corp-idp/alice@example.com", "deploy", "2h", client=c, now=T0)
    assert r["expires"] == "2026-03-01T11:00:00Z" and r["role"] == "space_developer"
    assert capi.objects["roles"][r["id"]]["user_name"] == "corp-idp/alice@example.com"
    log = ActivityLog(open_store(f"file://{prod.path}/.mxinfra"))
    assert log.records("production")[-1].changes["grant"]["expires"] == "2026-03-01T11:00:00Z"
    assert grants.expire(prod.path, "cf-production", client=c, now=T0 + dt.timedelta(hours=1)) == []
    assert r["id"] in capi.objects["roles"]
    removed = grants.expire(prod.path, "cf-production", client=c, now=T0 + dt.timedelta(hours=2, seconds=1))
    assert [g["id"] for g in removed] == [r["id"]] and r["id"] not in capi.objects["roles"]
    assert log.records("production")[-1].changes["revoke"]["reason"] == "expired"
    assert log.verify("production") == []
    assert grants.expire(prod.path, "cf-production", client=c, now=T0 + dt.timedelta(days=1)) == []


@pytest.mark.parametrize(
    "principal,permission,duration,message",
    [
        ("user:corp-idp/alice@example.com", "deploy", "9h", "at most 8h"),
        ("user:corp-idp/alice@example.com", "deploy", "0m", "at most"),
        ("user:corp-idp/alice@example.com", "deploy", "soon", "duration"),
        ("user:corp-idp/mallory@example.com", "deploy", "1h", "not eligible"),
        ("user:corp-idp/alice@example.com", "manage", "1h", "not eligible"),
        ("user:corp-idp/alice@example.com", "backups", "1h", "no backup role"),
    ],
)
def test_refused_grants(capi, prod, principal, permission, duration, message):
    c = Client.from_environment(capi.url)
    with pytest.raises(UserError, match=message):
        grants.grant(prod.path, "cf-production", principal, permission, duration, client=c, now=T0)
    assert capi.objects["roles"] == {}


def test_session_limit_of_the_entry(capi, project):
    cfg = config("production", access=[{"principal": "user:corp-idp/bob@example.com", "environments": ["production"], "permissions": ["manage"], "maxSessionSeconds": 3600}])
    for key in ("adminPassword", "license", "secretConstants"):
        cfg["mxinfra:environments"]["production"].pop(key, None)
    project.stack("cf-production", cfg)
    c = Client.from_environment(capi.url)
    with pytest.raises(UserError, match="at most 1h00m"):
        grants.grant(project.path, "cf-production", "user:corp-idp/bob@example.com", "manage", "2h", client=c, now=T0)
    assert grants.grant(project.path, "cf-production", "user:corp-idp/bob@example.com", "manage", "1h", client=c, now=T0)["role"] == "space_manager"


def test_expiry_resource_removes_due_grants_and_all_on_destroy(capi, prod):
    from mxinfra_cloudfoundry.provider import GrantExpiryProvider

    c = Client.from_environment(capi.url)
    r1 = grants.grant(prod.path, "cf-production", "user:corp-idp/alice@example.com", "deploy", "1h", client=c, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2))
    r2 = grants.grant(prod.path, "cf-production", "user:corp-idp/alice@example.com", "monitor", "8h", client=c)
    props = {"api": capi.url, "org": "acme", "space": "orders", "environment": "production", "repository": f"file://{prod.path}/.mxinfra"}
    p = GrantExpiryProvider()
    assert p.diff("x", props, props).changes  # every up looks
    out = p.update("grants-production", props, props)
    assert out.outs["lastRemoved"] == 1 and r1["id"] not in capi.objects["roles"] and r2["id"] in capi.objects["roles"]
    p.delete("grants-production", props)
    assert capi.objects["roles"] == {}


def test_cli_commands(capi, prod, monkeypatch, capsys):
    import typer

    app = typer.Typer()
    grants.register(app)
    monkeypatch.setattr("mxinfra_cloudfoundry.capi.Client.from_environment", classmethod(lambda cls, api: Client(capi.url, cls_tokens(capi))))
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["access", "grant", "-s", "cf-production", "-C", str(prod.path), "--principal", "user:corp-idp/alice@example.com", "--permission", "monitor", "--for", "30m"])
    assert res.exit_code == 0, res.output
    assert "granted space_auditor to user:corp-idp/alice@example.com until" in res.output
    res = CliRunner().invoke(app, ["access", "expire", "-s", "cf-production", "-C", str(prod.path)])
    assert res.exit_code == 0 and "0 expired grant(s) removed" in res.output


def cls_tokens(capi):
    from mxinfra_cloudfoundry.uaa import TokenSource

    return TokenSource(f"{capi.url}/oauth/token", {"grant_type": "client_credentials"}, ("mxinfra-ci", "ci-secret"))
