"""Issue 19, F1 and F18 on the cloudfoundry target: `mxinfra drift` (and the release guard at the start of
`pulumi up`) reads what the environment's app runs from the Cloud Controller (the CAPI double, every request
and response validated against the CAPI description) and names every difference from the activity log's
last signed record.

The app is released by the target's own provider (`AppProvider.create`, as `pulumi up` runs it), the record
is written by the activity resource's own provider (scaffold.record_deploy), and a change behind the log is
what a holder of production `deploy` (a space developer) can do through the API: a `cf push` (a package,
a build, the droplet set current, a restart), a `cf restage`, a `cf scale`, a `cf stop`.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest


from cfhelpers import BUILDPACK, BUILDPACK_URL, MDA, config, release
from scaffold import encrypted as stack_file
from scaffold import SECURE, record_deploy, run_drift

from mxinfra_cloudfoundry.capi import Client
from mxinfra_cloudfoundry.running import CONFIG_NOTE, DROPLET_GUID, Place, App, observed

STACK = "cf-production"
API = "https://api.cf.example.com"  # cfhelpers.CF_BLOCK's: requests to it are sent to the double
APP = "orders-production"
MDA_SHA = hashlib.sha256(MDA.read_bytes()).hexdigest()
PLACE = f"space orders, org acme, {API}"
SCALE = f"cf target -o acme -s orders && cf scale {APP} -i"


@pytest.fixture
def released(capi, project, to_double, monkeypatch):
    """Production released: its app runs in the double, its deploy record is in the log. The app's guid."""
    cfg = config("production")
    project.stack(STACK, stack_file(cfg))
    guid = release(capi, cfg, monkeypatch, STACK, APP)
    record_deploy(project.path, STACK)
    return guid


def cf(capi: Any) -> Client:
    """A client of the double, as the cf CLI of a space developer talks to it."""
    return Client.from_environment(capi.url)


def cf_push(capi: Any, app: str, bits: bytes) -> str:
    """What `cf push` does to a running app: a new package, staged, its droplet made current, a restart. The droplet."""
    c = cf(capi)
    package = c.upload_package(app, bits, 10, name="app.zip")
    droplet = c.stage(package, 10)
    c.stop(app)
    c.set_droplet(app, droplet)
    c.start(app)
    return droplet


RECORD = "the last record (seq 1: deploy by "


# --- what runs is what the log records -----------------------------------------------------------------------


def test_drift_is_clean_after_a_release(released, capi, project, capsys):
    rc, out, err = _drift(project, capsys)
    assert rc == 0, err
    droplet = capi.objects["apps"][released]["droplet"]
    assert f"production: Cloud Foundry app {APP} (droplet {droplet}; {PLACE}) runs what {RECORD}" in out, out
    assert out.splitlines()[0] == f"production: runtime configuration not compared: {CONFIG_NOTE}"  # said on every run
    # what the release noted on the app: the droplet, and the package and buildpack it was staged from
    annotations = capi.objects["apps"][released]["metadata"]["annotations"]
    assert annotations[DROPLET_GUID] == droplet and annotations["mxinfra.io/droplet-buildpack"] == BUILDPACK
    assert annotations["mxinfra.io/droplet-package-sha256"] == MDA_SHA


def test_a_cf_push_behind_the_log_is_named_and_so_is_the_way_back(released, capi, project, capsys):
    ours = capi.objects["apps"][released]["droplet"]
    bits = MDA.read_bytes() + b"patched by hand"
    theirs = cf_push(capi, released, bits)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err
    what = f"Cloud Foundry app {APP} (droplet {theirs}, not the droplet {ours} the last release made current; {PLACE})"
    assert f"error: unrecorded changes: what runs is not what the activity log's signed records say: - production: {what} runs buildpack {BUILDPACK_URL}, but {RECORD}" in err
    assert f"names buildpack {BUILDPACK}: an unrecorded change (put back what the record names (cf target -o acme -s orders && cf droplets {APP}, then cf set-droplet {APP} <the droplet the last release staged with buildpack {BUILDPACK}> && cf restart {APP})" in err
    pushed = hashlib.sha256(bits).hexdigest()  # the double's checksum of the bits (never an MDA's sha256 on a real one)
    assert f"production: {what} says it runs package sha256:{pushed[:12]}, but {RECORD}" in err
    assert f"names sha256:{MDA_SHA[:12]} " in err and ": an unrecorded change" in err
    # the droplet the release staged set current again: clean
    c = cf(capi)
    c.stop(released)
    c.set_droplet(released, ours)
    c.start(released)
    assert _drift(project, capsys)[0] == 0


