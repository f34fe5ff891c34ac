"""The dynamic providers' create, diff, update, read (drift) and delete against the CAPI double."""

from __future__ import annotations

import copy
import hashlib

import pytest

from mxinfra_cloudfoundry.capi import CapiError, DigestMismatch, StagingFailed
from mxinfra_cloudfoundry.provider import AppProvider, RouteProvider, ServiceInstanceProvider, SpaceProvider, SpaceRoleProvider, strategy

from cfhelpers import BUILDPACK_URL as BUILDPACK, MDA

MDA_SHA = hashlib.sha256(MDA.read_bytes()).hexdigest()


@pytest.fixture
def other_package(tmp_path):
    """Another package (other bytes, so another sha256): (path, sha256)."""
    path = tmp_path / "orders-1.5.0.mda"
    path.write_bytes(MDA.read_bytes() + b"another build")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def where(capi):
    return {"api": capi.url, "org": "acme", "space": "orders"}


def app_props(capi, **over):
    props = {
        **where(capi),
        "name": "orders-test",
        "buildpack": BUILDPACK,
        "stack": "cflinuxfs4",
        "environment": {"MEMORY_LIMIT": "2048M", "MXRUNTIME_DTAPMode": "T", "SCHEDULED_EVENTS": "ALL"},
        "secretEnvironment": {"ADMIN_PASSWORD": "pw-1"},
        "package": {"path": str(MDA), "sha256": MDA_SHA, "modelVersion": "1.4.2.1234"},
        "instances": 2,
        "memoryMb": 2048,
        "diskMb": 2048,
        "healthCheck": {"type": "http", "endpoint": "/", "timeout": 600, "invocationTimeout": 10},
        "routes": [],
        "services": [],
        "metadata": {"labels": {}, "annotations": {}},
        "timeouts": {"upload": 10, "staging": 10, "start": 10, "job": 10},
    }
    props.update(over)
    return props


@pytest.fixture
def created(capi):
    route = RouteProvider().create({**where(capi), "host": "orders-test", "domain": "apps.example.com"})
    db = ServiceInstanceProvider().create({**where(capi), "name": "orders-test-database", "offering": "postgresql-db", "plan": "standard", "parameters": {}})
    props = app_props(capi, routes=[route.id], services=[db.id])
    result = AppProvider().create(props)
    return result


def running(capi, app):
    return capi.process_of(app)["running"]


def test_create(capi, created):
    app = capi.objects["apps"][created.id]
    assert app["state"] == "STARTED" and app["buildpacks"] == [BUILDPACK] and app["stack"] == "cflinuxfs4"
    assert capi.env[created.id] == {"MEMORY_LIMIT": "2048M", "MXRUNTIME_DTAPMode": "T", "SCHEDULED_EVENTS": "ALL", "ADMIN_PASSWORD": "pw-1"}
    p = capi.process_of(created.id)
    assert (p["instances"], p["memory_in_mb"], p["disk_in_mb"]) == (2, 2048, 2048)
    assert p["health_check"] == {"type": "http", "data": {"endpoint": "/", "timeout": 600, "invocation_timeout": 10}}
    assert len(running(capi, created.id)) == 2
    assert [b["app"] for b in capi.objects["service_credential_bindings"].values()] == [created.id]
    route = next(iter(capi.objects["routes"].values()))
    assert [d["app"]["guid"] for d in route["destinations"]] == [created.id]
    assert created.outs["strategy"] == "create" and created.outs["dropletGuid"] == app["droplet"]


def test_failed_staging_on_create_leaves_nothing(capi):
    capi.fail_staging = "no runtime"
    with pytest.raises(StagingFailed):
        AppProvider().create(app_props(capi))
    assert capi.objects["apps"] == {}


@pytest.mark.parametrize(
    "change,expected",
    [
        ({"package": {"path": str(MDA), "sha256": "b" * 64, "modelVersion": "1.5.0.1300"}}, "stop-first"),
        ({"package": {"path": str(MDA), "sha256": "b" * 64, "modelVersion": "1.4.2.1234"}}, "rolling"),
        ({"package": {"path": str(MDA), "sha256": "b" * 64, "modelVersion": "unversioned"}}, "stop-first"),
        ({"environment": {"MEMORY_LIMIT": "2048M", "MXRUNTIME_DTAPMode": "T", "SCHEDULED_EVENTS": "NONE"}}, "rolling"),
        ({"secretEnvironment": {"ADMIN_PASSWORD": "pw-2"}}, "rolling"),
        ({"memoryMb": 4096}, "stop-first"),
        ({"instances": 3}, "scale"),
        ({}, "none"),
    ],
)
def test_strategy(capi, change, expected):
    olds = app_props(capi)
    assert strategy(olds, {**olds, **change}) == expected


