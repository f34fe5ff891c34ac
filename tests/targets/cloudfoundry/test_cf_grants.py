"""Time-boxed production grants: created with an expiry in the activity log (signed, like every record),
removed when due; forged grant and revoke records change nothing (F5)."""

from __future__ import annotations

import datetime as dt

import pytest

from mxinfra.cli import main
from mxinfra.errors import UserError
from mxinfra.governance.activity import ActivityLog
from mxinfra.governance.signing import LocalKeySigner, generate_key_file
from mxinfra.governance.store import open_store
from mxinfra_cloudfoundry import grants
from mxinfra_cloudfoundry.capi import Client

from cfhelpers import config

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.timezone.utc)
ALICE = "user:corp-idp/alice@example.com"


@pytest.fixture
def prod(project):
    cfg = config("production")
    for key in ("adminPassword", "license", "secretConstants"):
        cfg["mxinfra:environments"]["production"].pop(key, None)
    project.stack("cf-production", cfg)
    return project


def log_of(prod, signer=None):
    return ActivityLog(open_store(f"file://{prod.path}/.mxinfra"), signer=signer)


def verify(prod, capsys):
    """`mxinfra activity verify -s cf-production` (the stack's trusted keys and app): (exit code, stderr)."""
    rc = main(["activity", "verify", "-s", "cf-production", "-C", str(prod.path)])
    out = capsys.readouterr()
    return rc, out.out + out.err


def forge(prod, kind, body, *, signer=None, app="orders"):
    """Append a grant or revoke record as someone who can write to the store would."""
    log = log_of(prod, signer)
    last = log.records("production")[-1] if log.records("production") else None
    return log.append(
        "production",
        actor="mallory",
        action="permissions",
        package_sha256=last.package_sha256 if last else "0" * 64,
        package_version=last.package_version if last else None,
        app=app,
        changes={kind: body},
    )


def test_grant_then_expire(capi, prod, capsys):
    c = Client.from_environment(capi.url)
    r = grants.grant(prod.path, "cf-production", ALICE, "deploy", "2h", client=c, now=T0)
    assert r["expires"] == "2026-03-01T11:00:00Z" and r["role"] == "space_developer"
    assert capi.objects["roles"][r["id"]]["user_name"] == "corp-idp/alice@example.com"
    log = log_of(prod)
    record = log.records("production")[-1]
    assert record.changes["grant"]["expires"] == "2026-03-01T11:00:00Z"
    assert record.signature is not None and record.app == "orders"  # signed, and this app's
    assert grants.expire(prod.path, "cf-production", client=c, now=T0 + dt.timedelta(hours=1)).removed == []
    assert r["id"] in capi.objects["roles"]
    done = grants.expire(prod.path, "cf-production", client=c, now=T0 + dt.timedelta(hours=2, seconds=1))
    assert [g["id"] for g in done.removed] == [r["id"]] and r["id"] not in capi.objects["roles"] and done.ignored == []
    revoke = log.records("production")[-1]
    assert revoke.changes["revoke"]["reason"] == "expired" and revoke.signature is not None
    assert grants.expire(prod.path, "cf-production", client=c, now=T0 + dt.timedelta(days=1)).removed == []
    # genuine grants and revokes verify, against the keys the stack trusts and its app
    rc, text = verify(prod, capsys)
    assert rc == 0 and "activity log intact" in text, text


def test_activity_verify_names_a_forged_grant(capi, prod, capsys):
    c = Client.from_environment(capi.url)
    grants.grant(prod.path, "cf-production", ALICE, "monitor", "1h", client=c, now=T0)
    assert verify(prod, capsys)[0] == 0
    forge(prod, "grant", {"id": "0" * 8 + "-0000-4000-8000-" + "0" * 12, "principal": ALICE, "role": "space_developer", "expires": "2026-03-01T10:00:00Z"})
    rc, err = verify(prod, capsys)
    assert rc == 2 and "is unsigned" in err