def test_a_restage_by_hand_is_named_by_its_buildpack(released, capi, project, capsys):
    c = cf(capi)
    package = next(p["guid"] for p in capi.objects["packages"].values() if p["app"] == released)
    droplet = c.stage(package, 10)  # `cf restage`: the release's package, staged again, outside a release
    c.deploy(released, droplet, 10)
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert f"runs buildpack {BUILDPACK_URL}, but {RECORD}" in err and f"names buildpack {BUILDPACK}: an unrecorded change" in err
    assert "says it runs package" not in err  # its package is the release's, as its annotation says


def test_an_unrecorded_scale_is_named(released, capi, project, capsys):
    c = cf(capi)
    c.scale(c.web_process(released)["guid"], 5)
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert f"production: Cloud Foundry app {APP} (droplet " in err and f"runs 5 instance(s), but {RECORD}" in err
    assert f"names 2: an unrecorded scale (put back what the record names ({SCALE} 2), find who made it" in err
    # stopped: nothing runs where the record names two
    c.scale(c.web_process(released)["guid"], 2)
    c.stop(released)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"runs 0 instance(s), but {RECORD}" in err and f"({SCALE} 2 && cf start {APP})" in err


def test_a_deleted_app_is_named(released, capi, project, capsys):
    cf(capi).delete_app(released, 10)
    rc, _, err = _drift(project, capsys)
    assert rc == 2
    assert f"production: nothing runs as Cloud Foundry app {APP} ({PLACE}), but {RECORD}" in err and "removed outside a release" in err


def test_an_app_the_log_never_recorded_is_an_unrecorded_deployment(capi, project, to_double, capsys, monkeypatch):
    cfg = config("production")
    project.stack(STACK, stack_file(cfg))
    release(capi, cfg, monkeypatch, STACK, APP)
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and f"runs, but the activity log records no deployment of it: an unrecorded deployment" in err


def test_a_service_key_of_productions_data_is_a_standing_credential_until_deleted(released, capi, project, capsys):
    """A space developer (production `deploy`, time-boxed) mints a key of the database, or binds an app of
    their own: working credentials that outlive the grant. Drift (and so the release guard of every `pulumi
    up`) refuses production while one exists, naming it and how to remove it, also once the instance is
    renamed (it is found through the app's own binding); the app's own binding is not one."""
    space = next(iter(capi.objects["spaces"]))
    database = capi._add("service_instances", name="orders-production-database", type="managed", space=space, state="succeeded")
    c = cf(capi)
    c.bind(released, database["guid"], 10)
    assert _drift(project, capsys)[0] == 0  # the app's own binding
    key = c.create_key(database["guid"], "mallory-key", 10)
    rc, _, err = _drift(project, capsys)
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert "production: 1 standing credential(s) to production's data, made outside any release: service key mallory-key of orders-production-database, made " in said, said
    assert "(cf delete-service-key orders-production-database mallory-key -f): each outlives the grant of whoever made it" in said, said
    # renamed, so that a lookup by the stack's name finds nothing: found through the app's binding
    # (what `cf rename-service` leaves; its PATCH body is valid under both of the description's oneOf update
    # schemas, neither closed, so the double cannot take it through the validator)
    capi.objects["service_instances"][database["guid"]]["name"] = "renamed"
    said = " ".join(_drift(project, capsys)[2].split())
    assert "service key mallory-key of renamed, made " in said, said
    c.delete_binding(key, 10)
    assert _drift(project, capsys)[0] == 0
    # an app of their own bound to the database: its binding is a credential too
    other = c.create_app(space, "mallory-app", BUILDPACK_URL, "cflinuxfs4", {})
    c.bind(other["guid"], database["guid"], 10)
    rc, _, err = _drift(project, capsys)
    said = " ".join(err.split())
    assert rc == 2 and f"a binding of app {other['guid']} to renamed, made " in said and "cf curl -X DELETE /v3/service_credential_bindings/" in said, said