def test_new_model_version_stops_first(capi, created, other_package):
    path, sha = other_package
    news = app_props(capi, routes=created.outs["routes"], services=created.outs["services"], package={"path": str(path), "sha256": sha, "modelVersion": "1.5.0.1300"})
    p = AppProvider()
    assert p.diff(created.id, created.outs, news).changes
    start = len(capi.requests)
    result = p.update(created.id, created.outs, news)
    assert result.outs["strategy"] == "stop-first"
    calls = [path.rsplit("/", 1)[-1] for _, path in capi.requests[start:] if path.endswith(("/stop", "/start", "current_droplet", "/builds"))]
    assert calls == ["builds", "stop", "current_droplet", "start"]  # staged first, then old instances stopped before the new start
    droplet = capi.objects["apps"][created.id]["droplet"]
    assert droplet == result.outs["dropletGuid"] != created.outs["dropletGuid"]
    assert {i["droplet"] for i in running(capi, created.id)} == {droplet}
    assert not any(m == "POST" and path == "/v3/deployments" for m, path in capi.requests[start:])


def test_settings_change_rolls(capi, created):
    news = {**created.outs, "environment": {**created.outs["environment"], "SCHEDULED_EVENTS": "NONE"}}
    result = AppProvider().update(created.id, created.outs, news)
    assert result.outs["strategy"] == "rolling"
    assert any(m == "POST" and path == "/v3/deployments" for m, path in capi.requests)
    assert all(i["env"]["SCHEDULED_EVENTS"] == "NONE" for i in running(capi, created.id))
    assert capi.objects["apps"][created.id]["state"] == "STARTED"


def test_failed_staging_on_update_keeps_the_running_droplet(capi, created, other_package):
    before_env = dict(capi.env[created.id])
    before_running = copy.deepcopy(running(capi, created.id))
    capi.fail_staging = "StagingError: out of disk"
    path, sha = other_package
    news = {**created.outs, "package": {"path": str(path), "sha256": sha, "modelVersion": "1.5.0"}, "secretEnvironment": {"ADMIN_PASSWORD": "pw-2"}}
    with pytest.raises(StagingFailed, match="out of disk"):
        AppProvider().update(created.id, created.outs, news)
    assert capi.objects["apps"][created.id]["droplet"] == created.outs["dropletGuid"]
    assert capi.env[created.id] == before_env and running(capi, created.id) == before_running


def test_scale_only(capi, created):
    result = AppProvider().update(created.id, created.outs, {**created.outs, "instances": 3})
    assert result.outs["strategy"] == "scale" and len(running(capi, created.id)) == 3


def test_read_reports_drift_and_deletion(capi, created):
    capi.env[created.id]["SCHEDULED_EVENTS"] = "NONE"  # someone ran cf set-env
    capi.process_of(created.id)["instances"] = 5
    r = AppProvider().read(created.id, created.outs)
    assert r.outs["environment"]["SCHEDULED_EVENTS"] == "NONE" and r.outs["instances"] == 5
    assert r.outs["secretEnvironment"] == {"ADMIN_PASSWORD": "pw-1"}
    assert AppProvider().diff(created.id, r.outs, created.outs).changes
    AppProvider().delete(created.id, created.outs)
    assert created.id not in capi.objects["apps"]
    assert AppProvider().read(created.id, created.outs).id == ""


def test_replace_on_rename(capi, created):
    d = AppProvider().diff(created.id, created.outs, {**created.outs, "name": "orders-2"})
    assert d.replaces == ["name"] and d.delete_before_replace


