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
    pulumi_run(lambda: seen.update(raw=raw_config_from_pulumi()), config=config, secret_keys=secret_keys, stack="production")
    engine = seen["raw"]
    assert engine.values == offline.values
    # the engine marks whole keys secret; both agree that the password is a secret and the rest of the app is not
    assert engine.is_secret("mxinfra:environments.production.adminPassword") and offline.is_secret("mxinfra:environments.production.adminPassword")
    assert not engine.is_secret("mxinfra:app.name") and not offline.is_secret("mxinfra:app.name")