@pytest.mark.parametrize("how", ["unsigned", "untrusted key", "trusted key"])
def test_a_forged_revoke_does_not_keep_a_role(capi, prod, tmp_path, how):
    """A revoke record closes nothing while the role is still there: even one signed with a key the
    environment trusts (its deployers hold it) cannot keep a grant's role past its expiry."""
    c = Client.from_environment(capi.url)
    r = grants.grant(prod.path, "cf-production", ALICE, "deploy", "1h", client=c, now=T0)
    signer = {"unsigned": None, "untrusted key": LocalKeySigner(generate_key_file(tmp_path / "mallory.pem")), "trusted key": grants._signer(grants._deployment(prod.path, "cf-production"), "production", prod.path)}[how]
    forge(prod, "revoke", {"id": r["id"], "principal": ALICE, "permission": "deploy", "reason": "expired", "at": "2026-03-01T09:01:00Z"}, signer=signer)
    done = grants.expire(prod.path, "cf-production", client=c, now=T0 + dt.timedelta(hours=2))
    assert [g["id"] for g in done.removed] == [r["id"]] and r["id"] not in capi.objects["roles"]
    reason = log_of(prod).records("production")[-1].changes["revoke"]["reason"]
    assert reason == ("expired (a revoke was recorded, but the role was still there)" if how == "trusted key" else "expired")
    if how != "trusted key":
        assert any("revoke record" in line and "ignored" in line for line in done.ignored)


def test_a_revoke_names_what_runs_as_the_trusted_chain_says_not_a_record_planted_at_the_hint(capi, prod, tmp_path):
    """Hostile review: a record of a throwaway key chaining to the tail, naming another package, image and
    count, with the head hint pointed at it; the expiry's revoke record (signed with production's key) named
    what it claimed runs, and the release guard then believed it."""
    import json as _json

    from mxinfra.governance.activity import record_hash

    c = Client.from_environment(capi.url)
    r = grants.grant(prod.path, "cf-production", ALICE, "deploy", "1h", client=c, now=T0)
    log = log_of(prod)
    tail = log.records("production")[-1]
    at = tail.seq + 1
    body = {"seq": at, "environment": "production", "time": "2026-03-01T09:30:00Z", "actor": "mallory", "action": "deploy",
            "package_sha256": "9" * 64, "package_version": None, "artifact": "evil.example/app@sha256:" + "f" * 64, "changes": {},
            "prev_hash": tail.hash, "app": "orders", "instances": 7}
    body["hash"] = record_hash(body)
    body["signature"] = LocalKeySigner(generate_key_file(tmp_path / "mallory.pem")).signature(body["hash"])
    store = open_store(f"file://{prod.path}/.mxinfra")
    assert store.put(ActivityLog.key("production", at), _json.dumps(body).encode(), if_absent=True)
    store.put(ActivityLog.head_key("production"), _json.dumps({"seq": at}).encode())
    done = grants.expire(prod.path, "cf-production", client=c, now=T0 + dt.timedelta(hours=2))
    assert [g["id"] for g in done.removed] == [r["id"]]
    revoke = log.records("production")[-1]
    assert "revoke" in revoke.changes and revoke.prev_hash == tail.hash
    assert (revoke.package_sha256, revoke.artifact, revoke.instances) == (tail.package_sha256, tail.artifact, tail.instances)


def test_a_forged_grant_removes_no_role(capi, prod, tmp_path):
    """Roles a forged grant names stay: unsigned, signed by an untrusted key, of another app, or signed by a
    trusted key but naming someone else's role."""
    c = Client.from_environment(capi.url)
    platform = capi.add_client_role("mxinfra-ci", "space_developer")  # the platform identity's standing role
    manager = c.create_role(capi.space_guid, "space_manager", "bob@example.com", "corp-idp")  # granted by hand
    now = dt.datetime.now(dt.timezone.utc)
    genuine = grants.grant(prod.path, "cf-production", ALICE, "monitor", "8h", client=c, now=now)
    d = grants._deployment(prod.path, "cf-production")
    trusted = grants._signer(d, "production", prod.path)
    stranger = LocalKeySigner(generate_key_file(tmp_path / "mallory.pem"))
    past = "2026-03-01T08:00:00Z"
    for target, signer, app in ((platform["guid"], None, "orders"), (platform["guid"], stranger, "orders"), (manager["guid"], trusted, "other-app")):
        forge(prod, "grant", {"id": target, "principal": ALICE, "permission": "deploy", "role": "space_developer", "space": capi.space_guid, "expires": past}, signer=signer, app=app)
    # trusted, but it names alice as a developer while the role is bob's manager role
    forge(prod, "grant", {"id": manager["guid"], "principal": ALICE, "permission": "deploy", "role": "space_developer", "space": capi.space_guid, "expires": past}, signer=trusted)
    done = grants.expire(prod.path, "cf-production", client=c, now=now)  # the forged ones claim to have expired
    assert done.removed == []
    assert {platform["guid"], manager["guid"], genuine["id"]} <= set(capi.objects["roles"])
    text = "\n".join(done.ignored)
    assert "is unsigned" in text and "not trusted for production" in text
    # a record of another app is not a record of this log at all (issue 19, F10): never read as a grant, and
    # `mxinfra activity verify` names it as planted (tests/governance/test_log_poisoning.py)
    assert "other-app" not in text and len(done.ignored) == 3
    assert "but that role is space_manager of corp-idp/bob@example.com: not removed" in text