def test_service_instance_lifecycle(capi):
    p = ServiceInstanceProvider()
    capi.job_polls = 2
    props = {**where(capi), "name": "orders-test-files", "offering": "objectstore", "plan": "s3-standard", "parameters": {}}
    r = p.create(props)
    assert capi.objects["service_instances"][r.id]["state"] == "succeeded"
    assert p.diff(r.id, r.outs, {**r.outs, "offering": "postgresql-db"}).replaces == ["offering"]
    assert not p.diff(r.id, r.outs, {**r.outs, "plan": "standard"}).replaces
    assert p.read(r.id, r.outs).id == r.id
    p.delete(r.id, r.outs)
    assert r.id not in capi.objects["service_instances"]
    assert p.read(r.id, r.outs).id == ""


def test_existing_service_is_found_and_never_deleted(capi):
    ups = capi.add_user_provided("legacy-db")
    p = ServiceInstanceProvider()
    r = p.create({**where(capi), "name": "legacy-db", "existing": "legacy-db"})
    assert r.id == ups["guid"]
    p.delete(r.id, r.outs)
    assert ups["guid"] in capi.objects["service_instances"]
    with pytest.raises(Exception, match="does not exist"):
        p.create({**where(capi), "name": "nope", "existing": "nope"})


def test_space_role_lifecycle_and_drift(capi):
    p = SpaceRoleProvider()
    r = p.create({**where(capi), "type": "space_developer", "username": "alice@example.com", "origin": "corp-idp"})
    assert capi.objects["roles"][r.id]["type"] == "space_developer"
    assert p.diff(r.id, r.outs, {**r.outs, "type": "space_supporter"}).replaces == ["type"]
    del capi.objects["roles"][r.id]  # removed out of band
    assert p.read(r.id, r.outs).id == ""
    r2 = p.create(r.outs)
    p.delete(r2.id, r2.outs)
    assert capi.objects["roles"] == {}


def test_a_space_named_by_name_is_not_moved_by_its_resolved_guid(capi, created):
    """The state carries the resolved spaceGuid; the inputs (a space name) carry none: no replacement."""
    news = {**created.outs, "spaceGuid": None}
    d = AppProvider().diff(created.id, created.outs, news)
    assert d.replaces == [] and not d.changes
    assert AppProvider().diff(created.id, created.outs, {**news, "spaceGuid": "0" * 8 + "-0000-0000-0000-" + "0" * 12}).replaces == ["spaceGuid"]


# --- F17: the package uploaded is the package that was checked ----------------------------------------


def test_the_upload_is_the_recorded_package(capi, created):
    """The bytes sent are the bytes hashed, and they are the recorded package."""
    pkg = created.outs["packageGuid"]
    assert hashlib.sha256(capi.bits[pkg]).hexdigest() == MDA_SHA == created.outs["package"]["sha256"]


def test_a_package_replaced_after_the_plan_is_refused_on_create(capi, tmp_path):
    swapped = tmp_path / "orders.mda"
    swapped.write_bytes(MDA.read_bytes() + b"backdoor")  # replaced on disk after the gate hashed MDA
    with pytest.raises(DigestMismatch, match=f"the deployment recorded sha256:{MDA_SHA}"):
        AppProvider().create(app_props(capi, package={"path": str(swapped), "sha256": MDA_SHA, "modelVersion": "1.4.2.1234"}))
    assert capi.bits == {} and capi.objects["packages"] == {}  # nothing uploaded
    assert capi.objects["apps"] == {}  # refused before the app existed


def test_a_package_replaced_after_the_plan_is_refused_on_update(capi, created, other_package):
    path, sha = other_package
    droplet = capi.objects["apps"][created.id]["droplet"]
    packages = set(capi.objects["packages"])
    path.write_bytes(path.read_bytes() + b"swapped")  # after the plan recorded `sha`
    news = {**created.outs, "package": {"path": str(path), "sha256": sha, "modelVersion": "1.5.0.1300"}}
    with pytest.raises(DigestMismatch, match="nothing was uploaded"):
        AppProvider().update(created.id, created.outs, news)
    assert set(capi.objects["packages"]) == packages and capi.objects["apps"][created.id]["droplet"] == droplet
    assert all(i["droplet"] == droplet for i in running(capi, created.id))


def test_a_relative_package_path_is_the_project_s(capi, tmp_path, monkeypatch):
    """Inputs carry the project-relative path; the provider runs in the project directory (as under the engine)."""
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "orders.mda").write_bytes(MDA.read_bytes())
    monkeypatch.chdir(tmp_path)
    r = AppProvider().create(app_props(capi, package={"path": "build/orders.mda", "sha256": MDA_SHA, "modelVersion": "1.4.2.1234"}))
    assert capi.bits[r.outs["packageGuid"]] == MDA.read_bytes()


