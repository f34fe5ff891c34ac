"""The components under the mock runtime: the exact contract of every child."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import pulumi
import pulumi_random
import pytest

from mxinfra.components import APP_TYPE, ENVIRONMENT_TYPE, MendixApp
from mxinfra.config import RawConfig
from mxinfra.deployment import prepare
from mxinfra.testing import Computed, Sealed

from scaffold import UNGATED, app_config


def deployment(config, stack="production"):
    return prepare(RawConfig(config, frozenset({"mxinfra:environments"})), project="orders", stack=stack, base_dir=Path("."))


CONFIG = app_config(
    **{
        "mxinfra:environments": {
            "production": {"instances": 2, "memory": 2048, "adminPassword": "S3cret-Admin-Pw!", "constants": {"Orders.PageSize": 20}, "ungated": UNGATED},
            "uat": {"role": "acceptance"},
        },
        "mxinfra:access": [{"principal": "group:ops", "environments": ["production"], "permissions": ["deploy"]}],
    }
)


def test_app_and_environment_contract(fake_target, pulumi_run):
    d = deployment(CONFIG)
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="production", project="orders")
    app = res.one(APP_TYPE, "orders")
    assert app.parent.endswith("::pulumi:pulumi:Stack::orders-production") and not app.custom
    envs = {e.name: e for e in res.of_type(ENVIRONMENT_TYPE)}
    assert set(envs) == {"orders-production", "orders-uat"}
    assert all(e.parent == app.urn for e in envs.values())
    # the shared resource belongs to the app, everything else to its environment, all name-prefixed
    assert res.one("mxtest:index:Cluster").parent == app.urn
    for env_name, comp in envs.items():
        for child in res.descendants(comp):
            assert child.name.startswith(env_name + "-"), child.name
            assert child.parent == comp.urn


def test_admin_password_generated_only_when_absent(fake_target, pulumi_run):
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": deployment(CONFIG)}), stack="production", project="orders")
    passwords = res.of_type("random:index/randomPassword:RandomPassword")
    assert [p.name for p in passwords] == ["orders-uat-admin-password"]
    pw = passwords[0]
    assert pw.parent == res.one(ENVIRONMENT_TYPE, "orders-uat").urn
    assert pw.inputs["length"] == 32 and pw.inputs["special"] is True
    assert all(pw.inputs[k] >= 2 for k in ("minLower", "minUpper", "minNumeric", "minSpecial"))
    # the configured one reaches the target as a secret, never in the clear
    secret = res.one("mxtest:index:Secret", "orders-production-secret")
    assert isinstance(secret.inputs["data"], Sealed)
    assert secret.inputs["data"].value["ADMIN_PASSWORD"] == "S3cret-Admin-Pw!"
    # the generated one is only known to the cloud
    assert isinstance(res.one("mxtest:index:Secret", "orders-uat-secret").inputs["data"], (Sealed, Computed))


def test_settings_and_tags_reach_the_target(fake_target, pulumi_run):
    d = deployment(CONFIG)
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="production", project="orders")
    rt = res.one("mxtest:index:Runtime", "orders-production-runtime")
    assert rt.input("env.MEMORY_LIMIT") == "2048M" and rt.input("env.CONSTANTS") == '{"Orders.PageSize":20}'
    assert rt.input("instances") == 2
    assert rt.input("tags") == {
        "mxinfra:app": "orders",
        "mxinfra:environment": "production",
        "mxinfra:role": "production",
        "mxinfra:package-sha256": d.package.sha256,
        "mxinfra:model-version": "1.4.2.1234",
    }
    # what a release does not change carries the stable tags only (naming.PER_RELEASE_TAGS)
    assert res.one("mxtest:index:Database", "orders-production-db").input("tags") == {"mxinfra:app": "orders", "mxinfra:environment": "production", "mxinfra:role": "production"}
    role = res.one("mxtest:index:Role", "orders-production-role-deploy")
    assert role.inputs == {"principals": ["group:ops"], "mfa": True, "maxSession": 28800}
    assert not res.of_type("mxtest:index:Role") == [] and all(r.name.startswith("orders-production") for r in res.of_type("mxtest:index:Role"))


def test_production_data_is_protected(fake_target, pulumi_run):
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": deployment(CONFIG)}), stack="production", project="orders")
    prod, uat = res.one("mxtest:index:Database", "orders-production-db"), res.one("mxtest:index:Database", "orders-uat-db")
    assert prod.protect and prod.retain_on_delete
    assert not uat.protect and not uat.retain_on_delete


def test_target_warnings_are_logged(fake_target, pulumi_run):
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": deployment(CONFIG)}), stack="production", project="orders")
    assert any("production: this platform cannot enforce MFA" in w for w in res.warnings)


def test_user_providers_flow_to_every_child(fake_target, pulumi_run):
    def program():
        provider = pulumi_random.Provider("user-random")
        MendixApp("orders", {"deployment": deployment(CONFIG)}, pulumi.ResourceOptions(providers=[provider]))

    res = pulumi_run(program, stack="production", project="orders")
    provider = res.one("pulumi:providers:random", "user-random")
    pw = res.one("random:index/randomPassword:RandomPassword")
    assert pw.provider.startswith(provider.urn)


def test_records_run_on_one_explicit_provider_without_inputs(fake_target, pulumi_run):
    # The engine hands the default pulumi-python provider the whole stack config: every release updated it
    # before the intents (issue 18's benchmark). One explicit provider with no inputs stays the same.
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": deployment(CONFIG)}), stack="production", project="orders", preview=False)
    (records,) = res.of_type("pulumi:providers:pulumi-python")
    assert records.name == "orders-shared-records" and records.parent == res.one(APP_TYPE, "orders").urn
    assert not records.inputs
    dynamic = [r for r in res if r.type.startswith("pulumi-python:")]
    assert sorted(r.name for r in dynamic) == sorted(f"orders-{e}-{k}" for e in ("production", "uat") for k in ("activity", "release-intent"))
    assert all(r.provider.rsplit("::", 1)[0] == records.urn for r in dynamic), [r.provider for r in dynamic]


def test_the_release_intent_reaches_the_engine_while_the_target_sdk_loads(fake_target, pulumi_run, tmp_path, monkeypatch):
    # A stand-in for the target's SDK: six modules that take 0.1 s each, the last of which notes whether the
    # engine (here the mock monitor) has received an environment's release intent by then. The event loop
    # runs between two modules (mxinfra.sdk_loading), so it has; loading them before declaring the intent,
    # or without running the loop, it would not have. Not loading them at all leaves `seen` empty.
    probe = types.ModuleType("mxinfra_test_sdk_probe")
    probe.intent, probe.seen = threading.Event(), []
    monkeypatch.setitem(sys.modules, probe.__name__, probe)
    names = [f"mxinfra_test_slow_sdk_{i}" for i in range(6)]
    for name in names:
        (tmp_path / f"{name}.py").write_text("import time\ntime.sleep(0.1)\n")
        monkeypatch.delitem(sys.modules, name, raising=False)
    (tmp_path / f"{names[-1]}.py").write_text(f"import {probe.__name__} as p\np.seen.append(p.intent.is_set())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(fake_target, "sdk_modules", tuple(names), raising=False)

    def engine(args):
        if args.typ == "pulumi-python:dynamic/mxinfra:ReleaseIntent":
            probe.intent.set()
        return {}

    res = pulumi_run(lambda: MendixApp("orders", {"deployment": deployment(CONFIG)}), stack="production", project="orders", outputs=engine)
    assert probe.seen == [True]  # loaded once, for the first environment, after its intent was sent
    assert res.one("mxtest:index:Runtime", "orders-uat-runtime")


def test_component_names_must_match_the_app(fake_target, pulumi_run):
    with pytest.raises(ValueError, match="must carry the app's name"):
        pulumi_run(lambda: MendixApp("other", {"deployment": deployment(CONFIG)}))


def test_each_run_has_its_own_root_stack(fake_target, pulumi_run):
    for stack in ("first", "second"):
        res = pulumi_run(lambda: MendixApp("orders", {"deployment": deployment(CONFIG)}), stack=stack, project="orders")
        assert res.one(APP_TYPE).parent == f"urn:pulumi:{stack}::orders::pulumi:pulumi:Stack::orders-{stack}"


def test_activity_log_resource_follows_the_runtime(fake_target, pulumi_run):
    d = deployment(CONFIG)
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="production", project="orders", preview=False)
    activity = res.one("pulumi-python:dynamic:Resource", "orders-production-activity")
    assert activity.parent == res.one(ENVIRONMENT_TYPE, "orders-production").urn
    assert res.one("mxtest:index:Runtime", "orders-production-runtime").urn in activity.dependencies
    assert activity.input("packageSha256") == d.package.sha256 and activity.input("instances") == 2
    assert activity.input("environment") == "production" and activity.input("repository").startswith("file://")
    assert len(activity.input("settingsDigest")) == 64 and len(activity.input("grantsDigest")) == 64


def test_production_destroy_stops_at_a_protected_anchor(fake_target, pulumi_run):
    # The engine deletes in reverse dependency order and fails at the first protected resource: the
    # activity resource depends on every other resource of its environment, so it is deleted first,
    # and on production it is protected, so a destroy deletes nothing (found by the engine suite).
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": deployment(CONFIG)}), stack="production", project="orders", preview=False)
    for env, protected in (("production", True), ("uat", False)):
        comp = res.one(ENVIRONMENT_TYPE, f"orders-{env}")
        activity = res.one("pulumi-python:dynamic:Resource", f"orders-{env}-activity")
        others = {r.urn for r in res.descendants(comp) if r.custom and r.urn != activity.urn}
        assert len(others) >= 3, others
        assert others <= set(activity.dependencies), sorted(others - set(activity.dependencies))
        assert activity.protect is protected and not activity.retain_on_delete  # unprotected, a destroy records itself
        # nothing depends on the anchor, so no other deletion can come before it
        assert not [r.name for r in res if activity.urn in r.dependencies]



def _closure(res, start) -> set[str]:
    """Every URN `start` waits for, as the engine's dependency graph has it: dependencies, provider and
    parent, transitively."""
    by_urn = {r.urn: r for r in res}
    seen: set[str] = set()
    frontier = [*start.dependencies, start.parent]
    while frontier:
        urn = frontier.pop()
        if urn in seen or urn not in by_urn:
            continue
        seen.add(urn)
        r = by_urn[urn]
        frontier += [*r.dependencies, r.parent] + ([r.provider.rsplit("::", 1)[0]] if r.provider else [])
    return seen


def test_every_resource_of_a_production_stack_is_behind_the_anchor(fake_target, pulumi_run):
    # After a failed step the engine still runs later deletions, skipping only what the failed one
    # depends on: every custom resource of the stack but the other environments' must be in the
    # protected anchor's dependencies, the app's shared resources included.
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": deployment(CONFIG)}), stack="production", project="orders", preview=False)
    anchor = res.one("pulumi-python:dynamic:Resource", "orders-production-activity")
    behind = _closure(res, anchor)
    uat = {r.urn for r in res.descendants(res.one(ENVIRONMENT_TYPE, "orders-uat"))}
    exposed = [r.name for r in res if r.custom and r.urn != anchor.urn and r.urn not in uat and r.urn not in behind]
    assert not exposed, exposed
    assert res.one("mxtest:index:Cluster").urn in behind  # the app-level shared resource


def test_shared_resources_nothing_references_are_behind_the_anchor_too(fake_target, pulumi_run, monkeypatch):
    from fake_target import Thing

    original = type(fake_target).deploy_app

    def deploy_app(self, ctx):
        Thing("mxtest:index:Registry", f"{ctx.naming.app}-registry", {}, ctx.opts())  # nothing refers to it
        return original(self, ctx)

    monkeypatch.setattr(type(fake_target), "deploy_app", deploy_app)
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": deployment(CONFIG)}), stack="production", project="orders", preview=False)
    behind = _closure(res, res.one("pulumi-python:dynamic:Resource", "orders-production-activity"))
    assert res.one("mxtest:index:Registry").urn in behind
    # not production: its destroy needs no anchor, and the shared resources are production's to keep
    assert res.one("mxtest:index:Registry").urn not in res.one("pulumi-python:dynamic:Resource", "orders-uat-activity").dependencies