def test_a_share_of_productions_data_into_another_space_is_a_standing_credential_until_unshared(released, capi, project, capsys, pulumi_run, monkeypatch):
    """A space developer who is one in another space too shares the database into it: every developer there
    may then bind or key it, and those bindings are listed only to roles in that space. Drift, and so the
    release guard, refuses production while the share exists, naming how to undo it. A reader who may not
    list shares (a Space Supporter: the Cloud Controller answers 404) is warned: `pulumi up` goes on, drift
    does not say clean."""
    import importlib

    import pulumi

    from mxinfra.components import MendixApp
    from mxinfra.config import RawConfig
    from mxinfra.deployment import prepare

    space = next(iter(capi.objects["spaces"]))
    elsewhere = capi._add("spaces", name="mallory-sandbox", org=capi.org_guid)["guid"]
    database = capi._add("service_instances", name="orders-production-database", type="managed", space=space, state="succeeded")
    c = cf(capi)
    c.bind(released, database["guid"], 10)
    shares = f"/v3/service_instances/{database['guid']}/relationships/shared_spaces"
    c.post(shares, {"data": [{"guid": elsewhere}]})
    rc, _, err = _drift(project, capsys)
    said = " ".join(err.split())
    assert rc == 2 and "Traceback" not in err, err
    assert f"production: 1 standing credential(s) to production's data, made outside any release: orders-production-database shared into space {elsewhere} (cf curl -X DELETE {shares}/{elsewhere})" in said, said
    # as a Space Supporter reads it
    capi.refuse_share_reads = True
    rc, out, err = _drift(project, capsys)
    unread = "standing credentials to production's data not all read: whether orders-production-database is shared into other spaces was not read: the Cloud Controller did not find the instance for this identity"
    assert rc == 2 and unread in " ".join(err.split()) and "run `mxinfra drift` as `monitor`" in err, err
    monkeypatch.setattr(importlib.import_module("mxinfra.release_guard"), "under_mocks", lambda: False)  # as under a real engine
    monkeypatch.chdir(project.path)
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: warned.append(" ".join(str(msg).split())))
    d = prepare(RawConfig(config("production"), frozenset({"mxinfra:environments"})), project="orders", stack=STACK, base_dir=project.path)
    pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=STACK, project="orders")
    assert any(unread in w for w in warned), warned
    capi.refuse_share_reads = False
    with pytest.raises(pulumi.RunError, match="shared into space"):
        pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=STACK, project="orders")
    c.request("DELETE", f"{shares}/{elsewhere}")
    assert _drift(project, capsys)[0] == 0


def test_standing_credentials_are_productions_concern_alone():
    from mxinfra.drift import Observed, standing_credentials

    seen = Observed("acceptance", "app", exists=True, credentials=("service key k of db (cf delete-service-key db k -f)",))
    assert standing_credentials(seen, "acceptance") is None
    assert standing_credentials(Observed("x", "app", exists=True), "production") is None
    found = standing_credentials(seen, "production")
    assert found is not None and found.blocking and found.field == "credentials"
    # not all read: a warning on production, nothing below it
    partly = Observed("x", "app", exists=True, credentials_note="shares not read")
    warned = standing_credentials(partly, "production")
    assert warned is not None and not warned.blocking and "not all read: shares not read" in warned.message
    assert standing_credentials(partly, "test") is None
    assert "(and not all were read: shares not read)" in standing_credentials(replace(partly, credentials=("k",)), "production").message  # type: ignore[union-attr]
    # production by what runs (a stack that now declares it another tier) as well
    assert standing_credentials(Observed("x", "app", exists=True, role="production", credentials=("k",)), "test") is not None


