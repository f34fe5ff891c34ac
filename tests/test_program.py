"""The program reads its config from the engine exactly as the CLI reads it from the stack file."""

from __future__ import annotations

from mxinfra.program import raw_config_from_pulumi
from mxinfra.stackfile import as_pulumi_config, read_project, read_stack_config


def test_engine_config_equals_offline_config(project, pulumi_run):
    project.stack(
        "production",
        {
            "aws:region": "eu-west-1",
            "mxinfra:app": {"name": "orders", "package": "x.mda", "target": "fake"},
            "mxinfra:environments": {"production": {"instances": 2, "constants": {"Orders.PageSize": 5}, "adminPassword": {"secure": "v1:x"}}},
            "mxinfra:access": [{"principal": "group:ops", "environments": ["production"], "permissions": ["deploy"]}],
            "mxinfra:repository": "file://.mxinfra",
        },
    )
    offline = read_stack_config(read_project(project.path), "production")
    config, secret_keys = as_pulumi_config(offline)
    seen = {}
    pulumi_run(lambda: seen.update(raw=raw_config_from_pulumi(project.path)), config=config, secret_keys=secret_keys, stack="production", project="orders")
    engine = seen["raw"]
    assert engine.values == offline.values
    # the engine marks whole keys secret; both agree that the password is a secret and the rest of the app is not
    assert engine.is_secret("mxinfra:environments.production.adminPassword") and offline.is_secret("mxinfra:environments.production.adminPassword")
    assert not engine.is_secret("mxinfra:app.name") and not offline.is_secret("mxinfra:app.name")


def test_a_plain_value_beside_a_secret_is_refused_under_the_engine_as_in_plan(project, pulumi_run, fake_target, capsys):
    """Issue 18: the engine marks a whole key secret when one value inside it is, so a plain value set
    with `pulumi config set --path` beside it passed under `pulumi up` while `mxinfra plan` refused it."""
    import pytest
    from pulumi import RunError

    from mxinfra.cli import main
    from mxinfra.program import run
    from scaffold import app_config

    envs = {"production": {"adminPassword": {"secure": "v1:x"}, "secretConstants": {"Orders.ApiUrl": "https://user:pw@api"}}}
    project.stack("production", app_config(**{"mxinfra:environments": envs}))
    assert main(["plan", "-s", "production", "-C", str(project.path)]) == 2
    offline_error = capsys.readouterr().err
    assert "mxinfra:environments.production.secretConstants.Orders.ApiUrl" in offline_error and "plain text" in offline_error

    raw = read_stack_config(read_project(project.path), "production")
    config, secret_keys = as_pulumi_config(raw)
    assert secret_keys == ["mxinfra:environments"]  # what the engine says: the whole block
    with pytest.raises(RunError) as refused:
        pulumi_run(lambda: run(project.path), config=config, secret_keys=secret_keys, stack="production", project="orders")
    assert "secretConstants.Orders.ApiUrl" in str(refused.value) and "plain text" in str(refused.value)
    assert "user:pw" not in str(refused.value) and "user:pw" not in offline_error


def test_a_secret_constant_of_the_wrong_type_is_never_echoed(project, pulumi_run, fake_target):
    """Under the engine secret values arrive decrypted: a type error must name the constant, not show it."""
    import json

    import pytest
    from pulumi import RunError

    from mxinfra.program import run
    from scaffold import app_config

    envs = {"production": {"secretConstants": {"Orders.PageSize": {"secure": "v1:x"}}}}
    project.stack("production", app_config(**{"mxinfra:environments": envs}))
    raw = read_stack_config(read_project(project.path), "production")
    config, secret_keys = as_pulumi_config(raw)
    config["mxinfra:environments"] = json.dumps({"production": {"secretConstants": {"Orders.PageSize": "hunter2-not-a-number"}}})
    with pytest.raises(RunError) as refused:
        pulumi_run(lambda: run(project.path), config=config, secret_keys=secret_keys, stack="production", project="orders")
    assert "Orders.PageSize" in str(refused.value)
    assert "hunter2" not in str(refused.value)