# --- F23: the buildpack stages only the pinned bytes ----------------------------------------------------


def test_a_pinned_buildpack_is_checked_before_staging(capi, other_package):
    pinned = capi.serve_buildpack(b"cf-mendix-buildpack v5.0.20")
    r = AppProvider().create(app_props(capi, buildpack=pinned))
    # Cloud Foundry gets the plain URL (it would read a fragment as a git branch)
    assert capi.objects["apps"][r.id]["buildpacks"] == [pinned.split("#")[0]]
    assert ("GET", "/buildpacks/cf-mendix-buildpack.zip") in capi.requests
    droplet = capi.objects["apps"][r.id]["droplet"]
    capi.buildpacks["cf-mendix-buildpack.zip"] = b"the same name, other bytes"  # the release asset was replaced
    path, sha = other_package
    with pytest.raises(DigestMismatch, match="not the pinned sha256"):
        AppProvider().update(r.id, r.outs, {**r.outs, "package": {"path": str(path), "sha256": sha, "modelVersion": "1.5.0.1300"}})
    assert capi.objects["apps"][r.id]["droplet"] == droplet and not any(b["package"] != r.outs["packageGuid"] for b in capi.objects["builds"].values())


def test_an_unreachable_pinned_buildpack_stops_the_create(capi):
    pinned = capi.serve_buildpack(b"bits")
    capi.buildpacks.clear()
    with pytest.raises(CapiError, match="to check its digest failed"):
        AppProvider().create(app_props(capi, buildpack=pinned))
    assert capi.objects["apps"] == {}


# --- F16: no SSH on production ----------------------------------------------------------------------------


def test_ssh_disabled_and_kept_disabled(capi):
    p = AppProvider()
    r = p.create(app_props(capi, ssh=False))
    assert capi.app_features[r.id]["ssh"] is False
    capi.app_features[r.id]["ssh"] = True  # a space developer ran cf enable-ssh
    drift = p.read(r.id, r.outs)
    assert drift.outs["ssh"] is True and p.diff(r.id, drift.outs, r.outs).changes
    out = p.update(r.id, drift.outs, r.outs)
    assert capi.app_features[r.id]["ssh"] is False and out.outs["strategy"] == "none"  # no restart for it


def test_outside_production_ssh_is_left_to_the_platform(capi):
    r = AppProvider().create(app_props(capi, ssh=None))
    assert r.id not in capi.app_features and not any("/features/" in path for _, path in capi.requests)


def test_an_owned_space_disallows_ssh_and_an_existing_one_is_refused(capi):
    p = SpaceProvider()
    props = {"api": capi.url, "org": "acme", "name": "orders-production", "allowSsh": False, "metadata": {"labels": {}, "annotations": {}}}
    r = p.create(props)
    assert capi.objects["spaces"][r.id]["name"] == "orders-production" and capi.space_features[r.id]["ssh"] is False
    capi.space_features[r.id]["ssh"] = True  # allowed again by hand
    assert p.read(r.id, r.outs).outs["allowSsh"] is True and p.diff(r.id, p.read(r.id, r.outs).outs, r.outs).changes
    p.update(r.id, {**r.outs, "allowSsh": True}, r.outs)
    assert capi.space_features[r.id]["ssh"] is False
    with pytest.raises(CapiError, match="already exists"):
        p.create({**props, "name": "orders"})  # the double's existing space: not ours to own


def test_pinning_the_running_buildpack_restages_nothing(capi):
    """Adding the digest of the URL already staged (the upgrade to a pinned production) checks it and
    restarts nothing; a wrong digest is refused."""
    pinned = capi.serve_buildpack(b"cf-mendix-buildpack v5.0.20")
    url = pinned.split("#")[0]
    p = AppProvider()
    r = p.create(app_props(capi, buildpack=url))
    builds = len(capi.objects["builds"])
    out = p.update(r.id, r.outs, {**r.outs, "buildpack": pinned})
    assert out.outs["strategy"] == "none" and len(capi.objects["builds"]) == builds
    with pytest.raises(DigestMismatch):
        p.update(r.id, r.outs, {**r.outs, "buildpack": url + "#sha256=" + "0" * 64})