@pytest.mark.parametrize("spaces", [False, True], ids=["one-space", "spaces-by-tier"])
def test_a_tier_downgrade_of_production_is_refused(released, project, capsys, spaces):
    """Issue 19, F18: `role: test` on the environment that runs as production (its app labelled
    mxinfra.io/role=production) would drop its protections in one update. With spaces by tier the stack
    now places it in the test space; the production app is found in production's space all the same."""
    cfg = config("production")
    body = cfg["mxinfra:environments"]["production"]
    body["role"] = "test"
    body.pop("ungated", None)
    if spaces:
        del cfg["mxinfra:cloudfoundry"]["space"]
        cfg["mxinfra:cloudfoundry"]["spaces"] = {"production": "orders", "test": "orders-test"}
    project.stack(STACK, stack_file(cfg))
    rc, _, err = _drift(project, capsys)
    assert rc == 2, err
    assert f"Cloud Foundry app {APP} (droplet " in err and "is production's (its mxinfra:role), but the stack now declares 'production' role test" in err, err
    assert "keep role: production" in err and "Traceback" not in err


# --- what runs cannot be read: exit 2, what to fix, no traceback ------------------------------------------


HEAD = f"error: production: what runs could not be read from the Cloud Controller {API} (app {APP}, space orders)"


def test_an_unreachable_api_is_said_plainly(released, project, to_double, capsys):
    to_double["url"] = "http://127.0.0.1:9"  # nothing listens there
    rc, out, err = _drift(project, capsys)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.startswith(f"{HEAD}: the API cannot be reached (ConnectionError: "), err
    assert err.endswith("check the network and mxinfra:cloudfoundry.api"), err


def test_a_token_the_api_refuses_is_said_plainly(released, capi, project, capsys):
    capi.token_lifetime_requests = 0  # every token is refused (401), the fresh one too
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err
    assert err.startswith(f"{HEAD}: the Cloud Controller refused GET /v3/organizations?names=acme (GET /v3/organizations -> 401: CF-InvalidAuthToken: Invalid Auth Token)"), err
    assert "does not accept the identity's token (expired, revoked, or another foundation's UAA): give the CF_CLIENT_ID/CF_CLIENT_SECRET" in err


def test_credentials_uaa_refuses_are_said_plainly(released, project, capsys, monkeypatch):
    monkeypatch.setenv("CF_CLIENT_SECRET", "wrong")
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err
    assert err.startswith(f"{HEAD}: UAA refused the client_credentials grant (401)"), err
    assert "an identity with a space role in the environment's space that reads apps, droplets, packages and processes" in err


def test_no_credentials_are_said_plainly(released, project, capsys, monkeypatch):
    monkeypatch.delenv("CF_CLIENT_ID")
    monkeypatch.delenv("CF_CLIENT_SECRET")
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err
    assert err.startswith(f"{HEAD}: no Cloud Foundry credentials: "), err


# --- the same check stops `pulumi up` before anything is declared ----------------------------------------


def test_pulumi_up_refuses_an_unrecorded_change_before_declaring_anything(released, capi, project, pulumi_run, monkeypatch):
    import importlib

    import pulumi

    from mxinfra.components import MendixApp
    from mxinfra.config import RawConfig
    from mxinfra.deployment import prepare

    monkeypatch.setattr(importlib.import_module("mxinfra.release_guard"), "under_mocks", lambda: False)  # as under a real engine
    monkeypatch.chdir(project.path)  # the program runs in the project directory
    ours = capi.objects["apps"][released]["droplet"]
    theirs = cf_push(capi, released, MDA.read_bytes() + b"patched by hand")
    d = prepare(RawConfig(config("production"), frozenset({"mxinfra:environments"})), project="orders", stack=STACK, base_dir=project.path)
    with pytest.raises(pulumi.RunError) as refused:
        pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=STACK, project="orders")
    said = " ".join(str(refused.value).split())
    assert "unrecorded changes: what runs is not what the activity log's signed records say" in said
    assert f"(droplet {theirs}, not the droplet {ours} the last release made current; {PLACE}) runs buildpack {BUILDPACK_URL}" in said, said
    # put back, the same program goes on
    c = cf(capi)
    c.set_droplet(released, ours)
    c.deploy(released, ours, 10)
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack=STACK, project="orders")
    assert any(r.type == "pulumi-python:dynamic/cloudfoundry:App" for r in res)


# --- who may read it ----------------------------------------------------------------------------------------

# Permitted roles of what the reading sends and test_release_scope.CAPI_PERMITTED does not list (the CAPI
# documentation's source, cloud_controller_ng docs/v3/source/includes/resources/droplets/_get.md.erb).
READS_NOT_IN_THE_RELEASE_TABLE = {
    "GET /v3/droplets/:guid": ("Admin", "Admin Read-Only", "Global Auditor", "Org Manager", "Space Auditor", "Space Developer", "Space Manager", "Space Supporter"),
}


