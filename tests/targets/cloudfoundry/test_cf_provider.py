"""The dynamic providers' create, diff, update, read (drift) and delete against the CAPI double."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from mxinfra_cloudfoundry.capi import StagingFailed
from mxinfra_cloudfoundry.provider import AppProvider, RouteProvider, ServiceInstanceProvider, SpaceRoleProvider, strategy

from cfhelpers import BUILDPACK, MDA


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
        "package": {"path": str(MDA), "sha256": "a" * 64, "modelVersion": "1.4.2.1234"},
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


def test_new_model_version_stops_first(capi, created):
    news = app_props(capi, routes=created.outs["routes"], services=created.outs["services"], package={"path": str(MDA), "sha256": "b" * 64, "modelVersion": "1.5.0.1300"})
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


def test_failed_staging_on_update_keeps_the_running_droplet(capi, created):
    before_env = dict(capi.env[created.id])
    before_running = copy.deepcopy(running(capi, created.id))
    capi.fail_staging = "StagingError: out of disk"
    news = {**created.outs, "package": {"path": str(MDA), "sha256": "c" * 64, "modelVersion": "1.5.0"}, "secretEnvironment": {"ADMIN_PASSWORD": "pw-2"}}
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
