"""The stack-config schema: collected errors with key paths and fixes, roles, names, secrets."""

from __future__ import annotations

import pytest

from mxinfra.config import RawConfig, load_stack_config
from mxinfra.environments import Role, Secret
from mxinfra.errors import ConfigError

APP = {"name": "orders", "package": "orders.mda", "target": "fake"}
# production is gated by default (issue 19, F6); its source may live in another stack
GATED = {"requirePromotionFrom": "acceptance"}


def load(values, stack="production", secret_paths=()):
    return load_stack_config(RawConfig(values, frozenset(secret_paths), "Pulumi.x.yaml"), project="orders", stack=stack)


def issues(values, **kw):
    with pytest.raises(ConfigError) as exc:
        load(values, **kw)
    return {i.path: i for i in exc.value.issues}


def test_absent_environments_gives_one_named_after_the_stack():
    cfg = load({"mxinfra:app": APP}, stack="acceptance")
    assert [(e.name, e.role) for e in cfg.environments] == [("acceptance", Role.ACCEPTANCE)]


def test_stack_not_named_after_a_role_needs_explicit_environments():
    found = issues({"mxinfra:app": APP}, stack="dev-eu")
    assert "mxinfra:environments" in found
    assert "role" in found["mxinfra:environments"].fix


def test_extra_environments_with_roles_and_defaults():
    cfg = load(
        {
            "mxinfra:app": APP,
            "mxinfra:environments": {
                "production": {"instances": 2, "memory": 2048, "requirePromotionFrom": "perf"},
                "perf": {"role": "acceptance", "scheduledEvents": "NONE"},
                "test": {},
            },
        }
    )
    envs = {e.name: e for e in cfg.environments}
    assert envs["production"].role is Role.PRODUCTION and envs["production"].instances == 2
    assert envs["perf"].role is Role.ACCEPTANCE and envs["perf"].scheduled_events == "NONE"
    assert envs["test"].role is Role.TEST and envs["test"].memory_mb == 1024


def test_errors_are_collected_with_paths_and_fixes():
    found = issues(
        {
            "mxinfra:app": {"name": "orders", "package": "x.mda", "targt": "aws"},
            "mxinfra:environmnets": {},
            "mxinfra:environments": {
                "production": {"instances": "many", "memroy": 2048},
                "Bad_Name": {"role": "test"},
                "extra": {},
                "this-name-is-far-too-long": {"role": "test"},
            },
            "mxinfra:access": [{"principal": "group:x", "environments": ["prod"], "permissions": ["deploy", "depoly"]}],
        }
    )
    assert found["mxinfra:app.targt"].message == "unknown key"
    assert "target" in found["mxinfra:app.targt"].fix
    assert "mxinfra:app.target" in found  # missing
    assert "environments" in found["mxinfra:environmnets"].fix
    assert "instances" in found["mxinfra:environments.production.instances"].path
    assert "memory" in found["mxinfra:environments.production.memroy"].fix
    assert "lowercase letters and digits" in found["mxinfra:environments.Bad_Name"].message
    assert "mxinfra:environments.this-name-is-far-too-long" in found
    assert "role" in found["mxinfra:environments.extra.role"].message or "required" in found["mxinfra:environments.extra.role"].message
    assert "production" in found["mxinfra:access[0].environments[0]"].fix
    assert "deploy" in found["mxinfra:access[0].permissions[1]"].fix
    assert len(found) >= 10


def test_error_message_names_the_file():
    with pytest.raises(ConfigError) as exc:
        load({"mxinfra:app": {"name": "orders"}})
    assert "Pulumi.x.yaml" in str(exc.value)
    assert "mxinfra:app.package" in str(exc.value)


def test_invalid_app_name():
    found = issues({"mxinfra:app": {**APP, "name": "Orders App"}})
    assert "DNS label" in found["mxinfra:app.name"].message


def test_secret_fields_must_be_stored_as_secrets():
    values = {
        "mxinfra:app": APP,
        "mxinfra:environments": {"production": {**GATED, "adminPassword": "hunter2hunter2", "license": {"id": "L1", "key": "K"}}},
    }
    found = issues(values)
    assert "plain text" in found["mxinfra:environments.production.adminPassword"].message
    assert "--secret" in found["mxinfra:environments.production.adminPassword"].fix
    assert "mxinfra:environments.production.license.key" in found
    assert "hunter2" not in str(found)

    cfg = load(values, secret_paths={"mxinfra:environments.production.adminPassword", "mxinfra:environments.production.license.key"})
    env = cfg.environments[0]
    assert env.admin_password == Secret("hunter2hunter2") and "hunter2" not in repr(env)
    # a whole key marked secret (as the engine does) covers everything under it
    cfg = load(values, secret_paths={"mxinfra:environments"})
    assert cfg.environments[0].license.key.reveal() == "K"