@pytest.mark.parametrize(
    "principal,permission,duration,message",
    [
        (ALICE, "deploy", "9h", "at most 8h"),
        (ALICE, "deploy", "0m", "at most"),
        (ALICE, "deploy", "soon", "duration"),
        ("user:corp-idp/mallory@example.com", "deploy", "1h", "not eligible"),
        (ALICE, "manage", "1h", "not eligible"),
        (ALICE, "backups", "1h", "no backup role"),
    ],
)
def test_refused_grants(capi, prod, principal, permission, duration, message):
    c = Client.from_environment(capi.url)
    with pytest.raises(UserError, match=message):
        grants.grant(prod.path, "cf-production", principal, permission, duration, client=c, now=T0)
    assert capi.objects["roles"] == {}


def test_an_unrecorded_grant_is_taken_back(capi, prod, monkeypatch):
    """A role whose grant could not be recorded would never expire: it is removed again."""
    c = Client.from_environment(capi.url)

    def refuse(*args, **kwargs):
        raise UserError("the store refused the write")

    monkeypatch.setattr(ActivityLog, "append", refuse)
    with pytest.raises(UserError, match="refused the write"):
        grants.grant(prod.path, "cf-production", ALICE, "deploy", "1h", client=c, now=T0)
    assert capi.objects["roles"] == {}


def test_session_limit_of_the_entry(capi, project):
    cfg = config("production", access=[{"principal": "user:corp-idp/bob@example.com", "environments": ["production"], "permissions": ["manage"], "maxSessionSeconds": 3600}])
    for key in ("adminPassword", "license", "secretConstants"):
        cfg["mxinfra:environments"]["production"].pop(key, None)
    project.stack("cf-production", cfg)
    c = Client.from_environment(capi.url)
    with pytest.raises(UserError, match="at most 1h00m"):
        grants.grant(project.path, "cf-production", "user:corp-idp/bob@example.com", "manage", "2h", client=c, now=T0)
    assert grants.grant(project.path, "cf-production", "user:corp-idp/bob@example.com", "manage", "1h", client=c, now=T0)["role"] == "space_auditor"  # a production manager only sees the roles (issue 19, F4)


def test_the_expiry_resource_removes_nothing_on_an_up_and_everything_on_destroy(capi, prod, monkeypatch):
    from mxinfra_cloudfoundry.provider import GrantExpiryProvider

    c = Client.from_environment(capi.url)
    now = dt.datetime.now(dt.timezone.utc)
    r1 = grants.grant(prod.path, "cf-production", ALICE, "deploy", "1h", client=c, now=now - dt.timedelta(hours=2))
    r2 = grants.grant(prod.path, "cf-production", ALICE, "monitor", "8h", client=c, now=now)
    monkeypatch.chdir(prod.path)  # the engine runs providers in the project: the repository input is relative
    props = {"api": capi.url, "org": "acme", "space": "orders", "environment": "production", "app": "orders", "repository": "file://.mxinfra", "trust": [], "signer": None}
    p = GrantExpiryProvider()
    assert not p.diff("x", props, props).changes  # time passing is no change: a release does not touch it
    assert p.diff("x", props, {**props, "trust": ["sha256:" + "ab" * 32]}).changes
    capi.requests.clear()
    out = p.update("grants-production", props, props)
    assert out.outs["dueGrants"] == [r1["id"]]  # reported...
    assert capi.requests == [] and r1["id"] in capi.objects["roles"]  # ...from the log alone: no CAPI call, nothing removed
    p.delete("grants-production", props)
    assert r1["id"] not in capi.objects["roles"] and r2["id"] not in capi.objects["roles"]


def test_cli_commands(capi, prod, monkeypatch, capsys):
    import typer

    app = typer.Typer()
    grants.register(app)
    monkeypatch.setattr("mxinfra_cloudfoundry.capi.Client.from_environment", classmethod(lambda cls, api: Client(capi.url, cls_tokens(capi))))
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["access", "grant", "-s", "cf-production", "-C", str(prod.path), "--principal", ALICE, "--permission", "monitor", "--for", "30m"])
    assert res.exit_code == 0, res.output
    assert "granted space_auditor to user:corp-idp/alice@example.com until" in res.output
    res = CliRunner().invoke(app, ["access", "expire", "-s", "cf-production", "-C", str(prod.path)])
    assert res.exit_code == 0 and "0 expired grant(s) removed" in res.output


