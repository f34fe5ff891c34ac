"""The Cloud Foundry target under the mock runtime: the exact child contract per role."""

from __future__ import annotations

import json

import pytest

from mxinfra.components import APP_TYPE, ENVIRONMENT_TYPE, MendixApp
from mxinfra.testing import Sealed

from cfhelpers import ADMIN_PASSWORD, BUILDPACK, ENCRYPTION_KEY, LICENSE_KEY, MDA, SECRET_VALUES, config, deployment

DYN = "pulumi-python:dynamic/cloudfoundry:"


def run(pulumi_run, role: str, preview: bool = True, **kw):
    d = deployment(config(role, **kw))
    return d, pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="cf-production", project="orders", preview=preview)


def children(res, role):
    env = res.one(ENVIRONMENT_TYPE, f"orders-{role}")
    return env, {r.name.removeprefix(f"orders-{role}-"): r for r in res.children(env)}


@pytest.mark.parametrize("role", ["test", "acceptance", "production"])
def test_child_contract(pulumi_run, role):
    _, res = run(pulumi_run, role)
    env, kids = children(res, role)
    assert env.parent == res.one(APP_TYPE, "orders").urn
    types = {k: r.type for k, r in kids.items()}
    expected = {
        "database": DYN + "ServiceInstance",
        "files": DYN + "ServiceInstance",
        "route": DYN + "Route",
        "app": DYN + "App",
        "activity": "pulumi-python:dynamic:Resource",
        "release-intent": "pulumi-python:dynamic/mxinfra:ReleaseIntent",  # recorded first; keys the secret digests
    }
    if role == "production":
        expected["grants"] = DYN + "GrantExpiry"
    else:
        expected.update({k: DYN + "SpaceRole" for k in types if k.startswith("role-")})
        assert sorted(k.rsplit("-", 1)[0] for k in types if k.startswith("role-")) == ["role-deploy", "role-manage", "role-monitor"]
    assert types == expected
    for r in kids.values():
        assert r.inputs.get("__provider", "[dynamic provider]") == "[dynamic provider]"
        if r.type.startswith(DYN):
            assert r.inputs["api"] == "https://api.cf.example.com" and r.inputs["org"] == "acme" and r.inputs["space"] == "orders"
    # production data is protected and retained; the activity resource is production's protected anchor
    # (core: destroy deletes it first and stops there); nothing else is protected
    for name, r in kids.items():
        protected = role == "production" and name in ("database", "files")
        anchor = role == "production" and name == "activity"
        assert (r.protect, r.retain_on_delete) == (protected or anchor, protected), name


def test_app_inputs(pulumi_run):
    d, res = run(pulumi_run, "production", preview=False)  # the dependencies `pulumi up` registers
    _, kids = children(res, "production")
    app = kids["app"]
    i = app.inputs
    assert i["name"] == "orders-production" and i["buildpack"] == BUILDPACK and i["stack"] == "cflinuxfs4"
    assert i["instances"] == 2 and i["memoryMb"] == 2048 and i["diskMb"] == 2048
    assert i["healthCheck"] == {"type": "http", "endpoint": "/", "timeout": 600, "invocationTimeout": 10}
    # project-relative: the same inputs from any checkout (cfhelpers.deployment's project is the repository)
    assert i["package"] == {"path": "examples/orders/orders-1.4.2.mda", "sha256": d.package.sha256, "modelVersion": "1.4.2.1234"}
    assert i["ssh"] is False  # production: no SSH into the runtime
    assert i["environment"] == {
        "CONSTANTS": '{"Orders.PageSize":20}',
        "LICENSE_ID": "lic-1",
        "MEMORY_LIMIT": "2048M",
        "MXRUNTIME_DTAPMode": "P",
        "SCHEDULED_EVENTS": "ALL",
    }
    # secrets: one secret input, declared a secret output too (so the state keeps it encrypted)
    assert isinstance(i["secretEnvironment"], Sealed)
    assert i["secretEnvironment"].value == {"ADMIN_PASSWORD": ADMIN_PASSWORD, "LICENSE_KEY": LICENSE_KEY, "MX_Encryption_EncryptionKey": ENCRYPTION_KEY}
    assert i["secretEnvironmentNames"] == ["ADMIN_PASSWORD", "LICENSE_KEY", "MX_Encryption_EncryptionKey"]
    assert app.additional_secret_outputs == ["secretEnvironment"]
    plain = json.dumps({k: v for k, v in i.items() if k != "secretEnvironment"}, default=repr)
    for value in SECRET_VALUES:
        assert value not in plain
    # the app waits for its services and route
    assert set(app.dependencies) >= {kids["database"].urn, kids["files"].urn, kids["route"].urn}
    assert i["metadata"]["annotations"]["mxinfra.io/package-sha256"] == d.package.sha256
    # the activity record waits for the app
    assert app.urn in kids["activity"].dependencies


def test_services_and_route(pulumi_run):
    _, res = run(pulumi_run, "acceptance", cf={"hostnames": {"acceptance": "orders-acc"}, "storage": {"existing": "shared-objectstore"}})
    _, kids = children(res, "acceptance")
    db = kids["database"].inputs
    assert (db["name"], db["offering"], db["plan"], db.get("existing")) == ("orders-acceptance-database", "postgresql-db", "standard", None)
    files = kids["files"].inputs
    assert files["existing"] == "shared-objectstore" and files["name"] == "shared-objectstore" and "offering" not in files
    assert (kids["route"].inputs["host"], kids["route"].inputs["domain"]) == ("orders-acc", "apps.example.com")


def test_generated_admin_password_stays_secret(pulumi_run):
    _, res = run(pulumi_run, "test", env={"adminPassword": None})
    _, kids = children(res, "test")
    assert "admin-password" in kids
    assert isinstance(kids["app"].inputs["secretEnvironment"], Sealed)


def test_standing_roles_outside_production(pulumi_run):
    _, res = run(pulumi_run, "test", cf={"deployRole": "space_supporter"})
    _, kids = children(res, "test")
    roles = sorted((r.inputs["type"], r.inputs["origin"], r.inputs["username"]) for k, r in kids.items() if k.startswith("role-"))
    assert roles == [
        ("space_auditor", "corp-idp", "alice@example.com"),
        ("space_manager", "corp-idp", "bob@example.com"),
        ("space_supporter", "corp-idp", "alice@example.com"),
    ]


def test_released_production_data_is_not_protected(pulumi_run):
    _, res = run(pulumi_run, "production", cf={"releaseData": ["production"]})
    _, kids = children(res, "production")
    assert not kids["database"].protect and not kids["database"].retain_on_delete


@pytest.mark.parametrize("role", ["test", "production"])
def test_created_space(pulumi_run, role):
    """With createSpaces the environment owns its space: everything in it waits for it; production's
    disallows SSH and outlives a destroy."""
    _, res = run(pulumi_run, role, cf={"space": None, "spaces": {role: f"orders-{role}"}, "createSpaces": True})
    _, kids = children(res, role)
    space = kids["space"]
    assert space.type == DYN + "Space"
    assert space.inputs["name"] == f"orders-{role}" and space.inputs["org"] == "acme"
    assert space.inputs["allowSsh"] is (role != "production")
    assert (space.protect, space.retain_on_delete) == ((True, True) if role == "production" else (False, False))
    for name in ("database", "files", "route", "app"):
        assert space.urn in kids[name].dependencies, name
        assert kids[name].inputs["space"] == f"orders-{role}"