# What a reader may be refused and the release guard goes on without, warning (test_a_share_of_productions_data_...)
REFUSAL_SAID = {"GET /v3/service_instances/:guid/relationships/shared_spaces"}


def test_monitor_and_deploy_may_read_everything_drift_reads(released, capi, project, capsys):
    """Every CAPI endpoint a drift run sends (a pushed droplet included: the longest read, and production's
    standing credentials) is permitted to space_auditor (monitor) and space_developer (deploy), and to
    space_supporter (deploy with deployRole) but for what the release guard goes on without, warning, per
    the CAPI documentation."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from test_release_scope import SPACE_ROLE_LABEL, _endpoints, capi_permits

    database = capi._add("service_instances", name="orders-production-database", type="managed", space=next(iter(capi.objects["spaces"])), state="succeeded")
    cf(capi).bind(released, database["guid"], 10)
    cf_push(capi, released, MDA.read_bytes() + b"patched by hand")
    capi.requests.clear()
    assert _drift(project, capsys)[0] == 2
    sent = sorted(set(_endpoints(capi, list(capi.requests))))
    assert "GET /v3/droplets/:guid" in sent and "GET /v3/packages/:guid" in sent and "GET /v3/apps/:guid/processes/:type" in sent
    assert "GET /v3/service_credential_bindings" in sent and REFUSAL_SAID <= set(sent)
    for role in ("space_auditor", "space_developer", "space_supporter"):
        refused = [
            e for e in sent
            if not (SPACE_ROLE_LABEL[role] in READS_NOT_IN_THE_RELEASE_TABLE[e] if e in READS_NOT_IN_THE_RELEASE_TABLE else capi_permits(role, e))
        ]
        assert refused == ([] if role != "space_supporter" else sorted(REFUSAL_SAID)), f"{role}: {refused}"
    assert not any(m != "GET" for m, _ in capi.requests if not _.startswith("/oauth"))  # reading only


# --- pure: an app released before the droplet annotations ---------------------------------------------------


def test_an_app_released_before_the_annotations_is_compared_by_its_release_annotation():
    place = Place(API, "acme", "orders", APP)
    legacy = App(
        guid="a", state="STARTED", labels={"mxinfra.io/role": "production"}, annotations={"mxinfra.io/package-sha256": MDA_SHA},
        lifecycle_buildpacks=(BUILDPACK_URL,), droplet="d1", instances=2,
    )
    o = observed("production", place, legacy, BUILDPACK)
    assert (o.package_sha256, o.artifact, o.instances, o.role) == (MDA_SHA, BUILDPACK, 2, "production")
    assert "carries no mxinfra.io/droplet-guid annotation" in (o.config_note or "") and "until the next release" in (o.config_note or "")
    # another buildpack URL than the stack's is named as it is
    assert observed("production", place, legacy, "https://example.com/v1.0.0/other.zip").artifact == BUILDPACK_URL


def test_encrypted_stack_credentials_without_cf_variables_are_said_plainly(capi, project, to_double, capsys, monkeypatch):
    release(capi, config("production"), monkeypatch, STACK, APP)
    file = stack_file(config("production", cf={"credentials": {"clientId": "mxinfra-ci", "clientSecret": SECURE}}))
    project.stack(STACK, file)
    record_deploy(project.path, STACK)
    monkeypatch.delenv("CF_CLIENT_ID")
    monkeypatch.delenv("CF_CLIENT_SECRET")
    rc, _, err = _drift(project, capsys)
    assert rc == 2 and "Traceback" not in err
    assert err.startswith(f"{HEAD}: the stack's mxinfra:cloudfoundry.credentials are encrypted in the stack file, which is read here without Pulumi"), err
    # with the CF_* variables the same stack is read (and clean)
    monkeypatch.setenv("CF_CLIENT_ID", "mxinfra-ci")
    monkeypatch.setenv("CF_CLIENT_SECRET", "ci-secret")
    rc, _, err = _drift(project, capsys)
    assert rc == 0, err


def _drift(project: Any, capsys: Any) -> tuple[int, str, str]:
    return run_drift(project, capsys, STACK)
