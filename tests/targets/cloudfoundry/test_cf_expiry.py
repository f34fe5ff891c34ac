"""The expiry app (`grantExpiry`): production grants expire on the platform's schedule, not on a release nor
when someone remembers a command; it lives in a space of its own with its Space Manager identity as a
Pulumi secret; its config mistakes are reported with their keys, all at once."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
import zipfile

import pytest

from mxinfra.cli import main
from mxinfra.components import ENVIRONMENT_TYPE, MendixApp
from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.governance.activity import ActivityLog
from mxinfra.governance.signing import check_signature
from mxinfra.governance.store import open_store
from mxinfra.testing import Sealed
from mxinfra_cloudfoundry import expiry, grants
from mxinfra_cloudfoundry.capi import Client
from mxinfra_cloudfoundry.provider import GrantExpiryAppProvider

from cfhelpers import ROOT, config

KMS = "kms:arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
EXPIRY_SECRET = "Known-Expiry-Client-Secret-77c1"
AWS_SECRET = "Known-Aws-Secret-Key-3f0e"
SECRET_PATHS = frozenset({"mxinfra:environments", "mxinfra:cloudfoundry.grantExpiry.credentials.clientSecret", "mxinfra:cloudfoundry.grantExpiry.environment.AWS_SECRET_ACCESS_KEY"})
ALICE = "user:corp-idp/alice@example.com"
GRANT_EXPIRY_APP = "pulumi-python:dynamic/cloudfoundry:GrantExpiryApp"


def expiry_config(grant_expiry=None, **cf):
    """Production on a shared (s3://) repository with its signer and the expiry app."""
    ge = {
        "space": "orders-access",
        "credentials": {"clientId": "mxinfra-grant-expiry", "clientSecret": EXPIRY_SECRET},
        "environment": {"AWS_REGION": "eu-central-1", "AWS_SECRET_ACCESS_KEY": AWS_SECRET},
    }
    ge.update(grant_expiry or {})
    cfg = config("production", cf={"grantExpiry": ge, **cf})
    cfg["mxinfra:repository"] = "s3://acme-mendix/orders"
    cfg["mxinfra:signing"] = {"signers": {"production": KMS}}
    return cfg


def plan_errors(project, capsys, cfg, secret_paths=()):
    """Exit code and stderr of `mxinfra plan` on `cfg` (secret paths written as the CLI would: {secure: ...})."""
    for path in secret_paths:
        node = cfg
        *parents, leaf = path.split(".")
        node = cfg[parents[0]]
        for part in parents[1:]:
            node = node[part]
        node[leaf] = {"secure": "v1:placeholder"}
    project.stack("cf-production", cfg)
    rc = main(["plan", "-s", "cf-production", "-C", str(project.path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_required_where_grants_are_possible_on_a_shared_repository(project, capsys):
    cfg = expiry_config()
    del cfg["mxinfra:cloudfoundry"]["grantExpiry"]
    rc, err = plan_errors(project, capsys, cfg)
    assert rc == 2 and "mxinfra:cloudfoundry.grantExpiry: required: 'production' has eligible principals" in err


def test_mistakes_are_reported_together(project, capsys):
    cfg = expiry_config({"space": "Orders", "signer": "file:keys/expiry.pem", "environment": {"AZURE_CLIENT_SECRET": "plain"}})
    rc, err = plan_errors(project, capsys, cfg)  # nothing stored encrypted
    assert rc == 2
    for expected in (
        "mxinfra:cloudfoundry.grantExpiry.space: 'Orders' is the space of environment 'production'",
        "mxinfra:cloudfoundry.grantExpiry.credentials.clientSecret: is stored in plain text",
        "mxinfra:cloudfoundry.grantExpiry.environment.AZURE_CLIENT_SECRET: is stored in plain text",
        "mxinfra:cloudfoundry.grantExpiry.signer: 'file:keys/expiry.pem' is a file on this machine",
    ):
        assert expected in err, err


def test_a_file_repository_is_out_of_its_reach(project, capsys):
    cfg = expiry_config()
    del cfg["mxinfra:repository"], cfg["mxinfra:signing"]
    rc, err = plan_errors(project, capsys, cfg, SECRET_PATHS - {"mxinfra:environments"})
    assert rc == 2 and "mxinfra:cloudfoundry.grantExpiry: the expiry app reads and appends to the activity log from Cloud Foundry" in err


def test_its_revocations_must_verify(project, capsys):
    other = KMS.replace("1234abcd", "9999abcd")
    rc, err = plan_errors(project, capsys, expiry_config({"signer": other}), SECRET_PATHS - {"mxinfra:environments"})
    assert rc == 2 and "mxinfra:cloudfoundry.grantExpiry.signer: its revocations would not verify" in err
    cfg = expiry_config()
    del cfg["mxinfra:signing"]
    rc, err = plan_errors(project, capsys, cfg, SECRET_PATHS - {"mxinfra:environments"})
    assert rc == 2 and "mxinfra:signing.signers.production: the expiry app believes only grant records signed by a key trusted" in err


def deployment_of(cfg):
    return prepare(RawConfig(cfg, SECRET_PATHS), project="orders", stack="cf-production", base_dir=ROOT)


def expiry_app(pulumi_run, cfg):
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": deployment_of(cfg)}), stack="cf-production", project="orders")
    env = res.one(ENVIRONMENT_TYPE, "orders-production")
    kids = {r.name.removeprefix("orders-production-"): r for r in res.children(env)}
    return kids


def test_the_expiry_app_is_declared_in_its_own_space(pulumi_run):
    kids = expiry_app(pulumi_run, expiry_config())
    app = kids["grant-expiry"]
    assert app.type == GRANT_EXPIRY_APP
    i = app.inputs
    assert (i["space"], i["org"], i["name"]) == ("orders-access", "acme", "orders-production-grant-expiry")
    assert i["healthCheck"] == {"type": "process", "timeout": 180} and i["routes"] == [] and i["services"] == []
    assert i["instances"] == 1 and i["ssh"] is False and i["buildpack"] == "python_buildpack"
    assert i["package"] == {"bundle": "grant-expiry", "extras": ["s3"], "sha256": expiry.bundle(["s3"])[1]}
    settings = expiry.Settings.from_json(i["environment"]["MXINFRA_EXPIRY"])
    assert settings.where == {"api": "https://api.cf.example.com", "org": "acme", "space": "orders"}  # production's space
    assert (settings.repository, settings.signer, settings.trust, settings.interval_seconds) == ("s3://acme-mendix/orders", KMS, (KMS,), 300)
    assert settings.sweep_origins == ("corp-idp",)  # production's people: their roles need a verified grant
    # its identity and the store's key: one secret input, a secret output too; nowhere in plain inputs
    assert isinstance(i["secretEnvironment"], Sealed)
    assert i["secretEnvironment"].value == {"CF_CLIENT_ID": "mxinfra-grant-expiry", "CF_CLIENT_SECRET": EXPIRY_SECRET, "AWS_REGION": "eu-central-1", "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
    assert app.additional_secret_outputs == ["secretEnvironment"]
    plain = json.dumps({k: v for k, v in i.items() if k != "secretEnvironment"}, default=repr)
    assert EXPIRY_SECRET not in plain and AWS_SECRET not in plain
    assert kids["grants"].inputs["trust"] == [KMS]


def test_a_release_does_not_change_the_expiry_app(pulumi_run, tmp_path):
    """The release manager (space_developer of production, no role in the expiry space) can apply a
    release: nothing of the expiry app nor of the grants' report changes."""
    from scaffold import example_release

    before = expiry_app(pulumi_run, expiry_config())
    cfg = expiry_config()
    cfg["mxinfra:app"]["package"] = str(example_release(tmp_path / "orders-1.4.3.mda", "1.4.3.1301"))
    cfg["mxinfra:environments"]["production"].update(instances=3, constants={"Orders.PageSize": 60})
    after = expiry_app(pulumi_run, cfg)
    assert after["app"].inputs["package"] != before["app"].inputs["package"]  # it is a release

    def plain(r):
        return {k: (v.value if isinstance(v, Sealed) else v) for k, v in r.inputs.items() if k != "__provider"}

    assert plain(after["grant-expiry"]) == plain(before["grant-expiry"])
    assert plain(after["grants"]) == plain(before["grants"])


# --- the app at work, against the CAPI double ---------------------------------------------------------


@pytest.fixture
def prod(project):
    cfg = config("production")
    for key in ("adminPassword", "license", "secretConstants"):
        cfg["mxinfra:environments"]["production"].pop(key, None)
    project.stack("cf-production", cfg)
    return project


def deployed(capi, prod):
    """The expiry app created by its provider in a space of its own, as `pulumi up` would (the platform identity)."""
    capi._add("spaces", name="orders-access", org=capi.org_guid)
    capi.clients["mxinfra-grant-expiry"] = "expiry-secret"
    settings = expiry.Settings(
        api=capi.url,
        where={"org": "acme", "space": "orders"},
        environment="production",
        app="orders",
        repository=f"file://{prod.path}/.mxinfra",
        trust=(),  # the file:// repository's development key
        signer=f"file:{prod.path}/.mxinfra/keys/dev-signing.pem",
        interval_seconds=60,
    )
    data, digest = expiry.bundle()
    props = {
        "api": capi.url,
        "org": "acme",
        "space": "orders-access",
        "name": "orders-production-grant-expiry",
        "buildpack": "python_buildpack",
        "stack": "cflinuxfs4",
        "environment": {"MXINFRA_EXPIRY": settings.to_json()},
        "secretEnvironment": {"CF_CLIENT_ID": "mxinfra-grant-expiry", "CF_CLIENT_SECRET": "expiry-secret", "CF_UAA_URL": capi.url},
        "package": {"bundle": "grant-expiry", "extras": [], "sha256": digest},
        "instances": 1,
        "memoryMb": 256,
        "diskMb": 1024,
        "healthCheck": {"type": "process", "timeout": 180},
        "routes": [],
        "services": [],
        "ssh": False,
        "metadata": {"labels": {}, "annotations": {}},
        "timeouts": {"upload": 10, "staging": 10, "start": 10, "job": 10},
    }
    created = GrantExpiryAppProvider().create(props)
    return created, data


def test_the_deployed_expiry_app_removes_due_grants_on_its_own(capi, prod):
    created, data = deployed(capi, prod)
    app = capi.objects["apps"][created.id]
    space = capi.objects["spaces"][app["space"]]
    assert space["name"] == "orders-access" and app["state"] == "STARTED"
    assert capi.process_of(created.id)["health_check"] == {"type": "process", "data": {"timeout": 180}}
    assert capi.bits[created.outs["packageGuid"]] == data and capi.app_features[created.id]["ssh"] is False

    c = Client.from_environment(capi.url)
    now = dt.datetime.now(dt.timezone.utc)
    due = grants.grant(prod.path, "cf-production", ALICE, "deploy", "1h", client=c, now=now - dt.timedelta(hours=2))
    running = grants.grant(prod.path, "cf-production", ALICE, "monitor", "8h", client=c, now=now)
    sleeps = []
    # the app's process, with exactly the variables the provider set on it
    expiry.main(environ=dict(capi.env[created.id]), rounds=2, sleep=sleeps.append)
    assert due["id"] not in capi.objects["roles"] and running["id"] in capi.objects["roles"]
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 60
    log = ActivityLog(open_store(f"file://{prod.path}/.mxinfra"))
    revokes = [r for r in log.records("production") if "revoke" in r.changes]
    assert [r.changes["revoke"]["id"] for r in revokes] == [due["id"]]  # once, though two rounds ran
    assert check_signature(revokes[0].to_json(), revokes[0].hash)[1] is None and revokes[0].app == "orders"
    assert "mxinfra-grant-expiry" in capi.grant_clients  # as its own identity


def test_a_failed_round_does_not_stop_the_app(capi, prod, capsys):
    created, _ = deployed(capi, prod)
    grants.grant(prod.path, "cf-production", ALICE, "deploy", "1h", client=Client.from_environment(capi.url))
    env = {**capi.env[created.id], "CF_CLIENT_SECRET": "rotated-and-wrong"}
    sleeps = []
    expiry.main(environ=env, rounds=2, sleep=sleeps.append)
    err = capsys.readouterr().err
    assert err.count("expiry round failed") == 2 and "UAA refused" in err and len(sleeps) == 1


def test_the_bundle(tmp_path):
    data, digest = expiry.bundle()
    assert expiry.bundle() == (data, digest)  # the same installation, the same bytes
    z = zipfile.ZipFile(io.BytesIO(data))
    names = set(z.namelist())
    assert {"Procfile", "requirements.txt", "runtime.txt", "mxinfra_cloudfoundry/expiry.py", "mxinfra/governance/activity.py"} <= names
    assert z.read("Procfile") == b"web: python -m mxinfra_cloudfoundry.expiry\n"
    pins = z.read("requirements.txt").decode().split()
    from importlib.metadata import version

    assert f"requests=={version('requests')}" in pins and f"cryptography=={version('cryptography')}" in pins
    assert not any(p.startswith(("pulumi", "boto3")) for p in pins)
    assert any(p.startswith("boto3==") for p in zipfile.ZipFile(io.BytesIO(expiry.bundle(["s3"])[0])).read("requirements.txt").decode().split())
    # the app imports what it runs without pulumi (the buildpack installs only requirements.txt)
    z.extractall(tmp_path)
    code = "import sys, mxinfra_cloudfoundry.expiry as e, mxinfra_cloudfoundry.grants, mxinfra_cloudfoundry.capi, mxinfra.governance.activity; print(e.__file__); print(sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'typer', 'yaml')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True, env={"PYTHONPATH": str(tmp_path)}).stdout.split("\n")
    assert out[0].startswith(str(tmp_path)) and out[1] == "[]"