def test_secret_values_never_appear_in_type_errors():
    found = issues({"mxinfra:app": APP, "mxinfra:environments": {"production": {"adminPassword": 123456789}}}, secret_paths={"mxinfra:environments"})
    assert "123456789" not in str(found)


def test_promotion_source_must_be_a_name_but_may_live_in_another_stack():
    cfg = load({"mxinfra:app": APP, "mxinfra:environments": {"production": {"requirePromotionFrom": "acceptance"}}})
    assert cfg.environments[0].require_promotion_from == "acceptance"
    found = issues({"mxinfra:app": APP, "mxinfra:environments": {"production": {"requirePromotionFrom": "production"}}})
    assert "itself" in found["mxinfra:environments.production.requirePromotionFrom"].message


def test_target_blocks_are_left_to_the_target(fake_target):
    cfg = load({"mxinfra:app": APP, "mxinfra:fake": {"image": "x"}, "aws:region": "eu-west-1"}, stack="acceptance")
    assert cfg.block("mxinfra:fake") == {"image": "x"}
    # a block for no installed target is a typo until proven otherwise
    found = issues({"mxinfra:app": APP, "mxinfra:fkae": {}})
    assert "fake" in found["mxinfra:fkae"].fix


def test_strings_from_path_config_are_coerced_like_pulumi_would_store_them():
    cfg = load({"mxinfra:app": APP, "mxinfra:environments": {"production": {**GATED, "instances": "3", "memory": "4096"}}})
    assert cfg.environments[0].instances == 3 and cfg.environments[0].memory_mb == 4096


@pytest.mark.parametrize("url", ["http://x", "s3://", "azblob://acct", 42])
def test_repository_url_is_checked_before_anything_is_deployed(url):
    found = issues({"mxinfra:app": APP, "mxinfra:repository": url})
    assert "mxinfra:repository" in found


def test_names_with_a_trailing_newline_are_refused():
    found = issues({"mxinfra:app": {**APP, "name": "orders\n"}, "mxinfra:environments": {"production\n": {}}})
    assert "mxinfra:app.name" in found and any(p.startswith("mxinfra:environments.production") for p in found)


def test_containers_of_secrets_are_never_echoed_in_type_errors():
    found = issues({"mxinfra:app": APP, "mxinfra:environments": {"production": {"license": "TOPSECRET-KEY", "constants": ["a", "TOPSECRET-LIST"]}}})
    assert "TOPSECRET" not in str(found)


def test_secure_values_under_constants_or_runtime_settings_are_refused():
    """`constants` and `runtimeSettings` are deployed in clear: a `secure:` value there would leak (issue 19, F7)."""
    values = {
        "mxinfra:app": APP,
        "mxinfra:environments": {"production": {**GATED, "constants": {"Orders.ApiKey": "k3y-v4lue-0123", "Orders.Url": "https://x"}, "runtimeSettings": {"Some.Token": "t0ken-value"}}},
    }
    found = issues(
        values,
        secret_paths={"mxinfra:environments.production.constants.Orders.ApiKey", "mxinfra:environments.production.runtimeSettings.Some.Token"},
    )
    assert set(found) == {"mxinfra:environments.production.constants.Orders.ApiKey", "mxinfra:environments.production.runtimeSettings.Some.Token"}
    key = found["mxinfra:environments.production.constants.Orders.ApiKey"]
    assert "deployed in plain text" in key.message and "secretConstants[\"Orders.ApiKey\"]" in key.fix and "--secret" in key.fix
    assert "k3y" not in str(key) and "t0ken" not in str(found["mxinfra:environments.production.runtimeSettings.Some.Token"])
    # the whole map marked secret, too
    assert set(issues(values, secret_paths={"mxinfra:environments.production.constants"})) == {
        "mxinfra:environments.production.constants.Orders.ApiKey",
        "mxinfra:environments.production.constants.Orders.Url",
    }
    # plain constants are fine
    load(values)