def cls_tokens(capi):
    from mxinfra_cloudfoundry.uaa import TokenSource

    return TokenSource(f"{capi.url}/oauth/token", {"grant_type": "client_credentials"}, ("mxinfra-ci", "ci-secret"))


def test_a_role_made_outside_mxinfra_access_grant_is_removed(capi, prod, capsys):
    """A production role of a grantable person (an MFA origin's user) that no verified grant backs (made by
    a granted Space Manager by hand, or whose grant record was deleted) does not outlive the next round;
    technical identities' roles and a role being granted right now are left alone."""
    c = Client.from_environment(capi.url)
    now = dt.datetime.now(dt.timezone.utc)
    kept = grants.grant(prod.path, "cf-production", ALICE, "monitor", "8h", client=c, now=now)
    by_hand = c.create_role(capi.space_guid, "space_developer", "mallory@example.com", "corp-idp")
    platform = capi.add_client_role("mxinfra-ci", "space_developer")
    technical = c.create_role(capi.space_guid, "space_developer", "deployer", "uaa")
    assert grants.expire(prod.path, "cf-production", client=c, now=now).removed == []  # within the grace period
    done = grants.expire(prod.path, "cf-production", client=c, now=now + dt.timedelta(minutes=20))
    assert [g["id"] for g in done.removed] == [by_hand["guid"]]
    assert {kept["id"], platform["guid"], technical["guid"]} <= set(capi.objects["roles"]) and by_hand["guid"] not in capi.objects["roles"]
    revoke = log_of(prod).records("production")[-1].changes["revoke"]
    assert revoke["principal"] == "user:corp-idp/mallory@example.com" and revoke["reason"].startswith("no verified grant")
    rc, text = verify(prod, capsys)
    assert rc == 0, text


def test_no_grant_outlives_8_hours_of_its_role(capi, prod):
    """A grant record signed by a trusted key that claims a week still ends 8 hours after the Cloud
    Controller created the role."""
    c = Client.from_environment(capi.url)
    role = c.create_role(capi.space_guid, "space_developer", "alice@example.com", "corp-idp")
    d = grants._deployment(prod.path, "cf-production")
    created = dt.datetime.now(dt.timezone.utc)
    week = (created + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    forge(prod, "grant", {"id": role["guid"], "principal": ALICE, "permission": "deploy", "role": "space_developer", "space": capi.space_guid, "expires": week}, signer=grants._signer(d, "production", prod.path))
    assert grants.expire(prod.path, "cf-production", client=c, now=created + dt.timedelta(hours=7)).removed == []
    done = grants.expire(prod.path, "cf-production", client=c, now=created + dt.timedelta(hours=8, minutes=1))
    assert [g["id"] for g in done.removed] == [role["guid"]] and role["guid"] not in capi.objects["roles"]


def test_grant_and_revoke_records_name_what_runs_not_the_stacks_next_package(capi, prod):
    """A grant changes no workload: its record (and its revoke's) names the package, artifact and count the
    newest record says run, never the stack's package that `pulumi up` has not deployed yet (else the next
    `pulumi up` would find what runs contradicting the log: mxinfra drift). An intent record in between is
    what a run was about to apply, not what runs."""
    from scaffold import record_deploy

    record_deploy(prod.path, "cf-production")
    deployed = log_of(prod).records("production")[-1]
    # the next release is in the stack and a run stopped after recording its intent
    from mxinfra.governance.signing import dev_signer

    ActivityLog(open_store(f"file://{prod.path}/.mxinfra"), signer=dev_signer(f"file://{prod.path}/.mxinfra")).append(
        "production", actor="ci", action="intent", package_sha256="f" * 64, package_version="9.9.9", artifact=None,
        changes={"intends": "deploy"}, app="orders", instances=7,
    )
    c = Client.from_environment(capi.url)
    r = grants.grant(prod.path, "cf-production", ALICE, "deploy", "2h", client=c, now=T0)
    granted = log_of(prod).records("production")[-1]
    assert granted.changes["grant"]["id"] == r["id"]
    assert (granted.package_sha256, granted.artifact, granted.instances) == (deployed.package_sha256, deployed.artifact, deployed.instances)
    grants.expire(prod.path, "cf-production", client=c, now=T0 + dt.timedelta(hours=3))
    revoked = log_of(prod).records("production")[-1]
    assert "revoke" in revoked.changes
    assert (revoked.package_sha256, revoked.artifact, revoked.instances) == (deployed.package_sha256, deployed.artifact, deployed.instances)
